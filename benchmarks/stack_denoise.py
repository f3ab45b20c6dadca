"""Denoising stacks: a stack run (warm start) against its planes one by one and TV (not a test).

    python benchmarks/stack_denoise.py [--frames 5] [--threads 2] [--only stack]
    PYTHONPATH=/tmp/before/src python benchmarks/stack_denoise.py --only stack --label "(before)"
    python benchmarks/stack_denoise.py --tune      # the warm planes' PSNR by step, on the tuning stacks

Each case is a short stack of frames whose structures stay put or drift a little, with fresh noise in every
frame, in a tuning and a reported version (other frames, another region):

* the three real two-photon time-lapses of ``benchmarks/real_noise.py`` (SIMA's movie, SIMA's photon-counting
  volume, thunder's mouse), ``--frames`` consecutive frames, each scored against the mean of the frames
  around it (itself left out), as there;
* ``benchmarks/microscopy.py``'s camera model at 20 photons on two of its crops (nuclei and SEM, tuning and
  reported halves), the 128² window drifting 2 pixels down and 1 right a frame;
* the same camera model on consecutive planes of a real z-stack, stardist's 3D nuclei example
  (``stardist/data/images/img3d.tif`` in its wheel, 31 × 61 × 57, BSD 3-clause): nuclei appear and vanish
  from plane to plane. Tuning on planes 5-9, reported on planes 18-22.

Methods: ``dip_l0_denoise`` on the whole stack (the default warm start), on each frame alone
(``warm_start=False``), and scikit-image's TV on each frame, its weight the best on the tuning stack (on the
package's robust scale, as in ``real_noise.py``). PSNR is the mean over the frames after the first (the first
is fitted from scratch either way); seconds are the whole stack's. Results go to ``--out`` as JSON, so a run
of older code (``--label``) lands in the same table.

``--tune`` runs each tuning stack once with 100 warm iterations a plane and prints the mean PSNR of the warm
planes every 10 steps (the snapshots' live estimate), beside the planes fitted one by one: what the preset's
``warm_iterations`` was chosen on.
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
from skimage.metrics import peak_signal_noise_ratio
from skimage.restoration import denoise_tv_chambolle

from napari_dip_l0 import DipL0Run, dip_l0_denoise

TV_GRID = [0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.22, 0.3, 0.45, 0.65, 1.0, 1.5]


def _real(stack: np.ndarray, ts: list[int], window, crop=np.s_[:, :]) -> tuple[np.ndarray, list]:
    """Frames ``ts`` of ``stack`` (cropped) and, per frame, a scorer against the mean of ``window(t)``."""
    scorers = []
    for t in ts:
        ref = stack[window(t)][(slice(None), *crop)].astype(np.float64).mean(0)
        lo, hi = np.percentile(ref, [0.1, 99.9])
        scorers.append(lambda img, r=ref, d=float(hi - lo): peak_signal_noise_ratio(r, np.asarray(img, float),
                                                                                    data_range=d))
    return stack[ts][(slice(None), *crop)], scorers


def _planes(clean, seed: int) -> tuple[np.ndarray, list]:
    """The camera model at 20 photons on each clean plane (fresh noise in each), and their scorers."""
    out, scorers = [], []
    for j, c in enumerate(clean):
        noisy, truth, dr, mask = mic.camera(c, 20, seed + j, hot=False)
        out.append(noisy)
        scorers.append(lambda img, t=truth, d=dr, m=mask: mic.psnr(t, img, d, m))
    return np.stack(out), scorers


def _drifting(clean: np.ndarray, frames: int, seed: int) -> tuple[np.ndarray, list]:
    """A 128² window drifting 2 pixels down and 1 right a frame."""
    return _planes([clean[2 * j:2 * j + 128, j:j + 128] for j in range(frames)], seed)


def cases(cache: Path, frames: int) -> dict:
    """name: {'tune': (stack, scorers), 'report': (stack, scorers)}."""
    found = {}
    sima = rn.sima_stack(cache)
    others = lambda n: lambda t: [i for i in range(n) if i != t]  # noqa: E731
    found["SIMA movie"] = {"tune": _real(sima, list(range(4, 4 + frames)), others(len(sima)), np.s_[:, :128]),
                           "report": _real(sima, list(range(12, 12 + frames)), others(len(sima)), np.s_[:, 128:])}
    vol = rn.sima_volume_stack(cache)[..., 0]  # (t, z, y, x)
    found["SIMA volume"] = {"tune": _real(vol[:, 0], list(range(2, 2 + frames)), others(len(vol))),
                            "report": _real(vol[:, 2], list(range(4, 4 + frames)), others(len(vol)))}
    th = rn.thunder_mouse_stack(cache)
    around = lambda t: [i for i in range(t - 10, t + 11) if i != t]  # noqa: E731
    found["thunder mouse"] = {"tune": _real(th, list(range(120, 120 + frames)), around),
                              "report": _real(th, list(range(370, 370 + frames)), around)}
    size = 128 + 2 * frames
    tune, report, _ = mic.build_set(cache, size, False)
    first = lambda items, kind: next(c for n, c, _ in items if n.startswith(kind))  # noqa: E731
    for kind in ("nuclei", "SEM"):
        found[f"camera {kind}, 20 photons"] = {"tune": _drifting(first(tune, kind), frames, 100),
                                               "report": _drifting(first(report, kind), frames, 200)}
    vol = mic.normalised(mic.wheel_image(cache, "stardist 3d"))
    found["z-stack nuclei, 20 photons"] = {"tune": _planes(vol[5:5 + frames], 300),
                                           "report": _planes(vol[18:18 + frames], 400)}
    return found


def tv(stack: np.ndarray, weight: float) -> np.ndarray:
    return np.stack([rn.on_robust_scale(lambda x, p: denoise_tv_chambolle(x, weight=p), f.astype(np.float64), weight)
                     for f in stack])


def score(scorers: list, result: np.ndarray) -> float:
    """Mean PSNR of the frames after the first."""
    return float(np.mean([s(r) for s, r in zip(scorers[1:], result[1:])]))


def tune(data: dict, its: int = 100, every: int = 10) -> tuple[dict, float]:
    """Mean PSNR of the warm planes of the tuning stack by step, and of the same planes fitted one by one."""
    stack, scorers = data["tune"]
    run = DipL0Run(stack, "denoise", device="cpu", warm_iterations=its)
    starts, curves = {}, {}
    for snap in run:
        k = snap.iteration - starts.setdefault(snap.plane, snap.iteration)
        if snap.plane > 0 and k % every == 0:
            curves.setdefault(k, []).append(scorers[snap.plane](snap.plane_image))
    alone = score(scorers, dip_l0_denoise(stack, warm_start=False, device="cpu"))
    return {k: float(np.mean(v)) for k, v in sorted(curves.items())}, alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=["stack", "one by one", "TV"], default=["stack", "one by one", "TV"])
    parser.add_argument("--cases", nargs="+", help="only these cases (names as in the table)")
    parser.add_argument("--tune", action="store_true", help="warm planes' PSNR by step on the tuning stacks")
    parser.add_argument("--label", default="", help="suffix of the DIP-ℓ0 rows' names (another checkout's code)")
    parser.add_argument("--cache", type=Path, default=rn.CACHE)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/stack_denoise.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tune:
        print("| tuning stack | one by one | " + " | ".join(f"warm @{k}" for k in range(10, 101, 10)) + " |")
        print("|---" * 12 + "|")
        for name, data in cases(args.cache, args.frames).items():
            if args.cases and name not in args.cases:
                continue
            curve, alone = tune(data)
            print(f"| {name} | {alone:.2f} | " + " | ".join(f"{curve[k]:.2f}" for k in range(10, 101, 10)) + " |",
                  flush=True)
        return
    rows = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name, data in cases(args.cache, args.frames).items():
        if args.cases and name not in args.cases:
            continue
        stack, scorers = data["report"]
        got = rows.setdefault(name, {})
        for method in args.only:
            key = method + (f" {args.label}" if args.label and method != "TV" else "")
            t0 = time.perf_counter()
            if method == "TV":
                tstack, tscorers = data["tune"]
                w = max(TV_GRID, key=lambda p: score(tscorers, tv(tstack, p)))
                got[key] = {"psnr": score(scorers, tv(stack, w)), "seconds": None, "weight": w}
            else:
                result = dip_l0_denoise(stack, warm_start=method == "stack", device="cpu")
                got[key] = {"psnr": score(scorers, result), "seconds": time.perf_counter() - t0}
            print(f"{name:<26} {key:<28} {got[key]['psnr']:.2f} dB"
                  + (f" {got[key]['seconds']:.1f} s" if got[key]["seconds"] else f" (weight {got[key]['weight']})"),
                  flush=True)
        got["input"] = {"psnr": score(scorers, stack.astype(np.float64)), "seconds": None}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    methods = sorted({m for r in rows.values() for m in r})
    print(f"\n{args.frames} frames a stack; PSNR (dB) of frames 2-{args.frames}, seconds for the whole stack\n")
    print("| case | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for name, r in rows.items():
        cells = [f"{r[m]['psnr']:.2f}" + (f" ({r[m]['seconds']:.0f} s)" if r[m].get("seconds") else "")
                 if m in r else "" for m in methods]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
