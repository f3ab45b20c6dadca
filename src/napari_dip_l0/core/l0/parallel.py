"""Data-parallel Region Fusion: an exact-ℓ0 solver for CUDA, MPS and the CPU.

The algorithm, once; its two forms sit beside this module and follow it step
by step, with the threshold schedule, merge cost and tie-break hash taken from
:mod:`.rules` (one source for both):

1. Schedule. Same objective and thresholds ``beta_k`` as the sequential
   :func:`~napari_dip_l0.core.l0.region_fusion` (Nguyen & Brown 2015).
2. Pick. At each threshold every group picks its best mergeable neighbour at
   once: least cost ratio (merge cost / shared edges), ties by the hash of the
   pair's representative pixels, then by the neighbour's id.
3. Stars. A group hooks onto its pick when the pick stays put this round (has no
   pick, or is the lower id of a mutual pair; Borůvka-style); chains wait.
4. Grow. A star's leaves join in order of their ratio, each tested against the
   grown group's mean, as the sequential greedy pass does; the first that fails
   ends the star.
5. Relabel. Surviving groups keep their order; edges between untouched groups
   keep their ratio, the others are renumbered, coalesced (shared edges summed)
   and re-scored. Groups and adjacency are compact lists, so late thresholds
   are cheap.
6. Strips. Images of 256 rows or more spend the first quarter of the thresholds,
   where most pixels merge and most of the time goes, as independent 128-row
   strips (pairs across strip borders wait), which the CPU form solves on all
   cores at once.

:mod:`.parallel_torch` writes the rounds as whole-array tensor operations (any
device); :mod:`.parallel_numba` as loops for the CPU, where ~40 small tensor
operations per round cost more to launch than their work. Both pick with the
same keys, so their results agree.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import parallel_numba, parallel_torch
from .arrays import solve_array
from .rules import strip_plan


__all__ = ["parallel_fusion", "set_numba_threads"]


def set_numba_threads(n: int) -> None:
    """numba's thread count for its parallel loops, leaving torch's as it was.

    The first start of numba's OpenMP threading layer in a process resets the
    process's OpenMP thread count, which is torch's, to the default: a run
    whose torch used one thread went on with two, and its later network
    steps (and every run after it in the process) summed in another order,
    so the same seed gave other results. Starting numba's layer here, then
    setting torch's count back, keeps them apart.
    """
    import numba

    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# Past 80 lines by its docstring alone, which describes the algorithm once for both forms (numba and
# torch); the code is about 40 lines.
def parallel_fusion(
    image: torch.Tensor | np.ndarray,
    lam: float,
    *,
    max_loop: int = 50,
    gamma: float = 2.2,
    max_rounds: int = 1,
    backend: str = "auto",
) -> torch.Tensor | np.ndarray:
    """ℓ0 gradient smoothing by data-parallel Region Fusion.

    Minimises ``||S - I||² + lam · #{4-neighbour pairs where S differs}`` by
    merging piecewise-constant groups under the growing threshold
    ``beta_k = (k / max_loop) ** gamma * lam`` of Region Fusion (Nguyen & Brown,
    ICCV 2015): groups i, j may merge when
    ``w_i w_j ||Y_i - Y_j||² <= beta_k c_ij (w_i + w_j)`` (``w`` pixel counts,
    ``Y`` means, ``c_ij`` shared pixel edges). At each threshold every group
    picks its best mergeable neighbour (least cost ratio) at once; the picks
    resolve as stars (a group joins its pick when the pick itself stays put, as
    in Borůvka's algorithm), and a star's leaves join in ratio order while each
    join still passes the test against the grown group's mean, which is what
    the sequential solver's greedy pass does. The merge order differs from the
    sequential :func:`~napari_dip_l0.core.l0.region_fusion`, so pixels differ;
    its ℓ0 energy (:func:`~napari_dip_l0.core.l0.l0_energy`) is within about
    2% of the sequential solver's at the DIP-ℓ0 v-step's weights (0.01–0.06 on
    [0, 1] images; either side of it, by chance of the greedy order), and
    within about 5% at larger weights (0.2). On two CPU cores it runs about 10×
    faster than the sequential solver at 512² RGB and faster than the FFT
    solver from 256² up; on a GPU it is bound by kernel launches (~0.2 s per
    call at 512² to 2048² on an H200).

    Parameters
    ----------
    image : tensor of shape (..., C, H, W), or ndarray of shape (H, W) or (H, W, C)
        Image on the [0, 1] scale. Leading tensor dimensions are independent
        images, solved together as one graph with no edges between them.
    lam : float
        Weight of the ℓ0 term: cost of one 4-neighbour pair that differs.
        ``lam <= 0`` returns a copy of the input.
    max_loop : int
        Number of threshold steps ``K``.
    gamma : float
        Exponent of the threshold schedule (paper: 2.2).
    max_rounds : int
        Most merge rounds per threshold step; a step also ends when a round
        merges nothing. One round per step matches the sequential solver's
        one pass per step; more rounds lowered the energy at large weights
        but not at the v-step's.
    backend : {"auto", "torch", "numba"}
        ``"torch"``: whole-array tensor operations on the input's device.
        ``"numba"``: a compiled loop version of the same algorithm (CPU only;
        CPU tensors are copied through NumPy); the row strips of an image, or
        the images of a batch, run side by side on all cores (numba's thread
        count). ``"auto"``: numba for CPU
        inputs, where launching ~40 small tensor operations per round costs
        more than the work, torch on every other device. Both make the same
        merge decisions from the same keys and agree except in rare exact ties
        of rounding.

    Returns
    -------
    tensor or ndarray
        Piecewise-constant result, each group the mean of its input pixels.
        Tensors keep device, dtype and shape and do not require grad; arrays
        come back as float64 of the input's shape, like
        :func:`~napari_dip_l0.core.l0.region_fusion`.

    Notes
    -----
    Group statistics are accumulated in float64 (float32 on MPS, which has no
    float64). On the CPU, both backends are deterministic: the same input
    gives a bit-identical result, independent of the number of threads (the
    strips depend only on the image height). The
    merge decisions use only order-independent reductions (min/max) and keys
    that do not depend on where an edge is stored. On CUDA, ``index_add_``
    uses atomics, so the last bits of group sums can vary between runs, and
    with them, in rare near-tie cases, a merge.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = np.zeros((32, 32))
    >>> img[8:24, 8:24] = 0.8
    >>> out = parallel_fusion(img + rng.normal(0, 0.02, img.shape), 0.05)
    >>> len(np.unique(out))
    2
    >>> import torch
    >>> t = torch.rand(1, 3, 64, 64)
    >>> parallel_fusion(t, 0.06).shape
    torch.Size([1, 3, 64, 64])
    >>> bool((parallel_fusion(t, 0.06, backend="torch") == parallel_fusion(t, 0.06)).all())
    True
    """
    if backend not in ("auto", "torch", "numba"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'numba', got {backend!r}")
    if isinstance(image, np.ndarray):
        return solve_array(lambda t: parallel_fusion(t, lam, max_loop=max_loop, gamma=gamma, max_rounds=max_rounds,
                                                     backend=backend), image)
    if image.ndim < 3:
        raise ValueError(f"expected a tensor of shape (..., C, H, W), got {tuple(image.shape)}")
    if max_loop < 0 or max_rounds < 1:
        raise ValueError("max_loop must be >= 0 and max_rounds >= 1")
    on_cpu = image.device.type == "cpu"
    if backend == "numba" and not on_cpu:
        raise ValueError(f"backend 'numba' runs on the CPU; the image is on {image.device}")
    if lam <= 0 or image.numel() == 0:
        return image.detach().clone()
    *lead, c, h, w = image.shape
    b = math.prod(lead)
    work = torch.float32 if image.device.type == "mps" else torch.float64
    with torch.no_grad():
        # (b, C, H, W) -> (b·H·W, C): one row per pixel, channels contiguous for gathers.
        pix = image.detach().reshape(b, c, h * w).transpose(1, 2).reshape(b * h * w, c).to(work)
        if backend == "numba" or (backend == "auto" and on_cpu):
            args = (h, w, float(lam), int(max_loop), float(gamma), int(max_rounds), *strip_plan(h, int(max_loop)))
            arr = np.ascontiguousarray(pix.numpy())
            # A small single image on this thread (no thread start-up); else strips and
            # images over the cores.
            if b == 1 and args[-2] == 1:
                res = parallel_numba.fuse(arr, *args)
            else:
                set_numba_threads(torch.get_num_threads())  # as many as torch, as the ADMM v-step runs it
                res = parallel_numba.fuse_parallel(arr.reshape(b, h * w, c), *args)
            out = torch.from_numpy(res.reshape(b * h * w, c))
        else:
            labels, S, wgt = parallel_torch.fuse(pix, b, h, w, float(lam), int(max_loop), float(gamma),
                                                 int(max_rounds), *strip_plan(h, int(max_loop)))
            out = (S / wgt[:, None]).index_select(0, labels)
        return out.reshape(b, h * w, c).transpose(1, 2).reshape(image.shape).to(image.dtype)
