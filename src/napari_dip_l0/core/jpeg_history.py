"""A JPEG's quantisation read back from its decoded pixels (its compression history).

A decoded JPEG keeps the trace of its file: the 8×8 block DCT of its luma lies
on multiples of the file's quantisation table, up to the decoder's rounding
(Fan & de Queiroz, "Identification of bitmap compression history", IEEE TIP
2003). So pixels that lost their file (pasted into napari, saved again as PNG
or TIFF) can still be deblocked inside the set of images that file allowed.
Most encoders (libjpeg and so Pillow, many slide scanners and microscope
programs) scale libjpeg's standard tables by a quality factor; the quality
whose table explains the blocks best is found by trying each.

Only the luma is read back: the decoder smooths the subsampled chroma as it
upsamples it, so its coefficients are not recoverable; the chroma planes are
left free (an open box). A crop whose corner is off the block grid is read on
the grid its pixels show; pixels that were resized or filtered, or never were
a JPEG, give no table.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.fft import dctn

from .jpeg import _RGB_TO_YCC, JpegConstraint

__all__ = ["JpegHistory", "constraint_from_pixels", "estimate_quality", "ijg_table", "readable"]

# libjpeg's standard luminance table (ITU-T T.81, Annex K), natural order.
_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=np.float64)

# A flat block's 64 pixels round alike, which moves its DC by up to 8 × 0.5; AC terms see the decoder's
# scattered rounding and the colour conversion's (at most 1.3 in unclipped blocks of the crops measured).
_TOLERANCE = np.full((8, 8), 2.0)
_TOLERANCE[0, 0] = 4.5
_NEED = 0.8  # the fraction of clearly non-zero coefficients the table must explain
_ABOVE_CHANCE = 0.3  # ... and by how much more than any numbers would: fine tables explain everything
_FINEST = 95
_BLOCKS = 4096  # at most this many blocks are tried
_SCREEN = 512  # ... and this many for each place the block grid might start
_GRID = 1024  # rows and columns from the corner that show where the block edges are
_LEAST = 16  # distinct clearly non-zero coefficients needed to say anything (a 40×48 crop at quality 10 has 18)
_OPEN = 1e6  # a quantisation step that bounds nothing: the chroma planes are left free


def ijg_table(quality: int) -> np.ndarray:
    """libjpeg's luminance table at ``quality`` (1-100), as ``jpeg_quality_scaling`` makes it (baseline).

    Examples
    --------
    >>> from napari_dip_l0.core.jpeg_history import ijg_table
    >>> ijg_table(50)[0, :4]
    array([16., 11., 10., 16.])
    >>> float(ijg_table(10)[0, 0])  # Pillow's quality 10: luma DC step 80
    80.0
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality  # integers, as libjpeg computes it
    return np.clip(np.floor((_LUMA * scale + 50) / 100), 1, 255)


def _luma(pixels: np.ndarray, colour: bool) -> np.ndarray:
    """The luma of uint8 pixels, grey (..., H, W) or RGB (..., H, W, 3) with ``colour``, on 0..255, as the
    encoder computes it."""
    x = pixels.astype(np.float64)
    return x @ _RGB_TO_YCC[0] if colour else x


def _blocks(plane: np.ndarray) -> np.ndarray:
    """(by, bx, 8, 8) DCT coefficients of the level-shifted plane, padded to whole blocks as libjpeg pads."""
    h, w = plane.shape
    padded = np.pad(plane, ((0, -h % 8), (0, -w % 8)), mode="edge") - 128.0
    b = padded.reshape(padded.shape[0] // 8, 8, padded.shape[1] // 8, 8).transpose(0, 2, 1, 3)
    return dctn(b, type=2, norm="ortho", axes=(-2, -1))  # JPEG's FDCT


def _check_pixels(pixels) -> np.ndarray:
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"a decoded JPEG is uint8 (H, W) or (H, W, 3); got {arr.dtype} of shape {arr.shape}")
    if min(arr.shape[:2]) < 8:
        raise ValueError(f"a decoded JPEG needs at least one whole 8×8 block; got {arr.shape[:2]}")
    return arr


