"""Offline test images built from pictures bundled with scikit-image.

Like the NKS smoothing set, a smoothing example is a smooth "structure" image
(the ground truth) blended with a real texture. Structure images here are
piecewise planar: SLIC superpixels of a photo, each filled with the
least-squares plane of its pixels, so regions carry shading as real images do.
"""

from __future__ import annotations

import io

import numpy as np
from skimage import data as skdata
from skimage import transform
from skimage.color import rgb2gray
from skimage.segmentation import slic
from skimage.util import img_as_float

__all__ = ["structure_image", "textured_image", "jpeg_compress", "cartoon_example", "camera_frame"]


def _load(name: str, size: int, rgb: bool) -> np.ndarray:
    img = img_as_float(getattr(skdata, name)())
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if img.ndim == 2 and rgb:
        img = np.repeat(img[..., None], 3, axis=-1)
    elif img.ndim == 3 and not rgb:
        img = rgb2gray(img)
    side = min(img.shape[:2])
    y0, x0 = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
    img = img[y0 : y0 + side, x0 : x0 + side]
    return transform.resize(img, (size, size) + img.shape[2:], anti_aliasing=True)


def structure_image(photo: str = "astronaut", size: int = 256, *, segments: int = 150, rgb: bool = True) -> np.ndarray:
    """Piecewise-planar image on [0, 1]: superpixels of ``photo`` filled with plane fits."""
    img = _load(photo, size, rgb)
    labels = slic(img, n_segments=segments, compactness=10 if rgb else 0.1, start_label=0,
                  channel_axis=-1 if rgb else None)
    chans = img.reshape(size * size, -1)
    yy, xx = np.mgrid[0:size, 0:size].reshape(2, -1) / size
    design = np.stack([np.ones_like(yy), yy, xx], axis=1)
    out = np.empty_like(chans)
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels.ravel() == lab)
        coef, *_ = np.linalg.lstsq(design[idx], chans[idx], rcond=None)
        out[idx] = design[idx] @ coef
    return np.clip(out.reshape(img.shape), 0, 1)


def textured_image(structure: np.ndarray, texture: str = "gravel", *, strength: float = 0.25,
                   noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """``structure`` plus a zero-mean real texture and mild Gaussian noise, clipped to [0, 1]."""
    size = structure.shape[0]
    tex = _load(texture, size, rgb=False)
    tex = (tex - tex.mean()) / (tex.std() + 1e-12)
    if structure.ndim == 3:
        tex = tex[..., None]
    rng = np.random.default_rng(seed)
    out = structure + strength * 0.25 * tex + rng.normal(0, noise, structure.shape)
    return np.clip(out, 0, 1)


def jpeg_compress(image: np.ndarray, quality: int = 10) -> np.ndarray:
    """Round trip through an in-memory JPEG of ``quality``; float [0, 1] in and out."""
    import imageio.v3 as iio

    u8 = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    iio.imwrite(buf, u8, extension=".jpg", quality=quality)
    return iio.imread(buf.getvalue(), extension=".jpg").astype(np.float64) / 255.0


def cartoon_example(photo: str = "astronaut", texture: str = "gravel", size: int = 256, *,
                    rgb: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(textured input, structure ground truth), both float64 on [0, 1]."""
    gt = structure_image(photo, size, rgb=rgb)
    return textured_image(gt, texture, seed=seed), gt


def camera_frame(clean: np.ndarray, peak: float = 20.0, *, gain: float = 2.0, offset: float = 100.0,
                 read_noise: float = 1.5, hot_fraction: float = 2e-4, hot_adu: int = 4095,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frame as a scientific camera writes it, from a noise-free image on [0, 1].

    Photons: Poisson counts of ``peak * clean``; read noise: Gaussian, in
    electrons; then ``gain`` ADU per electron plus ``offset`` ADU, rounded
    and clipped to uint16; a fraction ``hot_fraction`` of the pixels (at
    least one when it is above 0) are hot, stuck at ``hot_adu``.

    Returns
    -------
    frame : ndarray of uint16
        The noisy frame.
    truth : ndarray of float64
        The noise-free frame on the same scale, ``offset + gain * peak * clean``.
    hot : ndarray of bool
        Where the hot pixels are.

    Examples
    --------
    >>> clean = np.full((64, 64), 0.5)
    >>> frame, truth, hot = camera_frame(clean, peak=20, seed=0)
    >>> frame.dtype, float(truth[0, 0]), int(hot.sum())
    (dtype('uint16'), 120.0, 1)
    >>> bool(abs(np.median(frame) - 120) <= 2)
    True
    """
    clean = np.asarray(clean, dtype=np.float64)
    rng = np.random.default_rng(seed)
    electrons = rng.poisson(peak * clean) + rng.normal(0, read_noise, clean.shape)
    adu = np.clip(np.rint(gain * electrons + offset), 0, 65535)
    hot = np.zeros(clean.shape, bool)
    if hot_fraction > 0:
        hot.flat[rng.choice(clean.size, max(1, int(hot_fraction * clean.size)), replace=False)] = True
        adu[hot] = hot_adu
    return adu.astype(np.uint16), offset + gain * peak * clean, hot
