"""Quality of DIP-ℓ0 against its peers on offline NKS-like sets (not a test).

    python benchmarks/quality.py [--quick] [--set smooth|deblock|both] [--size 256] [--out benchmarks/out] [--docs]

Sets, built from pictures bundled with scikit-image (nothing is downloaded):
  smooth   piecewise-planar structure images (the ground truth, see napari_dip_l0.data)
           blended with a real texture, as the NKS set does;
  deblock  the same structure images saved as JPEG quality 10 (the files are kept, so
           one row deblocks from the file: its quantisation tables bound the result).
Protocol: every method gets one parameter for the whole set, the best mean PSNR
over its grid on the tuning half (which holds the images the presets were tuned
on); the table reports the other half. DIP-ℓ0 rows use the presets the API ships.
Plain DIP and DIP-TV choose their stopping iteration from the grid too (generous
to them). Writes quality_<set>.md and quality_<set>.png under --out; --docs
puts each table into docs/benchmarks.md between its set's markers and copies the
figure to docs/.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.restoration import denoise_bilateral, denoise_tv_chambolle

from napari_dip_l0 import DipL0Run, l0_smooth
from napari_dip_l0.core.presets import get_preset
from napari_dip_l0.data import jpeg_compress, structure_image, textured_image
from peers import plain_dip
from readme import write_section

# (photo, texture, seed); the first four form the tuning half (chelsea and rocket
# are the images the presets were chosen on).
IMAGES = [
    ("chelsea", "brick", 2), ("rocket", "gravel", 3), ("horse", "grass", 5), ("moon", "gravel", 7),
    ("astronaut", "gravel", 0), ("coffee", "grass", 1), ("camera", "brick", 4), ("coins", "grass", 6),
]
QUICK_IMAGES = [IMAGES[0], IMAGES[1], IMAGES[4], IMAGES[5]]


def psnr(truth, image):
    return peak_signal_noise_ratio(truth, image, data_range=1.0)


def ssim(truth, image):
    return structural_similarity(truth, image, data_range=1.0, channel_axis=-1)


# The JPEG file each deblocking input was decoded from, by the input's bytes (methods see only the input).
JPEG_FILES: dict[bytes, Path] = {}


def _key(observed: np.ndarray) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(observed).tobytes()).digest()


def _jpeg_file(photo: str, truth: np.ndarray) -> np.ndarray:
    """jpeg_compress(truth, 10), with the file kept in JPEG_FILES."""
    import imageio.v3 as iio

    folder = Path(tempfile.gettempdir()) / "dip_l0_quality"
    folder.mkdir(exist_ok=True)
    path = folder / f"{photo}_{truth.shape[0]}_q10.jpg"
    iio.imwrite(path, np.round(np.clip(truth, 0, 1) * 255).astype(np.uint8), quality=10)
    observed = iio.imread(path).astype(np.float64) / 255.0
    assert np.array_equal(observed, jpeg_compress(truth, 10))  # the same encoder as the in-memory round trip
    JPEG_FILES[_key(observed)] = path
    return observed


def from_file(preset):
    """DIP-ℓ0 as ``dip_l0_deblock(path)`` runs it: the file's pixels and quantisation tables, λ 'auto'."""

    def run(observed, params):
        import imageio.v3 as iio

        path = JPEG_FILES[_key(observed)]
        t0 = time.perf_counter()
        run = DipL0Run(iio.imread(path), preset=preset, iterations=params[0], channel_axis=-1, device="cpu",
                       jpeg=path)
        out = run.run()
        print(f"  {Path(path).name}: λ {run.preset.lam:.4g}, kept iteration {run.stopped_at}", flush=True)
        return [(out / 255.0, time.perf_counter() - t0)]

    return run


def build_set(kind: str, size: int, quick: bool):
    pairs = []
    for photo, texture, seed in QUICK_IMAGES if quick else IMAGES:
        truth = structure_image(photo, size, rgb=True)
        observed = textured_image(truth, texture, seed=seed) if kind == "smooth" else _jpeg_file(photo, truth)
        pairs.append((f"{photo}+{texture}" if kind == "smooth" else photo, observed, truth))
    half = len(pairs) // 2
    return pairs[:half], pairs[half:]


def dip_snapshots(preset, solver=None, tv=None):
    """(iteration, image, seconds) of one run: DIP-ℓ0 as the package runs it, or with ``tv`` a deep-prior peer."""

    def snapshots(observed, iterations):
        if tv is not None:  # plain DIP (tv 0) or DIP-TV
            yield from plain_dip(observed, preset, iterations, tv=tv)
            return
        for snap in DipL0Run(observed, preset=preset, iterations=iterations, channel_axis=-1, device="cpu",
                             l0_solver=solver):
            yield snap.iteration, snap.image, snap.seconds

    return snapshots