def readable(pixels, channel_axis: int | None = None) -> bool:
    """Whether ``pixels`` (with ``channel_axis``) are what a JPEG decoder gives: an array in memory, uint8,
    (H, W) with no channel axis or (H, W, 3) with the last, at least one block a side."""
    if not isinstance(pixels, np.ndarray) or pixels.ndim not in (2, 3):
        return False
    try:
        _check_pixels(pixels)
    except ValueError:
        return False
    return channel_axis is None if pixels.ndim == 2 else channel_axis in (2, -1)


class JpegHistory(NamedTuple):
    """What :func:`estimate_quality` reads from a decoded JPEG's pixels."""

    quality: int  # libjpeg's quality factor (1-95) whose luma table the blocks lie on
    explained: float  # the share of the clearly non-zero coefficients that table explains
    origin: tuple[int, int]  # where the first pixel lies in the block grid (rows, columns; (0, 0) unless cropped)


def _grid_starts(luma: np.ndarray) -> list[tuple[int, int]]:
    """Where whole blocks may start (first row, first column): the image's corner, and the two phases of each
    axis at which neighbouring rows (columns) differ most: block edges are where a JPEG's pixels jump, but
    texture can move the largest jump by a pixel (an H&E crop at quality 60), so the table decides."""
    phases = []
    for axis in (0, 1):
        if luma.shape[axis] <= 8:  # one block: it starts at the corner
            phases.append([0])
            continue
        step = np.abs(np.diff(luma, axis=axis)).mean(axis=1 - axis)
        # the step between samples i and i + 1 is a block edge when i + 1 starts a block
        edge = np.array([step[(p - 1) % 8 :: 8].mean() for p in range(8)])
        phases.append([int(p) for p in np.argsort(-edge, kind="stable")[:2]])
    starts = [(0, 0)] + [(r, c) for r in phases[0] for c in phases[1]]
    return list(dict.fromkeys(starts))


