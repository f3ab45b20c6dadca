"""Reading and atomically writing image files (TIFF keeps the dtype; PNG, JPEG)."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["join_alpha", "quiet_tifffile", "read_image", "split_png_alpha", "write_image", "check_writable", "guess_channel_axis", "TIFF", "PNG", "JPEG"]

TIFF = (".tif", ".tiff")
PNG = (".png",)
JPEG = (".jpg", ".jpeg")
_SUPPORTED = TIFF + PNG + JPEG


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _SUPPORTED:
        raise ValueError(f"unsupported file type {path.suffix or '(none)'!r} for {path}; use one of {', '.join(_SUPPORTED)}")
    return suffix


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF, PNG or JPEG file into an array of its stored dtype."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with quiet_tifffile():
            image = _read(path, suffix)
    except Exception as exc:  # the readers raise many types for a damaged file
        raise ValueError(f"cannot read {path}: {exc}") from None
    if image.size == 0:
        raise ValueError(f"cannot read {path}: the file holds no image data")
    return image


@contextlib.contextmanager
def quiet_tifffile():
    """Silence tifffile's warnings: a damaged file gets one clear error from us, not a log line too."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _read(path: Path, suffix: str) -> np.ndarray:
    if suffix in TIFF:
        import tifffile

        return tifffile.imread(path)
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def guess_channel_axis(image: np.ndarray) -> int | None:
    """-1 for (..., Y, X, 3|4) data (colour, as PNG/JPEG and most TIFFs store it), else None."""
    if image.ndim >= 3 and image.shape[-1] in (3, 4):
        return -1
    return None


def split_png_alpha(image: np.ndarray, channel_axis, path: Path):
    """(colour, alpha) of a PNG's RGBA data, else (image, None): alpha is kept, not smoothed.

    A 4-channel TIFF is smoothed as 4 channels.
    """
    if channel_axis is not None and image.shape[channel_axis] == 4 and Path(path).suffix.lower() == ".png":
        return np.take(image, [0, 1, 2], axis=channel_axis), np.take(image, [3], axis=channel_axis)
    return image, None


def join_alpha(image: np.ndarray, alpha, channel_axis) -> np.ndarray:
    """Undo :func:`split_png_alpha` on a result."""
    return image if alpha is None else np.concatenate([image, alpha], axis=channel_axis)


def check_writable(path: str | os.PathLike, dtype) -> Path:
    """Raise ``ValueError``/``FileNotFoundError`` now if ``dtype`` data cannot be written to ``path``."""
    path = Path(path)
    suffix = _suffix(path)
    dtype = np.dtype(dtype).newbyteorder("=")  # byte order is the writer's business, not the format's
    if suffix in PNG and dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG holds uint8 or uint16, not {dtype}; write a .tif to keep the dtype")
    if suffix in JPEG and dtype != np.uint8:
        raise ValueError(f"JPEG holds uint8, not {dtype}; write a .tif or .png")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {path.parent}")
    return path


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write ``image`` atomically: to a temporary file beside ``path``, then rename.

    TIFF keeps any dtype; PNG takes uint8 or uint16 and JPEG uint8, so other
    dtypes raise ``ValueError`` naming a format that keeps them.
    """
    path = check_writable(path, image.dtype)
    suffix = path.suffix.lower()
    image = image.astype(image.dtype.newbyteorder("="), copy=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        if suffix in TIFF:
            import tifffile

            tifffile.imwrite(tmp, image)
        else:
            import imageio.v3 as iio

            kwargs = {"quality": 95} if suffix in JPEG else {}
            iio.imwrite(tmp, image, extension=suffix, **kwargs)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
