"""Named defaults for DIP-ℓ0, one per task.

Chosen by measurement on tuning images kept apart from those of the tests, the
demo and the documentation's benchmarks; the sweeps are in ``docs/tuning.md`` and the code that
produced them is ``benchmarks/tune_presets.py``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace

from .l0 import L0_SOLVERS

__all__ = ["Preset", "PRESETS", "FILE_PRESETS", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """Settings of one DIP-ℓ0 run (the paper's names where it has them).

    Every field is checked when a preset is made, so ``replace(preset, lam=-1)``
    raises at once, not deep inside a run.

    Attributes
    ----------
    lam : float
        Weight of the ℓ0 gradient term, on the [0, 1] intensity scale.
    iterations : int
        ADMM iterations (one Adam step each) of a plane, or of a tile.
    l0_solver : {'parallel_fusion', 'region_fusion', 'fft'}
        Solver of the v-step: Region Fusion, data-parallel (on every core or
        the GPU, 4-10× faster than the sequential one at the same ℓ0 energy,
        ``benchmarks/speed.py --l0-only``) or sequential, or the FFT solver.
    beta : float
        ADMM penalty; the v-step smooths with ``2 * lam / beta``.
    lr : float
        Adam learning rate of the network.
    width, depth, skip : int
        Channels per level, number of scales and skip channels of the network.
    input_depth : int
        Channels of the fixed noise input.
    noise_std : float
        Standard deviation of the fresh perturbation added to the input each step.
    v_every : int
        Run the (costly) v-step and the dual update every this many steps.
    ema : float
        Decay of the exponential moving average of the network output that
        forms the estimate.
    rf_loops : int
        Passes ``K`` of Region Fusion's growing threshold inside the v-step.
    residual : bool
        The network fits a correction to the warm start ``w0`` (the FFT ℓ0
        solution of the input), ``g = w0 + net(x)``, instead of the image
        itself, so the estimate is good from the first iteration.
    lam_noise : float
        With ``lam='auto'`` and ``lam_noise > 0``, λ is ``lam_noise * σ²``,
        σ the noise level the data shows (:func:`.noise.noise_sigma`, on the
        same [0, 1] scale), so the ℓ0 term merges what differs by noise and
        keeps what differs by more; ``lam`` is then only the fallback.
    lam_step : float
        With ``lam='auto'``, ``lam_step > 0`` and a JPEG file, λ is
        ``lam_step * q / 255``, q the file's luma DC quantisation step
        (:attr:`.jpeg.JpegConstraint.dc_step`): the coarser the file, the
        stronger the artefacts the ℓ0 term must merge. ``lam`` is then only
        the fallback.
    jpeg_box : float
        With a JPEG file, estimates are projected onto the middle
        ``jpeg_box`` fraction of each coefficient's quantisation interval
        (:meth:`.jpeg.JpegConstraint.project`): 1 is every image the file
        allows, 0 the decoded image. The box scales with the file's
        quantisation steps, so the higher the quality, the less an estimate
        may move.
    jpeg_box_fine : float
        The box instead of ``jpeg_box`` for a finely quantised file, one
        whose luma DC quantisation step (:attr:`.jpeg.JpegConstraint.dc_step`)
        is below ``jpeg_fine_step``: near its input, an estimate that got a
        coefficient wrong costs more than the prior gains. 0: always
        ``jpeg_box``.
    jpeg_fine_step : float
        The luma DC step below which ``jpeg_box_fine`` applies (Pillow's
        quality 10 has 80, quality 20 has 40).
    stabilise : bool
        Fit the noise the image shows as camera noise, variance ``a x + b``
        (:func:`.stabilise.fit_noise_model`: shot noise grows with the
        signal), and fit the network to its generalised Anscombe transform,
        where the noise is the same at every intensity, so one λ suits dark
        background and bright objects alike; results are mapped back by the
        unbiased inverse (:class:`.stabilise.Stabiliser`). λ and the noise
        level are then on the transformed scale. An image whose noise does
        not grow with its intensity is fitted as it is.
    float_result : bool
        Give integer images (uint8, uint16, ...) a floating-point result on
        the same intensity scale (float32 up to 16 bits, float64 beyond;
        :func:`.planes.result_dtype`) instead of rounding it to the input's
        levels. A denoised value lies between a camera's levels: at 5
        photons, where the signal spans 10 ADU, rounding raised the squared
        error by a third (1.2 dB, ``benchmarks/microscopy.py``). Float input
        keeps its dtype either way.
    robust : bool
        Map the image's robust range (:func:`.defects.robust_range`: hot and
        dead pixels left out) to [0, 1] instead of its minimum and maximum.
    patience : int
        With ``patience > 0`` the run stops itself when the fit starts to
        learn the noise. It tracks the *spread* of the network's output: its
        mean squared change from the estimate over the last ``patience``
        steps, whose minimum marks where fitting structure gives way to
        fitting noise (the windowed-variance rule of Wang et al., "Early
        stopping for deep image prior", TMLR 2023). A plane ends
        ``patience`` steps after the last new minimum, and its result is the
        estimate at that minimum; ``iterations`` is then only a cap. 0: no
        stopping rule.
    holdout : float
        With ``holdout > 0`` and ``patience > 0``, the stopping rule watches
        the misfit of the estimate on this fraction of the pixels, drawn at
        random (from ``seed``) and left out of the data term, instead of the
        spread: the noise on pixels the network never fitted is independent
        of its output, so their misfit falls while the estimate nears the
        clean image and rises once it learns the noise (self-validation, Li
        et al., BMVC 2021). The estimate at that misfit's minimum is the
        result; the held-out pixels are filled in by the network, as in
        inpainting. For noise independent from pixel to pixel only (camera
        noise, not JPEG artefacts; scanned two-photon noise correlated along
        the line makes it stop late, ``docs/tuning.md``). The misfit includes
        the noise's own variance, so use it with ``min_improvement=0``.
    min_improvement : float
        The fraction by which the spread must fall below its minimum so far
        to count as a new minimum (like ``min_delta`` of Keras'
        ``EarlyStopping``, relative). A spread that creeps down more slowly
        than this over ``patience`` steps is the network slowly fitting the
        noise, and ends the plane.
    rise : float
        With the spread rule (``patience > 0``, no ``holdout``), also end the
        plane as soon as the spread exceeds ``rise`` times its minimum so
        far: the output moving ever faster away from its calmest estimate is
        the fit learning the noise, and the estimate the rule keeps is the
        one at that minimum either way; waiting out ``patience`` only adds
        steps. Must be 0 (off) or above 1.
    warm_fraction : float
        Iterations of a warm-started plane of a stack (one that starts from
        the previous plane's network and dual), as a fraction of
        ``iterations``, unless ``warm_iterations`` is set.
        ``benchmarks/stack.py``: warm planes reach the cold run's final PSNR
        in a twelfth of the iterations.
    warm_iterations : int
        Iterations of a warm-started plane; 0 takes ``warm_fraction`` of
        ``iterations``. Under a stopping rule a warm plane starts from the
        network, optimiser and dual of the estimate the rule kept on the
        plane before (after that step the fit was learning that plane's
        noise), so it is near its best within tens of steps, long before the
        rule's first full window.

    Examples
    --------
    >>> from napari_dip_l0.core.presets import get_preset
    >>> p = get_preset("smooth", lam=0.05)
    >>> p.lam, p.iterations
    (0.05, 120)
    """

    lam: float
    iterations: int
    l0_solver: str = "parallel_fusion"
    beta: float = 1.0
    lr: float = 0.01
    width: int = 32
    depth: int = 4
    skip: int = 4
    input_depth: int = 32
    noise_std: float = 1.0 / 30.0
    v_every: int = 2
    ema: float = 0.99
    rf_loops: int = 50
    residual: bool = False
    lam_noise: float = 0.0
    lam_step: float = 0.0
    jpeg_box: float = 1.0
    jpeg_box_fine: float = 0.0
    jpeg_fine_step: float = 0.0
    stabilise: bool = False
    float_result: bool = False
    robust: bool = False
    patience: int = 0
    holdout: float = 0.0
    min_improvement: float = 0.0
    rise: float = 0.0
    warm_fraction: float = 1.0 / 3.0
    warm_iterations: int = 0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool":
                if not isinstance(value, bool):
                    raise TypeError(f"{f.name} must be True or False, got {value!r}")
            elif f.type == "int":
                if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                    raise TypeError(f"{f.name} must be an int, got {value!r}")
                least = 0 if f.name in ("skip", "patience", "warm_iterations") else 1
                if value < least:
                    raise ValueError(f"{f.name} must be >= {least}, got {value}")
            elif f.type == "float":
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise TypeError(f"{f.name} must be a number, got {value!r}")
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"{f.name} must be a finite number >= 0, got {value}")
        if not self.holdout < 1:
            raise ValueError(f"holdout must be below 1 (some pixels must be fitted), got {self.holdout}")
        if 0 < self.rise <= 1:
            raise ValueError(f"rise must be 0 (off) or above 1, got {self.rise}")
        if self.l0_solver not in L0_SOLVERS:
            raise ValueError(f"unknown l0_solver {self.l0_solver!r}; expected one of {L0_SOLVERS}")
        for name in ("beta", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("ema", "warm_fraction", "jpeg_box", "jpeg_box_fine", "min_improvement", "holdout"):
            if not getattr(self, name) <= 1:
                raise ValueError(f"{name} must be at most 1, got {getattr(self, name)}")


PRESETS: dict[str, Preset] = {
    # λ 0.03 and 0.05 scored alike (within 0.3 dB); 0.03 also gives the better
    # iteration-0 preview. 120 iterations: the best mean PSNR of the 256² sweep
    # (docs/tuning.md), and a 512² RGB run within a minute on 2 cores.
    "smooth": Preset(lam=0.03, iterations=120, width=16, residual=True),
    # JPEG artefacts from the decoded pixels alone (docs/tuning.md); a JPEG file gets FILE_PRESETS' below.
    "deblock": Preset(lam=0.02, iterations=300, residual=True),
    # Camera noise (fluorescence, photon-limited data): the network fits the image itself, not a correction
    # of the ℓ0 solution (on noisy data that is a mosaic of noise-driven regions), λ follows the noise level
    # and hot pixels neither set the scale nor enter the fit. On the tuning crops of benchmarks/microscopy.py
    # (128²; benchmarks/denoise_tune.py) a fixed count fits no image: λ = σ² peaked at 350-850 iterations
    # and lost 2-5 dB by 2000 on nuclei at 5 and 20 photons, while SEM at 100 photons still gained at 1500.
    # So the stopping rule (patience 200) ends each plane near its peak, 2000 is only a cap, and with the
    # rule λ = σ²/4 beat σ² on 7 of 8 crop × level pairs at 5 and 20 photons (+0.2 to +2.6 dB, −0.07 on
    # one) and tied at 100; σ²/10 and σ²/20 lost 0.6 and 1.8 dB on the mean at 5 photons (docs/tuning.md).
    # A new minimum of the spread must be 3% lower to count: on SEM at 100 photons the spread crept down for
    # thousands of steps while the PSNR fell, so the cap, not the rule, ended the plane and 5x the
    # iterations lost 0.7 dB (benchmarks/denoise_tune.py against "min_improvement 0", docs/tuning.md).
    # Shot noise grows with the signal, so the fit is on the image's generalised Anscombe transform (the noise
    # fitted as a x + b): on the tuning crops the nuclei F1 at 5 and 20 photons went from 0.29 to 0.39 (the
    # clean crops score 0.44) at -0.08 dB mean PSNR over the 12 pairs; λ = σ²/2 on that scale lost 0.3 dB on
    # both nuclei at 5 photons (docs/tuning.md).
    # Results of camera frames stay float: rounding a denoised frame back to whole ADU cost 1.2 dB on the
    # nuclei at 5 photons (benchmarks/microscopy.py).
    # The rise stop (2026-12-06, docs/tuning.md "Time"): with rise 1.5 the spread rule kept the same estimate on
    # all 29 held-out frames compared and ended planes sooner (15% fewer steps on the tuning cases). Width 16
    # halves a step's cost but fits larger frames slowly: 1878 steps for 31.08 dB on a 512² frame where width 32
    # took 1755 for 31.45 (benchmarks/peak_memory.py --full).
    # Stacks (2026-12-07, docs/tuning.md "Stacks"): a warm plane starts from the fit at the estimate the rule
    # kept on the plane before and is near its best in tens of steps, then learns its own noise (the spread
    # rises from the start, so the rule, which needs a full window, cannot stop it). 50 steps: on the tuning
    # stacks of benchmarks/stack_denoise.py --tune (3 real time-lapses, 2 drifting camera stacks) the warm
    # planes' mean PSNR was best at 50 and within 0.07 dB of it from 40 to 70; at 100 SIMA's fell below its
    # planes fitted one by one.
    "denoise": Preset(lam=0.003, lam_noise=0.25, iterations=2000, width=32, residual=False, robust=True,
                      patience=200, min_improvement=0.03, rise=1.5, stabilise=True, float_result=True,
                      warm_iterations=50),
}


# Where the run has the image's JPEG file (``DipL0Run(..., jpeg=path)``, ``dip_l0_deblock("photo.jpg")``).
FILE_PRESETS: dict[str, Preset] = {
    # From a JPEG file (benchmarks/jpeg_tune.py, docs/tuning.md; 5 tuning crops of 64², 3 photographs and 2
    # stains, qualities 5-50). Projecting every estimate onto the middle half of each quantisation interval beat
    # the whole interval at every quality; the middle quarter where the luma DC step is below 60 (quality 20 up)
    # had the better worst picture there. The residual network of the pixels' preset learns little beyond its
    # ℓ0 warm start: fitting the image itself, ended by the spread rule as in 'denoise', gained more at every
    # quality (mean gain over the input +1.01/+0.99/+0.85/+0.79/+0.81 dB at 5/10/20/30/50 against
    # +0.81/+0.79/+0.56/+0.44/+0.52, and a better worst picture at each). Its best fixed λ grew with the
    # quantisation step (0.1 at quality 5, 0.01-0.03 at 50), so λ = 0.16 × step / 255: 0.10 at 5, 0.05 at 10,
    # 0.01 at 50: within 0.04 dB of the best fixed λ's mean at every quality, the best worst picture at 5 and 50.
    "deblock": Preset(lam=0.03, lam_step=0.16, jpeg_box=0.5, jpeg_box_fine=0.25, jpeg_fine_step=60.0,
                      iterations=2000, residual=False, patience=200, min_improvement=0.03),
}


def get_preset(mode: str, *, jpeg: bool = False, **overrides) -> Preset:
    """The preset for ``mode`` ('smooth', 'denoise' or 'deblock'), with fields overridden.

    ``jpeg=True`` gives the mode's preset for a run that has the image's JPEG
    file (:data:`FILE_PRESETS`; the mode's own where it has none).

    Examples
    --------
    >>> get_preset("deblock").l0_solver
    'parallel_fusion'
    >>> get_preset("deblock", jpeg=True).patience > 0  # from a file: stopped by its own rule
    True
    """
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a string, got {mode!r}")
    if mode not in PRESETS:
        raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(PRESETS)}")
    return replace(FILE_PRESETS.get(mode, PRESETS[mode]) if jpeg else PRESETS[mode], **overrides)
