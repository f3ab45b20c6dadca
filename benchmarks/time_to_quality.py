"""Quality against wall-clock seconds: DIP-ℓ0's denoising, before and now, beside its classical peers (not a test).

    python benchmarks/time_to_quality.py [--sets camera real] [--methods ...] [--quick] [--table] [--docs]

Sets (the held-out halves only; nothing here is tuned on them):

* ``camera``: ``benchmarks/microscopy.py``'s reported crops (128²) with its simulated camera noise at 5, 20 and
  100 photons, the same frames (seeds) that benchmark scores;
* ``real``: ``benchmarks/real_noise.py``'s reported crops of real two-photon acquisitions, scored against the
  mean of the other frames.

Methods: DIP-ℓ0 as a user calls it, ``dip_l0_denoise(frame)`` (its run object, ``DipL0Run(frame, "denoise")``),
and the peers TV (Chambolle), BM3D and, on the simulated camera frames, BM3D after the generalised Anscombe transform with the camera's true parameters.
Peers' parameters are those their own benchmark tuned on its tuning half (microscopy.py's grids and tuning
crops for the camera set, recorded below; real_noise.py's tuning frames for the real set, tuned here).

For DIP-ℓ0 the run is traced: every ``--every`` iterations the live estimate (what the napari widget shows)
is scored, with the clock paused while it is, so the seconds are those of the run alone. Each run uses
``--threads`` torch threads; run it with nothing else on the cores. Rows are saved per method under
``--out/time_to_quality/`` so methods can run in separate processes; ``--table`` assembles the table and
figure from what is saved.

Another version's defaults run beside today's from a checkout of that version (its package first on the path,
this script and its benchmark data from here), e.g. the code before the 2026-12-06 changes::

    git worktree add /tmp/before 422aa93
    PYTHONPATH=/tmp/before/src python benchmarks/time_to_quality.py --methods "DIP-ℓ0 (defaults)" \
        --label "DIP-ℓ0 (defaults, 422aa93)"
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import microscopy as mic
import numpy as np
import real_noise as rn
import torch
from readme import write_section

from napari_dip_l0 import DipL0Run
from napari_dip_l0.core.presets import get_preset

OURS = "DIP-ℓ0 (defaults)"
# Candidates measured beside the defaults, run only when named with --methods.
HELD_OUT = "DIP-ℓ0, held-out stop (holdout 0.1, patience 100)"
CANDIDATES = {HELD_OUT: {"holdout": 0.1, "patience": 100, "min_improvement": 0.0}}
# microscopy.py's tuned parameters per photon level (its tuning half; README "camera noise" section).
CAMERA_PEERS = {"TV (Chambolle)": {5: 0.65, 20: 0.3, 100: 0.15}, "BM3D": {5: 0.3, 20: 0.3, 100: 0.2},
                "BM3D + Anscombe": {5: 1.2, 20: 1.2, 100: 0.85}}


def camera_cases(cache: Path, quick: bool, peaks) -> list[dict]:
    """microscopy.py's reported frames: name, set, photon level, frame, scorer."""
    tune, report, _ = mic.build_set(cache, 128, False)
    cases = []
    for peak in (20,) if quick else peaks:
        for i, (label, clean, _) in enumerate(report[:2] if quick else report):
            noisy, truth, dr, mask = mic.camera(clean, peak, int(peak) + 1000 * (i + len(tune)), hot=(i + len(tune)) % 2 == 1)
            cases.append({"name": label, "set": f"camera, {peak} photons", "peak": peak, "noisy": noisy,
                          "score": lambda img, t=truth, d=dr, m=mask: mic.psnr(t, img, d, m)})
    return cases


def real_cases(cache: Path, quick: bool) -> list[dict]:
    cases = []
    for key, get in list(rn.ACQUISITIONS.items())[:1 if quick else None]:
        pair = get("report", cache)
        cases.append({"name": key, "set": "real two-photon", "peak": None, "noisy": pair.noisy,
                      "score": lambda img, p=pair: rn.psnr(p, img), "tune": get("tune", cache)})
    return cases


