"""Speed of DIP-ℓ0 and its ℓ0 solvers, beside peers timed in the same run.

    python benchmarks/speed.py [--threads 2] [--iterations 10] [--sizes 256 512]

Prints a markdown table: seconds per ADMM iteration of the shipped 'smooth'
preset (network step + v-step every `v_every` iterations), Region Fusion and
the FFT ℓ0 solver, and scikit-image's TV (Chambolle) as a reference point.
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from skimage.restoration import denoise_tv_chambolle

from napari_dip_l0 import iter_dip_l0
from napari_dip_l0.core.l0 import fft_l0, region_fusion
from napari_dip_l0.core.presets import PRESETS
from napari_dip_l0.data import cartoon_example


def best_of(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def seconds_per_iteration(image, channel_axis, iterations) -> tuple[float, float]:
    """(warm-start seconds, mean seconds per ADMM iteration after the first two)."""
    stamps = [s.seconds for s in iter_dip_l0(image, channel_axis=channel_axis, iterations=iterations, device="cpu")]
    return stamps[0], (stamps[-1] - stamps[2]) / (len(stamps) - 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS["smooth"]
    lam = preset.lam
    region_fusion(np.random.rand(16, 16, 3), lam)  # compile numba before timing

    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads; "
          f"preset 'smooth': width {preset.width}, depth {preset.depth}, v-step every {preset.v_every}, λ {lam}\n")
    print("| image | DIP-ℓ0 s/iteration | warm start + preview (s) | Region Fusion (s) | FFT ℓ0 (s) "
          "| TV Chambolle (s) | one iteration / TV |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        rgb, _ = cartoon_example("astronaut", "gravel", size)
        for name, img, axis in (("gray", rgb.mean(-1), None), ("RGB", rgb, -1)):
            img32 = img.astype(np.float32)
            warm, per_it = seconds_per_iteration(img32, axis, args.iterations)
            rf = best_of(lambda: region_fusion(img, lam))
            fft = best_of(lambda: fft_l0(img, lam))
            tv = best_of(lambda: denoise_tv_chambolle(img, weight=0.1, channel_axis=axis))
            print(f"| {size}² {name} | {per_it:.3f} | {warm:.2f} | {rf:.3f} | {fft:.3f} | {tv:.3f} | {per_it / tv:.1f}× |",
                  flush=True)
    est = preset.iterations
    print(f"\nA full default run is {est} iterations per plane.")


if __name__ == "__main__":
    main()
