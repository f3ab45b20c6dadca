"""λ, box and network form for deblocking from a JPEG file, quality by quality, on jpeg_quality.py's tuning pictures.

    python benchmarks/jpeg_tune.py [--qualities 5 10 20 30 50] [--lams ...] [--boxes ...] [--stop-lams ...]
                                   [--auto] [--size 64] [--tag NAME]
    python benchmarks/jpeg_tune.py --table

Not a test. Every run is ``DipL0Run(pixels, jpeg=path, ...)`` on a tuning
crop (chelsea, coffee, rocket, and crops of the IHC and H&E stains; never
jpeg_quality.py's reported ones) re-encoded at each quality, its estimates
projected onto the middle ``jpeg_box`` fraction of each quantisation interval
of the file. Each cell is the mean PSNR gain over the decoded input (dB), the
worst picture's in brackets. First table (--lams): the residual network of the
first file preset (the pixels' 'deblock' preset within the middle half), fixed
λ, then the best λ and the file's luma DC quantisation step (what the quality
factor sets). Second (--boxes): other boxes at λ 0.08. Third (--stop-lams,
--auto): the shipped file preset (``get_preset('deblock', jpeg=True)``: the
network fits the image, stopped by the spread rule) at fixed λ and at λ 'auto'.
Results resume from OUT/jpeg_tune_TAG.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import jpeg_quality as jq
from napari_dip_l0 import DipL0Run
from napari_dip_l0.core.jpeg import read_jpeg_constraint
from napari_dip_l0.core.presets import get_preset

LAMS = [0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16]
BOXES = [1.0, 0.75, 0.25]
STOP_LAMS = [0.003, 0.01, 0.03, 0.1]
# The file preset of the first sweeps: the pixels' residual network (300 iterations), one box at any quality.
RESIDUAL = replace(get_preset("deblock"), jpeg_box=0.5)
RESIDUAL_LAM = 0.08  # the λ at which its other boxes ran


def tuning_pictures() -> dict[str, np.ndarray]:
    return {name: truth for name, (truth, reported) in jq.pictures().items() if not reported}


def sweep(args) -> None:
    torch.set_num_threads(1)
    store = jq.Store(args.out / f"jpeg_tune_{args.tag}.json")
    done = merged(args.out)  # what any process has run
    tmp = Path(tempfile.mkdtemp())
    for q in args.qualities:
        for name, truth in tuning_pictures().items():
            path, decoded = jq.encode(tmp, name, truth, q)
            store.put("input", q, name, {"psnr": jq.psnr(truth, decoded),
                                         "dc_step": float(read_jpeg_constraint(path).tables[0][0, 0])})
            # One box per run, whatever the file's step: the preset's rule for fine steps is read off these tables.
            runs = [(str(lam), lam, RESIDUAL) for lam in args.lams]
            runs += [(f"{RESIDUAL_LAM:g}, box {b:g}", RESIDUAL_LAM, replace(RESIDUAL, jpeg_box=b)) for b in args.boxes]
            runs += [(f"stop {lam:g}", lam, get_preset("deblock", jpeg=True)) for lam in args.stop_lams]
            runs += [("stop auto", "auto", get_preset("deblock", jpeg=True))] if args.auto else []
            runs += [(f"stop auto, box {b:g}", "auto", get_preset("deblock", jpeg=True, jpeg_box=b, jpeg_box_fine=0.0))
                     for b in args.stop_boxes]
            for key, lam, preset in runs:
                if store.get(key, q, name) or store.key(key, q, name) in done:
                    continue
                # What dip_l0_deblock(path, lam=lam) runs, with the preset's box replaced.
                out = DipL0Run(decoded, preset=preset, lam=lam, channel_axis=-1, device="cpu", jpeg=path).run()
                store.put(key, q, name, {"psnr": jq.psnr(truth, out)})
                print(f"q{q:<3} {key:<12} {name:<8} {jq.psnr(truth, out):.2f} dB", flush=True)


def merged(out: Path) -> dict:
    rows = {}
    for f in sorted(out.glob("jpeg_tune_*.json")):
        rows.update(json.loads(f.read_text()))
    return rows


def table(out: Path) -> str:
    rows = merged(out)
    names = list(tuning_pictures())
    qs = sorted({int(k.split("|")[1]) for k in rows})
    lams = sorted({float(k.split("|")[0]) for k in rows if k.split("|")[0].replace(".", "").isdigit()})
    # Other boxes, each run at the λ that was the preset's then: "λ, box b"
    boxed = sorted({k.split("|")[0] for k in rows if ", box " in k and not k.startswith("stop")},
                   key=lambda b: (b.split(",")[0], b),
                   reverse=True)
    box = RESIDUAL.jpeg_box

    def gain(lam, q, worst=False, among=names):
        vals = [rows.get(f"{lam}|{q}|{n}") for n in among]
        if not among or any(v is None for v in vals):
            return None
        gains = [v["psnr"] - rows[f"input|{q}|{n}"]["psnr"] for v, n in zip(vals, among)]
        return float(min(gains) if worst else np.mean(gains))

    def cell(g):
        return "—" if g is None else f"{g:+.2f}"

    lines = [(f"Mean PSNR gain over the decoded input (dB), {len(names)} tuning pictures of {jq.SIZE}² "
              f"({', '.join(names)}), the residual network of {RESIDUAL.iterations} iterations within the "
              f"middle {box:g} of each interval; in brackets the worst picture's."), "",
             "| quality | " + " | ".join(f"λ {lam:g}" for lam in lams) + " | best λ | luma DC step |",
             "|---|" + "---|" * (len(lams) + 2)]
    for q in qs:
        gains = [gain(lam, q) for lam in lams]
        known = [(g, lam) for g, lam in zip(gains, lams) if g is not None]
        step = rows[f"input|{q}|{names[0]}"]["dc_step"]
        best = max(known)[1] if known else None
        lines.append(f"| {q} | " + " | ".join("—" if g is None else f"{g:+.2f} ({cell(gain(lam, q, True))})"
                                             for g, lam in zip(gains, lams))
                     + f" | {best if best is not None else '—'} | {step:g} |")
    # Per λ, over the pictures its boxes were run on (λ 0.04's before the stains joined the tuning set).
    for lam in sorted({b.split(",")[0] for b in boxed}, key=float, reverse=True):
        cols = [b for b in boxed if b.split(",")[0] == lam] + [lam]  # and λ at the preset's box
        among = [n for n in names if all(f"{b}|{q}|{n}" in rows for b in cols for q in qs)]
        if not among:
            continue
        lines += ["", "Other boxes (the middle fraction of each interval the estimates are projected onto) "
                      f"at λ {lam}, on {', '.join(among)}: mean gain (dB), and in brackets the worst picture's:", "",
                  "| quality | " + " | ".join(b.split(", ")[1] if ", box" in b else f"box {box:g}" for b in cols)
                  + " |", "|---|" + "---|" * len(cols)]
        for q in qs:
            lines.append(f"| {q} | " + " | ".join(f"{cell(gain(b, q, among=among))} "
                                                 f"({cell(gain(b, q, True, among))})" for b in cols) + " |")
    stops = sorted({float(k.split("|")[0][5:]) for k in rows if k.startswith("stop ") and "auto" not in k})
    if stops:
        filed = get_preset("deblock", jpeg=True)
        lines += ["", (f"The network fitting the image itself, stopped by the spread rule (`FILE_PRESETS['deblock']`:"
                       f" patience {filed.patience}, cap {filed.iterations}, box {filed.jpeg_box:g}, "
                       f"{filed.jpeg_box_fine:g} where the luma DC step is below {filed.jpeg_fine_step:g}), against "
                       f"the residual network at λ {RESIDUAL_LAM:g} with the same boxes: mean gain (dB), and in "
                       "brackets the worst picture's:"), "",
                  "| quality | " + " | ".join(f"λ {lam:g}" for lam in stops)
                  + f" | λ auto ({filed.lam_step:g} × step / 255) | residual, λ {RESIDUAL_LAM:g} |",
                  "|---|" + "---|" * (len(stops) + 2)]
        for q in qs:
            fine = rows[f"input|{q}|{names[0]}"]["dc_step"] < filed.jpeg_fine_step
            old = f"{RESIDUAL_LAM:g}, box {filed.jpeg_box_fine:g}" if fine else f"{RESIDUAL_LAM:g}"
            lines.append(f"| {q} | " + " | ".join(f"{cell(gain(b, q))} ({cell(gain(b, q, True))})"
                                                 for b in [f"stop {lam:g}" for lam in stops] + ["stop auto", old])
                         + " |")
    boxes = sorted({k.split("|")[0] for k in rows if k.startswith("stop auto, box ")}, reverse=True)
    if boxes:
        filed = get_preset("deblock", jpeg=True)
        lines += ["", ("The file preset at λ 'auto' with one box at any quality, against its own box rule: mean gain "
                       "(dB), and in brackets the worst picture's:"), "",
                  "| quality | " + " | ".join(b.split(", ")[1] for b in boxes) + " | preset's boxes |",
                  "|---|" + "---|" * (len(boxes) + 1)]
        for q in qs:
            lines.append(f"| {q} | " + " | ".join(f"{cell(gain(b, q))} ({cell(gain(b, q, True))})"
                                                 for b in boxes + ["stop auto"]) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qualities", type=int, nargs="+", default=jq.QUALITIES)
    ap.add_argument("--lams", type=float, nargs="*", default=LAMS)
    ap.add_argument("--boxes", type=float, nargs="*", default=BOXES, help=f"other boxes to run at λ {RESIDUAL_LAM:g}")
    ap.add_argument("--stop-lams", type=float, nargs="*", default=STOP_LAMS,
                    help="λ of the file preset (fitting the image, stopped by the spread rule) to run")
    ap.add_argument("--auto", action="store_true", help="also run the file preset as shipped (λ 'auto')")
    ap.add_argument("--stop-boxes", type=float, nargs="*", default=[],
                    help="boxes to run the file preset with at λ 'auto', one box at any quality")
    ap.add_argument("--size", type=int, default=64, help="side of the crops (default 64)")
    ap.add_argument("--tag", default="main", help="name of this process's results file")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--table", action="store_true", help="only print the table of the results so far")
    args = ap.parse_args()
    jq.SIZE = args.size
    args.out = args.out / f"jpeg_{args.size}px"
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        sweep(args)
    print(table(args.out))


if __name__ == "__main__":
    main()
