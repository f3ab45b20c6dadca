"""Offline sample images for File > Open Sample > napari-dip-l0."""

from __future__ import annotations

import numpy as np
from skimage import data as skdata
from skimage.util import img_as_ubyte

from .data import cartoon_example, jpeg_compress, structure_image


def textured_cartoon():
    """A piecewise-smooth picture blended with a real gravel texture (to smooth)."""
    noisy, _ = cartoon_example("astronaut", "gravel", 256)
    return [(img_as_ubyte(noisy), {"name": "textured cartoon", "rgb": True})]


def jpeg_q10():
    """A structure image saved as JPEG at quality 10 (to deblock)."""
    clean = structure_image("coffee", 256)
    return [(img_as_ubyte(jpeg_compress(clean, 10)), {"name": "JPEG q10", "rgb": True})]


def microscopy():
    """Phase-contrast microscopy of a cell (scikit-image's bundled ``cell``, uint8).

    A centred 256×256 crop keeps runs short. (scikit-image's fluorescence
    samples are downloaded on first use, so they are not used here.)
    """
    img = np.asarray(skdata.cell())
    h, w = img.shape[:2]
    y0, x0 = max((h - 256) // 2, 0), max((w - 256) // 2, 0)
    return [(img[y0 : y0 + 256, x0 : x0 + 256], {"name": "microscopy", "colormap": "gray"})]
