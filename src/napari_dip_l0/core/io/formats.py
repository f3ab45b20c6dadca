"""The image file types read and written, by suffix.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

__all__ = ["TIFF", "PNG", "JPEG", "SUPPORTED", "file_type", "quiet_tifffile"]


TIFF = (".tif", ".tiff")
PNG = (".png",)
JPEG = (".jpg", ".jpeg")


#: Every file type read and written, lower case.
SUPPORTED = TIFF + PNG + JPEG


def file_type(path: str | os.PathLike) -> str:
    """The lower-case suffix of a supported image file; ``ValueError`` for any other."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise ValueError(f"unsupported file type {path.suffix or '(none)'!r} for {path}; "
                         f"use one of {', '.join(SUPPORTED)}")
    return suffix


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
