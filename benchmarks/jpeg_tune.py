"""λ and box for deblocking from a JPEG file, quality by quality, on jpeg_quality.py's tuning pictures (not a test).

    python benchmarks/jpeg_tune.py [--qualities 5 10 20 30 50] [--lams ...] [--boxes ...] [--size 64] [--tag NAME]
    python benchmarks/jpeg_tune.py --table

Every run is ``dip_l0_deblock(path, lam=λ)``: the 'deblock' preset on the
file's pixels, its estimates projected onto the middle ``jpeg_box`` fraction of
each quantisation interval of the file. The pictures are jpeg_quality.py's
tuning crops (chelsea, coffee, rocket, and crops of the IHC and H&E stains),
never its reported ones. Each cell is
the mean PSNR gain over the decoded input (dB). First table: fixed λ at the
preset's box, then the best λ, the file's luma DC quantisation step (what the
quality factor sets), with the worst picture's gain in brackets.
Second table: other boxes, at the λ that was the preset's when they ran. Results resume from OUT/jpeg_tune_TAG.json.
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
            shipped = replace(get_preset("deblock"), jpeg_box_fine=0.0)
            runs = [(str(lam), lam, shipped) for lam in args.lams]
            lam = shipped.lam_jpeg
            runs += [(f"{lam:g}, box {b:g}", lam, replace(shipped, jpeg_box=b)) for b in args.boxes]
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
    boxed = sorted({k.split("|")[0] for k in rows if ", box " in k}, key=lambda b: (b.split(",")[0], b),
                   reverse=True)
    shipped = get_preset("deblock")
    box = shipped.jpeg_box

    def gain(lam, q, worst=False, among=names):
        vals = [rows.get(f"{lam}|{q}|{n}") for n in among]
        if not among or any(v is None for v in vals):
            return None
        gains = [v["psnr"] - rows[f"input|{q}|{n}"]["psnr"] for v, n in zip(vals, among)]
        return float(min(gains) if worst else np.mean(gains))

    def cell(g):
        return "—" if g is None else f"{g:+.2f}"

    lines = [f"Mean PSNR gain over the decoded input (dB), {len(names)} tuning pictures of {jq.SIZE}² "
             f"({', '.join(names)}), `dip_l0_deblock(path, lam=λ)` (box {box:g}); in brackets the worst "
             f"picture's. The preset's λ 'auto' is {shipped.lam_jpeg:g}.", "",
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
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qualities", type=int, nargs="+", default=jq.QUALITIES)
    ap.add_argument("--lams", type=float, nargs="*", default=LAMS)
    ap.add_argument("--boxes", type=float, nargs="*", default=BOXES, help="other boxes to run at the preset's λ")
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
