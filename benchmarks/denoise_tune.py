"""Settings sweep for the 'denoise' preset on the tuning half of benchmarks/microscopy.py (not a test).

    python benchmarks/denoise_tune.py --variants defaults "lam_noise 2" [--peaks 5 20 100] [--upto 2000]

One run per (variant, tuning crop, photon level), as a user runs it (with
the preset's stopping rule), is read at several iterations on the way, so
one run gives its result and its PSNR curve up to the stop. Results are saved under
``--out/denoise_tune/`` (one JSON file per variant and level) and ``--table``
prints them. The held-out half is never touched here.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from microscopy import build_set, camera, f1_objects, objects, psnr, slug

from napari_dip_l0 import DipL0Run
from napari_dip_l0.core.presets import get_preset


def variants() -> dict:
    # Each is today's preset with one change; the rows in docs/tuning.md used the preset of their day
    # (the λ, patience and min_improvement rows were run before the preset stabilised).
    d = get_preset("denoise")
    return {
        "defaults": d,
        "lam_noise 0.25": replace(d, lam_noise=0.25),
        "patience 300": replace(d, patience=300),
        "lam_noise 0.1": replace(d, lam_noise=0.1),
        "lam_noise 0.05": replace(d, lam_noise=0.05),
        "lam_noise 2": replace(d, lam_noise=2.0),
        "lam_noise 0.5": replace(d, lam_noise=0.5),
        "lam_noise 4": replace(d, lam_noise=4.0),
        "noise_std 0.1": replace(d, noise_std=0.1),
        "lr 0.005": replace(d, lr=0.005),
        "beta 4": replace(d, beta=4.0),
        "width 16": replace(d, width=16),
        "min_improvement 0": replace(d, min_improvement=0.0),
        "no stabilise": replace(d, stabilise=False),
        "lam_noise 0.125": replace(d, lam_noise=0.125),
        # Rounded to the frame's levels, as every row of docs/tuning.md measured before float_result.
        "rounded": replace(d, float_result=False),
    }


def curve(noisy, truth, dr, mask, preset, checkpoints):
    """PSNR at the checkpoints the run reaches, the result's PSNR, the iteration it kept (stopping rule), λ,
    the seconds and the result."""
    run = DipL0Run(noisy, "denoise", preset=preset, device="cpu")
    found, t0 = {}, time.perf_counter()
    for snap in run:
        if snap.iteration in checkpoints and snap.losses and not snap.done:
            found[snap.iteration] = psnr(truth, snap.image, dr, mask)
    final = psnr(truth, run.last.image, dr, mask)
    return found, final, run.stopped_at[0], run.preset.lam, time.perf_counter() - t0, run.last.image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["defaults"], choices=list(variants()))
    parser.add_argument("--peaks", nargs="+", type=int, default=[5, 20, 100])
    parser.add_argument("--upto", type=int, default=2000, help="last checkpoint of the curve")
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="print the saved curves, run nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    saved = args.out / "denoise_tune"
    saved.mkdir(parents=True, exist_ok=True)
    if args.table:
        return print_table(saved)
    tune, _, labels = build_set(args.cache, args.size, False)
    checkpoints = list(range(args.every, args.upto + 1, args.every))
    for name in args.variants:
        preset = variants()[name]
        for peak in args.peaks:
            rows = []
            for i, (label, clean, _) in enumerate(tune):
                noisy, truth, dr, mask = camera(clean, peak, int(peak) + 1000 * i, hot=i % 2 == 1)
                found, final, kept, lam, seconds, result = curve(noisy, truth, dr, mask, preset, checkpoints)
                base = psnr(truth, noisy, dr, mask)
                # The nuclei crops' segmentation score, as microscopy.py takes it.
                f1 = f1_objects(labels[label], objects(result)) if label in labels else None
                rows.append({"variant": name, "peak": peak, "image": label, "input": base, "lam": lam,
                             "seconds": seconds, "result": final, "kept": kept, "f1": f1,
                             "psnr": {str(k): v for k, v in found.items()}})
                print(f"{name:<14} peak {peak:>3} {label:<9} λ {lam:.4g} input {base:5.2f} result {final:5.2f} "
                      f"(kept {kept}) " + " ".join(f"{k}:{v:5.2f}" for k, v in found.items())
                      + f"  {seconds:.0f} s", flush=True)
            (saved / f"{slug(name)}_{peak}.json").write_text(json.dumps(rows, indent=1))


def print_table(saved: Path) -> None:
    rows = [r for p in sorted(saved.glob("*.json")) for r in json.loads(p.read_text())]
    for name in dict.fromkeys(r["variant"] for r in rows):
        for peak in sorted({r["peak"] for r in rows if r["variant"] == name}):
            rs = [r for r in rows if r["variant"] == name and r["peak"] == peak]
            f1 = [r["f1"] for r in rs if r.get("f1") is not None]
            print(f"{name:<14} peak {peak:>3} n={len(rs)} input {np.mean([r['input'] for r in rs]):5.2f} "
                  f"result {np.mean([r['result'] for r in rs]):5.2f}  "
                  + (f"nuclei F1 {np.mean(f1):.3f}  " if f1 else "")
                  + "  ".join(f"{r['image']}: {r['result']:.2f} (kept {r['kept']})" for r in rs))


if __name__ == "__main__":
    main()
