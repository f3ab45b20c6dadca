"""Region Fusion's rules, written once for every form of the solver.

Region Fusion (Nguyen & Brown, ICCV 2015) minimises
``||S - I||² + lam · #{4-neighbour pairs where S differs}`` by merging
piecewise-constant groups under a growing threshold. Groups ``i`` and ``j``
(pixel counts ``w``, means ``Y``, ``c`` shared pixel edges) may merge at
threshold ``beta`` when their merge cost ``w_i w_j / (w_i + w_j) ·
||Y_i - Y_j||²`` is at most ``beta · c``.

The functions here are plain arithmetic, so the same source serves torch
tensors (the torch form of :mod:`.parallel`), Python floats, and numba (the
``nb_`` twins, compiled from the same functions): the forms cannot drift
apart on the schedule, the cost or the tie-break.
"""

from __future__ import annotations

import numba
import numpy as np

#: Strip height of the parallel solver's first phase: a function of the image only, never of the threads.
STRIP_ROWS = 128

HASH_MASK = (1 << 62) - 1
_M1, _M2, _M3 = -7046029254386353131, 7640891576956012809, -4658895280553007687


def threshold(lam, k, max_loop, gamma):
    """The threshold ``beta_k = (k / K) ** gamma · lam`` of step ``k`` of ``K = max_loop``."""
    return lam * (k / max_loop) ** gamma if max_loop > 0 else lam


def merge_cost(d2, wa, wb):
    """Data cost of merging two groups: ``w_a w_b / (w_a + w_b) · ||Y_a - Y_b||²`` (``d2``: the squared
    distance of their means)."""
    return d2 * (wa * wb / (wa + wb))


def edge_hash(a, b):
    """A fixed pseudo-random non-negative int64 per (a, b) pair of int64 ids (splitmix-style mixing).

    Why: ties between equal merge costs are common (flat regions); breaking them by
    id makes long pointer chains (one merge per round), a hash makes short trees.
    Multiplications wrap modulo 2**64 in torch and numba alike.
    """
    x = a * _M1 + b * _M2
    x = x ^ (x >> 31)
    x = x * _M3
    x = x ^ (x >> 29)
    return x & HASH_MASK


def strip_plan(h: int, max_loop: int) -> tuple[int, int]:
    """(number of row strips, first global threshold step) for an image of height h.

    Why: the first thresholds merge most pixels and cost most; solved on independent
    row strips they run on all cores. Pairs across strip borders wait until step
    ``k0`` (a quarter of the schedule, where merges are still small), which leaves
    the ℓ0 energy unchanged to within noise.
    """
    n_strips = h // STRIP_ROWS
    k0 = max_loop // 4
    if n_strips < 2 or k0 < 1:
        return 1, 0
    return n_strips, k0


nb_threshold = numba.njit(cache=True, nogil=True, inline="always")(threshold)
nb_merge_cost = numba.njit(cache=True, nogil=True, inline="always")(merge_cost)
nb_edge_hash = numba.njit(cache=True, nogil=True, inline="always")(edge_hash)


def gradient_count(image: np.ndarray) -> int:
    """Number of 4-neighbour pixel pairs of an (H, W[, C]) image that differ in any channel."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    dx = np.any(img[:, 1:] != img[:, :-1], axis=-1)
    dy = np.any(img[1:] != img[:-1], axis=-1)
    return int(dx.sum() + dy.sum())


def l0_energy(observed: np.ndarray, smoothed: np.ndarray, lam: float) -> float:
    """Region Fusion objective ``||S - I||^2 + lam * gradient_count(S)``."""
    diff = np.asarray(smoothed, np.float64) - np.asarray(observed, np.float64)
    return float(np.sum(diff * diff) + lam * gradient_count(smoothed))
