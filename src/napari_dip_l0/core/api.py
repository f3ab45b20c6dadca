"""Public, dtype-aware functions: ℓ0 smoothing alone and DIP-ℓ0."""

from __future__ import annotations

import numpy as np

from .admm import iter_dip_l0
from .l0 import L0_SOLVERS, fft_l0, region_fusion
from .layout import check_image, check_lam, from_planes, to_planes

__all__ = ["l0_smooth", "dip_l0_smooth", "dip_l0_deblock"]


def l0_smooth(image, lam: float, *, method: str = "region_fusion", channel_axis: int | None = None) -> np.ndarray:
    """ℓ0 gradient smoothing alone: fast, no network.

    Parameters
    ----------
    image : array_like
        2-D image, optionally with a channel axis and leading axes processed
        plane by plane. Any real dtype.
    lam : float
        Weight of the ℓ0 term on the [0, 1] intensity scale (the data's range).
        Larger values give fewer, larger flat regions; 0 returns the input.
    method : {'region_fusion', 'fft'}
        Region Fusion (Nguyen & Brown 2015; exactly piecewise constant) or the
        FFT half-quadratic solver (Xu et al. 2011; periodic boundaries).
    channel_axis : int, optional
        Axis of channels, smoothed jointly.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``, values within its range.
    """
    arr, channel_axis = check_image(image, channel_axis)
    arr = np.asarray(arr)  # a dask array: ℓ0 smoothing alone is fast, and needs whole planes
    lam = check_lam(lam)
    if method not in L0_SOLVERS:
        raise ValueError(f"unknown method {method!r}; expected one of {L0_SOLVERS}")
    planes, layout = to_planes(arr, channel_axis)
    if layout.constant:
        return arr.copy()
    solve = region_fusion if method == "region_fusion" else fft_l0
    out = np.empty_like(planes)
    for p, plane in enumerate(planes):
        out[p] = solve(plane, lam)
    return from_planes(out, layout)


def _final(snapshots) -> np.ndarray:
    last = None
    for last in snapshots:
        pass
    return last.image


def dip_l0_smooth(
    image,
    lam: float | None = None,
    *,
    iterations: int | None = None,
    channel_axis: int | None = None,
    seed: int = 0,
    device: str = "auto",
    l0_solver: str = "region_fusion",
    warm_start: bool = True,
    tile_size: int | None = None,
) -> np.ndarray:
    """Edge-preserving smoothing by DIP-ℓ0 (deep image prior + ℓ0 gradient prior).

    Parameters
    ----------
    image : array_like
        2-D image, optionally with a channel axis and leading axes (Z, T, ...)
        processed plane by plane. Any real dtype.
    lam : float, optional
        Weight of the ℓ0 gradient term on the [0, 1] intensity scale; ``None``
        takes the 'smooth' preset's. Pick it quickly with :func:`l0_smooth`:
        it has the same meaning there.
    iterations : int, optional
        ADMM iterations per plane; ``None`` takes the preset's.
    channel_axis : int, optional
        Axis of channels (RGB or any number), smoothed jointly.
    seed : int
        Seed of network weights and input noise; same seed, same CPU, same
        input gives a bit-identical result.
    device : str
        'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda' or 'mps'.
    l0_solver : {'region_fusion', 'fft'}
        ℓ0 solver of the ADMM v-step.
    warm_start : bool
        Start each plane of a stack from the previous plane's network and
        solver state, with a third of the iterations (see :func:`iter_dip_l0`).
    tile_size : int, optional
        Planes with a side above this (default 1024) are processed in
        overlapping, seamlessly blended tiles, which bounds memory. A run that
        would not fit in the available memory raises ``MemoryError`` first.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``, values within its range.

    See Also
    --------
    iter_dip_l0 : the same run as a generator of snapshots.
    """
    return _final(
        iter_dip_l0(
            image, "smooth", lam=lam, iterations=iterations, channel_axis=channel_axis,
            seed=seed, device=device, l0_solver=l0_solver, warm_start=warm_start, tile_size=tile_size,
        )
    )


def dip_l0_deblock(
    image,
    lam: float | None = None,
    *,
    iterations: int | None = None,
    channel_axis: int | None = None,
    seed: int = 0,
    device: str = "auto",
    warm_start: bool = True,
    tile_size: int | None = None,
) -> np.ndarray:
    """JPEG artifact removal by DIP-ℓ0, with defaults for heavy compression (quality ~10).

    Parameters are those of :func:`dip_l0_smooth`; ``None`` takes the
    'deblock' preset's values. The v-step uses Region Fusion.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``, values within its range.
    """
    return _final(
        iter_dip_l0(
            image, "deblock", lam=lam, iterations=iterations, channel_axis=channel_axis,
            seed=seed, device=device, warm_start=warm_start, tile_size=tile_size,
        )
    )
