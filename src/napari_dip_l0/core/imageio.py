"""Image files: what they hold, read from the header before any pixel; reading; checking and writing outputs.

:func:`describe` opens a file's header only (TIFF IFDs, the PNG IHDR and
chunks before the pixel data, the JPEG frame header) and says what decoding
it would give: shape, dtype, pages, alpha. Everything that can be refused is
refused from that description, before anything large is allocated: the
memory a decode needs, the channel axis, and every output's format, folder
and name (:func:`check_output`). :func:`read` then decodes exactly what was
described, and :func:`write_image` writes atomically (a temporary file
beside the target, then a rename), so a reader never sees half a file.

Pillow reads 16-bit colour PNGs (RGB, RGBA, grey+alpha) as 8-bit and cannot
write them, so those go through a small PNG codec of our own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "TIFF", "PNG", "JPEG", "SUPPORTED", "FileInfo", "describe", "read", "read_image", "check_output",
    "check_decode_memory", "write_image", "first_line", "split_alpha", "join_alpha", "snapshot_path",
    "quiet_tifffile", "output_format_error", "colour_shape", "check_run_memory", "file_type",
    "temp_prefix", "output_dtype",
]

TIFF = (".tif", ".tiff")
PNG = (".png",)
JPEG = (".jpg", ".jpeg")
#: Every file type read and written, lower case.
SUPPORTED = TIFF + PNG + JPEG

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (its type's name if it has none): what a user is shown."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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


def _png_chunks(fh):
    """(type, length, offset of data) of each chunk, up to and including the first IDAT."""
    if fh.read(8) != _PNG_SIGNATURE:
        raise ValueError("not a PNG file")
    while True:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError("truncated PNG file")
        length, kind = struct.unpack(">I4s", head)
        start = fh.tell()
        yield kind, length, start
        if kind in (b"IDAT", b"IEND"):
            return
        fh.seek(start + length + 4)


def _png_header(path: Path) -> tuple[int, int, int, int, int, bool]:
    """(height, width, bit depth, colour type, interlace, has tRNS) from the chunks before the pixels."""
    with open(path, "rb") as fh:
        chunks = _png_chunks(fh)
        kind, length, _ = next(chunks)
        if kind != b"IHDR" or length != 13:
            raise ValueError("PNG file does not start with its header")
        w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", fh.read(13))
        trns = any(kind == b"tRNS" for kind, _, _ in chunks)
    if ctype not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16) or (ctype in (2, 4, 6) and depth < 8):
        raise ValueError(f"invalid PNG header (bit depth {depth}, colour type {ctype})")
    return h, w, depth, ctype, interlace, trns


def _own_png(depth: int, ctype: int) -> bool:
    """16-bit colour: Pillow would read it as 8-bit, so our codec reads it."""
    return depth == 16 and ctype in (2, 4, 6)


def _describe_png(path: Path) -> FileInfo:
    h, w, depth, ctype, _, _ = _png_header(path)
    if _own_png(depth, ctype):
        c = _PNG_CHANNELS[ctype]
        return FileInfo(path, "png", (h, w, c), np.dtype(np.uint16), 1, "YXS", c in (2, 4))
    return _describe_pillow(path, "png")


@contextlib.contextmanager
def _pillow(path: Path):
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


def _pillow_mode(im) -> tuple[str | None, int, np.dtype, bool]:
    mode = im.mode
    if mode in ("P", "PA"):
        with_alpha = mode == "PA" or "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        return ("RGBA", 4, np.uint8, True) if with_alpha else ("RGB", 3, np.uint8, False)
    if mode not in _MODES:
        raise ValueError(f"unsupported pixel mode {mode!r}")
    return _MODES[mode]


def _describe_pillow(path: Path, kind: str) -> FileInfo:
    with _pillow(path) as im:
        if kind == "jpeg" and im.format != "JPEG" or kind == "png" and im.format != "PNG":
            raise ValueError(f"the file is not a {kind.upper()} but {im.format or 'unknown'}")
        _, c, dtype, alpha = _pillow_mode(im)
        w, h = im.size
        frames = getattr(im, "n_frames", 1)
    if frames > 1:  # an animated PNG: its first frame only would be read
        raise ValueError(f"it holds {frames} frames (an animation); save them as a TIFF stack")
    shape = (h, w) if c == 1 else (h, w, c)
    return FileInfo(path, kind, shape, np.dtype(dtype), 1, "YX" if c == 1 else "YXS", alpha)


def check_decode_memory(info: FileInfo, factor: float = 1.0, available: int | None = None) -> None:
    """``MemoryError`` now if decoding ``info`` (times ``factor`` for working copies) would not fit in memory."""
    from .tiling import available_memory, format_bytes

    budget = available_memory() if available is None else available
    need = info.nbytes * factor
    if budget is not None and need > budget:
        raise MemoryError(f"{info.path} declares an image of shape {info.shape} ({info.dtype}): "
                          f"about {format_bytes(need)} needed but only {format_bytes(budget)} is available")


def colour_shape(info: FileInfo, channel_axis: int | None) -> tuple[int, ...]:
    """Shape of what is smoothed: the decoded shape less an alpha channel (see :func:`split_alpha`)."""
    if info.alpha and channel_axis == len(info.shape) - 1:
        return info.shape[:-1] + (info.shape[-1] - 1,)
    return info.shape


def check_run_memory(info: FileInfo, channel_axis: int | None, *, mode: str | None = "smooth",
                     tile_size: int | None = None) -> None:
    """``MemoryError`` now, from the header alone, if decoding ``info`` and running on it would not fit.

    ``mode`` 'smooth'/'deblock': a DIP-ℓ0 run (the decoded file, plus the
    run's own estimate, :func:`.tiling.check_memory`); None: ℓ0 smoothing
    alone (float copies of the image and Region Fusion's work on one plane).
    """
    from .tiling import available_memory, format_bytes

    check_decode_memory(info)
    budget = available_memory()
    if budget is None:
        return
    shape = colour_shape(info, channel_axis)
    if mode is not None:
        from .layout import result_dtype
        from .presets import get_preset
        from .tiling import check_tiling, estimate_memory

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
            elif info.kind == "png" and _own_png(*_png_header(path)[2:4]):
                image = _png_decode(path)
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
    with _pillow(path) as im:
        convert, _, _, _ = _pillow_mode(im)
        if convert is not None:
            im = im.convert(convert)
        return np.asarray(im)


# ----- 16-bit colour PNG ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _unfilter_kernel():
    import numba

    @numba.njit(cache=True, nogil=True)
    def unfilter(data, h, stride, bpp):  # pragma: no cover - compiled
        out = np.empty((h, stride), np.uint8)
        for y in range(h):
            base = y * (stride + 1)
            ft = data[base]
            if ft > 4:
                return out, y
            for x in range(stride):
                raw = np.int32(data[base + 1 + x])
                a = np.int32(out[y, x - bpp]) if x >= bpp else np.int32(0)
                b = np.int32(out[y - 1, x]) if y > 0 else np.int32(0)
                if ft == 0:
                    v = raw
                elif ft == 1:
                    v = raw + a
                elif ft == 2:
                    v = raw + b
                elif ft == 3:
                    v = raw + (a + b) // 2
                else:
                    c = np.int32(out[y - 1, x - bpp]) if (x >= bpp and y > 0) else np.int32(0)
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    v = raw + (a if (pa <= pb and pa <= pc) else (b if pb <= pc else c))
                out[y, x] = v & 255
        return out, -1

    return unfilter


def _png_decode(path: Path) -> np.ndarray:
    """A non-interlaced 8- or 16-bit grey, grey+alpha, RGB or RGBA PNG, at its full bit depth."""
    with open(path, "rb") as fh:
        data = fh.read()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) < length:
            raise ValueError("truncated PNG file")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise ValueError("PNG file without header or pixel data")
    w, h, depth, ctype, _, _, interlace = header
    if interlace:
        raise ValueError("interlaced 16-bit colour PNGs are not supported; save it without interlacing or as TIFF")
    if depth not in (8, 16) or ctype not in (0, 2, 4, 6):
        raise ValueError(f"unsupported PNG layout (bit depth {depth}, colour type {ctype})")
    c = _PNG_CHANNELS[ctype]
    bpp = c * depth // 8
    stride = w * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    if raw.size < h * (stride + 1):
        raise ValueError("truncated PNG pixel data")
    rows, bad = _unfilter_kernel()(raw, h, stride, bpp)
    if bad >= 0:
        raise ValueError(f"invalid PNG filter on row {bad}")
    image = rows.view(">u2" if depth == 16 else np.uint8).reshape(h, w, c)
    image = image.astype(np.uint16 if depth == 16 else np.uint8)
    return image[..., 0] if c == 1 else image


def _png_encode(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8/uint16 (H, W) or (H, W, 1|2|3|4) image (rows filtered 'Up')."""
    if image.ndim == 2:
        image = image[..., None]
    h, w, c = image.shape
    depth = 16 if image.dtype == np.uint16 else 8
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = np.ascontiguousarray(image.astype(">u2" if depth == 16 else np.uint8)).view(np.uint8).reshape(h, -1)
    up = rows.copy()
    up[1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as the filter wants
    filtered = np.empty((h, up.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[:, 1:] = up

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return _PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)) + chunk(
        b"IEND", b"")


# ----- outputs -------------------------------------------------------------------------------------------------


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

    The run's own (:func:`.layout.result_dtype`: 'denoise' gives integer
    images a float result) where the file type holds it; otherwise the
    input's, so a PNG gets the result rounded to the input's levels.
    """
    from .layout import result_dtype
    from .presets import get_preset

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
        fh.write(_png_encode(image))
    else:
        from PIL import Image

        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        im = Image.fromarray(image)
        if suffix in PNG:
            im.save(fh, format="PNG")
        else:
            im.save(fh, format="JPEG", quality=95)


# ----- alpha ---------------------------------------------------------------------------------------------------


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
