"""Settings sweep for file-aware JPEG deblocking, on tuning images kept apart from benchmarks/jpeg_quality.py.

    python benchmarks/jpeg_tune.py [--quality 10] [--size 128]

Not a test; its output is summarised in README.md (JPEG files). Tuning images:
chelsea and rocket (scikit-image), and a crop of immunohistochemistry() that
the benchmark does not use.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from napari_dip_l0 import DipL0Run
from napari_dip_l0.core import admm
from napari_dip_l0.core import run as run_mod
from napari_dip_l0.core.presets import get_preset


def tuning_images(size: int):
    ihc = data.immunohistochemistry()  # 512² RGB; the benchmark uses its top-left quarter
    return {"chelsea": data.chelsea()[50 : 50 + size, 150 : 150 + size],
            "rocket": data.rocket()[100 : 100 + size, 200 : 200 + size],
            "ihc-br": ihc[-size:, -size:]}


class ProjectedV(admm.AdmmFit):
    """The v-step's result projected onto the file's set too."""

    def step(self):
        k0 = self.iteration
        out = super().step()
        if self.constraint is not None and (k0 + 1) % self.preset.v_every == 0:
            self.u = self.u + self.v  # undo the u-step, redo it with the projected v
            self.v = self.constraint(self.v)
            self.u = self.u - self.v
        return out


def variants():
    dep = get_preset("deblock")
    nonres = replace(dep, residual=False)
    return {
        "pixels, preset": (dep, False, False, [300]),
        "file, preset": (dep, True, False, [300]),
        "file, residual λ.005": (replace(dep, lam=0.005), True, False, [300, 600]),
        "file, non-res λ.01": (replace(nonres, lam=0.01), True, False, [300, 600, 900]),
        "file, non-res λ.003": (replace(nonres, lam=0.003), True, False, [300, 600, 900]),
        "file, non-res λ.001": (replace(nonres, lam=0.001), True, False, [300, 600, 900]),
        "file, non-res λ.01, proj v": (replace(nonres, lam=0.01), True, True, [300, 600, 900]),
        "file, residual, proj v": (dep, True, True, [300]),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quality", type=int, nargs="+", default=[10])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    for q in args.quality:
        for name, (preset, use_file, proj_v, checks) in variants().items():
            if args.only and name not in args.only:
                continue
            run_mod.AdmmFit = ProjectedV if proj_v else admm.AdmmFit
            scores, secs = {c: [] for c in checks}, []
            for img_name, truth in tuning_images(args.size).items():
                path = tmp / f"{img_name}_q{q}.jpg"
                Image.fromarray(truth).save(path, quality=q)
                decoded = np.asarray(Image.open(path).convert("RGB"))
                base = peak_signal_noise_ratio(truth, decoded)
                t0 = time.perf_counter()
                r = DipL0Run(decoded, preset=preset, iterations=max(checks), channel_axis=-1, device="cpu",
                             jpeg=path if use_file else None)
                for snap in r:
                    if snap.iteration in checks and snap.losses:
                        scores[snap.iteration].append(peak_signal_noise_ratio(truth, snap.image) - base)
                secs.append(time.perf_counter() - t0)
            text = "  ".join(f"@{c}: {np.mean(v):+.2f} ({' '.join(f'{x:+.2f}' for x in v)})" for c, v in scores.items())
            print(f"q{q} {name:<28} {text}  {np.mean(secs):.0f} s", flush=True)


if __name__ == "__main__":
    main()
