"""Validation of user arrays, and the round trip to normalised float planes.

Every array enters the solvers as float32 planes of shape ``(N, H, W, C)`` on
the [0, 1] scale (``N`` = all leading axes flattened, ``C`` = channels or 1)
and leaves in the caller's dtype, value range and axis order.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Layout", "PlaneReader", "assemble", "check_image", "check_data_range", "check_lam", "check_positive_int",
    "is_lazy", "n_planes", "to_planes", "from_planes",
]


def is_lazy(arr) -> bool:
    """A dask array (or anything like it): read it piece by piece, never whole."""
    return hasattr(arr, "chunks") and callable(getattr(arr, "compute", None))


@dataclass(frozen=True)
class Layout:
    """What is needed to map normalised planes back to the caller's array."""

    shape: tuple[int, ...]
    dtype: np.dtype
    channel_axis: int | None
    lo: float
    hi: float

    @property
    def constant(self) -> bool:
        return not self.hi > self.lo

    @property
    def plane_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one plane."""
        shape = list(self.shape)
        channels = shape.pop(self.channel_axis) if self.channel_axis is not None else 1
        return shape[-2], shape[-1], channels


def check_image(image, channel_axis: int | None = None) -> tuple[np.ndarray, int | None]:
    """Validate an image and its channel axis.

    Returns the image as an ndarray (no copy where possible) and the channel
    axis as a non-negative int or None. Raises ``TypeError`` for data that is
    not real numbers and ``ValueError`` for unusable shapes or values.
    """
    if isinstance(image, (str, bytes)):
        raise TypeError("image must be an array of numbers, got a string")
    arr = image if is_lazy(image) else np.asarray(image)
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError("image has boolean dtype; convert it to an integer or float type first")
    if kind == "c":
        raise TypeError("image has complex dtype; pass the real part or the magnitude")
    if kind not in "iuf":
        raise TypeError(f"image must hold real numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"image is empty (shape {arr.shape})")
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
            raise TypeError(f"channel_axis must be an int or None, got {channel_axis!r}")
        if not -arr.ndim <= channel_axis < arr.ndim:
            raise ValueError(f"channel_axis {channel_axis} is out of range for an image with {arr.ndim} axes")
        channel_axis = int(channel_axis) % arr.ndim
    spatial = arr.ndim - (channel_axis is not None)
    if spatial < 2:
        raise ValueError(
            f"image needs two spatial axes (Y, X), got shape {arr.shape}"
            + (f" with channel_axis={channel_axis}" if channel_axis is not None else "")
        )
    sides = [s for ax, s in enumerate(arr.shape) if ax != channel_axis][-2:]
    if min(sides) < 2:
        raise ValueError(f"image's spatial sides must be at least 2 pixels, got {tuple(sides)}")
    if kind == "f" and not bool(np.isfinite(arr).all()):
        raise ValueError("image contains NaN or infinite values")
    return arr, channel_axis


def check_lam(lam) -> float:
    """Validate the ℓ0 weight: a finite number >= 0."""
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
        raise TypeError(f"lam must be a number, got {lam!r}")
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    return lam


def n_planes(shape: tuple[int, ...], channel_axis: int | None) -> int:
    """Number of 2-D planes (product of the axes before Y, X; channels excluded)."""
    axis = None if channel_axis is None else channel_axis % len(shape)
    dims = [s for ax, s in enumerate(shape) if ax != axis]
    return int(np.prod(dims[:-2], dtype=np.int64))


def check_data_range(data_range) -> tuple[float, float] | None:
    """Validate an explicit (low, high) intensity range: finite, low < high."""
    if data_range is None:
        return None
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise TypeError(f"data_range must be a pair of numbers (low, high), got {data_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"data_range must be finite with low < high, got {data_range!r}")
    return lo, hi


def check_positive_int(value, name: str) -> int:
    """Validate a count such as ``iterations``: an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def to_planes(arr: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, Layout]:
    """Turn a validated array into float32 planes (N, H, W, C) on [0, 1].

    The range is the data's own minimum and maximum over the whole array, so
    ``lam`` means the same for every plane of a stack and for any dtype.
    """
    lo = float(arr.min())
    hi = float(arr.max())
    layout = Layout(tuple(arr.shape), arr.dtype, channel_axis, lo, hi)
    work = np.moveaxis(arr, channel_axis, -1) if channel_axis is not None else arr[..., None]
    h, w, c = layout.plane_shape
    # astype always copies, so the caller's array is never written to.
    planes = work.reshape(-1, h, w, c).astype(np.float32)
    if not layout.constant:
        planes -= np.float32(lo)
        planes *= np.float32(1.0 / (hi - lo))
        np.clip(planes, 0.0, 1.0, out=planes)
    else:
        planes[...] = 0.0
    return planes, layout


