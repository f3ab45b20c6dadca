"""DIP-ℓ0 on a dask array, lazily: a dask array back, computed block by block of whole planes.

:func:`lazy_dip_l0` is what :func:`~napari_dip_l0.dip_l0_smooth` and
:func:`~napari_dip_l0.dip_l0_denoise` do with a dask array. The graph it
builds has three parts:

- the stack's statistics: its minimum, maximum and finite check (dask
  reductions, skipped for the range when ``data_range`` is given), and the
  few evenly spaced planes the eager run measures the robust scale (8) and
  the noise (4) on. They read the input in a pass of their own, before the
  blocks (a second read of each chunk, so that none is held meanwhile);
- one *calibration* task on those (:class:`~napari_dip_l0.core.run.Calibration`:
  intensity mapping, noise model, λ), the same code and the same planes as
  a :class:`~napari_dip_l0.core.run.DipL0Run` on the whole stack uses;
- one task per block of whole planes (full Y, X and channel axes, a run of
  consecutive planes of the leading axes), each a ``DipL0Run`` given that
  calibration, warm-starting plane to plane within the block.

So every block maps intensities and sets λ alike, memory is a few blocks
whatever the stack's size, and the blocks are fixed by the shape and
``planes_per_block`` alone: the result does not depend on the input's chunks.
"""

from __future__ import annotations

import numpy as np

from .defects import robust_range
from .planes import PlaneReader
from .presets import Preset
from .run import Calibration, DipL0Run, choose_lam, stabilise
from .validation import as_bounds, check_data_range, check_image, check_positive_int, is_lazy

__all__ = ["lazy_dip_l0", "block_chunks", "probe_run", "PLANES_PER_BLOCK"]

#: Planes per block of a lazy run: each block starts afresh, then warm-starts plane to plane.
PLANES_PER_BLOCK = 8
_ROBUST_PLANES, _NOISE_PLANES = 8, 4  # as robust_range and noise.noise_model sample the eager run's planes


def block_chunks(shape: tuple[int, ...], channel_axis: int | None, planes: int) -> tuple[int, ...]:
    """Chunk sizes (one per axis) for blocks of ``planes`` consecutive whole planes in C order.

    Y, X and the channel axis are whole; along the leading axes the innermost
    takes up to ``planes``, and an outer one more than 1 only where the inner
    ones are whole, so every block is a run of consecutive planes.

    Examples
    --------
    >>> block_chunks((4, 10, 32, 32), None, 8)
    (1, 8, 32, 32)
    >>> block_chunks((4, 3, 32, 32, 2), 4, 8)
    (2, 3, 32, 32, 2)
    """
    lead = [ax for ax in range(len(shape)) if ax != channel_axis][:-2]
    chunks = list(shape)
    left = planes
    for ax in reversed(lead):
        chunks[ax] = min(left, shape[ax])
        left = left // shape[ax] if chunks[ax] == shape[ax] else 1
    return tuple(chunks)


def lazy_dip_l0(image, mode: str = "smooth", *, planes_per_block: int | None = None, **settings):
    """DIP-ℓ0 of the dask array ``image`` as a dask array of the shape and dtype an eager run gives.

    Nothing of ``image`` is read at the call: it checks ``settings`` (the
    keywords of :class:`~napari_dip_l0.core.run.DipL0Run`, ``data_range``
    included) as a run does, on one block's shape, and builds the graph (see
    the module's text). NaN or infinite values are found, and reported
    (``ValueError``), when the result is computed.

    Parameters
    ----------
    image : dask array
        As for :class:`DipL0Run`.
    mode : {'smooth', 'denoise'}
    planes_per_block : int, optional
        Consecutive planes each task fits, warm-starting from plane to plane
        (``None``: :data:`PLANES_PER_BLOCK`). The first plane of each block
        starts afresh with the full iterations; a block holding every plane
        gives exactly the eager result.
    """
    import dask

    if not is_lazy(image):
        raise TypeError(f"lazy_dip_l0 takes a dask array, got {type(image).__name__}")
    if mode == "deblock" or settings.get("jpeg") is not None:
        raise TypeError("JPEG deblocking does not take a dask array: the file's coefficients bound the whole "
                        "image at once; pass the pixels as a numpy array (np.asarray(image))")
    k = PLANES_PER_BLOCK if planes_per_block is None else check_positive_int(planes_per_block, "planes_per_block")
    for name in ("on_plane", "collect", "calibration"):
        if name in settings:
            raise TypeError(f"lazy_dip_l0 does not take {name}")
    probe = probe_run(image, mode, settings, k)
    data_range = settings.pop("data_range", None)
    channel_axis = probe.reader.layout.channel_axis
    x = image.rechunk(block_chunks(image.shape, channel_axis, k))
    calibration = _calibration_task(image, channel_axis, probe, data_range, settings.get("lam", "auto"))
    settings = {**settings, "channel_axis": channel_axis, "dtype": probe.reader.layout.result_dtype}
    dtype = probe.reader.layout.result_dtype
    return x.map_blocks(_run_block, calibration, mode=mode, settings=settings, dtype=dtype,
                        meta=np.empty((0,) * x.ndim, dtype), name=f"dip-l0-{mode}-" + dask.base.tokenize(
                            x, calibration, mode, settings))


