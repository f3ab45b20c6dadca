"""Tiled against untiled DIP-ℓ0: quality (seams) and peak memory.

    python benchmarks/tiling.py [--size 1024] [--tile 512] [--memory-sizes 2048 4096] [--threads 2]

Quality: one textured structure image of ``--size``² RGB, smoothed whole and
in tiles of ``--tile`` (overlap 64) with the 'smooth' preset; PSNR against the
ground truth and the largest jump across tile borders that the untiled result
does not have. Memory: a fresh process per run on ``--memory-sizes``² RGB,
a few iterations each (the peak is reached in the first), ru_maxrss, beside
the estimate the library refuses runs by. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio as psnr

from napari_dip_l0 import iter_dip_l0
from napari_dip_l0.core.memory import estimate_memory
from napari_dip_l0.core.presets import PRESETS
from napari_dip_l0.core.tiling import DEFAULT_OVERLAP, tile_grid
from napari_dip_l0.data import cartoon_example

_CHILD = r"""
import json, resource, sys, time, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from napari_dip_l0 import iter_dip_l0
from napari_dip_l0.data import cartoon_example
size, tile = int(sys.argv[1]), int(sys.argv[2])
rgb, _ = cartoon_example("astronaut", "gravel", 512)
img = np.tile((rgb * 255).astype(np.uint8), (size // 512, size // 512, 1))
for _ in iter_dip_l0(img[:32, :32], channel_axis=-1, iterations=2, device="cpu"): pass
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    gen = iter_dip_l0(img, channel_axis=-1, iterations=3, device="cpu", tile_size=tile)
except MemoryError as exc:
    print(json.dumps({"refused": str(exc)})); sys.exit()
for snap in gen:
    if snap.tile == 0 and snap.iteration == 3: break
gen.close()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak": peak / 1024**2, "base": base / 1024**2, "seconds": time.perf_counter() - t0}))
"""


def seam_jump(tiled: np.ndarray, whole: np.ndarray, size: int, tile: int) -> float:
    """Largest mean |difference| across a tile-overlap centre line, tiled minus untiled (0: no seam)."""
    worst = 0.0
    cuts = sorted({w[0].start for w in tile_grid(size, size, tile, DEFAULT_OVERLAP)} - {0})
    for c in cuts:
        mid = c + DEFAULT_OVERLAP // 2
        for img_t, img_w in ((tiled, whole), (tiled.transpose(1, 0, 2), whole.transpose(1, 0, 2))):
            jt = np.abs(img_t[mid] - img_t[mid - 1]).mean()
            jw = np.abs(img_w[mid] - img_w[mid - 1]).mean()
            worst = max(worst, jt - jw)
    return float(worst)


def quality(size: int, tile: int) -> None:
    noisy, gt = cartoon_example("coffee", "gravel", size)
    noisy = noisy.astype(np.float32)
    rows = []
    results = {}
    for name, ts in (("untiled", size), (f"tiles of {tile}", tile)):
        t0 = time.perf_counter()
        last = None
        for last in iter_dip_l0(noisy, channel_axis=-1, device="cpu", tile_size=ts, max_memory=1 << 50):
            pass
        results[name] = last.image
        rows.append((name, last.tiles, psnr(gt, last.image, data_range=1.0), time.perf_counter() - t0))
    print(f"Quality: {size}² RGB (coffee + gravel), preset 'smooth' ({PRESETS['smooth'].iterations} iterations "
          f"per tile), overlap {DEFAULT_OVERLAP}\n")
    print("| run | tiles | PSNR (dB) | seconds |")
    print("|---|---|---|---|")
    for name, tiles, value, sec in rows:
        print(f"| {name} | {tiles} | {value:.2f} | {sec:.0f} |")
    tiled = results[f"tiles of {tile}"]
    print(f"\nPSNR difference tiled − untiled: {rows[1][2] - rows[0][2]:+.2f} dB; largest extra jump across a tile "
          f"border: {seam_jump(tiled, results['untiled'], size, tile):.4f} (intensity on [0, 1])\n", flush=True)


def memory(sizes: list[int], threads: int) -> None:
    print("Peak memory, RGB uint8, preset 'smooth' (fresh process per run, 3 iterations)\n")
    print("| image | tiles of | peak RSS (GiB) | of which the run (GiB) | library estimate (GiB) |")
    print("|---|---|---|---|---|")
    for size in sizes:
        for tile in sorted({size, 1024, 512}, reverse=True):
            if tile > size:
                continue
            out = subprocess.run([sys.executable, "-c", _CHILD, str(size), str(tile), str(threads)],
                                 capture_output=True, text=True)
            if out.returncode:
                print(f"| {size}² | {tile} | failed: {out.stderr.strip().splitlines()[-1]} | | |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if "refused" in r:
                print(f"| {size}² | {tile} | refused before starting: {r['refused']} | | |", flush=True)
                continue
            est = estimate_memory((size, size, 3), 2, 1, PRESETS["smooth"], tile, DEFAULT_OVERLAP) / 1024**3
            label = "untiled" if tile == size else str(tile)
            print(f"| {size}² | {label} | {r['peak']:.2f} | {r['peak'] - r['base']:.2f} | {est:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[2048, 4096])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_sizes:
        memory(args.memory_sizes, args.threads)
        print()
    if not args.skip_quality:
        quality(args.size, args.tile)


if __name__ == "__main__":
    main()
