"""16-bit colour PNG, read and written by our own small codec.

Pillow reads 16-bit colour PNGs (RGB, RGBA, grey+alpha) as 8-bit and cannot
write them; imageio and tifffile go through Pillow for PNG. Everything else
PNG is left to Pillow.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["png_chunks", "png_header", "own_codec", "decode_png", "encode_png"]


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


def png_chunks(fh):
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


def png_header(path: Path) -> tuple[int, int, int, int, int, bool]:
    """(height, width, bit depth, colour type, interlace, has tRNS) from the chunks before the pixels."""
    with open(path, "rb") as fh:
        chunks = png_chunks(fh)
        kind, length, _ = next(chunks)
        if kind != b"IHDR" or length != 13:
            raise ValueError("PNG file does not start with its header")
        w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", fh.read(13))
        trns = any(kind == b"tRNS" for kind, _, _ in chunks)
    if ctype not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16) or (ctype in (2, 4, 6) and depth < 8):
        raise ValueError(f"invalid PNG header (bit depth {depth}, colour type {ctype})")
    return h, w, depth, ctype, interlace, trns


def own_codec(depth: int, ctype: int) -> bool:
    """16-bit colour: Pillow would read it as 8-bit, so our codec reads it."""
    return depth == 16 and ctype in (2, 4, 6)


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


def decode_png(path: Path) -> np.ndarray:
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


def encode_png(image: np.ndarray) -> bytes:
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
