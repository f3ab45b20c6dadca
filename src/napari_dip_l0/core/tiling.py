"""Tiles with overlap and seamless blending weights.

A large plane is fitted tile by tile, each tile a full DIP-ℓ0 run, so the
network's memory depends on the tile size and not on the image. Tiles overlap
and are blended with weights that ramp linearly across the overlap, so two
tiles' slightly different solutions meet without a visible seam.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["DEFAULT_TILE_SIZE", "DEFAULT_OVERLAP", "check_tiling", "tile_grid", "blend_weights", "Mosaic"]

#: Planes with a side above this are tiled unless told otherwise; 1024² RGB
#: peaks near 2.3 GiB at width 16 (benchmarks/speed.py --scaling).
DEFAULT_TILE_SIZE = 1024
#: Overlap of neighbouring tiles in pixels: well beyond the reach of the
#: blocky boundary effects of the FFT warm start and Region Fusion.
DEFAULT_OVERLAP = 64
_MIN_TILE = 64


def check_tiling(tile_size=None, overlap=None) -> tuple[int, int]:
    """Validate ``tile_size`` and ``overlap`` and return them as ints.

    ``None`` takes the defaults: tiles of :data:`DEFAULT_TILE_SIZE`, and an
    overlap of :data:`DEFAULT_OVERLAP` or a quarter of the tile if that is less.
    """
    if tile_size is None:
        tile_size = DEFAULT_TILE_SIZE
    if isinstance(tile_size, bool) or not isinstance(tile_size, numbers.Integral):
        raise TypeError(f"tile_size must be an int, got {tile_size!r}")
    if tile_size < _MIN_TILE:
        raise ValueError(f"tile_size must be at least {_MIN_TILE} pixels, got {tile_size}")
    if overlap is None:
        overlap = min(DEFAULT_OVERLAP, tile_size // 4)
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Integral):
        raise TypeError(f"tile_overlap must be an int, got {overlap!r}")
    if not 0 <= overlap < tile_size // 2:
        raise ValueError(f"tile_overlap must be at least 0 and below tile_size/2 ({tile_size // 2}), got {overlap}")
    return int(tile_size), int(overlap)


def axis_tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Equal tiles of side <= ``tile`` covering ``length``, neighbours sharing >= ``overlap`` pixels."""
    if length <= tile:
        return [(0, length)]
    n = math.ceil((length - overlap) / (tile - overlap))
    side = math.ceil((length + (n - 1) * overlap) / n)
    starts = [round(i * (length - side) / (n - 1)) for i in range(n)]
    return [(s, s + side) for s in starts]


def tile_grid(height: int, width: int, tile_size: int, overlap: int) -> list[tuple[slice, slice]]:
    """Windows (rows, cols) of equal-sized tiles covering a ``height`` x ``width`` plane."""
    return [
        (slice(y0, y1), slice(x0, x1))
        for y0, y1 in axis_tiles(height, tile_size, overlap)
        for x0, x1 in axis_tiles(width, tile_size, overlap)
    ]


def _ramp(start: int, stop: int, length: int, overlap: int) -> np.ndarray:
    n = stop - start
    w = np.ones(n, np.float32)
    if overlap:
        edge = (np.arange(min(overlap, n), dtype=np.float32) + 0.5) / overlap
        if start > 0:
            w[: edge.size] = np.minimum(w[: edge.size], edge)
        if stop < length:
            w[n - edge.size:] = np.minimum(w[n - edge.size:], edge[::-1])
    return w


def blend_weights(window: tuple[slice, slice], height: int, width: int, overlap: int) -> np.ndarray:
    """Weights (h, w) of one tile: 1 inside, ramping down towards edges shared with another tile."""
    rows, cols = window
    return np.outer(_ramp(rows.start, rows.stop, height, overlap), _ramp(cols.start, cols.stop, width, overlap))


class Mosaic:
    """A plane assembled from blended tiles; pixels no tile has reached show the input.

    Parameters
    ----------
    plane : ndarray (H, W, C)
        The normalised input plane.
    windows : list of (slice, slice)
        The tiles, from :func:`tile_grid`, fitted in this order.
    overlap : int
        Pixels shared by neighbouring tiles.
    """

    def __init__(self, plane: np.ndarray, windows, overlap: int):
        self.plane = plane
        self.windows = windows
        self.overlap = overlap
        self.finals: list[np.ndarray] = []  # tile t's final estimate, in fitting order

    def add(self, t: int, est: np.ndarray) -> None:
        """Record tile ``t``'s final estimate (tiles are added in order)."""
        if t != len(self.finals):
            raise ValueError(f"tile {t} added out of order (expected {len(self.finals)})")
        self.finals.append(est)

    def preview(self, t: int, est: np.ndarray) -> np.ndarray:
        """The plane with tiles before ``t`` final and tile ``t`` at ``est``: the same whenever it is called."""
        if len(self.windows) == 1:
            return est
        h, w = self.plane.shape[:2]
        acc = np.zeros_like(self.plane)
        wsum = np.zeros((h, w, 1), np.float32)
        for win, tile in zip(self.windows[: t + 1], [*self.finals[:t], est]):
            wt = blend_weights(win, h, w, self.overlap)[..., None]
            acc[win] += wt * tile
            wsum[win] += wt
        res = self.plane.copy()
        covered = wsum[..., 0] > 0
        res[covered] = acc[covered] / wsum[covered]
        return res

    def result(self) -> np.ndarray:
        """The blended plane, once every tile is added."""
        return self.preview(len(self.windows) - 1, self.finals[-1])
