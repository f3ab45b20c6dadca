"""Memory: what a run or a decode would need, refused up front when it would not fit.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np
import psutil

from .network import padded_size
from .presets import Preset
from .tiling import axis_tiles

if TYPE_CHECKING:
    from .io import FileInfo

__all__ = ["estimate_memory", "available_memory", "format_bytes", "check_memory", "check_decode_memory", "check_run_memory"]


# Peak bytes per pixel of the network's padded input for one fit, measured with
# ru_maxrss on CPU float32 (network activations and gradients, Adam, ADMM
# tensors, Region Fusion): at 1024², 1.64-1.82 kB at width 16 and 2.35-2.58 kB
# at width 32 (1 and 3 channels), plus fixed costs that dominate small tiles.
_BYTES_PER_PIXEL = 1100.0


_BYTES_PER_PIXEL_PER_WIDTH = 48.0
_FIXED = 150 * 1024**2


def estimate_memory(shape: tuple[int, ...], channel_axis: int | None, itemsize: int, preset: Preset,
                    tile_size: int, overlap: int) -> int:
    """Bytes a run needs beyond the Python process itself (an estimate, for refusing early).

    The output buffer (input-sized), the float working copies of one plane,
    and one tile's network fit.
    """
    dims = [s for ax, s in enumerate(shape) if ax != channel_axis]
    h, w = dims[-2], dims[-1]
    c = shape[channel_axis] if channel_axis is not None else 1
    n = int(np.prod(dims[:-2], dtype=np.int64))
    ty = axis_tiles(h, tile_size, overlap)[0]
    tx = axis_tiles(w, tile_size, overlap)[0]
    tile_px = padded_size(ty[1] - ty[0], preset.depth) * padded_size(tx[1] - tx[0], preset.depth)
    fit = _FIXED + tile_px * (_BYTES_PER_PIXEL + _BYTES_PER_PIXEL_PER_WIDTH * preset.width)
    output = n * h * w * c * itemsize
    # normalised plane, blend accumulator and weights, and a float64 render of a snapshot
    plane = h * w * (c * (4 + 4 + 8) + 4)
    if n > 1:  # warm starts keep each tile position's ADMM dual (float32, overlaps counted twice)
        plane += 2 * h * w * c * 4
    return int(fit + output + plane)


def available_memory() -> int | None:
    """Physical memory available now, in bytes (None where the system does not say)."""
    try:
        return int(psutil.virtual_memory().available)
    except (OSError, RuntimeError, AttributeError):  # psutil cannot read this system's figures
        return None


def format_bytes(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def check_memory(shape, channel_axis, dtype, preset: Preset, tile_size: int, overlap: int,
                 max_memory: int | None = None) -> int:
    """Refuse, with a ``MemoryError`` saying what would not fit, a run whose estimate exceeds the budget.

    ``max_memory`` (bytes) defaults to what the system reports as available.
    Returns the estimate in bytes.
    """
    itemsize = np.dtype(dtype).itemsize
    need = estimate_memory(shape, channel_axis, itemsize, preset, tile_size, overlap)
    if max_memory is None:
        budget, what = available_memory(), "available"
    else:
        if isinstance(max_memory, bool) or not isinstance(max_memory, numbers.Real) or not max_memory > 0:
            raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
        budget, what = int(max_memory), "allowed (max_memory)"
    if budget is not None and need > budget:
        fit = estimate_memory(shape, channel_axis, itemsize, preset, 256, min(overlap, 64))
        hint = f"; tiles of 256 pixels would need about {format_bytes(fit)}" if fit < need else ""
        raise MemoryError(
            f"DIP-ℓ0 on an image of shape {tuple(shape)} with tiles of at most {tile_size} pixels needs about "
            f"{format_bytes(need)} but only {format_bytes(budget)} is {what}{hint}"
        )
    return need


def check_decode_memory(info: FileInfo, factor: float = 1.0, available: int | None = None) -> None:
    """``MemoryError`` now if decoding ``info`` (times ``factor`` for working copies) would not fit in memory."""
    budget = available_memory() if available is None else available
    need = info.nbytes * factor
    if budget is not None and need > budget:
        raise MemoryError(f"{info.path} declares an image of shape {info.shape} ({info.dtype}): "
                          f"about {format_bytes(need)} needed but only {format_bytes(budget)} is available")


def check_run_memory(info: FileInfo, channel_axis: int | None, *, mode: str | None = "smooth",
                     tile_size: int | None = None) -> None:
    """``MemoryError`` now, from the header alone, if decoding ``info`` and running on it would not fit.

    ``mode`` 'smooth'/'deblock': a DIP-ℓ0 run (the decoded file, plus the
    run's own estimate, :func:`.tiling.check_memory`); None: ℓ0 smoothing
    alone (float copies of the image and Region Fusion's work on one plane).
    """
    check_decode_memory(info)
    budget = available_memory()
    if budget is None:
        return
    from .io import colour_shape

    shape = colour_shape(info, channel_axis)
    if mode is not None:
        from .planes import result_dtype
        from .presets import get_preset
        from .tiling import check_tiling

        size, overlap = check_tiling(tile_size)
        preset = get_preset(mode)
        itemsize = result_dtype(info.dtype, preset.float_result).itemsize
        need = info.nbytes + estimate_memory(shape, channel_axis, itemsize, preset, size, overlap)
        what = f"DIP-ℓ0 on {info.path} with tiles of at most {size} pixels"
    else:
        elements = int(np.prod(shape, dtype=np.float64))
        dims = [s for ax, s in enumerate(shape) if ax != channel_axis]
        plane = elements // max(1, int(np.prod(dims[:-2], dtype=np.float64)))
        need = 2 * info.nbytes + 8 * elements + 24 * plane  # input, result, float32 planes in and out, RF's float64
        what = f"ℓ0 smoothing of {info.path}"
    if need > budget:
        raise MemoryError(f"{what} (shape {info.shape}, {info.dtype}) needs about {format_bytes(need)} but only "
                          f"{format_bytes(budget)} is available")