def traced(preset, every: int):
    """A DIP-ℓ0 method: runs ``dip_l0_denoise``'s run object and gives (result, seconds, curve)."""

    def run(case):
        kwargs = {"preset": preset} if preset is not None else {}
        t0, paused, curve = time.perf_counter(), 0.0, []
        run = DipL0Run(case["noisy"], "denoise", device="cpu", **kwargs)
        for snap in run:
            if snap.iteration % every == 0 and not snap.done:
                t1 = time.perf_counter()
                curve.append((t1 - t0 - paused, snap.iteration, case["score"](snap.image)))
                paused += time.perf_counter() - t1
        seconds = time.perf_counter() - t0 - paused
        result = run.last.image
        curve.append((seconds, run.last.iteration, case["score"](result)))
        return result, seconds, curve

    return run


def peer(name: str):
    """A classical peer with the parameter its own benchmark tuned (see CAMERA_PEERS, real_noise.tuned)."""

    def run(case):
        if case["peak"] is None:  # real data: tuned on the acquisition's tuning frame
            if name not in rn.peers():
                return None
            fn, grid = rn.peers()[name]
            tune = case["tune"]
            param = max(grid, key=lambda p: rn.psnr(tune, rn.on_robust_scale(fn, tune.noisy, p)))
            t0 = time.perf_counter()
            out = rn.on_robust_scale(fn, case["noisy"], param)
        else:
            param = CAMERA_PEERS[name][case["peak"]]
            fn = dict(mic.methods(True))[name][0]
            t0 = time.perf_counter()
            (out, _), = fn(case["noisy"], [param])
        return out, time.perf_counter() - t0, None

    return run


def methods(every: int, named=()) -> dict:
    """The methods to run: the defaults (and those they replaced, while they differ), the peers, and any
    candidate ``named``."""
    found = {OURS: traced(None, every)}
    found.update({n: traced(get_preset("denoise", **CANDIDATES[n]), every) for n in CANDIDATES if n in named})
    found.update({n: peer(n) for n in CAMERA_PEERS})
    return found


def evaluate(args, saved: Path) -> None:
    cases = []
    if "camera" in args.sets:
        cases += camera_cases(args.cache, args.quick, args.peaks)
    if "real" in args.sets:
        cases += real_cases(args.cache, args.quick)
    saved.mkdir(parents=True, exist_ok=True)
    for name, fn in methods(args.every, args.methods or ()).items():
        if args.methods and name not in args.methods:
            continue
        label = args.label if name == OURS and args.label else name
        rows = []
        for case in cases:
            if name == "BM3D + Anscombe" and case["peak"] is None:
                continue  # needs the camera's gain, offset and read noise
            found = fn(case)
            if found is None:
                continue
            out, seconds, curve = found
            rows.append({"method": label, "set": case["set"], "image": case["name"], "psnr": case["score"](out),
                         "input": case["score"](case["noisy"]), "seconds": seconds, "curve": curve})
            print(f"  {label:<26} {case['set']:<22} {case['name']:<14} PSNR {rows[-1]['psnr']:6.2f} "
                  f"(input {rows[-1]['input']:6.2f})  {seconds:7.2f} s", flush=True)
        # Named by what was run, so sets and levels can run in separate processes and be tabulated together.
        part = "_".join(args.sets) + ("_" + "_".join(map(str, args.peaks)) if "camera" in args.sets else "")
        (saved / f"{mic.slug(label)}__{part}.json").write_text(json.dumps(rows, indent=1))


def preview_gap(curve: list, fraction: float = 0.2) -> float:
    """Final PSNR minus that of the live estimate at ``fraction`` of the run's seconds."""
    end = curve[-1][0]
    before = [c for c in curve[:-1] if c[0] <= fraction * end]
    return curve[-1][2] - (before[-1][2] if before else float("nan"))


