"""ℓ0 gradient smoothing by half-quadratic splitting and FFTs (Xu, Lu, Xu & Jia 2011)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .arrays import solve_array

__all__ = ["fft_l0"]


def _difference_spectrum(h: int, w: int, device, dtype) -> torch.Tensor:
    """Eigenvalues of D_x^T D_x + D_y^T D_y for periodic forward differences (rfft layout)."""
    fy = torch.arange(h, device=device, dtype=dtype) * (2 * math.pi / h)
    fx = torch.arange(w // 2 + 1, device=device, dtype=dtype) * (2 * math.pi / w)
    return (2 - 2 * torch.cos(fy))[:, None] + (2 - 2 * torch.cos(fx))[None, :]


def fft_l0(
    image: torch.Tensor | np.ndarray,
    lam: float,
    *,
    kappa: float = 2.0,
    beta_max: float = 1e5,
) -> torch.Tensor | np.ndarray:
    """ℓ0 gradient smoothing by half-quadratic splitting (Xu, Lu, Xu & Jia 2011).

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, C), or tensor of shape (..., C, H, W)
        Image on the [0, 1] scale. Tensors stay on their device and dtype.
    lam : float
        Weight of the ℓ0 term.
    kappa : float
        Growth factor of the splitting weight ``beta`` (from ``2 * min(lam, 1)``).
    beta_max : float
        The splitting stops when ``beta`` reaches this value.

    Returns
    -------
    ndarray or tensor
        Same type and shape as ``image`` (ndarray results are float64).
        Periodic boundaries, as in the original method.
    """
    if isinstance(image, np.ndarray):
        return solve_array(lambda t: fft_l0(t, lam, kappa=kappa, beta_max=beta_max), image)
    if lam <= 0:
        return image.clone()
    h, w = image.shape[-2:]
    spectrum = _difference_spectrum(h, w, image.device, image.dtype)
    f_image = torch.fft.rfft2(image)
    s = image
    # Xu et al. start at beta = 2 lam, whose first threshold lam / beta is 0.5
    # whatever lam is: a large lam then saturates (and from 5e4 on, with beta
    # past beta_max, returned its input). Starting no higher than 2 lets a
    # large lam zero every gradient at first, so results keep flattening.
    beta = 2.0 * min(lam, 1.0)
    while beta < beta_max:
        gx = torch.roll(s, -1, dims=-1) - s
        gy = torch.roll(s, -1, dims=-2) - s
        # Channels share one support: a pixel's gradient is zeroed in all of them.
        small = (gx * gx + gy * gy).sum(dim=-3, keepdim=True) < lam / beta
        gx = gx.masked_fill(small, 0.0)
        gy = gy.masked_fill(small, 0.0)
        div = torch.roll(gx, 1, dims=-1) - gx + torch.roll(gy, 1, dims=-2) - gy
        s = torch.fft.irfft2((f_image + beta * torch.fft.rfft2(div)) / (1 + beta * spectrum), s=(h, w))
        beta *= kappa
    return s
