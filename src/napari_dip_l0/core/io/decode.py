"""Decoding exactly what :func:`.header.describe` described; alpha kept aside.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..memory import check_decode_memory
from ..validation import first_line
from .formats import quiet_tifffile
from .header import FileInfo, describe, open_pillow, pillow_mode
from .png import decode_png, own_codec, png_header

__all__ = ["read", "read_image", "split_alpha", "join_alpha"]


def read(info: FileInfo) -> np.ndarray:
    """Decode the file ``info`` describes (after :func:`check_decode_memory`); its shape and dtype are checked.

    Returns an array of ``info.shape`` and ``info.dtype`` (native byte order).
    """
    check_decode_memory(info)
    path = info.path
    try:
        with quiet_tifffile():
            if info.kind == "tiff":
                image = _read_tiff(path, info)
            elif info.kind == "png" and own_codec(*png_header(path)[2:4]):
                image = decode_png(path)
            else:
                image = _read_pillow(path)
    except MemoryError:
        raise
    except Exception as exc:  # the decoders raise many types for a damaged file
        raise ValueError(f"cannot read {path}: {first_line(exc)}") from None
    image = np.asarray(image)
    if image.dtype.kind == "b":
        image = image.astype(np.uint8) * np.uint8(255)
    image = image.astype(image.dtype.newbyteorder("="), copy=False)
    if image.shape != info.shape or image.dtype != info.dtype:
        raise ValueError(f"cannot read {path}: its header declares {info.shape} {info.dtype} but the "
                         f"pixels decode as {image.shape} {image.dtype}")
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF, PNG or JPEG file into an array of its stored dtype (described first, then decoded)."""
    return read(describe(path))


def _read_tiff(path: Path, info: FileInfo) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if len(tif.series) == 1:
            return tif.series[0].asarray()
        out = np.empty(info.shape, info.dtype)
        for i, s in enumerate(tif.series):
            out[i] = s.asarray()
        return out


def _read_pillow(path: Path) -> np.ndarray:
    with open_pillow(path) as im:
        convert, _, _, _ = pillow_mode(im)
        if convert is not None:
            im = im.convert(convert)
        return np.asarray(im)


def split_alpha(image: np.ndarray, info: FileInfo, channel_axis: int | None):
    """(colour, alpha) of an image whose last channel is alpha (``info.alpha``), else (image, None).

    Alpha is kept as it is, not smoothed. A 4-channel TIFF is smoothed as 4 channels.
    """
    if info.alpha and channel_axis is not None and channel_axis % image.ndim == image.ndim - 1:
        return image[..., :-1], image[..., -1:]
    return image, None


def join_alpha(image: np.ndarray, alpha, channel_axis=None) -> np.ndarray:
    """Undo :func:`split_alpha` on a result."""
    return image if alpha is None else np.concatenate([image, alpha], axis=-1)