def _history(arr: np.ndarray, start: tuple[int, int], most: int) -> JpegHistory | None:
    """The table that explains best (at most ``most`` of) the whole blocks from ``start``, if it explains them."""
    colour = arr.ndim == 3
    arr = arr[start[0] :, start[1] :]
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        return None
    # Whole blocks as a view (rows, columns[, channel], 8, 8); evenly spread ones are as telling as all of them,
    # so only those are gathered, and a 4096² image is read as fast as a small one.
    grid = np.lib.stride_tricks.sliding_window_view(arr, (8, 8), axis=(0, 1))[::8, ::8]
    n = grid.shape[0] * grid.shape[1]
    pick = np.unique(np.linspace(0, n - 1, min(n, 2 * most)).astype(np.int64))
    blocks = grid[pick // grid.shape[1], pick % grid.shape[1]]
    if colour:
        blocks = np.moveaxis(blocks, 1, -1)  # (n, 8, 8, 3)
    # The decoder clipped blocks with 0s or 255s: their coefficients moved.
    blocks = blocks[~((blocks == 0) | (blocks == 255)).reshape(len(blocks), -1).any(axis=1)]
    blocks = blocks[:: -(-len(blocks) // most) or 1]
    coef = dctn(_luma(blocks, colour) - 128.0, type=2, norm="ortho", axes=(-2, -1))
    # Each distinct clearly non-zero (frequency, value) once: flat or drawn images (a constant, stripes, a
    # checkerboard) repeat a few values in every block, which some table always fits by chance.
    frequency = np.broadcast_to(np.arange(64).reshape(8, 8), coef.shape)
    telling = np.abs(coef) > _TOLERANCE
    pairs = np.unique(np.stack([frequency[telling], np.round(coef[telling] * 4)], axis=1), axis=0)
    if len(pairs) < _LEAST:
        return None
    frequency, values = pairs[:, 0].astype(int), pairs[:, 1] / 4
    tolerance = _TOLERANCE.ravel()[frequency]

    def fit(quality: int) -> tuple[float, float]:
        """The share of the coefficients the table explains, and the share any numbers would: that of each
        step within the tolerance of a multiple (a fine table explains anything)."""
        step = ijg_table(quality).ravel()[frequency]
        explained = float((np.abs(values - step * np.round(values / step)) <= tolerance).mean())
        return explained, float(np.minimum(1.0, 2 * tolerance / step).mean())

    fits = {q: fit(q) for q in range(1, _FINEST + 1)}
    # The table that explains most beyond chance; of equals, the coarsest. A coarser table than the file's
    # explains few coefficients, a finer one all of them but no more than chance.
    quality = max(fits, key=lambda q: (round(fits[q][0] - fits[q][1], 6), -q))
    explained, chance = fits[quality]
    if explained < _NEED or explained - chance < _ABOVE_CHANCE:
        return None
    return JpegHistory(quality, explained, ((8 - start[0]) % 8, (8 - start[1]) % 8))


def estimate_quality(pixels) -> JpegHistory | None:
    """The libjpeg quality whose luma table explains ``pixels`` (a decoded JPEG, or a crop of one), the share
    of coefficients it explains, and where the block grid lies.

    Of the tables of qualities 1 to 95, the one that puts the most of the
    clearly non-zero coefficients of whole, unclipped blocks within the
    decoder's rounding of a multiple of its steps, beyond the share that
    numbers at random would show (a fine table explains anything); it must
    explain at least 80% of them, and 30% more than chance. The block grid
    is tried at the image's corner and where neighbouring pixels jump most
    (block edges); the one whose table explains most is kept. ``None`` when no table does:
    pixels that were never a JPEG, were resized or filtered, or so finely
    compressed that the steps are lost in the rounding (about quality 82
    on).

    Parameters
    ----------
    pixels : ndarray
        uint8, (H, W) grey or (H, W, 3) RGB, as the decoder gave them.

    Examples
    --------
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> from skimage import data
    >>> from napari_dip_l0.core.jpeg_history import estimate_quality
    >>> buf = io.BytesIO()
    >>> Image.fromarray(data.camera()[:128, :128]).save(buf, "JPEG", quality=20)
    >>> decoded = np.asarray(Image.open(buf))
    >>> estimate_quality(decoded).quality
    20
    >>> estimate_quality(decoded[3:, 5:]).origin  # a crop off the grid
    (3, 5)
    >>> estimate_quality(data.camera()[:128, :128]) is None  # never compressed
    True
    """
    arr = _check_pixels(pixels)
    starts = _grid_starts(_luma(arr[:_GRID, :_GRID], arr.ndim == 3))  # the corner's 1024² tell the grid
    if len(starts) > 1:  # a few hundred blocks tell the grid; all of them (up to _BLOCKS) the table
        screened = [(f.explained, start) for start in starts if (f := _history(arr, start, _SCREEN)) is not None]
        if not screened:
            return None
        starts = [max(screened)[1]]
    return _history(arr, starts[0], _BLOCKS)


def constraint_from_pixels(pixels, channel_axis: int | None = None) -> JpegConstraint | None:
    """The quantisation constraint of the JPEG that ``pixels`` were decoded from, read from them alone.

    The luma's table and block grid are those :func:`estimate_quality` finds
    and its coefficients are those of the pixels rounded to that table; colour
    pixels get free chroma planes. ``None`` where no table is found, and for
    anything a decoder does not give: not uint8 in memory, not (H, W) with no
    ``channel_axis`` or (H, W, 3) with the last, smaller than a block.

    Examples
    --------
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> from skimage import data
    >>> from napari_dip_l0.core.jpeg_history import constraint_from_pixels
    >>> buf = io.BytesIO()
    >>> Image.fromarray(data.astronaut()[:64, :64]).save(buf, "JPEG", quality=10)
    >>> qcs = constraint_from_pixels(np.asarray(Image.open(buf)), channel_axis=-1)
    >>> qcs.dc_step, qcs.channels, qcs.quality
    (80.0, 3, 10)
    """
    if not readable(pixels, channel_axis):
        return None
    colour = pixels.ndim == 3
    found = estimate_quality(pixels)
    if found is None:
        return None
    table = ijg_table(found.quality)
    # Samples before the image's corner, in its first blocks, repeat its first row and column.
    luma = np.pad(_luma(pixels, colour), ((found.origin[0], 0), (found.origin[1], 0)), mode="edge")
    coefficients = np.round(_blocks(luma) / table)
    comps, tables = [coefficients], [table]
    if colour:
        free = np.zeros_like(coefficients)
        comps, tables = [coefficients, free, free], [table, np.full((8, 8), _OPEN), np.full((8, 8), _OPEN)]
    return JpegConstraint(comps, tables, [(1, 1)] * len(comps), pixels.shape[:2], quality=found.quality,
                          origin=found.origin)
