"""Stopping rules of the 'denoise' preset, replayed offline on the tuning half (not a test).

    python benchmarks/stop_rules.py --variants defaults "width 32" [--iterations 700]   # run and save the traces
    python benchmarks/stop_rules.py --set jpeg --variants "jpeg file" --iterations 1000  # deblocking from files
    python benchmarks/stop_rules.py --replay                                            # tabulate saved traces

One run per (variant, tuning case) with no stop: every step's change of the output (the spread rule's input,
``AdmmFit._track``) and, every 5 steps, the live estimate's PSNR are saved under ``--out/stop_rules/``. Any
spread rule (window = patience ``W``, ``P`` steps of patience, relative ``min_improvement`` ``m``, ``rise``
``R``) is then replayed on the saved traces without running the fit again: which iteration it keeps, the
PSNR there and the step it ends at. A rule only chooses among the estimates a run makes, so the replay is
exact (up to the 5-step grid of the PSNR).

Cases: ``benchmarks/microscopy.py``'s tuning crops nuclei 2 (5, 20, 100 photons), nuclei 5 (20), SEM 1 and
cell 1 (20, 100), with that benchmark's seeds, and the tuning frames of ``benchmarks/real_noise.py``'s three
real acquisitions. With ``--set jpeg``: ``benchmarks/jpeg_quality.py``'s tuning pictures (64²) at each of its
qualities, deblocked from their files with the file preset. The held-out halves are never touched here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import jpeg_quality as jq
import microscopy as mic
import numpy as np
import real_noise as rn
import torch

from napari_dip_l0 import DipL0Run
from napari_dip_l0.core import admm
from napari_dip_l0.core.presets import get_preset

CAMERA = {("nuclei 2", 5), ("nuclei 2", 20), ("nuclei 2", 100), ("nuclei 5", 20), ("SEM 1", 20), ("SEM 1", 100),
          ("cell 1", 20), ("cell 1", 100)}
# (window = patience of the spread's mean, patience after its minimum, min_improvement, rise)
RULES = [(200, 200, 0.03, 0.0), (200, 200, 0.03, 1.5), (200, 200, 0.03, 1.3), (200, 200, 0.03, 1.2),
         (200, 100, 0.03, 0.0), (200, 50, 0.03, 0.0), (100, 100, 0.03, 0.0), (150, 100, 0.03, 0.0)]


def variants() -> dict:
    d = replace(get_preset("denoise"), rise=0.0)
    return {"defaults": d, "width 32": replace(d, width=32), "input depth 8": replace(d, input_depth=8),
            "lr 0.02": replace(d, lr=0.02), "jpeg file": replace(get_preset("deblock", jpeg=True), rise=0.0)}


def jpeg_cases() -> list[tuple]:
    """(name, run maker, scorer) of each tuning picture at each quality, deblocked from its file."""
    tmp, found = Path(tempfile.mkdtemp()), []
    for q in jq.QUALITIES:
        for name, (truth, reported) in jq.pictures().items():
            if reported:
                continue
            path, decoded = jq.encode(tmp, name, truth, q)
            make = (lambda preset, d=decoded, p=path:
                    DipL0Run(d, preset=preset, lam="auto", channel_axis=-1, device="cpu", jpeg=p))
            found.append((f"{name} q{q}", make, lambda img, t=truth: jq.psnr(t, img)))
    return found


def cases(cache: Path) -> list[tuple]:
    """(name, run maker, scorer) of each denoising case."""
    tune, _, _ = mic.build_set(cache, 128, False)
    found = []
    for i, (label, clean, _) in enumerate(tune):
        for peak in mic.PEAKS:
            if (label, peak) in CAMERA:
                noisy, truth, dr, mask = mic.camera(clean, peak, int(peak) + 1000 * i, hot=i % 2 == 1)
                found.append((f"{label} @{peak}", _denoise(noisy),
                              lambda img, t=truth, d=dr, m=mask: mic.psnr(t, img, d, m)))
    for key, get in rn.ACQUISITIONS.items():
        pair = get("tune", cache)
        found.append((key, _denoise(pair.noisy), lambda img, p=pair: rn.psnr(p, img)))
    return found


def _denoise(noisy):
    return lambda preset: DipL0Run(noisy, "denoise", preset=preset, device="cpu")


def trace(make, score, preset, iterations: int) -> dict:
    """One run without a stop: each step's output change and the live estimate's PSNR every 5 steps."""
    changes = []
    track = admm.AdmmFit._track
    admm.AdmmFit._track = lambda self, signal, k: changes.append(signal)
    try:
        # patience far beyond the run: the fit computes the rule's input, and never stops
        run = make(replace(preset, iterations=iterations, patience=10**6, min_improvement=0.0))
        psnr = {s.iteration: score(s.image) for s in run if s.iteration % 5 == 0}
    finally:
        admm.AdmmFit._track = track
    return {"psnr": psnr, "changes": changes}


def replay(t: dict, window: int, patience: int, m: float, rise: float, cap: int) -> tuple[float, int, int]:
    """The PSNR of the estimate the rule keeps, the iteration it keeps and the step it ends at."""
    psnr = {int(k): v for k, v in t["psnr"].items()}
    sums = np.cumsum(np.r_[0.0, t["changes"]])
    best, kept = np.inf, None
    for j in range(len(t["changes"])):
        k = j + 2  # the first change is that of step 2 (step 1 has no estimate before it)
        if k > cap:
            break
        if j + 1 >= window:
            spread = (sums[j + 1] - sums[j + 1 - window]) / window
            rose = rise > 0 and spread > rise * best
            if spread < (1 - m) * best:
                best, kept = spread, k
            if rose:
                break
        if kept is not None and k - kept >= patience:
            break
    else:
        k = cap
    kept = kept if kept is not None else k
    return psnr[5 * round(kept / 5)], kept, min(k, cap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["defaults"], choices=list(variants()))
    parser.add_argument("--set", choices=["denoise", "jpeg"], default="denoise")
    parser.add_argument("--iterations", type=int, default=700)
    parser.add_argument("--replay", action="store_true", help="run nothing: replay the rules on saved traces")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    saved = args.out / "stop_rules"
    saved.mkdir(parents=True, exist_ok=True)
    if not args.replay:
        found = cases(args.cache) if args.set == "denoise" else jpeg_cases()
        for name in args.variants:
            traces = {}
            for case, make, score in found:
                traces[case] = trace(make, score, variants()[name], args.iterations)
                best = max(traces[case]["psnr"], key=traces[case]["psnr"].get)
                print(f"{name:<14} {case:<14} peak {traces[case]['psnr'][best]:.2f} @{best}", flush=True)
            (saved / f"{mic.slug(name)}.json").write_text(json.dumps({"iterations": args.iterations, **traces}))
    print("| variant | window | patience | min_improvement | rise | mean PSNR kept | mean steps run | "
          "mean peak | per case: PSNR kept / steps run |")
    print("|---" * 9 + "|")
    for path in sorted(saved.glob("*.json")):
        data = json.loads(path.read_text())
        cap = data.pop("iterations")
        peak = np.mean([max(t["psnr"].values()) for t in data.values()])
        for rule in RULES:
            got = {c: replay(t, *rule, cap) for c, t in data.items()}
            per = "; ".join(f"{c} {p:.2f}/{end}" for c, (p, _, end) in got.items())
            print(f"| {path.stem} | {' | '.join(map(str, rule))} | {np.mean([g[0] for g in got.values()]):.2f} | "
                  f"{np.mean([g[2] for g in got.values()]):.0f} | {peak:.2f} | {per} |")


if __name__ == "__main__":
    main()
