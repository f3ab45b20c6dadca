"""Named defaults for DIP-ℓ0, one per task.

Chosen by measurement (2 CPU threads, 128² RGB, PSNR against the ground
truth; the sweep code is ``benchmarks/tune_presets.py``). Images: structure
images from scikit-image photos (chelsea, rocket), each with a real texture
blended in (smoothing) or saved as JPEG quality 10 (deblocking). They are not
the images of the tests, the demo or the README.

smoothing, PSNR at 100 / 200 / 300 iterations (chelsea+brick, rocket+gravel):
  input 23.98, 24.04; best FFT ℓ0 alone 26.51, 29.85; best Region Fusion 24.46, 28.56
  λ 0.01: 24.71 24.77 24.80 | 27.23 27.23 27.19
  λ 0.02: 26.23 26.36 26.27 | 30.84 30.84 30.61
  λ 0.03: 27.73 27.67 26.89 | 31.74 32.11 32.07
  λ 0.05: 27.27 27.97 27.81 | 30.79 31.87 32.04
deblocking, JPEG q10 of chelsea, rocket structure images:
  input 27.29, 28.65; best FFT ℓ0 alone 27.63, 29.04; best Region Fusion 27.14, 28.66
  λ 0.005: 27.62 27.66 27.72 | 29.41 29.37 29.31
  λ 0.01:  27.65 27.85 27.90 | 29.65 29.66 29.57
  λ 0.02:  27.17 27.72 27.92 | 29.81 29.81 29.78
Network width and iterations, smoothing at 256² (same two images, λ 0.03):
  width 32, 200 it: 27.89 | 33.15 (45 s, 36 s)   peak 28.48 @100 | 33.15 @150
  width 16, 200 it: 27.87 | 33.12 (23 s, 24 s)   peak 28.39 @100 | 33.19 @150
  width 16, v-step every 4th: 0.1-0.15 dB lower
  width 16, longer: 26.65 | 32.91 @300, 25.67 | 32.36 @500, 24.96 | 31.38 @1000
  width 16, every 10 (tune_presets.py smooth --lams 0.03 --size 256 --iterations 160 --every 10):
    @100 28.39 | 32.98, @110 28.45 | 33.04, @120 28.45 | 33.09, @130 28.41 | 33.10,
    @150 28.29 | 33.19: mean 30.77 at 120 against 30.74 at 150
so width 16 costs nothing, and the iteration count is an early stop: with a
fixed beta the network slowly fits the texture after ~150 iterations.
Without the residual warm start (plain DIP parametrisation, same λ 0.02 and
Region Fusion v-step) a 128² astronaut+gravel image reached only 23.1 dB after
300 iterations (input 24.3) against 27.9 dB with it.
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
        image itself, so the estimate is good from the first iteration.
    tv : weight of an anisotropic total-variation term on the network output
        (mean absolute differences). 0 for DIP-ℓ0; with ``v_start=1`` (no ℓ0
        coupling) it gives DIP-TV, the peer of the quality benchmark.
    warm_fraction : iterations of a warm-started plane of a stack (one that
        starts from the previous plane's network and dual), as a fraction of
        ``iterations``. ``benchmarks/stack.py``: warm planes reach the cold
        run's final PSNR in 20-25 of 150 iterations.
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
    tv: float = 0.0
    warm_fraction: float = 1.0 / 3.0


PRESETS: dict[str, Preset] = {
    # λ 0.03 and 0.05 scored alike (within 0.3 dB); 0.03 also gives the better
    # iteration-0 preview. 120 iterations: the best mean PSNR of the 256² sweep
    # above, and a 512² RGB run within a minute on 2 cores.
    "smooth": Preset(lam=0.03, iterations=120, width=16, residual=True),
    "deblock": Preset(lam=0.02, iterations=300, residual=True),
}


def get_preset(mode: str, **overrides) -> Preset:
    """The preset for ``mode`` ('smooth' or 'deblock'), with fields overridden."""
    if mode not in PRESETS:
        raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(PRESETS)}")
    return replace(PRESETS[mode], **overrides)
