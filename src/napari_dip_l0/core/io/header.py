"""What a file holds, read from its header before any pixel.

:func:`describe` opens a file's header only (TIFF IFDs, the PNG IHDR and
chunks before the pixel data, the JPEG frame header) and says what decoding
it would give: shape, dtype, pages, alpha. Everything that can be refused is
refused from that description, before anything large is allocated.
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..validation import first_line
from .formats import PNG, TIFF, file_type, quiet_tifffile
from .png import _PNG_CHANNELS, own_codec, png_header

__all__ = ["FileInfo", "describe", "colour_shape", "open_pillow", "pillow_mode"]


@dataclass(frozen=True)
class FileInfo:
    """What decoding a file gives, read from its header.

    Attributes
    ----------
    path : Path
    kind : {'tiff', 'png', 'jpeg'}
    shape : tuple of int
        Shape of the decoded array (a TIFF's series of equal shape stacked on a new first axis).
    dtype : numpy.dtype
        Dtype of the decoded array, native byte order.
    pages : int
        Pages (IFDs) of a TIFF; 1 otherwise.
    axes : str
        tifffile's axis letters for a TIFF ('S' marks samples of a pixel, e.g. RGB); 'YX', 'YXS' otherwise.
    alpha : bool
        The last axis ends with an alpha channel that is kept, not smoothed (PNG grey+alpha and RGBA).
    """

    path: Path
    kind: str
    shape: tuple[int, ...]
    dtype: np.dtype
    pages: int = 1
    axes: str = ""
    alpha: bool = False

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.float64)) * self.dtype.itemsize

    def channel_axis(self, requested="auto") -> int | None:
        """The channel axis (non-negative, or None) for ``requested``: an int, None or 'auto'.

        'auto': a PNG's or JPEG's colour axis; a TIFF's last axis when that
        has 3 or 4 entries or holds the samples of each pixel (tifffile's 'S');
        planar samples (a first axis of 3) are taken as planes, as before. An explicit axis is
        checked against the shape; a PNG's or JPEG's channels are always its
        last axis.
        """
        ndim = len(self.shape)
        if requested == "auto":
            if self.kind != "tiff":
                return ndim - 1 if ndim == 3 else None
            samples_last = self.axes.endswith("S") and len(self.axes) == ndim  # interleaved samples of a pixel
            return ndim - 1 if ndim >= 3 and (self.shape[-1] in (3, 4) or samples_last) else None
        if requested is None:
            if self.alpha:
                raise ValueError(f"{self.path} has an alpha channel on its last axis; its channel axis is {ndim - 1}")
            return None
        if isinstance(requested, bool) or not isinstance(requested, (int, np.integer)):
            raise TypeError(f"channel axis must be an int, None or 'auto', got {requested!r}")
        if not -ndim <= requested < ndim:
            raise ValueError(f"channel axis {requested} is out of range for {self.path} with shape {self.shape}")
        axis = int(requested) % ndim
        if self.kind != "tiff" and ndim == 3 and axis != ndim - 1:
            raise ValueError(f"the channels of {self.path} are its last axis ({ndim - 1}), not {requested}")
        return axis


def describe(path: str | os.PathLike) -> FileInfo:
    """What reading ``path`` gives (shape, dtype, pages, alpha), from its header alone.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for an
    unsupported type or a file that cannot be read.
    """
    path = Path(path)
    suffix = file_type(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    try:
        with quiet_tifffile():
            if suffix in TIFF:
                info = _describe_tiff(path)
            elif suffix in PNG:
                info = _describe_png(path)
            else:
                info = _describe_pillow(path, "jpeg")
    except (ValueError, OSError, struct.error, EOFError, KeyError, IndexError, TypeError,
            NotImplementedError, RuntimeError, SyntaxError) as exc:  # the readers raise many types
        if isinstance(exc, ValueError) and str(exc).startswith("cannot read"):
            raise
        raise ValueError(f"cannot read {path}: {first_line(exc)}") from None
    if 0 in info.shape or not info.shape:
        raise ValueError(f"cannot read {path}: the file holds no image data")
    return info


def _describe_tiff(path: Path) -> FileInfo:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series
        if not series:
            raise ValueError(f"cannot read {path}: no image in the file")
        first = series[0]
        dtype = first.dtype
        if dtype is None:
            raise ValueError(f"cannot read {path}: unsupported TIFF sample format")
        shapes = {(tuple(s.shape), np.dtype(s.dtype) if s.dtype is not None else None) for s in series}
        if len(series) > 1 and len(shapes) > 1:
            raise ValueError(f"cannot read {path}: its {len(series)} images differ in shape or dtype "
                             f"({', '.join(sorted({str(s) for s, _ in shapes}))}), so they are not one stack")
        dtype = np.dtype(dtype)
        if dtype.kind == "b":  # bilevel: read as uint8 0/255, as a 1-bit PNG is
            dtype = np.dtype(np.uint8)
        elif dtype.kind not in "iuf":
            raise ValueError(f"cannot read {path}: its pixels are {dtype}; only real numbers can be smoothed")
        shape = tuple(first.shape)
        axes = first.axes
        if len(series) > 1:  # pages written one at a time: one stack
            shape = (len(series),) + shape
            axes = "I" + axes
        return FileInfo(path, "tiff", shape, np.dtype(dtype).newbyteorder("="), len(tif.pages), axes, False)


def _describe_png(path: Path) -> FileInfo:
    h, w, depth, ctype, _, _ = png_header(path)
    if own_codec(depth, ctype):
        c = _PNG_CHANNELS[ctype]
        return FileInfo(path, "png", (h, w, c), np.dtype(np.uint16), 1, "YXS", c in (2, 4))
    return _describe_pillow(path, "png")


@contextlib.contextmanager
def open_pillow(path: Path):
    """Pillow's lazy opening (header only), without its decompression-bomb limit: our memory guard decides."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                yield im
    finally:
        Image.MAX_IMAGE_PIXELS = limit


# Pillow mode -> (mode to convert to or None, channels, dtype, alpha)
_MODES = {
    "1": ("L", 1, np.uint8, False),
    "L": (None, 1, np.uint8, False),
    "LA": (None, 2, np.uint8, True),
    "La": ("LA", 2, np.uint8, True),
    "RGB": (None, 3, np.uint8, False),
    "RGBA": (None, 4, np.uint8, True),
    "RGBa": ("RGBA", 4, np.uint8, True),
    "RGBX": ("RGB", 3, np.uint8, False),
    "CMYK": ("RGB", 3, np.uint8, False),
    "YCbCr": ("RGB", 3, np.uint8, False),
    "I;16": (None, 1, np.uint16, False),
    "I;16B": (None, 1, np.uint16, False),
    "I;16L": (None, 1, np.uint16, False),
    "I": (None, 1, np.int32, False),
    "F": (None, 1, np.float32, False),
}


def pillow_mode(im) -> tuple[str | None, int, np.dtype, bool]:
    mode = im.mode
    if mode in ("P", "PA"):
        with_alpha = mode == "PA" or "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        return ("RGBA", 4, np.uint8, True) if with_alpha else ("RGB", 3, np.uint8, False)
    if mode not in _MODES:
        raise ValueError(f"unsupported pixel mode {mode!r}")
    return _MODES[mode]


def _describe_pillow(path: Path, kind: str) -> FileInfo:
    with open_pillow(path) as im:
        if kind == "jpeg" and im.format != "JPEG" or kind == "png" and im.format != "PNG":
            raise ValueError(f"the file is not a {kind.upper()} but {im.format or 'unknown'}")
        _, c, dtype, alpha = pillow_mode(im)
        w, h = im.size
        frames = getattr(im, "n_frames", 1)
    if frames > 1:  # an animated PNG: its first frame only would be read
        raise ValueError(f"it holds {frames} frames (an animation); save them as a TIFF stack")
    shape = (h, w) if c == 1 else (h, w, c)
    return FileInfo(path, kind, shape, np.dtype(dtype), 1, "YX" if c == 1 else "YXS", alpha)


def colour_shape(info: FileInfo, channel_axis: int | None) -> tuple[int, ...]:
    """Shape of what is smoothed: the decoded shape less an alpha channel (see :func:`split_alpha`)."""
    if info.alpha and channel_axis == len(info.shape) - 1:
        return info.shape[:-1] + (info.shape[-1] - 1,)
    return info.shape
