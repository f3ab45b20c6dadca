"""The quantisation constraint of a JPEG file: the images it could have come from.

A JPEG stores each 8×8 block's DCT coefficients as integers ``k`` times a
quantisation table ``Q``, in YCbCr with the chroma planes usually subsampled.
So the true image's coefficients lie in ``[(k - 1/2) Q, (k + 1/2) Q]``: a box
around the decoded image that decoding alone throws away. Projecting an
estimate onto that box (block DCT, clip, inverse DCT, in the file's colour
space and sampling) keeps it consistent with the file; Bredies & Holler's
TV/TGV JPEG decompression is built on the same set. ``box`` narrows each
interval around the stored value (DIP-ℓ0 projects onto the middle half).

The model follows libjpeg's encoder: JFIF full-range YCbCr, chroma
subsampled by averaging, planes padded to whole blocks by repeating the last
row and column, orthonormal 8×8 DCT-II of the level-shifted samples. Blocks
that lie wholly inside the image are projected exactly; blocks over the
right or bottom edge (or, for a crop off the block grid, the top or left) by
a least-squares step (their padding repeats the edge, so not every
coefficient is reachable), which converges in a few rounds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["JpegConstraint", "read_jpeg_constraint", "check_constraint", "file_or_pixels",
           "run_from_file_or_pixels", "same_pixels"]

T = TypeVar("T")

# JFIF RGB -> YCbCr (offsets of 128 on the chroma planes) and back.
_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168735892, -0.331264108, 0.5], [0.5, -0.418687589, -0.081312411]])
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def _dct_matrix(dtype, device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix (JPEG's FDCT is this applied on both sides)."""
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(dtype=dtype, device=device)


def _fold(delta: torch.Tensor, start: int, size: int) -> torch.Tensor:
    """A change of padded samples (along the first axis) as the least-squares change of the ``size`` image
    samples from ``start`` that the padding repeats: the first and last take the mean of what repeats them."""
    end = start + size
    if size == 1:
        return delta.mean(0, keepdim=True)
    inner = delta[start + 1 : end - 1]
    return torch.cat([delta[: start + 1].mean(0, keepdim=True), inner, delta[end - 1 :].mean(0, keepdim=True)], 0)


