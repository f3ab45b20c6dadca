"""Offline sample images for File > Open Sample > napari-dip-l0, one per mode.

Each layer carries ``metadata["dip_l0_mode"]``, the mode it is for (the
widget switches to it). The histology sample is a JPEG file in the package,
opened as napari opens a file, so deblocking starts from the file's
quantisation tables; its path is also in ``metadata["dip_l0_jpeg_file"]``.
Licences and sources: ``samples/README.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.util import img_as_ubyte

from ._widget.job import JPEG_FILE_KEY, MODE_KEY
from .data import camera_frame, cartoon_example

SAMPLES = Path(__file__).parent / "samples"
NUCLEI = SAMPLES / "nuclei_bbbc038.png"
HISTOLOGY_JPEG = SAMPLES / "ihc_q15.jpg"
PHOTONS = 20  # at the brightest nucleus: a dim, fast exposure, where denoising matters


def textured_cartoon():
    """A piecewise-smooth picture blended with a real gravel texture (edge-preserving smoothing)."""
    noisy, _ = cartoon_example("astronaut", "gravel", 256)
    return [(img_as_ubyte(noisy), {"name": "textured cartoon", "rgb": True, "metadata": {MODE_KEY: "smooth"}})]


def nuclei_camera():
    """Fluorescent nuclei (BBBC038, CC0) as a camera records them at 20 photons, and the noise-free frame.

    Poisson photons, 1.5 e- read noise, 2 ADU per electron, 100 ADU offset,
    uint16, a few hot pixels (:func:`napari_dip_l0.data.camera_frame`, seed 0,
    so every opening shows the same frame). The noise-free frame, on the
    same ADU scale, comes first, hidden, to compare a result with.
    """
    from .core.io import read_image

    clean = read_image(NUCLEI).astype(np.float64)
    lo, hi = np.percentile(clean, [0.1, 99.9])
    clean = np.clip((clean - lo) / (hi - lo), 0, 1)
    frame, truth, _ = camera_frame(clean, PHOTONS, seed=0)
    limits = [float(truth.min()), float(truth.max())]  # hot pixels (4095 ADU) would set the contrast otherwise
    look = {"colormap": "gray", "contrast_limits": limits}
    # The frame comes last, so that napari selects it and the widget takes it as the image to denoise.
    return [
        (truth.astype(np.float32), {"name": "nuclei, noise-free", **look, "visible": False,
                                    "metadata": {MODE_KEY: "denoise", "dip_l0_reference": True}}),
        (frame, {"name": "nuclei, camera frame (20 photons)", **look, "metadata": {MODE_KEY: "denoise"}}),
    ]


def histology_jpeg():
    """Immunohistochemistry saved at JPEG quality 15, opened from its file (JPEG deblocking)."""
    from .core.io import read_image

    return [(read_image(HISTOLOGY_JPEG), {"name": "histology, JPEG quality 15", "rgb": True,
                                          "metadata": {MODE_KEY: "deblock", JPEG_FILE_KEY: str(HISTOLOGY_JPEG)}})]