def from_planes(planes: np.ndarray, layout: Layout) -> np.ndarray:
    """Map float planes on [0, 1] back to the caller's dtype, range and axes."""
    if layout.constant:
        return np.full(layout.shape, layout.lo, dtype=layout.dtype)
    return assemble(_to_dtype(planes, layout), layout)


def _to_dtype(values: np.ndarray, layout: Layout) -> np.ndarray:
    """[0, 1] floats to the caller's dtype and range; shape unchanged."""
    values = np.clip(np.asarray(values, np.float64), 0.0, 1.0) * (layout.hi - layout.lo) + layout.lo
    lo, hi = layout.lo, layout.hi
    if layout.dtype.kind in "iu":
        values = np.rint(values)
        info = np.iinfo(layout.dtype)  # an explicit data_range may exceed the dtype
        lo, hi = max(lo, info.min), min(hi, info.max)
    np.clip(values, lo, hi, out=values)
    return values.astype(layout.dtype, copy=False)


class PlaneReader:
    """An image seen as normalised float32 planes ``(H, W, C)``, read one at a time.

    Unlike :func:`to_planes` it never holds the whole image as floats, and it
    reads a dask array one plane (or one window of a plane) at a time, so a
    large stack costs one plane of working memory. Results are collected in
    the caller's dtype by :meth:`new_output` / :meth:`store` and mapped back
    to the caller's axis order by :meth:`assemble`.
    """

    def __init__(self, arr, channel_axis: int | None, data_range: tuple[float, float] | None = None):
        if data_range is not None:
            lo, hi = data_range
        elif is_lazy(arr):
            import dask

            lo, hi = dask.compute(arr.min(), arr.max())
        else:
            lo, hi = arr.min(), arr.max()
        self.layout = Layout(tuple(arr.shape), np.dtype(arr.dtype), channel_axis, float(lo), float(hi))
        self._work = np.moveaxis(arr, channel_axis, -1) if channel_axis is not None else arr[..., None]
        self._lead = tuple(self._work.shape[:-3])

    def __len__(self) -> int:
        return n_planes(self.layout.shape, self.layout.channel_axis)

    def _index(self, p: int) -> tuple:
        return tuple(int(i) for i in np.unravel_index(p, self._lead)) if self._lead else ()

    def read(self, p: int, window: tuple[slice, slice] | None = None) -> np.ndarray:
        """Plane ``p`` (or a (rows, cols) window of it) as float32 (h, w, C) on [0, 1]; a new array."""
        index = self._index(p) + (window if window is not None else ())
        raw = self._work[index]
        raw = np.asarray(raw.compute() if is_lazy(raw) else raw)
        plane = raw.astype(np.float32)  # always a copy: the caller's data is never written to
        lo, hi = self.layout.lo, self.layout.hi
        if hi > lo:
            plane -= np.float32(lo)
            plane *= np.float32(1.0 / (hi - lo))
            np.clip(plane, 0.0, 1.0, out=plane)
        else:
            plane[...] = 0.0
        return plane

    def raw(self, p: int) -> np.ndarray:
        """Plane ``p`` as given, ``(H, W, C)`` in the caller's dtype."""
        raw = self._work[self._index(p)]
        return np.asarray(raw.compute() if is_lazy(raw) else raw)

    def new_output(self) -> np.ndarray:
        """An empty buffer ``(N, H, W, C)`` in the caller's dtype, for :meth:`store`."""
        h, w, c = self.layout.plane_shape
        return np.empty((len(self), h, w, c), self.layout.dtype)

    def store(self, out: np.ndarray, p: int, values: np.ndarray) -> None:
        """Write [0, 1] float plane ``values`` into plane ``p`` of ``out`` in the caller's dtype."""
        out[p] = _to_dtype(values, self.layout)

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
