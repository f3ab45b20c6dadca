"""Outputs: refused before any work if they could not be written, then written atomically.

:func:`check_output` checks every output's format, folder and name up
front; :func:`write_image` writes to a temporary file beside the target,
then renames it, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..validation import first_line
from .formats import JPEG, PNG, TIFF, file_type
from .png import encode_png

__all__ = ["check_output", "output_format_error", "output_dtype", "snapshot_path", "temp_prefix", "write_image"]


def output_format_error(suffix: str, shape: tuple[int, ...], dtype) -> str | None:
    """Why a ``shape``/``dtype`` image cannot be stored as ``suffix`` (None if it can)."""
    dtype = np.dtype(dtype).newbyteorder("=")  # byte order is the writer's business, not the format's
    if suffix in TIFF:
        return None if dtype.kind in "iuf" else f"TIFF output holds real numbers, not {dtype}"
    name = "PNG" if suffix in PNG else "JPEG"
    kinds = (np.uint8, np.uint16) if suffix in PNG else (np.uint8,)
    if dtype not in kinds:
        keep = "write a .tif to keep the dtype" if suffix in PNG else "write a .tif or .png"
        return f"{name} holds {' or '.join(np.dtype(k).name for k in kinds)}, not {dtype}; {keep}"
    layouts = (1, 2, 3, 4) if suffix in PNG else (1, 3)
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in layouts):
        return None
    if suffix in JPEG and len(shape) == 3 and shape[-1] in (2, 4):
        return f"JPEG has no alpha channel, and this image has one (shape {tuple(shape)}); write a .png or .tif"
    what = "grey, grey+alpha, RGB or RGBA" if suffix in PNG else "grey or RGB"
    return f"{name} holds one 2-D {what} image, not shape {tuple(shape)} (a stack?); write a .tif"


def output_dtype(path: str | os.PathLike, shape: tuple[int, ...], dtype, mode: str) -> np.dtype:
    """The dtype a ``mode`` run of a ``shape``/``dtype`` image writes to ``path``.

    The run's own (:func:`..planes.result_dtype`: 'denoise' gives integer
    images a float result) where the file type holds it; otherwise the
    input's, so a PNG gets the result rounded to the input's levels.
    """
    from ..planes import result_dtype
    from ..presets import get_preset

    found = result_dtype(dtype, get_preset(mode).float_result)
    try:
        suffix = file_type(Path(path))
    except ValueError:  # check_output says so
        return found
    return found if output_format_error(suffix, tuple(shape), found) is None else np.dtype(dtype)


def snapshot_path(output: Path, iteration: int) -> Path:
    """Where ``--save-every`` writes the estimate at ``iteration``: OUTPUT_iterNNNNN.ext."""
    return output.with_name(f"{output.stem}_iter{iteration:05d}{output.suffix}")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | os.PathLike, shape: tuple[int, ...], dtype, *, inputs=(), snapshots: bool = False,
                 probe: bool = True) -> Path:
    """Refuse now, with a ``ValueError``/``OSError`` naming ``path``, an output that could not be written.

    Checks the file type against ``shape`` and ``dtype``, that ``path`` is
    not a folder, that its folder exists and takes new files (with
    ``probe``, by making and removing a file there), and that neither it
    nor, with ``snapshots``, any ``--save-every`` name (:func:`snapshot_path`)
    is one of ``inputs``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a folder; name a file in it")
    suffix = file_type(path)
    why = output_format_error(suffix, tuple(shape), dtype)
    if why is not None:
        raise ValueError(f"cannot write {path}: {why}")
    for item in inputs:
        item = Path(item)
        if _same_file(path, item):
            raise ValueError(f"output {path} is the input {item}; choose another output name")
        if snapshots and item.parent.resolve() == path.parent.resolve():
            pattern = re.escape(path.stem) + r"_iter\d{5,}" + re.escape(path.suffix)
            if re.fullmatch(pattern, item.name):
                raise ValueError(f"--save-every would overwrite the input {item} (snapshots are named "
                                 f"{path.stem}_iterNNNNN{path.suffix}); choose another output name")
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {parent}")
    if probe:
        try:
            fd, tmp = tempfile.mkstemp(prefix=".dip-l0-probe.", dir=parent)
        except OSError as exc:
            raise PermissionError(f"cannot write to the output folder {parent}: {exc.strerror or first_line(exc)}") \
                from None
        os.close(fd)
        os.unlink(tmp)
    return path


def temp_prefix(path: Path) -> str:
    """Prefix of :func:`write_image`'s temporary files for ``path`` (hidden, beside it)."""
    return f".{path.stem}.dip-l0-tmp."


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write ``image`` atomically: to a hidden temporary file beside ``path``, then rename.

    TIFF keeps any real dtype; PNG takes uint8 or uint16 (grey, grey+alpha,
    RGB, RGBA) and JPEG uint8 (grey, RGB); anything else raises
    ``ValueError`` naming a format that keeps it. An error names ``path``,
    never the temporary file, and leaves no temporary file behind.
    """
    path = Path(path)
    suffix = file_type(path)
    why = output_format_error(suffix, image.shape, image.dtype)
    if why is not None:
        raise ValueError(f"cannot write {path}: {why}")
    image = np.ascontiguousarray(image.astype(image.dtype.newbyteorder("="), copy=False))
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise type(exc)(f"cannot write {path}: {exc.strerror or first_line(exc)}") from None
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            _encode(fh, image, suffix)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise type(exc)(f"cannot write {path}: {exc.strerror or first_line(exc)}") from None
        raise
    return path


def _encode(fh, image: np.ndarray, suffix: str) -> None:
    if suffix in TIFF:
        import tifffile

        # Say what the axes are rather than let tifffile guess (it takes a first axis of 3 as planar RGB):
        # a last axis of 2-4 entries holds each pixel's samples, as :meth:`FileInfo.channel_axis` reads it back.
        samples = image.ndim >= 3 and image.shape[-1] in (2, 3, 4)
        photometric = "rgb" if samples and image.shape[-1] > 2 else "minisblack"
        tifffile.imwrite(fh, image, photometric=photometric, planarconfig="contig" if samples else None)
    elif suffix in PNG and (image.dtype == np.uint16 and image.ndim == 3 or image.ndim == 3 and image.shape[-1] == 1):
        fh.write(encode_png(image))
    else:
        from PIL import Image

        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        im = Image.fromarray(image)
        if suffix in PNG:
            im.save(fh, format="PNG")
        else:
            im.save(fh, format="JPEG", quality=95)
