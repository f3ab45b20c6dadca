"""The round trip between a caller's array and normalised float planes.

Every array enters the solvers as float32 planes of shape ``(H, W, C)`` on the
[0, 1] scale (one plane per index of the leading axes, ``C`` = channels or 1),
read one at a time by :class:`PlaneReader`, and leaves in the caller's dtype
(or a float one, :func:`result_dtype`), value range and axis order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .defects import fill_defects, robust_range
from .validation import as_bounds, is_lazy

__all__ = ["Layout", "PlaneReader", "assemble", "n_planes", "result_dtype"]


def n_planes(shape: tuple[int, ...], channel_axis: int | None) -> int:
    """Number of 2-D planes (product of the axes before Y, X; channels excluded)."""
    axis = None if channel_axis is None else channel_axis % len(shape)
    dims = [s for ax, s in enumerate(shape) if ax != axis]
    return int(np.prod(dims[:-2], dtype=np.int64))


# Largest float64 below 2**64: the most steps a uint64 can take from a float.
_BELOW_2_64 = float(np.nextafter(2.0**64, 0))


@dataclass(frozen=True)
class Layout:
    """What is needed to map normalised planes back to the caller's array.

    ``lo`` and ``hi`` bound the values (the result is clipped to them) and,
    without ``scale``, are also the intensities mapped to 0 and 1: Python
    ints for integer data (so 64-bit values keep every level), floats
    otherwise. ``scale``, within those bounds, names other intensities to
    map to 0 and 1 (the robust range, :func:`robust_range`); values outside
    it then map outside [0, 1] and are kept, not clipped. ``result`` is the
    dtype results are given in (``None``: ``dtype``); a float ``result`` of
    integer data keeps the values between its levels.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    channel_axis: int | None
    lo: float
    hi: float
    scale: tuple | None = None
    result: np.dtype | None = None

    @property
    def result_dtype(self) -> np.dtype:
        return self.dtype if self.result is None else np.dtype(self.result)

    @property
    def constant(self) -> bool:
        return not self.hi > self.lo

    @property
    def plane_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one plane."""
        shape = list(self.shape)
        channels = shape.pop(self.channel_axis) if self.channel_axis is not None else 1
        return shape[-2], shape[-1], channels

    @property
    def _exact(self) -> bool:
        # Integer data with integer bounds: differences are taken in modular
        # uint64 arithmetic, exact for any int64/uint64 values.
        return self.dtype.kind in "iu" and isinstance(self.lo, int) and isinstance(self.hi, int)

    def _clipas_bounds(self) -> tuple:
        """The result's bounds: the range, within what the dtype can hold."""
        info = np.iinfo(self.dtype) if self.dtype.kind in "iu" else np.finfo(self.dtype)
        lo, hi = max(self.lo, info.min), min(self.hi, info.max)
        return (int(lo), int(hi)) if self.dtype.kind in "iu" else (float(lo), float(hi))

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Values in the caller's dtype to float32 on [0, 1] (clipped to the bounds); always a new array.

        The range is taken off in float64 (or exactly, for integers) before
        the values become float32, so large offsets keep their levels.
        """
        if self.constant:
            return np.zeros(raw.shape, np.float32)
        if self.scale is not None:
            return (self._offset(raw) / self._span).astype(np.float32)
        if self._exact:
            lo, hi = self._clipas_bounds()
            steps = np.clip(raw, lo, hi).astype(np.uint64) - np.uint64(self.lo % 2**64)
            x = steps.astype(np.float64) / float(self.hi - self.lo)
        else:
            # Halves keep hi - lo finite for float64 data near its limits; scaling by 0.5 is exact.
            x = (raw.astype(np.float64) * 0.5 - self.lo * 0.5) / (self.hi * 0.5 - self.lo * 0.5)
        np.clip(x, 0.0, 1.0, out=x)
        return x.astype(np.float32)

    def denormalise(self, values: np.ndarray) -> np.ndarray:
        """[0, 1] floats to the result dtype and the caller's range; shape unchanged."""
        if self.dtype.kind in "iu" and self.result_dtype.kind == "f":
            return self._to_float(np.asarray(values, np.float64))
        if self.scale is not None:
            return self._from_scale(np.asarray(values, np.float64))
        v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
        lo, hi = self._clipas_bounds()
        if self._exact:
            steps = np.minimum(np.rint(v * float(self.hi - self.lo)), _BELOW_2_64).astype(np.uint64)
            steps[v >= 1.0] = self.hi - self.lo  # the top level exactly, which float64 may not hold
            res = (steps + np.uint64(self.lo % 2**64)).view(np.dtype(f"{self.dtype.kind}8"))
            return np.clip(res, lo, hi).astype(self.dtype)
        x = (v * (self.hi * 0.5 - self.lo * 0.5) + self.lo * 0.5) * 2.0
        if self.dtype.kind in "iu":
            x = np.rint(x)
        np.clip(x, lo, hi, out=x)
        return x.astype(self.result_dtype)

    def _to_float(self, v: np.ndarray) -> np.ndarray:
        """Integer data's result as floats: the levels' scale, not rounded to them (float64, then cast)."""
        a, b = self.scale if self.scale is not None else (self.lo, self.hi)
        if self.scale is None:
            v = np.clip(v, 0.0, 1.0)
        x = float(a) + v * float(b - a)  # Python ints: b - a is exact for any 64-bit levels
        np.clip(x, *self._clipas_bounds(), out=x)
        return x.astype(self.result_dtype)

    # ----- a scale inside the bounds: offsets from its low end, in float64 ----
    @property
    def _span(self) -> float:
        return float(self.scale[1] - self.scale[0]) if self._exact else \
            float(self.scale[1]) * 0.5 - float(self.scale[0]) * 0.5

    def _offset(self, raw: np.ndarray) -> np.ndarray:
        """``raw - scale[0]`` in float64 (halved for floats, as ``_span`` is), clipped to the bounds first."""
        lo, hi = self._clipas_bounds()
        if self._exact:
            steps = np.clip(raw, lo, hi).astype(np.uint64) - np.uint64(self.lo % 2**64)
            return steps.astype(np.float64) - float(self.scale[0] - self.lo)
        return np.clip(raw.astype(np.float64), lo, hi) * 0.5 - float(self.scale[0]) * 0.5

    def _from_scale(self, v: np.ndarray) -> np.ndarray:
        lo, hi = self._clipas_bounds()
        if self._exact:
            steps = np.clip(np.rint(v * self._span + float(self.scale[0] - self.lo)), 0.0, _BELOW_2_64)
            steps = np.minimum(steps.astype(np.uint64), np.uint64(self.hi - self.lo))
            res = (steps + np.uint64(self.lo % 2**64)).view(np.dtype(f"{self.dtype.kind}8"))
            return np.clip(res, lo, hi).astype(self.dtype)
        x = (v * self._span + float(self.scale[0]) * 0.5) * 2.0
        if self.dtype.kind in "iu":
            x = np.rint(x)
        np.clip(x, lo, hi, out=x)
        return x.astype(self.result_dtype)


