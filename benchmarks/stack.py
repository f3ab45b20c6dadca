"""Stacks: iterations to the same PSNR with and without the warm start.

    python benchmarks/stack.py [--size 192] [--planes 4] [--threads 2]

A synthetic z-stack: a piecewise-planar structure image with a real texture
(as in the quality benchmark) that drifts by a few pixels from plane to plane,
with fresh noise in every plane. Every plane after the first is fitted either
afresh (cold) or from the previous plane's network, optimiser and ADMM dual
(warm, the default). The table gives, per plane, the PSNR of the cold run at
the preset's iteration count and how many iterations the warm run needed to
reach it. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio as psnr

from napari_dip_l0 import iter_dip_l0
from napari_dip_l0.core.presets import PRESETS
from napari_dip_l0.data import structure_image, textured_image


def drifting_stack(size: int, planes: int, *, drift: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(noisy stack, ground truth), (planes, size, size, 3) float on [0, 1]."""
    big = size + drift * planes
    gt_big = structure_image("coffee", big)
    tex_big = textured_image(gt_big, "gravel", noise=0.0)
    rng = np.random.default_rng(seed)
    gt, noisy = [], []
    for p in range(planes):
        win = np.s_[p * drift : p * drift + size, p * drift // 2 : p * drift // 2 + size]
        gt.append(gt_big[win])
        noisy.append(np.clip(tex_big[win] + rng.normal(0, 0.02, gt_big[win].shape), 0, 1))
    return np.stack(noisy).astype(np.float32), np.stack(gt)


def curves(noisy, gt, every: int, **kwargs) -> list[dict[int, float]]:
    """Per plane: {iteration within the plane: PSNR of that plane}."""
    out: list[dict[int, float]] = [dict() for _ in range(len(noisy))]
    starts: dict[int, int] = {}
    for snap in iter_dip_l0(noisy, channel_axis=-1, device="cpu", **kwargs):
        starts.setdefault(snap.plane, snap.iteration)
        k = snap.iteration - starts[snap.plane]
        if k % every == 0 or snap.iteration == snap.total:
            out[snap.plane][k] = psnr(gt[snap.plane], snap.image[snap.plane], data_range=1.0)
    return out


def first_reaching(curve: dict[int, float], target: float) -> int | None:
    return next((k for k in sorted(curve) if curve[k] >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--planes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--every", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    its = PRESETS["smooth"].iterations
    noisy, gt = drifting_stack(args.size, args.planes)
    cold = curves(noisy, gt, args.every, warm_start=False)
    warm = curves(noisy, gt, args.every, warm_start=True, warm_iterations=its)
    print(f"{args.planes} planes of {args.size}² RGB, preset 'smooth' ({its} iterations), PSNR every {args.every}\n")
    default = max(1, round(PRESETS["smooth"].warm_fraction * its))
    default -= default % args.every  # the nearest recorded iteration at or below it
    print(f"| plane | input | cold @{its} | warm @{default} (the default's count) | warm @{its} | warm best "
          f"| warm iterations to cold @{its} |")
    print("|---|---|---|---|---|---|---|")
    for p in range(args.planes):
        target = cold[p][its]
        reach = first_reaching(warm[p], target)
        print(f"| {p} | {psnr(gt[p], noisy[p], data_range=1.0):.2f} | {target:.2f} | {warm[p][default]:.2f} | "
              f"{warm[p][its]:.2f} | {max(warm[p].values()):.2f} | {reach if reach is not None else 'not reached'} |")
    for p in range(1, args.planes):
        print(f"plane {p} warm curve: " + " ".join(f"{k}:{v:.2f}" for k, v in sorted(warm[p].items()) if k % 25 == 0))
        print(f"plane {p} cold curve: " + " ".join(f"{k}:{v:.2f}" for k, v in sorted(cold[p].items()) if k % 25 == 0))


if __name__ == "__main__":
    main()
