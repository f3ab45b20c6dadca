"""Peak memory of DIP-ℓ0 and its peers on one uint16 camera frame, beside the seconds (not a test).

    python benchmarks/peak_memory.py [--sizes 512 2048] [--iterations 10] [--threads 2] [--docs]
    python benchmarks/peak_memory.py --full --sizes 256 512 1024 [--label NAME] [--docs]

Each method runs in a fresh process on a ``size``² frame: the bundled nuclei sample (BBBC038) mirrored
out to ``size``, with ``napari_dip_l0.data.camera_frame``'s simulated camera at 20 photons. The peak is
the process's resident set (``ru_maxrss``) less that of the same process after its imports and the frame,
so it is what the call adds. DIP-ℓ0's peak is reached within its first iterations (the network, the
optimiser state and the tiles' buffers are all made before the first step), so its runs are capped at
``--iterations`` and the table gives seconds per iteration beside it; a whole run's time is that times the
iterations it runs (``benchmarks/time_to_quality.py`` measures those). Peers run to the end.

``--full`` runs DIP-ℓ0 as a user calls it, to the end its stopping rule chooses, and adds its PSNR against
the noise-free frame (hot pixels left out) and the iterations it ran: the seconds from the call to the result
at each frame size. Run another version's code beside today's from its checkout, e.g.
``PYTHONPATH=/tmp/before/src python benchmarks/peak_memory.py --full --methods dip_l0_denoise --label "before"``.
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


def camera(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frame, its noise-free truth and its hot pixels."""
    from napari_dip_l0._sample_data import SAMPLES
    from napari_dip_l0.core.io import read_image
    from napari_dip_l0.data import camera_frame

    nuclei = read_image(SAMPLES / "nuclei_bbbc038.png").astype(np.float64)
    nuclei = (nuclei - nuclei.min()) / np.ptp(nuclei)
    reps = -(-size // nuclei.shape[0])
    clean = np.pad(nuclei, [(0, (reps - 1) * nuclei.shape[0]), (0, (reps - 1) * nuclei.shape[1])],
                   mode="symmetric")[:size, :size]
    return camera_frame(clean, 20.0, seed=0)


def _call(method: str, image: np.ndarray, iterations: int | None):
    """The method's call; ``iterations`` caps DIP-ℓ0 (``None``: its defaults)."""
    from skimage.restoration import denoise_tv_chambolle

    from napari_dip_l0 import dip_l0_denoise, dip_l0_smooth

    cap = {} if iterations is None else {"iterations": iterations}
    scaled = (image.astype(np.float64) - image.min()) / np.ptp(image)
    if method == "dip_l0_denoise":
        return dip_l0_denoise(image, device="cpu", **cap)
    if method == "dip_l0_smooth":
        return dip_l0_smooth(image, device="cpu", **cap)
    if method == "TV (Chambolle)":
        return denoise_tv_chambolle(scaled, weight=0.3)
    import bm3d

    if method == "BM3D":
        return bm3d.bm3d(scaled, sigma_psd=0.05)
    # Anscombe-stabilised BM3D with the simulated camera's parameters (gain 2, offset 100, read noise 1.5 e-)
    counts = np.maximum((image.astype(np.float64) - 100.0) / 2.0, 0.0)
    stab = 2.0 * np.sqrt(counts + 3.0 / 8.0 + 1.5**2)
    return bm3d.bm3d(stab, sigma_psd=1.0)


def measure(method: str, size: int, iterations: int | None, threads: int) -> dict:
    """In this (fresh) process: the call's seconds, the memory it adds and, for whole runs, the PSNR and
    the iterations DIP-ℓ0 ran (``iterations=None``)."""
    import torch
    from skimage.metrics import peak_signal_noise_ratio

    torch.set_num_threads(threads)
    image, truth, hot = camera(size)
    _call(method, image[:32, :32], 2)  # imports and compiled kernels, so the baseline holds them
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if iterations is None and method.startswith("dip_l0"):
        # What dip_l0_denoise/dip_l0_smooth run, counting the steps the stopping rule allowed.
        from napari_dip_l0 import DipL0Run

        run = DipL0Run(image, method.removeprefix("dip_l0_"), device="cpu")
        ran = sum(1 for snap in run if snap.losses)
        out = run.last.image
    else:
        out, ran = _call(method, image, iterations), iterations
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    score = None
    # DIP-ℓ0's only: the peers here run with one fixed parameter on the min-max scale, which a hot pixel
    # squashes; their tuned quality is in benchmarks/time_to_quality.py's table.
    if iterations is None and method.startswith("dip_l0"):
        keep = ~hot
        score = peak_signal_noise_ratio(truth[keep], np.asarray(out, np.float64)[keep], data_range=float(np.ptp(truth)))
    return {"method": method, "size": size, "seconds": seconds, "added_mib": (peak - base) / 1024,
            "peak_mib": peak / 1024, "iterations": ran if method.startswith("dip_l0") else None, "psnr": score}


def row(r: dict, label: str | None = None) -> str:
    name = f"{r['method']} ({label})" if label else r["method"]
    if r.get("full"):
        psnr = "—" if r["psnr"] is None else f"{r['psnr']:.2f}"
        its = str(r["iterations"]) if r["iterations"] else "—"
        return (f"| {r['size']}² | {name} | {r['seconds']:.1f} | {its} | {psnr} | {r['added_mib']:.0f} | "
                f"{r['peak_mib']:.0f} |")
    per_it = f"{r['seconds'] / r['iterations']:.2f}" if r["iterations"] else "—"
    total = f"{r['seconds']:.1f}" + (f" ({r['iterations']} it.)" if r["iterations"] else "")
    return (f"| {r['size']}² | {name} | {r['added_mib']:.0f} | {r['peak_mib']:.0f} | {total} | "
            f"{per_it} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 2048])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--full", action="store_true",
                        help="whole runs with the defaults (no cap), with PSNR and the iterations run")
    parser.add_argument("--label", help="appended to the method's name (for a run of another version's code)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs", action="store_true", help="write the table into the docs page")
    args = parser.parse_args()
    iterations = None if args.full else args.iterations
    head = ("| frame | method | seconds | iterations | PSNR (dB) | added (MiB) | peak (MiB) |" if args.full else
            "| frame | method | added (MiB) | peak (MiB) | seconds | s/iteration |")
    lines = [f"{platform.processor() or platform.machine()}, torch threads {args.threads}; "
             "peak = the process's resident peak, added = beyond its imports and the frame.", "",
             head, "|---" * head.count(" | ") + "|---|"]
    print("\n".join(lines), flush=True)
    for size in args.sizes:
        for method in args.methods:
            code = (f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import peak_memory as pm; "
                    f"print(json.dumps(pm.measure({method!r}, {size}, {iterations}, {args.threads})))")
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                line = f"| {size}² | {method} | failed: {done.stderr.strip().splitlines()[-1][:80]} |"
            else:
                line = row({**json.loads(done.stdout.strip().splitlines()[-1]), "full": args.full}, args.label)
            lines.append(line)
            print(line, flush=True)
    if args.docs:
        sys.path.insert(0, str(HERE))
        from readme import write_section

        section = "frame-sizes" if args.full else "peak-memory"
        if not write_section(section, "\n".join(lines)):
            print(f"no docs page holds the {section} markers", file=sys.stderr)


if __name__ == "__main__":
    main()