def dip_runs(preset, checkpoints, solver=None, tv=None):
    """A method from one DIP run per image, read at several iterations: params are checkpoints."""
    snapshots = dip_snapshots(preset, solver, tv)

    def run(observed, params):
        out = {k: (image, seconds) for k, image, seconds in snapshots(observed, max(params)) if k in params}
        return [out[p] for p in params]

    run.snapshots = snapshots  # lets the figure re-run it for a PSNR-against-seconds curve
    return run, list(checkpoints)


def simple(fn):
    """A method with one call per parameter value."""

    def run(observed, params):
        results = []
        for p in params:
            t0 = time.perf_counter()
            results.append((np.clip(fn(observed, p), 0, 1), time.perf_counter() - t0))
        return results

    return run


def methods(kind: str, quick: bool) -> dict:
    checkpoints = [100, 200] if quick else [150, 300, 600]
    plain = get_preset(kind)
    found = {
        "input": (simple(lambda f, p: f), [None]),
        "ℓ0 smoothing (FFT, Xu 2011)": (simple(lambda f, p: l0_smooth(f, p, method="fft", channel_axis=-1)),
                                        [0.005, 0.01, 0.02, 0.03, 0.05, 0.08]),
        "Region Fusion alone": (simple(lambda f, p: l0_smooth(f, p, channel_axis=-1)), [0.005, 0.01, 0.02, 0.04, 0.08, 0.16]),
        "TV (Chambolle)": (simple(lambda f, p: denoise_tv_chambolle(f, weight=p, channel_axis=-1)),
                           [0.02, 0.05, 0.1, 0.2, 0.35, 0.5]),
        "bilateral": (simple(lambda f, p: denoise_bilateral(f, sigma_color=p, sigma_spatial=3, channel_axis=-1)),
                      [0.02, 0.05, 0.1, 0.2]),
        "plain DIP": dip_runs(plain, checkpoints, tv=0.0),
    }
    for tv in [0.01] if quick else [0.003, 0.01, 0.03]:
        found[f"DIP-TV (tv {tv})"] = dip_runs(plain, checkpoints, tv=tv)
    if kind == "deblock":
        import bm3d

        def bm3d_any(f, sigma):
            # bm3d_rgb's colour transform divides by the chroma range: NaN for grey pictures stored as RGB.
            if np.ptp(f, axis=-1).max() == 0:
                return np.repeat(bm3d.bm3d(f[..., 0], sigma)[..., None], 3, axis=-1)
            return bm3d.bm3d_rgb(f, sigma)

        found["BM3D"] = (simple(bm3d_any), [0.02, 0.04, 0.08, 0.12, 0.16, 0.24])
    shipped = get_preset(kind)
    if kind == "smooth":
        found["DIP-ℓ0, FFT v-step (preset)"] = dip_runs(shipped, [shipped.iterations], solver="fft")
    found["DIP-ℓ0, Region Fusion v-step (preset)"] = dip_runs(shipped, [shipped.iterations], solver="region_fusion")
    found["DIP-ℓ0, parallel Region Fusion v-step (preset)"] = dip_runs(shipped, [shipped.iterations],
                                                                      solver="parallel_fusion")
    if kind == "deblock":
        filed = get_preset(kind, jpeg=True)
        # One setting (None: the preset's iterations, a cap under its stopping rule): no tuning half is run.
        found["DIP-ℓ0 from the JPEG file (preset, λ auto)"] = (from_file(filed), [None])
    return found


def curve(run, iterations: int, observed, truth, every: int = 10):
    """(seconds, PSNR) every few iterations of one DIP run."""
    return [(seconds, psnr(truth, image)) for k, image, seconds in run.snapshots(observed, iterations)
            if k and (k % every == 0 or k == iterations)]  # 0 is DIP-ℓ0's ℓ0 preview


def evaluate(kind: str, size: int, quick: bool, only: list[str] | None = None):
    tune, report = build_set(kind, size, quick)
    rows, crops, curves = [], {}, {}
    for name, (run, grid) in methods(kind, quick).items():
        if only and name not in only:
            continue
        scores = np.zeros(len(grid))
        if len(grid) > 1:  # one setting: nothing to choose, so the tuning half is not run
            for _, observed, truth in tune:
                scores += [psnr(truth, img) for img, _ in run(observed, grid)]
        best = int(np.argmax(scores))
        results = [(truth, *run(observed, [grid[best]])[0]) for _, observed, truth in report]
        rows.append({
            "method": name,
            "param": grid[best],
            "psnr": np.mean([psnr(t, img) for t, img, _ in results]),
            "ssim": np.mean([ssim(t, img) for t, img, _ in results]),
            "seconds": np.mean([s for _, _, s in results]),
        })
        crops[name] = [img for _, img, _ in results]
        if hasattr(run, "snapshots"):
            _, observed, truth = report[0]
            curves[name] = curve(run, grid[best], observed, truth)
        print(f"  {name:<40} param {grid[best]!s:<6} PSNR {rows[-1]['psnr']:.2f}  SSIM {rows[-1]['ssim']:.4f}  "
              f"{rows[-1]['seconds']:.1f} s", flush=True)
    return rows, crops, curves, report


