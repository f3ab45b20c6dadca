"""Variance stabilisation of camera noise: a Poisson–Gaussian noise fit and the generalised Anscombe transform.

A camera's noise grows with the signal (photon shot noise plus read noise):
on the [0, 1] scale its variance is ``a x + b``. A single λ set from one
noise level then merges too little inside bright objects, where the noise is
larger than that level, and too much in the dark background. The generalised
Anscombe transform makes the variance the same everywhere, so one λ fits the
whole image (Mäkitalo & Foi, "Optimal inversion of the generalized Anscombe
transformation for Poisson-Gaussian noise", IEEE TIP 2013); the result is
mapped back with their closed-form approximation of the exact unbiased
inverse, which matters at a few photons a pixel.

scikit-image has no Poisson–Gaussian noise fit; :func:`fit_noise_model` is a
small one in the spirit of Foi et al. (2008): trimmed variances of the finest
diagonal Haar details, binned by the local mean, and a weighted straight-line fit.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import median_filter
from scipy.stats import chi2

__all__ = ["Stabiliser", "fit_noise_model"]


def fit_noise_model(planes: list[np.ndarray], bins: int = 16) -> tuple[float, float]:
    """``(a, b)`` of the noise variance ``a x + b`` that float planes ``(H, W, C)`` show.

    Every 2×2 block gives a diagonal detail ``(x00 - x01 - x10 + x11) / 2``,
    whose variance is the pixels' noise variance where the image is smooth,
    and a local mean: the median of the means of the 5×5 blocks around it
    (binned by each block's own, noisy mean, the groups' means would spread
    further than their true means and the slope would come out too flat;
    a median does not carry a bright neighbour's mean across an edge).
    Blocks are put into ``bins`` groups of equal size by that mean; each
    group's variance is the mean square of its details with the largest 2 %
    left out (edges), scaled for that cut as for Gaussian noise; and the
    line is fitted by least squares weighted by the precision of each group's
    variance under the line (two reweighting passes). ``a`` and ``b`` are at
    least 0; ``a`` is 0 where the noise does not grow with the signal (a
    slope under 3 standard errors) or the planes are too small to tell
    (under 32 blocks).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0.05, 1, 256), (256, 1))[..., None]
    >>> noisy = rng.poisson(clean * 50) / 50 + rng.normal(0, 0.01, clean.shape)
    >>> a, b = fit_noise_model([noisy])
    >>> round(a, 3), round(b, 4)     # truth: 1 / 50 = 0.02 and 0.01² = 0.0001
    (0.02, 0.0001)
    """
    means, details = [], []
    for plane in planes:
        h, w = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
        x = np.asarray(plane[:h, :w], np.float64)
        x00, x01, x10, x11 = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
        means.append(median_filter((x00 + x01 + x10 + x11) / 4, size=(5, 5, 1), mode="nearest").ravel())
        details.append(((x00 - x01 - x10 + x11) / 2).ravel())
    m, d2 = np.concatenate(means), np.concatenate(details) ** 2
    bins = min(bins, m.size // 16)  # at least 16 blocks a group
    if bins < 2:  # too small to tell how the noise grows
        return 0.0, float(d2.mean()) if d2.size else 0.0
    centres, variances, counts = [], [], []
    for group in np.array_split(np.argsort(m, kind="stable"), bins):
        sq = np.sort(d2[group])[: max(1, int(_KEEP * group.size))]
        centres.append(m[group].mean())
        variances.append(sq.mean() / _KEPT_MEAN_SQUARE)
        counts.append(group.size)
    centres, variances, counts = map(np.asarray, (centres, variances, counts))
    X = np.stack([centres, np.ones(bins)], 1)
    fitted = np.full(bins, variances.mean())
    for _ in range(3):
        # A variance from n values has a standard deviation of about var * sqrt(2 / n).
        weight = np.sqrt(counts / 2) / np.maximum(fitted, 1e-12)
        a, b = np.linalg.lstsq(X * weight[:, None], variances * weight, rcond=None)[0]
        if a <= 0:  # no signal dependence: a constant variance
            return 0.0, float(np.average(variances, weights=counts))
        fitted = np.maximum(a * centres + b, 1e-3 * variances.max())
    # The slope's standard error under those weights: a slope within 3 of them of 0 is chance (a pure-noise
    # image, whose groups span a sliver of intensities, gives such slopes).
    Xw = X * weight[:, None]
    se = math.sqrt(np.linalg.inv(Xw.T @ Xw)[0, 0])
    if a < 3 * se:
        return 0.0, float(np.average(variances, weights=counts))
    return float(a), float(max(b, 0.0))


# The fraction of each group's squared details kept, and E[Z² | Z² below that quantile] for standard Gaussian Z
# (the mean square of what is kept, per unit variance: P(χ²₃ < q) / P(χ²₁ < q) at q the χ²₁ quantile).
_KEEP = 0.98
_KEPT_MEAN_SQUARE = float(chi2.cdf(chi2.ppf(_KEEP, 1), 3) / _KEEP)


class Stabiliser:
    """The generalised Anscombe transform of noise with variance ``a x + b``, rescaled to about [0, 1].

    ``forward`` maps ``x`` to ``2 sqrt(x / a + b / a² + 3/8)`` (unit noise
    variance), then maps that transform of 0 and 1 to 0 and 1, so the noise
    has the same standard deviation, :attr:`sigma`, at every intensity.
    ``inverse`` applies Mäkitalo & Foi's closed-form unbiased inverse, so a
    good estimate of the transformed image's mean maps back to the mean
    intensity, not to the (lower) intensity whose transform it is.

    Examples
    --------
    >>> import numpy as np
    >>> s = Stabiliser(0.02, 0.0001)
    >>> x = np.linspace(0, 1, 5, dtype=np.float32)
    >>> z = s.forward(x)
    >>> float(z[0]), float(z[-1])
    (0.0, 1.0)
    >>> round(s.sigma, 4)            # 1 / (2 sqrt(50.625) - 2 sqrt(0.625))
    0.0791
    """

    def __init__(self, a: float, b: float):
        if not (math.isfinite(a) and a > 0) or not (math.isfinite(b) and b >= 0):
            raise ValueError(f"a noise model needs a > 0 and b >= 0, got a={a}, b={b}")
        self.a, self.b = float(a), float(b)
        self._shift = self.b / self.a**2 + 3 / 8
        self._z0, self._z1 = (2 * math.sqrt(v / self.a + self._shift) for v in (0.0, 1.0))

    @property
    def sigma(self) -> float:
        """The noise standard deviation on the transformed scale."""
        return 1.0 / (self._z1 - self._z0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Transform float data on the [0, 1] scale; the dtype is kept."""
        z = 2 * np.sqrt(np.maximum(np.asarray(x, np.float64) / self.a + self._shift, 0.0))
        return ((z - self._z0) * self.sigma).astype(np.asarray(x).dtype, copy=False)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """The unbiased inverse of :meth:`forward`; the dtype is kept."""
        t = np.asarray(z, np.float64) / self.sigma + self._z0
        # Below 0.8 the expansion turns back; the counts there are 0 anyway.
        t = np.maximum(t, 0.8)
        r = math.sqrt(1.5)
        counts = t**2 / 4 + r / (4 * t) - 11 / (8 * t**2) + 5 * r / (8 * t**3) - 1 / 8
        x = self.a * (np.maximum(counts, 0.0) - self.b / self.a**2)
        return x.astype(np.asarray(z).dtype, copy=False)