def table(rows: list[dict]) -> str:
    sets = list(dict.fromkeys(r["set"] for r in rows))
    names = list(dict.fromkeys(r["method"] for r in rows))
    head = ("| set | method | PSNR mean (dB) | gain over input | seconds / image | seconds ratio to BM3D | "
            "live estimate at 20 % of the time, dB below the result |")
    lines = [head, "|---" * 7 + "|"]
    for s in sets:
        bm3d = [r["seconds"] for r in rows if r["set"] == s and r["method"] == "BM3D"]
        for n in names:
            rs = [r for r in rows if r["set"] == s and r["method"] == n]
            if not rs:
                continue
            secs = float(np.mean([r["seconds"] for r in rs]))
            ratio = f"{secs / np.mean(bm3d):.2g}×" if bm3d else "—"
            gaps = [preview_gap(r["curve"]) for r in rs if r["curve"]]
            gap = f"{np.nanmean(gaps):.2f} (worst {np.nanmax(gaps):.2f})" if gaps else "—"
            lines.append(f"| {s} | {n} | {np.mean([r['psnr'] for r in rs]):.2f} | "
                         f"{np.mean([r['psnr'] - r['input'] for r in rs]):+.2f} | {secs:.2g} | {ratio} | {gap} |")
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    """Per set: mean PSNR of the live estimate against seconds (DIP-ℓ0), peers as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r["set"] for r in rows))
    colours = {n: f"C{i}" for i, n in enumerate(dict.fromkeys(r["method"] for r in rows))}  # one per method
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.6), squeeze=False)
    for ax, s in zip(axes[0], sets):
        rs = [r for r in rows if r["set"] == s]
        end = max(r["seconds"] for r in rs)
        grid = np.linspace(0, end, 200)
        for n in dict.fromkeys(r["method"] for r in rs):
            mine = [r for r in rs if r["method"] == n]
            if mine[0]["curve"]:
                # Before its first snapshot a run shows its input; after its end, its result.
                ys = [np.interp(grid, [0] + [c[0] for c in r["curve"]], [r["input"]] + [c[2] for c in r["curve"]])
                      for r in mine]
                ax.plot(grid, np.mean(ys, axis=0), label=n, color=colours[n])
            else:
                ax.plot(np.mean([r["seconds"] for r in mine]), np.mean([r["psnr"] for r in mine]), "o", label=n,
                        color=colours[n])
        ax.axhline(np.mean([r["input"] for r in rs if r["method"] == rs[0]["method"]]), color="grey", lw=0.8,
                   ls=":", label="input")
        ax.set_title(s, fontsize=9)
        ax.set_xlabel("seconds (2 cores)")
        ax.set_ylabel("mean PSNR (dB)")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=["camera", "real"], default=["camera", "real"])
    parser.add_argument("--methods", nargs="+", metavar="METHOD", help="run just these methods")
    parser.add_argument("--peaks", nargs="+", type=int, choices=mic.PEAKS, default=list(mic.PEAKS),
                        help="photon levels of the camera set")
    parser.add_argument("--label", help="the name of the defaults' rows (for a run of another version's code)")
    parser.add_argument("--every", type=int, default=10, help="iterations between scored snapshots")
    parser.add_argument("--quick", action="store_true", help="two crops at 20 photons and one acquisition")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache"))
    parser.add_argument("--table", action="store_true", help="run nothing: tabulate what is saved")
    parser.add_argument("--docs", "--readme", dest="docs", action="store_true",
                        help="write the table into its docs page (docs/time-to-quality.md) and the README, "
                             "the figure to docs/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    saved = args.out / ("time_to_quality_quick" if args.quick else "time_to_quality")
    if not args.table:
        evaluate(args, saved)
        if args.methods:
            return
    rows = [r for p in sorted(saved.glob("*.json")) for r in json.loads(p.read_text())]
    text = table(rows)
    print("\n" + text)
    fig = args.out / "time_to_quality.png"
    figure(rows, fig)
    if args.docs:
        Path("docs/time_to_quality.png").write_bytes(fig.read_bytes())
        write_section("time_to_quality", text)
        write_section("time_to_quality", text, Path("README.md"))  # its copy in the README


if __name__ == "__main__":
    main()
