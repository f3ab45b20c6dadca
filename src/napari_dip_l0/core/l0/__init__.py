"""ℓ0 gradient smoothing solvers on normalised float planes.

Every solver minimises ``||S - I||^2 + lam * C(S)`` where ``C`` counts image
gradients that are non-zero; a pixel pair counts once if any channel differs.
Inputs here are already validated float planes of shape ``(H, W, C)`` with
values on the [0, 1] scale; the public, dtype-aware entry point is
:func:`napari_dip_l0.l0_smooth`.

- :mod:`.fft`: half-quadratic splitting with FFTs (Xu et al. 2011), approximate.
- :mod:`.region_fusion`: Region Fusion (Nguyen & Brown 2015), sequential: the reference.
- :mod:`.parallel`: Region Fusion, data-parallel (its torch and numba forms beside it).
- :mod:`.rules`: the schedule, merge cost and tie-break every Region Fusion form shares; the objective.
"""

from __future__ import annotations

from .fft import fft_l0
from .parallel import parallel_fusion
from .region_fusion import region_fusion
from .rules import gradient_count, l0_energy

__all__ = ["L0_SOLVERS", "region_fusion", "parallel_fusion", "fft_l0", "gradient_count", "l0_energy"]

#: Names of the ℓ0 solvers, as the API, CLI and widget accept them: Region Fusion
#: data-parallel (:mod:`.parallel`; the default) and sequential (the reference), and
#: the FFT solver.
L0_SOLVERS = ("parallel_fusion", "region_fusion", "fft")
