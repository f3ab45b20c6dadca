"""The noise level an image shows, from which ``lam='auto'`` sets λ."""

from __future__ import annotations

import numpy as np

__all__ = ["noise_sigma"]


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
        The image as normalised planes (see :class:`.layout.PlaneReader`).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0.core.layout import PlaneReader
    >>> noisy = 0.5 + 0.05 * np.random.default_rng(0).standard_normal((256, 256))
    >>> reader = PlaneReader(noisy, None, data_range=(0, 1))
    >>> round(noise_sigma(reader), 2)
    0.05
    """
    from skimage.restoration import estimate_sigma

    n = len(reader)
    h, w, _ = reader.layout.plane_shape
    y0, x0 = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
    window = (slice(y0, y0 + max_side), slice(x0, x0 + max_side))
    picks = np.unique(np.linspace(0, n - 1, min(n, max_planes)).round().astype(int))
    # Hot pixels filled as a run fills them: the median of 48² pixels moves with a handful of them.
    sigmas = [estimate_sigma(reader.read_filled(int(p), window), channel_axis=-1, average_sigmas=True)
              for p in picks]
    return float(np.mean(sigmas))