class JpegConstraint:
    """The quantisation constraint set of one baseline or progressive JPEG file.

    Parameters
    ----------
    coefficients : list of ndarray
        Per component (Y, or Y, Cb, Cr), the quantised DCT coefficients,
        shape ``(blocks_y, blocks_x, 8, 8)``, natural (not zig-zag) order.
    tables : list of ndarray
        Per component, its 8×8 quantisation table.
    factors : list of (int, int)
        Per component, how many image pixels one of its samples spans
        vertically and horizontally (2, 2 for 4:2:0 chroma; 1, 1 for luma).
    shape : (int, int)
        Height and width of the image.
    path : str, optional
        The file the coefficients were read from.
    quality : int, optional
        The quality factor of libjpeg's tables, for a constraint read back
        from decoded pixels (:mod:`.jpeg_history`) rather than from a file.
    origin : (int, int)
        Where the image's first pixel lies in the file's block grid (rows,
        columns, each 0 to 7): (0, 0) for a file; a crop of a decoded JPEG
        off its grid starts inside a block. Blocks over the top or left edge
        are then projected by the same least-squares step as those over the
        bottom and right.

    Examples
    --------
    >>> import io, numpy as np, imageio.v3 as iio
    >>> from napari_dip_l0.core.jpeg import read_jpeg_constraint
    >>> rgb = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    >>> iio.imwrite("example_q10.jpg", rgb, quality=10)
    >>> qcs = read_jpeg_constraint("example_q10.jpg")
    >>> qcs.shape, qcs.channels
    ((40, 56), 3)
    """

    def __init__(self, coefficients: list[np.ndarray], tables: list[np.ndarray], factors: list[tuple[int, int]],
                 shape: tuple[int, int], path: str | None = None, quality: int | None = None,
                 origin: tuple[int, int] = (0, 0)):
        if len(coefficients) not in (1, 3) or not len(coefficients) == len(tables) == len(factors):
            raise ValueError("a JPEG constraint needs 1 (grey) or 3 (YCbCr) components with a table and a factor each")
        self.coefficients = [np.asarray(c, np.float64) for c in coefficients]
        self.tables = [np.asarray(q, np.float64) for q in tables]
        self.factors = [tuple(int(v) for v in f) for f in factors]
        self.shape = (int(shape[0]), int(shape[1]))
        self.path = path
        self.quality = quality
        self.origin = (int(origin[0]), int(origin[1]))
        if not all(0 <= o < 8 for o in self.origin):
            raise ValueError(f"origin must lie within the first block (0 to 7 each), got {origin}")
        self._cache: dict = {}

    @property
    def channels(self) -> int:
        return len(self.coefficients)

    @property
    def dc_step(self) -> float:
        """The luma (or grey) DC quantisation step: how coarse the file is (Pillow's quality 10: 80)."""
        return float(self.tables[0][0, 0])

    def _tensors(self, dtype, device):
        key = (dtype, str(device))
        if key not in self._cache:
            as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)
            self._cache[key] = (
                _dct_matrix(dtype, device),
                [(as_t(c * q), as_t(q)) for c, q in zip(self.coefficients, self.tables)],
                as_t(_RGB_TO_YCC), as_t(_YCC_TO_RGB),
            )
        return self._cache[key]

    def _padded(self) -> tuple[int, int]:
        """Image size padded (before it, by the origin; after it) so that every component's blocks are covered."""
        hp = max(c.shape[0] * 8 * f[0] for c, f in zip(self.coefficients, self.factors))
        wp = max(c.shape[1] * 8 * f[1] for c, f in zip(self.coefficients, self.factors))
        return max(hp, self.origin[0] + self.shape[0]), max(wp, self.origin[1] + self.shape[1])

    def _planes(self, x: torch.Tensor, to_ycc: torch.Tensor) -> torch.Tensor:
        """(1, C, H, W) on [0, 1] -> padded sample planes (C, Hp, Wp) on 0..255 in the file's colour space."""
        h, w = self.shape
        hp, wp = self._padded()
        x255 = x[0] * 255.0
        if self.channels == 3:
            x255 = torch.einsum("ij,jhw->ihw", to_ycc, x255)
            x255 = x255 + torch.tensor([0.0, 128.0, 128.0], dtype=x.dtype, device=x.device)[:, None, None]
        oy, ox = self.origin
        return F.pad(x255[None], (ox, wp - w - ox, oy, hp - h - oy), mode="replicate")[0]

    def _block_offsets(self, planes: torch.Tensor, dct: torch.Tensor, comps, box: float) -> list[torch.Tensor]:
        """Per component: the change of its (subsampled) samples that moves every block into its box
        (the middle ``box`` fraction of each quantisation interval)."""
        deltas = []
        for c, (kq, q) in enumerate(comps):
            by, bx = kq.shape[:2]
            fy, fx = self.factors[c]
            plane = planes[c, : by * 8 * fy, : bx * 8 * fx]
            if (fy, fx) != (1, 1):
                plane = F.avg_pool2d(plane[None, None], (fy, fx))[0, 0]
            blocks = (plane - 128.0).reshape(by, 8, bx, 8).permute(0, 2, 1, 3)
            coef = dct @ blocks @ dct.T
            half = box * q / 2
            clipped = torch.minimum(torch.maximum(coef, kq - half), kq + half)
            delta = dct.T @ (clipped - coef) @ dct
            deltas.append(delta.permute(0, 2, 1, 3).reshape(by * 8, bx * 8))
        return deltas

    def project(self, x: torch.Tensor, *, box: float = 1.0, rounds: int = 8, tol: float = 0.01) -> torch.Tensor:
        """The nearest image to ``x`` (a (1, C, H, W) tensor on [0, 1]) that the file allows, clipped to [0, 1].

        Alternates the projection onto the coefficient boxes with clipping to
        [0, 1] (both sets are convex) until a round moves no sample by more
        than ``tol`` grey levels (0-255), or ``rounds`` times. Blocks over an
        edge, and samples pressed against 0 or 1, converge geometrically
        (about half the violation a round); a round takes about 0.25 s at
        2048² RGB on 2 CPU cores, and 8 rounds bring a projection of a noisy
        image there to within 0.07 Q of every interval.

        ``box`` narrows each coefficient's interval to its middle fraction,
        around the stored value: 1 is the whole set of images the file allows
        (it holds the true image), 0 the decoded image itself. A narrower box
        keeps more of the decoded image where the estimate disagrees with the
        file: on the edge of the whole interval a coefficient the estimate
        got wrong lies, on average, further from the truth than the stored
        value does.
        """
        if not 0.0 <= box <= 1.0:
            raise ValueError(f"box must be between 0 and 1 (a fraction of the quantisation interval), got {box}")
        self._check(x)
        dct, comps, to_ycc, to_rgb = self._tensors(x.dtype, x.device)
        (h, w), (oy, ox) = self.shape, self.origin
        for _ in range(rounds):
            planes = self._planes(x, to_ycc)
            deltas = self._block_offsets(planes, dct, comps, box)
            moved = float(torch.stack([d.abs().amax() for d in deltas]).max())  # one sync on a GPU
            for c, delta in enumerate(deltas):
                fy, fx = self.factors[c]
                if (fy, fx) != (1, 1):
                    # Repeating a change of the averaged samples moves their average by exactly that change.
                    delta = delta.repeat_interleave(fy, 0).repeat_interleave(fx, 1)
                # Samples past the image's edges repeat its first and last rows and columns: fold their change
                # back onto those (the least-squares step), so the edge blocks converge like the others.
                planes[c, oy : oy + h, ox : ox + w] += _fold(_fold(delta, oy, h).T, ox, w).T
            img = planes[:, oy : oy + h, ox : ox + w]
            if self.channels == 3:
                img = img - torch.tensor([0.0, 128.0, 128.0], dtype=x.dtype, device=x.device)[:, None, None]
                img = torch.einsum("ij,jhw->ihw", to_rgb, img)
            x = (img / 255.0).clamp(0.0, 1.0)[None]
            if moved <= tol:
                break
        return x

    def violation(self, x: torch.Tensor | np.ndarray, *, box: float = 1.0) -> np.ndarray:
        """Per component, the largest distance of a coefficient of ``x`` outside its box, in units of ``Q``.

        0 means every block of that component is consistent with the file
        (with ``box`` < 1: within that fraction of each interval, see
        :meth:`project`). ``x`` is a (1, C, H, W) tensor, or an (H, W[, C])
        array, on [0, 1].
        """
        if isinstance(x, np.ndarray):
            arr = x[..., None] if x.ndim == 2 else x
            x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), np.float64))[None]
        self._check(x)
        dct, comps, to_ycc, _ = self._tensors(x.dtype, x.device)
        planes = self._planes(x, to_ycc)
        out = []
        for c, delta in enumerate(self._block_offsets(planes, dct, comps, box)):
            by, bx = comps[c][0].shape[:2]
            blocks = delta.reshape(by, 8, bx, 8).permute(0, 2, 1, 3)
            moved = dct @ blocks @ dct.T  # the coefficient change that projection would make
            out.append(float((moved.abs() / comps[c][1]).max()))
        return np.array(out)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[0] != 1 or tuple(x.shape[1:]) != (self.channels, *self.shape):
            raise ValueError(f"the JPEG file holds a {self.shape[0]}×{self.shape[1]} image with {self.channels} "
                             f"channel(s); got an estimate of shape {tuple(x.shape[1:])} (C, H, W)")