def probe_run(image, mode: str, settings: dict, planes: int = 1) -> DipL0Run:
    """A :class:`DipL0Run` with ``settings`` (its keywords) on a block of ``planes`` planes of zeros shaped
    as ``image``'s (a broadcast view: no memory): every setting checked as a run on ``image`` checks it,
    that block's memory included, and the preset and result dtype such a run gives. Nothing of ``image``
    is read (a dask array's shape and dtype only)."""
    settings = dict(settings)
    data_range = check_data_range(settings.pop("data_range", None))
    arr, channel_axis = check_image(image, settings.get("channel_axis"))
    block = block_chunks(arr.shape, channel_axis, planes)
    zeros = np.broadcast_to(np.zeros((), arr.dtype), block)
    return DipL0Run(zeros, mode, **{**settings, "channel_axis": channel_axis},
                    calibration=Calibration(data_range or (0, 1)))


def _picks(n: int, count: int) -> list[int]:
    """The planes an eager run samples (evenly spaced, as robust_range and noise.noise_model pick them)."""
    return [int(p) for p in np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(np.int64))]


def _calibration_task(x, channel_axis, probe: DipL0Run, data_range, lam):
    """The delayed :class:`Calibration` of the whole of ``x``: its reductions and sampled planes as
    dependencies, the measuring done as :class:`DipL0Run` does it."""
    import dask
    import dask.array as da
    from dask.graph_manipulation import clone

    # Read apart from the blocks (its own keys): otherwise the scheduler would hold every chunk read for the
    # range until the blocks, which wait for the range, took them, and memory would grow with the stack.
    x = clone(x)
    work = da.moveaxis(x, channel_axis, -1) if channel_axis is not None else x[..., None]
    lead = work.shape[:-3]
    n = int(np.prod(lead, dtype=np.int64))
    planes = {p: work[tuple(int(i) for i in np.unravel_index(p, lead))] if lead else work
              for p in sorted(set(_picks(n, _ROBUST_PLANES)) | set(_picks(n, _NOISE_PLANES)))}
    finite = da.isfinite(x).all() if x.dtype.kind == "f" else True
    bounds = (x.min(), x.max()) if data_range is None else tuple(data_range)
    auto = lam is None or (isinstance(lam, str) and lam == "auto")
    return dask.delayed(_calibrate, pure=True)(bounds, finite, planes, n, np.dtype(x.dtype), probe.preset,
                                               data_range is not None, auto)


def _calibrate(bounds, finite, planes: dict, n: int, dtype: np.dtype, preset: Preset, given: bool,
               auto: bool) -> Calibration:
    """What a :class:`DipL0Run` on the whole image measures, from its reductions and sampled planes."""
    if not finite:
        raise ValueError("image contains NaN or infinite values")
    lo, hi = as_bounds(dtype, *(check_data_range(bounds) if given else bounds))
    scale = None
    if preset.robust and not given and hi > lo:
        robust = np.stack([planes[p] for p in _picks(n, _ROBUST_PLANES)])
        scale = robust_range(robust, -1, max_planes=len(robust), bounds=(lo, hi))
        scale = None if scale == (lo, hi) else scale
    # The noise planes through a reader of their own, mapped as the whole image is: the same estimates.
    sample = np.stack([planes[p] for p in _picks(n, _NOISE_PLANES)])
    reader = PlaneReader(sample, 3, (lo, hi), scale=scale)
    model = stabilise(preset, reader)
    noise = None
    if auto:
        preset, noise = choose_lam(preset, reader)
    return Calibration((lo, hi), scale, model, preset.lam if auto else None, noise)


def _run_block(block: np.ndarray, calibration: Calibration, *, mode: str, settings: dict) -> np.ndarray:
    return DipL0Run(block, mode, calibration=calibration, **settings).run()
