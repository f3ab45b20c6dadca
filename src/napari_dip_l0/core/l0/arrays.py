"""The one adapter between the solvers' two image forms: (H, W[, C]) arrays and (C, H, W) tensors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def solve_array(solve: Callable[[torch.Tensor], torch.Tensor], image: np.ndarray) -> np.ndarray:
    """``solve`` (a solver on (C, H, W) tensors) applied to an (H, W) or (H, W, C) array, as float64.

    Raises ``ValueError`` for arrays of other dimensions.
    """
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an array of shape (H, W) or (H, W, C), got {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr[None]))
    out = solve(t).numpy()
    return np.moveaxis(out, 0, -1) if arr.ndim == 3 else out[0]