def read_jpeg_constraint(path: str | os.PathLike) -> JpegConstraint:
    """Read a JPEG file's quantised DCT coefficients and tables (with ``jpeglib``).

    Raises ``ValueError`` for a file that is not a JPEG this model covers
    (colour spaces other than greyscale and YCbCr, such as CMYK) and
    ``ImportError`` when ``jpeglib`` is missing.
    """
    try:
        import jpeglib
    except ImportError:
        raise ImportError("reading a JPEG file's quantisation tables needs jpeglib: pip install jpeglib") from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        d = jpeglib.read_dct(str(path))
        d.load()
    except Exception as exc:  # jpeglib raises several types for files it cannot parse
        raise ValueError(f"cannot read the JPEG coefficients of {path}: {exc}") from None
    space = str(d.jpeg_color_space)
    if space.endswith("GRAYSCALE"):
        comps = [d.Y]
    elif space.endswith("YCbCr") and d.Cb is not None and d.Cr is not None:
        comps = [d.Y, d.Cb, d.Cr]
    else:
        raise ValueError(f"{path} is stored in the {space.replace('JCS_', '')} colour space; only greyscale and "
                         f"YCbCr JPEGs can be deblocked from their file")
    samp = np.asarray(d.samp_factor).reshape(len(comps), 2)  # (vertical, horizontal) per component
    vmax, hmax = samp[:, 0].max(), samp[:, 1].max()
    factors = [(int(vmax // v), int(hmax // h)) for v, h in samp]
    tables = [np.asarray(d.get_component_qt(c)) for c in range(len(comps))]
    return JpegConstraint([np.asarray(c) for c in comps], tables, factors, (int(d.height), int(d.width)),
                          str(path))


def check_constraint(jpeg, shape: tuple, channel_axis, data_range=None) -> JpegConstraint:
    """The constraint of ``jpeg`` (a path or a JpegConstraint), checked against the image it comes with.

    ``ValueError`` when the image (``shape``, ``channel_axis``) is not the file's
    (an RGB file needs (H, W, 3) with the channel axis last, a grey one (H, W)),
    or a ``data_range`` is given (the file's samples run from 0 to 255).
    """
    qcs = jpeg if isinstance(jpeg, JpegConstraint) else read_jpeg_constraint(jpeg)
    if data_range is not None:
        raise ValueError("data_range cannot be set with jpeg=: the file's samples run from 0 to 255")
    expected = (*qcs.shape, 3) if qcs.channels == 3 else qcs.shape
    if tuple(shape) != expected or (qcs.channels == 3) != (channel_axis == len(shape) - 1):
        what = "an RGB image (H, W, 3) with channel_axis=-1" if qcs.channels == 3 else "a greyscale image (H, W)"
        raise ValueError(f"the JPEG file {qcs.path or ''} holds {what} of {qcs.shape[0]}×{qcs.shape[1]} pixels; "
                         f"got shape {tuple(shape)} with channel_axis={channel_axis}")
    return qcs


def file_or_pixels(build: Callable[..., T], path: str | os.PathLike | None, pixels=None,
                   channel_axis: int | None = None) -> tuple[T, str]:
    """``build(jpeg=<the constraint of path>)`` where the JPEG file can be used, else from the tables its
    ``pixels`` show, else ``build()``; and why the file was not used.

    The one "deblock from the file, else from the pixels" decision of every front
    end (the API, napari, ``dip-l0 deblock``, ``dip-l0 batch``). ``build`` makes a
    run (or a preview) from the decoded pixels, with ``jpeg=`` a constraint when
    given. A file whose coefficients cannot be used (CMYK, no ``jpeglib``, pixels
    of another shape or channel layout, a run too large to fit whole) is passed
    over, with the first line of the reason as the second value ('' when the file
    was used or ``path`` is None). Then, given the ``pixels`` (and their
    ``channel_axis``), the quantisation they show is read back from them
    (:func:`.jpeg_history.constraint_from_pixels`: the result's ``jpeg`` has a
    ``quality``); failing that, the pixels are deblocked alone. A bad setting is
    not a reason to fall back: ``build()`` raises it as it would without the file.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0.core.jpeg import file_or_pixels
    >>> file_or_pixels(lambda jpeg=None: "from the file" if jpeg else "from the pixels", None)
    ('from the pixels', '')
    """
    from .validation import first_line

    why_not = ""
    if path is not None:
        try:
            return build(jpeg=read_jpeg_constraint(path)), ""
        except (ValueError, ImportError, MemoryError) as exc:
            why_not = first_line(exc)
    if pixels is not None:
        from .jpeg_history import constraint_from_pixels

        qcs = constraint_from_pixels(pixels, channel_axis)
        if qcs is not None:
            try:
                return build(jpeg=qcs), why_not
            except (ValueError, MemoryError):
                pass  # settings a constraint does not take (data_range), or too large to fit whole
    return build(), why_not


def run_from_file_or_pixels(image, mode: str = "deblock", path: str | os.PathLike | None = None, *,
                            pixel_settings: dict | None = None, tables_from_pixels: bool = True, **settings):
    """The :class:`~napari_dip_l0.core.run.DipL0Run` of ``image``: from the JPEG file ``path`` it was decoded
    from where ``mode`` has a file preset (:data:`~napari_dip_l0.core.presets.FILE_PRESETS`) and the file can be
    used, else (with ``tables_from_pixels``) within the quantisation its pixels show, else from the pixels
    alone; and why the file was not used ('' if it was, or there was none).

    ``settings`` are :class:`DipL0Run`'s keywords; ``pixel_settings`` override
    some of them for a run on the pixels alone (the napari widget shows the file
    preset's iteration cap, which a run on the pixels replaces by the mode's count).
    Every setting is checked here, before any work; see :func:`file_or_pixels`.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0.core.jpeg import run_from_file_or_pixels
    >>> image = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    >>> run, why_not = run_from_file_or_pixels(image, "deblock", None, iterations=3, device="cpu")
    >>> run.jpeg is None, why_not  # noise shows no JPEG's tables
    (True, '')
    """
    from .presets import FILE_PRESETS
    from .run import DipL0Run

    def build(jpeg=None):
        extra = {} if jpeg is not None else pixel_settings or {}
        return DipL0Run(image, mode, jpeg=jpeg, **{**settings, **extra})

    if mode not in FILE_PRESETS:
        return build(), ""
    pixels = image if tables_from_pixels else None
    return file_or_pixels(build, path, pixels, settings.get("channel_axis"))


def same_pixels(path: str | os.PathLike, pixels: np.ndarray) -> str:
    """Why ``pixels`` are not what the JPEG file ``path`` decodes to ('' when they are, to the last bit).

    Only then do the file's coefficients describe them: an edited, cropped or
    converted image must be deblocked from its pixels alone.
    """
    from .io import JPEG, read_image

    path = Path(path)
    if path.suffix.lower() not in JPEG:
        return f"{path.name} is not a JPEG file"
    if not path.is_file():
        return f"its JPEG file {path.name} is gone"
    try:
        decoded = read_image(path)
    except (ValueError, OSError, MemoryError):
        return f"its JPEG file {path.name} cannot be read"
    if decoded.shape != pixels.shape or not np.array_equal(decoded, pixels):
        return f"the layer's pixels differ from its JPEG file {path.name}"
    return ""
