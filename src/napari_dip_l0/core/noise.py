"""The noise an image shows: its level, from which ``lam='auto'`` sets λ, and how it grows with the signal."""

from __future__ import annotations

import numpy as np

__all__ = ["noise_model", "noise_sigma"]


def noise_sigma(reader, max_planes: int = 4, max_side: int = 1024) -> float:
    """Standard deviation of the noise of the planes ``reader`` gives, on their [0, 1] scale.

    scikit-image's wavelet estimate (``estimate_sigma``: the median absolute
    finest-scale diagonal detail, robust to edges), averaged over channels
    and over at most ``max_planes`` evenly spaced planes, each cut to its
    central ``max_side`` pixels a side. For photon-limited data it is the
    typical level, which the dark background, usually most of the pixels,
    dominates.

    Parameters
    ----------
    reader : PlaneReader
        The image as normalised planes (see :class:`.planes.PlaneReader`).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0.core.planes import PlaneReader
    >>> noisy = 0.5 + 0.05 * np.random.default_rng(0).standard_normal((256, 256))
    >>> reader = PlaneReader(noisy, None, data_range=(0, 1))
    >>> round(noise_sigma(reader), 2)
    0.05
    """
    from skimage.restoration import estimate_sigma

    sigmas = [estimate_sigma(plane, channel_axis=-1, average_sigmas=True)
              for plane in _sample(reader, max_planes, max_side)]
    return float(np.mean(sigmas))


def noise_model(reader, max_planes: int = 4, max_side: int = 1024) -> tuple[float, float]:
    """``(a, b)`` of the noise variance ``a x + b`` of the planes ``reader`` gives (:func:`.stabilise.fit_noise_model`).

    Sampled as :func:`noise_sigma` samples: at most ``max_planes`` evenly
    spaced planes, each cut to its central ``max_side`` pixels a side, hot
    pixels filled.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0.core.planes import PlaneReader
    >>> clean = np.tile(np.linspace(0.05, 1, 256), (256, 1))
    >>> counts = np.random.default_rng(0).poisson(clean * 50).astype(np.uint16)
    >>> a, b = noise_model(PlaneReader(counts, None, data_range=(0, 100)))
    >>> round(a, 3)                     # 1 / 100 on the [0, 1] scale of 0-100 photons
    0.01
    """
    from .stabilise import fit_noise_model

    return fit_noise_model(_sample(reader, max_planes, max_side))


def _sample(reader, max_planes: int, max_side: int) -> list[np.ndarray]:
    """The planes a noise estimate reads: evenly spaced, central windows, as fits see them.

    Constant planes (a blank frame of a stack, a closed shutter) show no noise and are left out unless
    every sampled plane is one: a single blank plane among four had switched a stack's noise model from shot
    noise to none and cut λ fourfold."""
    n = len(reader)
    h, w, _ = reader.layout.plane_shape
    y0, x0 = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
    window = (slice(y0, y0 + max_side), slice(x0, x0 + max_side))
    # Hot pixels filled as a run fills them: the median of 48² pixels moves with a handful of them.
    planes = [reader.read_filled(int(p), window)
              for p in np.unique(np.linspace(0, n - 1, min(n, max_planes)).round().astype(int))]
    return [p for p in planes if np.ptp(p) > 0] or planes
