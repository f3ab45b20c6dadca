"""Real microscopy with camera noise: DIP-ℓ0's defaults against classical denoisers (not a test).

    python benchmarks/microscopy.py [--quick] [--size 128] [--out benchmarks/out] [--only METHOD ...] [--docs]

Each method's rows (and the results shown in the figure) are saved under
``--out/microscopy/``, so methods can run in separate processes (``--only``)
and ``--table`` assembles the table and figure from whatever has been saved.

Images: real microscopy available offline. Fluorescent nuclei (stardist's bundled
``img2d.tif``, with its nuclei), a scanning electron micrograph (skan's bundled
``retic.tif``, binned 4×4 so that its own shot noise is well below the noise
added) and a transmitted-light cell (scikit-image's ``cell``). The
wheels of stardist and skan are fetched once with ``pip download --no-deps``
into ``--cache`` and only their image files are read (neither is installed).
Each image is cut into 128² crops: the nuclei image into 16 tiles, the top 8
for tuning and the bottom 8 reported; the micrograph and the cell's background
into one crop per half, and the cell itself is reported.

Camera noise as a scientific camera records it: the clean crop (percentile-
normalised) times a photon peak (5, 20 and 100 photons) drawn as Poisson
counts, Gaussian read noise of 1.5 e-, a gain of 2 ADU per e-, an offset of
100 ADU, rounded to uint16; every second crop also has hot pixels (0.02 % of
pixels at 4095 ADU). Scores are taken in ADU against ``offset + gain * peak *
clean``, with the signal's range (``gain * peak``) as PSNR's data range, and
leave out the hot pixels (a camera's defect map handles those).

Protocol: every peer is given the input on the package's own robust [0, 1]
scale and gets one parameter per photon level, the best mean PSNR over its
grid on the tuning half (plain DIP: one stopping iteration, chosen at 20
photons; BM3D with the generalised Anscombe transform also
gets the camera's true gain, offset and read noise). DIP-ℓ0 is called as a
user calls it, ``dip_l0_denoise(noisy)``: no parameter. Segmentation: Otsu
threshold and connected components of each result, F1 of object matches
against stardist's annotated nuclei at IoU ≥ 0.5, on the nuclei crops.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from peers import plain_dip
from readme import write_section
from scipy import ndimage as ndi
from skimage import data as skdata
from skimage.filters import threshold_otsu
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.restoration import denoise_bilateral, denoise_nl_means, denoise_tv_chambolle
from skimage.transform import downscale_local_mean

from napari_dip_l0 import dip_l0_denoise, l0_smooth
from napari_dip_l0.core.defects import robust_range
from napari_dip_l0.core.presets import get_preset
from napari_dip_l0.data import camera_frame

GAIN, OFFSET, READ_NOISE, HOT_ADU, HOT_FRACTION = 2.0, 100.0, 1.5, 4095, 2e-4
PEAKS = (5, 20, 100)
OURS, LONGER = "DIP-ℓ0 (dip_l0_denoise, defaults)", "DIP-ℓ0, 5× the iterations"
WHEELS = {"stardist": ("stardist==0.9.2", "stardist/data/images/img2d.tif"),
          "stardist labels": ("stardist==0.9.2", "stardist/data/images/mask2d.tif"),
          "stardist histo": ("stardist==0.9.2", "stardist/data/images/histo.jpg"),  # benchmarks/jpeg_quality.py
          "stardist 3d": ("stardist==0.9.2", "stardist/data/images/img3d.tif"),  # benchmarks/stack_denoise.py
          "skan": ("skan==0.13.1", "skan/test/data/retic.tif")}


# ----- images ---------------------------------------------------------------

def wheel_file(cache: Path, package: str) -> Path:
    """A file from a package's wheel, downloaded and extracted once (nothing is installed)."""
    spec, member = WHEELS[package]
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / Path(member).name
    if not target.exists():
        name = spec.split("==")[0]
        wheels = list(cache.glob(f"{name}-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                            "-d", str(cache), spec], check=True)
            wheels = list(cache.glob(f"{name}-*.whl"))
        with zipfile.ZipFile(wheels[0]) as z:
            part = target.with_suffix(target.suffix + ".part")  # atomic: a killed run leaves no half file
            part.write_bytes(z.read(member))
            part.replace(target)
    return target


def wheel_image(cache: Path, package: str) -> np.ndarray:
    """An image file from a package's wheel (:func:`wheel_file`), read."""
    import tifffile

    return tifffile.imread(wheel_file(cache, package))


def normalised(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [0.1, 99.9])
    return np.clip((img.astype(np.float64) - lo) / (hi - lo), 0, 1)


def build_set(cache: Path, size: int, quick: bool):
    """(tuning, report) lists of (name, clean crop on [0, 1], is-nuclei), and the nuclei crops' labels."""
    nuclei = normalised(wheel_image(cache, "stardist"))  # 512², nuclei
    labels = wheel_image(cache, "stardist labels")  # stardist's annotation of those nuclei
    # The rows below 1000 hold the microscope's data bar. At full resolution the micrograph's own shot noise
    # (σ 0.116 of its range, estimate_sigma) exceeds the noise added at 100 photons (about 0.07): a reference
    # noisier than the noise to remove scores every denoiser below its input. 4×4 binning brings it to 0.037.
    sem = normalised(downscale_local_mean(wheel_image(cache, "skan")[:1000].astype(np.float64), (4, 4)))
    cell = normalised(skdata.cell())
    s = size
    # Nuclei: every tile of the 512² image (160 annotated nuclei); the top half tunes, the bottom half is
    # reported (the presets were chosen on two top corners). Two crops of 16 and 6 nuclei had made the F1
    # swing by 0.17 with one nucleus.
    n = nuclei.shape[0] // s
    tiles = [(f"nuclei {r * n + c + 1}", np.s_[r * s:(r + 1) * s, c * s:(c + 1) * s], int(r >= n // 2))
             for r in range(n) for c in range(n)]
    # The cell image is background around one cell (centred near row 374, column 428): a background crop in
    # each half, and the cell itself in the reported one.
    cy, cx = min(max(374, s // 2), cell.shape[0] - s // 2), min(max(428, s // 2), cell.shape[1] - s // 2)
    tune = [(name, nuclei[c], True) for name, c, half in tiles if half == 0]
    report = [(name, nuclei[c], True) for name, c, half in tiles if half == 1]
    tune += [("SEM 1", sem[:s, :s], False), ("cell 1", cell[:s, -s:], False)]
    report += [("SEM 2", sem[-s:, -s:], False), ("cell 2", cell[-s:, :s], False),
               ("cell 3", cell[cy - s // 2:cy + s // 2, cx - s // 2:cx + s // 2], False)]
    truth = {name: labels[c] for name, c, _ in tiles}
    if quick:
        tune, report = tune[:1], report[:1]
    return tune, report, truth


def camera(clean: np.ndarray, peak: float, seed: int, hot: bool):
    """(uint16 frame, truth in ADU, signal range in ADU, hot-pixel mask): the package's camera model."""
    frame, truth, mask = camera_frame(clean, peak, gain=GAIN, offset=OFFSET, read_noise=READ_NOISE,
                                      hot_fraction=HOT_FRACTION if hot else 0.0, hot_adu=HOT_ADU, seed=seed)
    return frame, truth, GAIN * peak, mask


# ----- scores ---------------------------------------------------------------

def psnr(truth, image, data_range, mask):
    keep = ~mask
    return peak_signal_noise_ratio(truth[keep], np.asarray(image, np.float64)[keep], data_range=data_range)


def ssim(truth, image, data_range):
    return structural_similarity(truth, np.asarray(image, np.float64), data_range=data_range)


def objects(image: np.ndarray) -> np.ndarray:
    """Otsu threshold and connected components (the segmentation a quick user does); specks under 10 pixels
    dropped."""
    labels, _ = ndi.label(image > threshold_otsu(image))
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < 10] = 0
    return labels


def f1_objects(reference: np.ndarray, found: np.ndarray) -> float:
    """F1 of matched objects (IoU ≥ 0.5 matches are one-to-one)."""
    n_ref, n_found = (len(np.setdiff1d(np.unique(lab), [0])) for lab in (reference, found))
    if n_ref == 0 and n_found == 0:
        return 1.0
    both = (reference > 0) & (found > 0)
    pairs, inter = np.unique(np.stack([reference[both], found[both]]), axis=1, return_counts=True)
    area_ref, area_found = np.bincount(reference.ravel()), np.bincount(found.ravel())
    iou = inter / (area_ref[pairs[0]] + area_found[pairs[1]] - inter)
    matches = int((iou >= 0.5).sum())
    return 2 * matches / (n_ref + n_found)


# ----- methods --------------------------------------------------------------

def anscombe(x, sigma):
    """Generalised Anscombe transform of Poisson counts plus N(0, sigma²) (units of electrons)."""
    return 2 * np.sqrt(np.maximum(x + 3 / 8 + sigma**2, 0))


def inverse_anscombe(z, sigma):
    """Closed-form approximation of the exact unbiased inverse (Mäkitalo & Foi 2013)."""
    z = np.maximum(z, 0.8)
    return z**2 / 4 + np.sqrt(1.5) / (4 * z) - 11 / (8 * z**2) + 5 * np.sqrt(1.5) / (8 * z**3) - 1 / 8 - sigma**2


def each(fn):
    """A method with one call per parameter: ``run(noisy, params)`` gives (result, seconds) for each."""

    def run(noisy, params):
        found = []
        for p in params:
            t0 = time.perf_counter()
            found.append((fn(noisy, p), time.perf_counter() - t0))
        return found

    return run


def on_robust_scale(fn):
    """A denoiser of [0, 1] floats, applied on the package's robust scale and mapped back to ADU."""

    def run(noisy, param):
        lo, hi = robust_range(noisy)
        x = np.clip((noisy.astype(np.float64) - lo) / (hi - lo), 0, 1)
        return lo + fn(x, param) * (hi - lo)

    return each(run)


def bm3d_anscombe(noisy, param):
    import bm3d

    electrons = (noisy.astype(np.float64) - OFFSET) / GAIN
    z = anscombe(electrons, READ_NOISE)
    lo, hi = z.min(), z.max()
    out = bm3d.bm3d((z - lo) / (hi - lo), param / (hi - lo)) * (hi - lo) + lo
    return OFFSET + GAIN * inverse_anscombe(out, READ_NOISE)


def plain_dip_run(noisy, checkpoints):
    """Plain DIP (the denoise preset's network, no ℓ0 coupling), one run read at several iterations."""
    lo, hi = robust_range(noisy)
    x = np.clip((noisy.astype(np.float64) - lo) / (hi - lo), 0, 1)[..., None]
    found = {}
    for k, est, seconds in plain_dip(x, get_preset("denoise"), max(checkpoints)):
        if k in checkpoints:
            found[k] = (lo + est[..., 0] * (hi - lo), seconds)
    return [found[k] for k in checkpoints]


def methods(quick: bool) -> dict:
    """name: (run(noisy uint16, params) -> [(result in ADU, seconds)], parameter grid)."""
    import bm3d

    found = {
        "input": (each(lambda f, p: f), [None]),
        "TV (Chambolle)": (on_robust_scale(lambda x, p: denoise_tv_chambolle(x, weight=p)),
                           [0.02, 0.04, 0.07, 0.1, 0.15, 0.22, 0.3, 0.45, 0.65, 1.0, 1.5, 2.2]),
        "bilateral": (on_robust_scale(lambda x, p: denoise_bilateral(x, sigma_color=p, sigma_spatial=2)),
                      [0.05, 0.1, 0.2, 0.3, 0.45, 0.65, 1.0, 2.0, 5.0]),
        "NLM": (on_robust_scale(lambda x, p: denoise_nl_means(x, h=p, patch_size=5, patch_distance=6,
                                                              fast_mode=True)),
                [0.02, 0.04, 0.06, 0.09, 0.13, 0.2, 0.3, 0.45, 0.65, 1.0]),
        "BM3D": (on_robust_scale(lambda x, p: bm3d.bm3d(x, p)),
                 [0.02, 0.035, 0.05, 0.07, 0.1, 0.14, 0.2, 0.3, 0.45, 0.65, 1.0]),
        "BM3D + Anscombe": (each(bm3d_anscombe), [0.7, 0.85, 1.0, 1.2, 1.4]),
        "ℓ0 alone (Region Fusion)": (on_robust_scale(lambda x, p: l0_smooth(x, p)),
                                     [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128,
                                      0.256, 0.5, 1.0]),
        "plain DIP": (plain_dip_run, [100, 200] if quick else [100, 175, 250, 500, 1000]),
        "DIP-ℓ0 (dip_l0_denoise, defaults)": (each(lambda f, p: dip_l0_denoise(f, device="cpu")), [None]),
        # The same with five times the preset's iterations: does running longer ever cost quality?
        LONGER: (each(lambda f, p: dip_l0_denoise(f, iterations=5 * get_preset("denoise").iterations,
                                                  device="cpu")), [None]),
    }
    return found


# ----- the benchmark ----------------------------------------------------------

def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.encode("ascii", "replace").decode()).strip("_")


def evaluate(cache: Path, size: int, quick: bool, only: list[str] | None, saved: Path, peaks=None):
    """Run each method (all, or ``only``) at ``peaks`` and save its rows and results under ``saved``."""
    tune, report, _ = build_set(cache, size, quick)
    restricted = peaks is not None
    peaks = peaks or ((20,) if quick else PEAKS)
    saved.mkdir(parents=True, exist_ok=True)

    def frame(peak, i, clean):
        return camera(clean, peak, int(peak) + 1000 * i, hot=i % 2 == 1)

    def tuned(fn, grid, peak):
        if len(grid) == 1:
            return grid[0]
        scores = np.zeros(len(grid))
        for i, (_, clean, _) in enumerate(tune):
            noisy, truth, dr, mask = frame(peak, i, clean)
            scores += [psnr(truth, out, dr, mask) for out, _ in fn(noisy, grid)]
        best = int(np.argmax(scores))
        if best in (0, len(grid) - 1):  # the peer's best may lie beyond the grid: widen it
            print(f"  note: {grid[best]} is at the edge of the grid", flush=True)
        return grid[best]

    for name, (fn, grid) in methods(quick).items():
        if only and name not in only:
            continue
        rows, kept = [], {}
        # Plain DIP's stopping iteration is tuned once, at 20 photons (each tuning run costs minutes).
        single = tuned(fn, grid, 20) if name == "plain DIP" else None
        for peak in peaks:
            param = single if single is not None else tuned(fn, grid, peak)
            for i, (label, clean, nuclei) in enumerate(report):
                noisy, truth, dr, mask = frame(peak, i + len(tune), clean)
                (out, seconds), = fn(noisy, [param])
                row = {"method": name, "param": param, "peak": peak, "image": label, "hot": bool(mask.any()),
                       "psnr": psnr(truth, out, dr, mask), "ssim": ssim(truth, out, dr), "seconds": seconds}
                rows.append(row)
                kept[f"{peak}|{label}|result"] = np.asarray(out, np.float32)
                kept[f"{peak}|{label}|truth"] = np.asarray(truth, np.float32)
                kept[f"{peak}|{label}|noisy"] = noisy
                print(f"  {name:<36} peak {peak:>3} {label:<9} param {param!s:<7} PSNR {row['psnr']:6.2f}  "
                      f"SSIM {row['ssim']:.3f}  {seconds:6.1f} s", flush=True)
        stem = slug(name) + ("_peaks_" + "_".join(map(str, peaks)) if restricted else "")
        (saved / f"{stem}.json").write_text(json.dumps(rows, indent=1))
        np.savez_compressed(saved / f"{stem}.npz", **kept)
    return report


def load(saved: Path, labels: dict):
    """Rows of every method saved so far, and ``kept[(method, peak, image)] = (result, truth, noisy)``.

    Rows of nuclei crops get ``f1``: the segmentation of the result scored against stardist's labels.
    """
    rows, kept = [], {}
    for path in sorted(saved.glob("*.json")):
        found = json.loads(path.read_text())
        rows += found
        if found:
            arrays = np.load(path.with_suffix(".npz"))
            for key in arrays.files:
                peak, label, what = key.split("|")
                kept.setdefault((found[0]["method"], int(peak), label), {})[what] = arrays[key]
    kept = {k: (v["result"], v["truth"], v["noisy"]) for k, v in kept.items()}
    for r in rows:
        found = kept.get((r["method"], r["peak"], r["image"]))
        r["f1"] = f1_objects(labels[r["image"]], objects(found[0])) if r["image"] in labels and found else None
    order = list(methods(True))
    rows.sort(key=lambda r: (order.index(r["method"]) if r["method"] in order else len(order), r["peak"]))
    return rows, kept


def summary_table(rows, size: int, n_report: int) -> str:
    names = list(dict.fromkeys(r["method"] for r in rows))
    peaks = sorted({r["peak"] for r in rows})
    head = "| method | " + " | ".join(f"PSNR, peak {p}" for p in peaks) + \
        " | PSNR mean | SSIM mean | nuclei F1 mean | min gain over input (dB) | seconds / image |"
    title = (f"**Camera noise on real microscopy**, {n_report} held-out {size}² crops × {len(peaks)} photon levels "
             "(means over crops):")
    lines = [title, "", head, "|---" * (6 + len(peaks)) + "|"]
    base = {(r["peak"], r["image"]): r["psnr"] for r in rows if r["method"] == "input"}

    def mean(rs, key):
        vals = [r[key] for r in rs if r[key] is not None]
        return float(np.mean(vals)) if vals else float("nan")

    stats = []
    for name in names:
        rs = [r for r in rows if r["method"] == name]
        # The input's rows give the gain; a table of some methods only may lack them.
        gains = [r["psnr"] - base[(r["peak"], r["image"])] for r in rs if (r["peak"], r["image"]) in base]
        gain = min(gains) if gains else None
        stats.append((mean(rs, "psnr"), name, rs, gain))
    for _, name, rs, gain in sorted(stats):
        per_peak = " | ".join(f"{mean([r for r in rs if r['peak'] == p], 'psnr'):.2f}" for p in peaks)
        lines.append(f"| {name} | {per_peak} | {mean(rs, 'psnr'):.2f} | {mean(rs, 'ssim'):.3f} | "
                     f"{mean(rs, 'f1'):.3f} | {'—' if name == 'input' or gain is None else f'{gain:+.2f}'} | "
                     f"{mean(rs, 'seconds'):.1f} |")
    return "\n".join(lines)


def detail_table(rows, ours: str, peers: list[str]) -> str:
    """DIP-ℓ0 against each peer, image by image and level by level."""
    lines = ["| image | peak | input | " + " | ".join(peers) + f" | {ours} | margin over best peer |",
             "|---" * (5 + len(peers)) + "|"]
    index = {(r["method"], r["peak"], r["image"]): r for r in rows}
    for r in rows:
        if r["method"] != ours:
            continue
        key = (r["peak"], r["image"])
        vals = [index[(p, *key)]["psnr"] for p in peers if (p, *key) in index]
        label = r["image"] + (" (hot pixels)" if r["hot"] else "")
        lines.append(f"| {label} | {r['peak']} | {index[('input', *key)]['psnr']:.2f} | "
                     + " | ".join(f"{v:.2f}" for v in vals) + f" | {r['psnr']:.2f} | {r['psnr'] - max(vals):+.2f} |")
    return "\n".join(lines)


def longer_note(rows) -> str:
    """How far five times the iterations moves DIP-ℓ0's result, over the images both were run on."""
    index = {(r["method"], r["peak"], r["image"]): r["psnr"] for r in rows}
    diffs = [index[(LONGER, *k[1:])] - v for k, v in index.items() if k[0] == OURS and (LONGER, *k[1:]) in index]
    if not diffs:
        return ""
    return (f"\n\nWith five times the iterations ({LONGER!r}) the result moves by {min(diffs):+.2f} to "
            f"{max(diffs):+.2f} dB over the {len(diffs)} image × level pairs.")


def figure(path: Path, kept: dict, label: str, peak: int, names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, truth, noisy = kept[(names[-1], peak, label)]
    lo, hi = np.percentile(truth, [0.5, 99.5])
    views = [("clean", truth), ("camera frame", noisy)] + [(n, kept[(n, peak, label)][0]) for n in names]
    fig, axes = plt.subplots(1, len(views), figsize=(3 * len(views), 3.3))
    dr = GAIN * peak
    for ax, (name, img) in zip(axes, views):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        score = "" if name == "clean" else f"\n{psnr(truth, img, dr, np.zeros(img.shape, bool)):.2f} dB"
        ax.set_title(f"{name}{score}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{label}, peak {peak} photons", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 64² crop each half, peak 20: a smoke run")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache"),
                        help="where the wheels holding the images are kept")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", metavar="METHOD", help="run just these methods (table names)")
    parser.add_argument("--peaks", nargs="+", type=int, choices=PEAKS, default=None,
                        help="run just these photon levels (saved apart, so levels can run in parallel); "
                             "with --table, tabulate just these")
    parser.add_argument("--table", action="store_true",
                        help="run nothing: build the table and figure from the results saved under --out")
    parser.add_argument("--docs", "--readme", dest="docs", action="store_true",
                        help="write the tables into docs/microscopy.md, the figure to docs/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = 64 if args.quick else args.size
    saved = args.out / ("microscopy_quick" if args.quick else "microscopy")
    if not args.table:
        evaluate(args.cache, size, args.quick, args.only, saved, args.peaks)
        if args.only:
            return
    _, _, labels = build_set(args.cache, size, args.quick)
    rows, kept = load(saved, labels)
    if args.peaks:  # a table of some levels only, e.g. those every method has finished
        rows = [r for r in rows if r["peak"] in args.peaks]
    report = list(dict.fromkeys(r["image"] for r in rows))
    ours = OURS
    peers = [n for n in ("TV (Chambolle)", "BM3D", "BM3D + Anscombe") if any(r["method"] == n for r in rows)]
    text = summary_table(rows, size, len(report))
    clean = [f1_objects(labels[i], objects(kept[(r["method"], r["peak"], i)][1])) for r in rows
             if r["method"] == "input" and (i := r["image"]) in labels]
    if clean:  # the score's ceiling: the noise-free crops, segmented the same way
        text += (f"\n\nThe clean crops themselves, segmented the same way, score a nuclei F1 of "
                 f"{np.mean(clean):.3f}: Otsu's threshold splits and merges some of stardist's nuclei even "
                 "without noise.")
    if any(r["method"] == ours for r in rows) and peers and any(r["method"] == "input" for r in rows):
        text += "\n\n" + detail_table(rows, ours, peers)
    text += longer_note(rows)
    (args.out / "microscopy.md").write_text(text + "\n")
    print("\n" + text, flush=True)
    if any(r["method"] == ours for r in rows) and peers:
        peak = 20 if 20 in {r["peak"] for r in rows} else rows[0]["peak"]
        fig = args.out / "microscopy.png"
        figure(fig, kept, report[0], peak, [*peers, ours])
        if args.docs:
            Path("docs").mkdir(exist_ok=True)
            Path("docs/microscopy.png").write_bytes(fig.read_bytes())
    if args.docs:
        write_section("microscopy", text)


if __name__ == "__main__":
    main()
