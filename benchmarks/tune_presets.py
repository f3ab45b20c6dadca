"""The sweep behind the shipped presets (see core/presets.py for its results).

    python benchmarks/tune_presets.py smooth  [--lams 0.01 0.02 0.03 0.05] [--size 128]
    python benchmarks/tune_presets.py deblock [--lams 0.005 0.01 0.02]

For each λ, runs DIP-ℓ0 with the task's preset (other fields as shipped, 300
iterations) on two tuning images and prints PSNR every 100 (--every) iterations, beside
the input and ℓ0-alone peers over a λ grid. Tuning images (chelsea, rocket)
are kept apart from those of the tests, the demo and those the docs report. Not a test.
"""

from __future__ import annotations

import argparse

import torch
from skimage.metrics import peak_signal_noise_ratio as psnr

from napari_dip_l0 import iter_dip_l0, l0_smooth
from napari_dip_l0.core.presets import get_preset
from napari_dip_l0.data import cartoon_example, jpeg_compress, structure_image

TUNING = (("chelsea", "brick", 2), ("rocket", "gravel", 3))


def tuning_images(task: str, size: int):
    if task == "smooth":
        return [cartoon_example(photo, texture, size, seed=seed) for photo, texture, seed in TUNING]
    out = []
    for photo, _, _ in TUNING:
        truth = structure_image(photo, size)
        out.append((jpeg_compress(truth, 10), truth))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["smooth", "deblock"])
    parser.add_argument("--lams", type=float, nargs="+", default=None)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--every", type=int, default=100, help="PSNR checkpoint spacing in iterations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lams = args.lams or ([0.01, 0.02, 0.03, 0.05] if args.task == "smooth" else [0.005, 0.01, 0.02])
    grid_fft = [0.002, 0.005, 0.01, 0.02, 0.03, 0.05]
    grid_rf = [0.005, 0.01, 0.02, 0.04, 0.08]
    images = tuning_images(args.task, args.size)
    for k, (observed, truth) in enumerate(images):
        fft = max(psnr(truth, l0_smooth(observed, lam, method="fft", channel_axis=-1)) for lam in grid_fft)
        rf = max(psnr(truth, l0_smooth(observed, lam, channel_axis=-1)) for lam in grid_rf)
        print(f"image {k}: input {psnr(truth, observed):.2f}, best FFT ℓ0 {fft:.2f}, best Region Fusion {rf:.2f}")
    checkpoints = list(range(args.every, args.iterations + 1, args.every))
    print(f"\nλ  | PSNR at iterations {checkpoints} per image")
    for lam in lams:
        preset = get_preset(args.task, iterations=args.iterations)
        row = []
        for observed, truth in images:
            scores = [psnr(truth, s.image) for s in iter_dip_l0(observed, channel_axis=-1, lam=lam, preset=preset)
                      if s.iteration in checkpoints]
            row.append(" ".join(f"{p:.2f}" for p in scores))
        print(f"{lam:<6g} | " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