def result_dtype(dtype, float_result: bool) -> np.dtype:
    """The dtype of a result for input ``dtype``: its own, or with ``float_result`` and integer input a float
    that holds its levels' scale (float32 for up to 16 bits, float64 beyond).

    Examples
    --------
    >>> result_dtype(np.uint16, True), result_dtype(np.uint16, False), result_dtype(np.float16, True)
    (dtype('float32'), dtype('uint16'), dtype('float16'))
    """
    dtype = np.dtype(dtype)
    if not float_result or dtype.kind not in "iu":
        return dtype
    return np.dtype(np.float32 if dtype.itemsize <= 2 else np.float64)


class PlaneReader:
    """An image seen as normalised float32 planes ``(H, W, C)``, read one at a time.

    It never holds the whole image as floats, and it reads a dask array one
    plane (or one window of a plane) at a time, so a large stack costs one
    plane of working memory. Results are collected in the caller's dtype (or
    ``result``) by :meth:`new_output` / :meth:`store` and mapped back to the
    caller's axis order by :meth:`assemble`.

    Parameters
    ----------
    arr : ndarray or dask array
        A validated image (see :func:`check_image`).
    channel_axis : int or None
    data_range : (float, float), optional
        Intensities mapped to 0 and 1; ``None`` takes the image's own minimum
        and maximum (one pass over a dask array, which also checks that its
        values are finite).
    robust : bool
        Without ``data_range``, map the :func:`robust_range` to 0 and 1
        instead of the minimum and maximum (which still bound the result), so
        a few hot pixels do not squeeze the data into a sliver of [0, 1].
    result : numpy dtype, optional
        The dtype :meth:`new_output` and :meth:`store` give results in;
        ``None`` is the caller's (see :func:`result_dtype`).
    """

    def __init__(self, arr, channel_axis: int | None, data_range: tuple[float, float] | None = None,
                 robust: bool = False, result=None):
        if is_lazy(arr):
            import dask
            import dask.array as da

            finite = da.isfinite(arr).all() if arr.dtype.kind == "f" else True
            lo, hi, finite = dask.compute(arr.min(), arr.max(), finite) if data_range is None else (
                *data_range, dask.compute(finite)[0])
            if not finite:
                raise ValueError("image contains NaN or infinite values")
        elif data_range is None:
            lo, hi = arr.min(), arr.max()
        else:
            lo, hi = data_range
        dtype = np.dtype(arr.dtype)
        lo, hi = as_bounds(dtype, lo, hi)
        scale = None
        if robust and data_range is None and hi > lo:
            scale = robust_range(arr, channel_axis)
            scale = None if scale == (lo, hi) else scale  # no outliers: the plain mapping, bit for bit
        result = None if result is None or np.dtype(result) == dtype else np.dtype(result)
        if result is not None and result.kind == "f" and max(abs(float(lo)), abs(float(hi))) > np.finfo(result).max:
            raise ValueError(f"dtype {result} cannot hold this image's values ({lo} to {hi}); choose a wider one")
        self.layout = Layout(tuple(arr.shape), dtype, channel_axis, lo, hi, scale, result)
        # A variance-stabilising transform (.stabilise.Stabiliser) between the [0, 1] planes and the fit, if set.
        self.stabiliser = None
        self._work = np.moveaxis(arr, channel_axis, -1) if channel_axis is not None else arr[..., None]
        self._lead = tuple(self._work.shape[:-3])

    def __len__(self) -> int:
        return n_planes(self.layout.shape, self.layout.channel_axis)

    def plane_index(self, p: int) -> tuple:
        """Plane ``p``'s position in the leading (non-channel) axes, in the caller's order."""
        return tuple(int(i) for i in np.unravel_index(p, self._lead)) if self._lead else ()

    def raw(self, p: int, window: tuple[slice, slice] | None = None) -> np.ndarray:
        """Plane ``p`` (or a (rows, cols) window of it) as given, ``(h, w, C)`` in the caller's dtype."""
        raw = self._work[self.plane_index(p) + (window if window is not None else ())]
        return np.asarray(raw.compute() if is_lazy(raw) else raw)

    def read(self, p: int, window: tuple[slice, slice] | None = None) -> np.ndarray:
        """Plane ``p`` (or a window of it) as float32 ``(h, w, C)`` on [0, 1]; a new array."""
        return self.layout.normalise(self.raw(p, window))

    def read_filled(self, p: int, window: tuple[slice, slice] | None = None) -> np.ndarray:
        """:meth:`read`, with isolated hot and dead pixels filled (:func:`fill_defects`) where the robust
        scale is in force (the image has outliers), then stabilised if a :attr:`stabiliser` is set: the
        plane as fits and noise estimates see it."""
        plane = self.read(p, window)
        plane = fill_defects(plane) if self.layout.scale is not None else plane
        return plane if self.stabiliser is None else self.stabiliser.forward(plane)

    def new_output(self) -> np.ndarray:
        """An empty buffer ``(N, H, W, C)`` in the result dtype, for :meth:`store`."""
        h, w, c = self.layout.plane_shape
        return np.empty((len(self), h, w, c), self.layout.result_dtype)

    def store(self, out: np.ndarray, p: int, values: np.ndarray) -> None:
        """Write float plane ``values`` (on the scale :meth:`read_filled` gives) into plane ``p`` of ``out``
        in the result dtype."""
        out[p] = self.layout.denormalise(values if self.stabiliser is None else self.stabiliser.inverse(values))

    def assemble(self, out: np.ndarray) -> np.ndarray:
        """The ``(N, H, W, C)`` buffer in the caller's shape and axis order."""
        return assemble(out, self.layout)


def assemble(out: np.ndarray, layout: Layout) -> np.ndarray:
    """Planes ``(N, H, W, C)`` back to ``layout``'s shape and axis order (no value change)."""
    shape = list(layout.shape)
    if layout.channel_axis is not None:
        shape.pop(layout.channel_axis)
    full = out.reshape(*shape, out.shape[-1])
    full = np.moveaxis(full, -1, layout.channel_axis) if layout.channel_axis is not None else full[..., 0]
    return np.ascontiguousarray(full)