def read_rows(path: Path) -> list[dict]:
    """Rows of a table written by :func:`table` (to rerun some methods and keep the others)."""
    rows = []
    for line in path.read_text().splitlines()[4:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5:
            param = None if cells[1] == "—" else cells[1]
            rows.append({"method": cells[0], "param": param, "psnr": float(cells[2]), "ssim": float(cells[3]),
                         "seconds": float(cells[4])})
    return rows


def table(kind: str, rows, n_report: int, size: int) -> str:
    title = "Smoothing (texture blended into structure)" if kind == "smooth" else "JPEG quality 10"
    lines = [f"**{title}**, {n_report} held-out {size}² RGB images, mean over images:", "",
             "| method | parameter | PSNR (dB) | SSIM | seconds / image |", "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["psnr"]):
        lines.append(f"| {r['method']} | {r['param'] if r['param'] is not None else '—'} | {r['psnr']:.2f} | "
                     f"{r['ssim']:.4f} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def figure(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 5, figsize=(16, 3.2 * len(results)), squeeze=False)
    for row, (kind, (rows, crops, curves, report)) in enumerate(results.items()):
        ours = "DIP-ℓ0, Region Fusion v-step (preset)"
        peer = max((r for r in rows if not r["method"].startswith("DIP-ℓ0") and r["method"] != "input"),
                   key=lambda r: r["psnr"])["method"]
        _, observed, truth = report[0]
        side = truth.shape[0] // 2
        views = [("input", observed), (f"best peer: {peer}", crops[peer][0]), ("DIP-ℓ0", crops[ours][0]),
                 ("ground truth", truth)]
        for ax, (label, img) in zip(axes[row], views):
            ax.imshow(np.clip(img[:side, :side], 0, 1))
            score = "" if label == "ground truth" else f" ({psnr(truth, img):.2f} dB)"
            ax.set_title(f"{kind}: {label}{score}", fontsize=8)
            ax.axis("off")
        ax = axes[row][4]
        for name, points in curves.items():
            ax.plot([t for t, _ in points], [p for _, p in points], label=name, lw=1)
        ax.axhline(psnr(truth, observed), color="gray", ls=":", lw=1, label="input")
        ax.set_xlabel("seconds (2 CPU threads)", fontsize=8)
        ax.set_ylabel("PSNR (dB)", fontsize=8)
        ax.set_title(f"{kind}: DIP variants, first held-out image", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 images of 128², short DIP runs: a smoke run")
    parser.add_argument("--set", choices=["smooth", "deblock", "both"], default="both")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs", "--readme", dest="docs", action="store_true",
                        help="write the tables into docs/benchmarks.md, the figures to docs/")
    parser.add_argument("--only", nargs="+", metavar="METHOD", default=None,
                        help="rerun just these methods (table names, e.g. BM3D) and merge them into the "
                             "last full run's table under --out; the figure is left as it is")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = 128 if args.quick else args.size
    args.out.mkdir(parents=True, exist_ok=True)
    kinds = ["smooth", "deblock"] if args.set == "both" else [args.set]
    for kind in kinds:
        print(f"{kind}:", flush=True)
        rows, crops, curves, report = evaluate(kind, size, args.quick, args.only)
        saved = args.out / f"quality_{kind}.md"
        if args.only:  # rerun some methods, keep the other rows of the last full run
            names = {r["method"] for r in rows}
            rows = [r for r in read_rows(saved) if r["method"] not in names] + rows
        text = table(kind, rows, len(report), size)
        saved.write_text(text + "\n")
        print("\n" + text + "\n", flush=True)
        fig = args.out / f"quality_{kind}.png"
        if not args.only:
            figure(fig, {kind: (rows, crops, curves, report)})
        if args.docs:  # each set has its own section, so the sets can be run separately
            if not write_section(f"quality:{kind}", text):
                print(f"no page under docs/ has the quality:{kind} markers; table not written", flush=True)
            if not args.only:
                shutil.copyfile(fig, Path("docs") / fig.name)

if __name__ == "__main__":
    main()
