"""Speed of DIP-ℓ0 and its ℓ0 solvers, beside peers timed in the same run.

    python benchmarks/speed.py [--threads 2] [--iterations 10] [--sizes 256 512]
    python benchmarks/speed.py --scaling [--sizes 256 512 1024 2048]
    python benchmarks/speed.py --full     # one whole default run at 512² RGB
    python benchmarks/speed.py --l0-only [--sizes 256 512 1024 2048] [--repeat 5]

Prints a markdown table: seconds per ADMM iteration of the shipped 'smooth'
preset (network step + v-step every `v_every` iterations), the ℓ0 solvers
(sequential Region Fusion, the data-parallel Region Fusion of core/l0/parallel.py,
the FFT solver), and scikit-image's TV (Chambolle) as a reference point.
--l0-only times the three ℓ0 solvers alone, on RGB images at the v-step's
weight 2·λ/β of the 'smooth' preset, with the ℓ0 energy of each result.
Solver times are the minimum of several repeats (the machine may be shared).
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from skimage.restoration import denoise_tv_chambolle

from napari_dip_l0 import iter_dip_l0
from napari_dip_l0.core.l0 import fft_l0, l0_energy, parallel_fusion, region_fusion
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
    side = max(image.shape[:2])  # untiled, so the cost of one network step shows as the image grows
    stamps = [s.seconds for s in iter_dip_l0(image, channel_axis=channel_axis, iterations=iterations, device="cpu",
                                             tile_size=max(side, 64), tile_overlap=0)]
    return stamps[0], (stamps[-1] - stamps[2]) / (len(stamps) - 3)


def _peak_run(size: int, iterations: int) -> dict:
    """In this (child) process: a short DIP-ℓ0 run on size² RGB; seconds and peak memory."""
    rgb, _ = cartoon_example("astronaut", "gravel", min(size, 512))
    if size > 512:  # tile the sample: resizing to 2048² would dominate the run
        rgb = np.tile(rgb, (size // 512, size // 512, 1))[:size, :size]
    img = rgb.astype(np.float32)
    region_fusion(img[:16, :16], 0.1)  # load the compiled kernels before timing
    parallel_fusion(img[:16, :16], 0.1)
    seconds_per_iteration(img[:32, :32], -1, 4)  # and start torch up
    t0 = time.perf_counter()
    rf = region_fusion(img, PRESETS["smooth"].lam)
    t_rf = time.perf_counter() - t0
    t0 = time.perf_counter()
    parallel_fusion(img, PRESETS["smooth"].lam)
    t_par = time.perf_counter() - t0
    t0 = time.perf_counter()
    fft_l0(img.astype(np.float64), PRESETS["smooth"].lam)
    t_fft = time.perf_counter() - t0
    del rf
    warm, per_it = seconds_per_iteration(img, -1, iterations)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    return {"size": size, "rf": t_rf, "par": t_par, "fft": t_fft, "per_it": per_it, "warm": warm, "peak_gib": peak}


def scaling(sizes: list[int], threads: int) -> None:
    print("| RGB image | pixels | Region Fusion (s) | RF µs/pixel | parallel RF (s) | FFT ℓ0 (s) "
          "| DIP-ℓ0 s/iteration | warm start (s) | peak memory of the run (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        code = (f"import json, torch; torch.set_num_threads({threads}); import sys; sys.path.insert(0, 'benchmarks'); "
                f"import speed; print(json.dumps(speed._peak_run({size}, 10)))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        px = size * size
        print(f"| {size}² | {px / 1e6:.2f} M | {r['rf']:.2f} | {r['rf'] / px * 1e6:.2f} | {r['par']:.2f} "
              f"| {r['fft']:.2f} | {r['per_it']:.2f} | {r['warm']:.2f} | {r['peak_gib']:.2f} |", flush=True)


def l0_only(sizes: list[int], repeat: int) -> None:
    """The three ℓ0 solvers alone on RGB sizes² images at the v-step's weight; min of `repeat` runs."""
    preset = PRESETS["smooth"]
    lam = 2 * preset.lam / preset.beta  # the v-step's weight inside DIP-ℓ0
    region_fusion(np.random.rand(16, 16, 3), lam)  # compile before timing
    parallel_fusion(np.random.rand(16, 16, 3), lam)
    print(f"ℓ0 solvers alone, RGB, λ' = 2λ/β = {lam:g}, max_loop 50 (the DIP-ℓ0 v-step), "
          f"{torch.get_num_threads()} torch threads; seconds, min of {repeat}\n")
    print("| RGB image | Region Fusion (s) | parallel RF, CPU (s) | parallel RF, torch path (s) | FFT ℓ0 (s) "
          "| energy parallel / sequential |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        rgb, _ = cartoon_example("astronaut", "gravel", min(size, 512))
        if size > 512:  # tile the sample: resizing to 2048² would dominate the run
            rgb = np.tile(rgb, (size // 512, size // 512, 1))[:size, :size]
        tensor = torch.from_numpy(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)))[None].float()
        rf = region_fusion(rgb, lam, max_loop=50)
        par = parallel_fusion(rgb, lam)
        ratio = l0_energy(rgb, par, lam) / l0_energy(rgb, rf, lam)
        t_rf = best_of(lambda: region_fusion(rgb, lam, max_loop=50), repeat)
        t_par = best_of(lambda: parallel_fusion(tensor, lam), repeat)
        # The tensor path is what runs on a GPU; on a CPU it is launch-bound, so fewer repeats.
        t_torch = best_of(lambda: parallel_fusion(tensor, lam, backend="torch"), max(1, repeat // 2)) \
            if size <= 1024 else float("nan")
        t_fft = best_of(lambda: fft_l0(tensor, lam), repeat)
        print(f"| {size}² | {t_rf:.3f} | {t_par:.3f} | {t_torch:.3f} | {t_fft:.3f} | {ratio:.4f} |", flush=True)


def full_run(size: int = 512) -> None:
    """Wall time of one default smoothing run per v-step solver, from the call to the final estimate, and its PSNR."""
    from skimage.metrics import peak_signal_noise_ratio as psnr

    from napari_dip_l0 import dip_l0_smooth

    noisy, truth = cartoon_example("astronaut", "gravel", size)
    img = (noisy * 255).round().astype(np.uint8)
    dip_l0_smooth(img[:32, :32], channel_axis=-1, iterations=2, device="cpu")  # torch and numba start-up
    print(f"{size}² RGB uint8, preset 'smooth' ({PRESETS['smooth'].iterations} iterations), "
          f"{torch.get_num_threads()} threads; PSNR of the input {psnr(truth, img / 255.0, data_range=1):.2f} dB\n")
    print("| v-step solver | seconds (wall) | PSNR (dB) |\n|---|---|---|")
    for solver in ("parallel_fusion", "region_fusion", "fft"):
        dip_l0_smooth(img[:256, :256], channel_axis=-1, iterations=2, device="cpu", l0_solver=solver)  # compile
        t0 = time.perf_counter()
        out = dip_l0_smooth(img, channel_axis=-1, device="cpu", l0_solver=solver)
        sec = time.perf_counter() - t0
        print(f"| {solver} | {sec:.1f} | {psnr(truth, out / 255.0, data_range=1):.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--scaling", action="store_true",
                        help="RGB sizes up to 2048²: solver times, s/iteration and peak memory, one process per size")
    parser.add_argument("--full", action="store_true", help="time one whole default run on a 512² RGB image")
    parser.add_argument("--l0-only", action="store_true",
                        help="time the ℓ0 solvers alone (sequential and parallel Region Fusion, FFT) on RGB sizes")
    parser.add_argument("--repeat", type=int, default=5, help="repeats per solver time with --l0-only (min is shown)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.full:
        full_run()
        return
    if args.l0_only:
        l0_only(args.sizes or [256, 512, 1024, 2048], args.repeat)
        return
    if args.scaling:
        scaling(args.sizes or [256, 512, 1024, 2048], args.threads)
        return
    args.sizes = args.sizes or [256, 512]
    preset = PRESETS["smooth"]
    lam = preset.lam
    region_fusion(np.random.rand(16, 16, 3), lam)  # compile numba before timing
    parallel_fusion(np.random.rand(16, 16, 3), lam)

    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads; "
          f"preset 'smooth': width {preset.width}, depth {preset.depth}, v-step every {preset.v_every}, λ {lam}\n")
    print("| image | DIP-ℓ0 s/iteration | warm start + preview (s) | Region Fusion (s) | parallel RF (s) "
          "| FFT ℓ0 (s) | TV Chambolle (s) | one iteration / TV |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        rgb, _ = cartoon_example("astronaut", "gravel", size)
        for name, img, axis in (("gray", rgb.mean(-1), None), ("RGB", rgb, -1)):
            img32 = img.astype(np.float32)
            warm, per_it = seconds_per_iteration(img32, axis, args.iterations)
            rf = best_of(lambda: region_fusion(img, lam))
            par = best_of(lambda: parallel_fusion(img, lam))
            fft = best_of(lambda: fft_l0(img, lam))
            tv = best_of(lambda: denoise_tv_chambolle(img, weight=0.1, channel_axis=axis))
            print(f"| {size}² {name} | {per_it:.3f} | {warm:.2f} | {rf:.3f} | {par:.3f} | {fft:.3f} | {tv:.3f} "
                  f"| {per_it / tv:.1f}× |",
                  flush=True)
    est = preset.iterations
    print(f"\nA full default run is {est} iterations per plane.")


if __name__ == "__main__":
    main()
