"""Peak memory of DIP-ℓ0 and its peers on one uint16 camera frame, beside the seconds (not a test).

    python benchmarks/peak_memory.py [--sizes 512 2048] [--iterations 10] [--threads 2] [--docs]

Each method runs in a fresh process on a ``size``² frame: the bundled nuclei sample (BBBC038) mirrored
out to ``size``, with ``napari_dip_l0.data.camera_frame``'s simulated camera at 20 photons. The peak is
the process's resident set (``ru_maxrss``) less that of the same process after its imports and the frame,
so it is what the call adds. DIP-ℓ0's peak is reached within its first iterations (the network, the
optimiser state and the tiles' buffers are all made before the first step), so its runs are capped at
``--iterations`` and the table gives seconds per iteration beside it; a whole run's time is that times the
iterations it runs (``benchmarks/time_to_quality.py`` measures those). Peers run to the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METHODS = ["dip_l0_denoise", "dip_l0_smooth", "TV (Chambolle)", "BM3D", "BM3D + Anscombe"]


def frame(size: int) -> np.ndarray:
    from napari_dip_l0._sample_data import SAMPLES
    from napari_dip_l0.core.io import read_image
    from napari_dip_l0.data import camera_frame

    nuclei = read_image(SAMPLES / "nuclei_bbbc038.png").astype(np.float64)
    nuclei = (nuclei - nuclei.min()) / np.ptp(nuclei)
    reps = -(-size // nuclei.shape[0])
    clean = np.pad(nuclei, [(0, (reps - 1) * nuclei.shape[0]), (0, (reps - 1) * nuclei.shape[1])],
                   mode="symmetric")[:size, :size]
    return camera_frame(clean, 20.0, seed=0)[0]


def _call(method: str, image: np.ndarray, iterations: int):
    from skimage.restoration import denoise_tv_chambolle

    from napari_dip_l0 import dip_l0_denoise, dip_l0_smooth

    scaled = (image.astype(np.float64) - image.min()) / np.ptp(image)
    if method == "dip_l0_denoise":
        return dip_l0_denoise(image, iterations=iterations, device="cpu")
    if method == "dip_l0_smooth":
        return dip_l0_smooth(image, iterations=iterations, device="cpu")
    if method == "TV (Chambolle)":
        return denoise_tv_chambolle(scaled, weight=0.3)
    import bm3d

    if method == "BM3D":
        return bm3d.bm3d(scaled, sigma_psd=0.05)
    # Anscombe-stabilised BM3D with the simulated camera's parameters (gain 2, offset 100, read noise 1.5 e-)
    counts = np.maximum((image.astype(np.float64) - 100.0) / 2.0, 0.0)
    stab = 2.0 * np.sqrt(counts + 3.0 / 8.0 + 1.5**2)
    return bm3d.bm3d(stab, sigma_psd=1.0)


def measure(method: str, size: int, iterations: int, threads: int) -> dict:
    """In this (fresh) process: the call's seconds and the memory it adds."""
    import torch

    torch.set_num_threads(threads)
    image = frame(size)
    _call(method, image[:32, :32], 2)  # imports and compiled kernels, so the baseline holds them
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    _call(method, image, iterations)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "size": size, "seconds": seconds, "added_mib": (peak - base) / 1024,
            "peak_mib": peak / 1024, "iterations": iterations if method.startswith("dip_l0") else None}


def row(r: dict) -> str:
    per_it = f"{r['seconds'] / r['iterations']:.2f}" if r["iterations"] else "—"
    total = f"{r['seconds']:.1f}" + (f" ({r['iterations']} it.)" if r["iterations"] else "")
    return (f"| {r['size']}² | {r['method']} | {r['added_mib']:.0f} | {r['peak_mib']:.0f} | {total} | "
            f"{per_it} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 2048])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs", action="store_true", help="write the table into the docs page")
    args = parser.parse_args()
    lines = [f"{platform.processor() or platform.machine()}, torch threads {args.threads}; "
             "peak = the process's resident peak, added = beyond its imports and the frame.", "",
             "| frame | method | added (MiB) | peak (MiB) | seconds | s/iteration |", "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for size in args.sizes:
        for method in args.methods:
            code = (f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import peak_memory as pm; "
                    f"print(json.dumps(pm.measure({method!r}, {size}, {args.iterations}, {args.threads})))")
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                line = f"| {size}² | {method} | failed: {done.stderr.strip().splitlines()[-1][:80]} | | | |"
            else:
                line = row(json.loads(done.stdout.strip().splitlines()[-1]))
            lines.append(line)
            print(line, flush=True)
    if args.docs:
        sys.path.insert(0, str(HERE))
        from readme import write_section

        if not write_section("peak-memory", "\n".join(lines)):
            print("no docs page holds the peak-memory markers", file=sys.stderr)


if __name__ == "__main__":
    main()
