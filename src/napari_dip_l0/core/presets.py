"""Named defaults for DIP-ℓ0, one per task.

The numbers come from the sweep in ``benchmarks/tune_presets.py`` (see its
docstring and the README): synthetic piecewise-smooth structure images made
from scikit-image photos, blended with real textures (smoothing) or JPEG
compressed at quality 10 (deblocking), 2 CPU threads. They are a trade-off
between quality and a wait a napari user accepts on a laptop CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Preset", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """Settings of one DIP-ℓ0 run (paper's names where it has them).

    lam : weight of the ℓ0 gradient term, on the [0, 1] intensity scale.
    iterations : ADMM iterations (one Adam step each).
    beta : ADMM penalty; the v-step smooths with ``2 * lam / beta``.
    lr : Adam learning rate of the network.
    width, depth, skip : channels per level, number of scales, skip channels.
    input_depth : channels of the fixed noise input.
    noise_std : std of the fresh perturbation added to the input each step.
    v_every : run the (costly) v-step and dual update every this many steps.
    v_start : fraction of the iterations fitted as plain DIP before coupling.
    ema : decay of the exponential moving average that forms the output.
    rf_loops : passes ``K`` of Region Fusion inside the v-step.
    residual : the network fits a correction to the warm start ``w0`` (the
        FFT ℓ0 solution of the input), ``g = w0 + net(x)``, instead of the
        image itself. Measured: at 300 iterations on 128² RGB, +2.1 dB over the
        same run without it, and the output starts good rather than blurry.
    """

    lam: float
    iterations: int
    beta: float = 1.0
    lr: float = 0.01
    width: int = 32
    depth: int = 4
    skip: int = 4
    input_depth: int = 32
    noise_std: float = 1.0 / 30.0
    v_every: int = 2
    v_start: float = 0.0
    ema: float = 0.99
    rf_loops: int = 50
    residual: bool = False


PRESETS: dict[str, Preset] = {
    # λ 0.03 and 0.05 scored alike (within 0.3 dB); 0.03 also gives the better
    # iteration-0 preview. PSNR peaks between 100 and 300 iterations.
    "smooth": Preset(lam=0.03, iterations=200, residual=True),
    "deblock": Preset(lam=0.01, iterations=600, input_depth=3),
}


def get_preset(mode: str, **overrides) -> Preset:
    """The preset for ``mode`` ('smooth' or 'deblock'), with fields overridden."""
    if mode not in PRESETS:
        raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(PRESETS)}")
    return replace(PRESETS[mode], **overrides)
