"""Hot and dead pixels: a robust intensity scale that ignores them, and filling them before a fit.
"""

from __future__ import annotations

import numpy as np

from .validation import as_bounds, check_image, is_lazy

__all__ = ["robust_range", "fill_defects"]


def robust_range(image, channel_axis: int | None = None, max_planes: int = 8) -> tuple[float, float]:
    """The image's range with isolated outliers (hot or dead pixels) left out.

    The minimum and maximum of the image after a 3×3 median filter over its
    two spatial axes, channel by channel, on at most ``max_planes`` evenly
    spaced planes: a few hot pixels do not set the scale, while lines two or
    more pixels wide and blobs of 3×3 or more do. Returns the image's own minimum and maximum
    where that would be an empty range.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.tile(np.arange(100, 140, dtype=np.uint16), (40, 1))
    >>> img[5, 5] = 4095                      # a hot pixel
    >>> robust_range(img)
    (100, 139)
    """
    from scipy.ndimage import median_filter

    arr, channel_axis = check_image(image, channel_axis)
    work = np.moveaxis(arr, channel_axis, -1) if channel_axis is not None else arr[..., None]
    lead = work.shape[:-3]
    n = int(np.prod(lead, dtype=np.int64))
    picks = np.unique(np.linspace(0, n - 1, min(n, max_planes)).round().astype(np.int64))
    lo = hi = None
    for p in picks:
        plane = work[tuple(int(i) for i in np.unravel_index(p, lead))] if lead else work
        plane = np.asarray(plane.compute() if is_lazy(plane) else plane)
        native = np.float32 if plane.dtype.kind == "f" and plane.dtype.itemsize < 4 else plane.dtype.newbyteorder("=")
        med = median_filter(plane.astype(native, copy=False), size=(3, 3, 1), mode="nearest")
        lo = med.min() if lo is None else min(lo, med.min())
        hi = med.max() if hi is None else max(hi, med.max())
    if not hi > lo:
        lo, hi = (arr.min(), arr.max()) if not is_lazy(arr) else (arr.min().compute(), arr.max().compute())
    return as_bounds(np.dtype(arr.dtype), lo, hi)


def fill_defects(plane: np.ndarray, margin: float = 1.0) -> np.ndarray:
    """``plane`` with isolated defects (hot or dead pixels) replaced by their 3×3 median.

    A hot pixel lies more than ``margin`` above 1 (the top of the robust
    scale of :func:`robust_range`) and more than ``margin`` above the third
    brightest pixel of its 3×3 neighbourhood (itself included); a dead pixel
    likewise below 0 and the third darkest. So up to two touching defects are
    found, while any object of three or more pixels is structure and is kept.
    One hot pixel then neither drives a fit's squared misfit (it would be
    thousands of times any other pixel's) nor survives in the result.
    Returns ``plane`` itself when it has none, else a new array.

    Parameters
    ----------
    plane : ndarray
        Float ``(H, W, C)`` plane on the robust [0, 1] scale.

    Examples
    --------
    >>> import numpy as np
    >>> plane = np.full((5, 5, 1), 0.5, np.float32)
    >>> plane[2, 2] = 30.0                    # a hot pixel
    >>> float(fill_defects(plane)[2, 2, 0])
    0.5
    """
    hot, dead = plane > 1 + margin, plane < -margin
    if not (hot.any() or dead.any()):
        return plane
    from scipy.ndimage import median_filter, rank_filter

    size = (3, 3, 1)
    if hot.any():
        hot &= plane - rank_filter(plane, -3, size=size, mode="nearest") > margin
    if dead.any():
        dead &= rank_filter(plane, 2, size=size, mode="nearest") - plane > margin
    bad = hot | dead
    if not bad.any():
        return plane
    out = plane.copy()
    out[bad] = median_filter(plane, size=size, mode="nearest")[bad]
    return out
