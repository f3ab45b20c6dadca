"""Real microscopy noise with a reference made from the data itself (not a test).

    python benchmarks/real_noise.py [--cache benchmarks/cache] [--no-bm3d]

Each acquisition is a time-lapse of real camera or photomultiplier data whose
structures stay put over the frames used. One frame is the noisy input; its
reference is the mean of the frames around it, that frame left out, so the
reference carries none of the input's noise, only its own residual noise of
about σ/√N (σ: the noise of one frame, N: the frames averaged). Every score below therefore has a ceiling: a perfect denoiser scores
``10 log10(range² / σ_ref²)``, not infinity.

Sources (fetched once with ``pip download --no-deps`` into ``--cache``; only
the files named are read out of the archive, nothing is installed or imported
from it):

* ``sima`` — SIMA 1.3.2's sdist (``sima-1.3.2.zip``, GNU GPL v2 or later,
  Losonczy lab), ``sima/tests/data/example.tif``: 20 frames of 128×256 uint16
  of in-vivo two-photon GCaMP imaging of hippocampus (photomultiplier data,
  12-bit, dark nuclei in a bright neuropil). Reference: the other 19 frames.
  Very noisy (σ ≈ 900 ADU on a mean of 1100), so its reference keeps a
  residual of about σ/√19 ≈ 200 ADU. Tuning on frame 4's left half, reported
  on frame 15's right half.
* ``sima volume`` — the same sdist, ``sima/tests/data/example-volume.h5``
  (read with h5py): 10 time points × 3 planes × 64×64 × 2 channels, uint8,
  another two-photon acquisition of hippocampal nuclei at a higher zoom and
  very low light (a mean of 2.5 ADU, variance about 2.8 × the mean: photon
  counting). Channel 0; reference: the other 9 time points of the same plane;
  tuning on plane 0, reported on plane 2.
* ``thunder mouse`` — thunder-python 0.6.0's sdist (Apache 2.0; data by the
  Svoboda lab, Sofroniew et al. 2013, shipped as thunder's example data),
  ``thunder/utils/data/mouse/images/image-00000.bin`` … ``image-00499.bin``:
  500 frames of 64×64 int16 of two-photon GCaMP imaging of mouse barrel
  cortex, spatially downsampled by thunder's authors, so its noise is already
  low (σ ≈ 10 ADU on a range of 300) and its neurons are a pixel or two wide:
  the case where a denoiser should do no harm rather than gain much.
  Reference: the 20 frames around the frame (10 before, 10 after).

σ is estimated from successive differences of the averaged frames (slow
changes cancel), and the input's PSNR expected from it,
``10 log10(range² / (σ² + σ²/N))``, is printed beside the measured one: they
agree where the structures are static and the reference unbiased.

Downloading an sdist makes pip prepare its metadata (``setup.py egg_info`` in
an isolated build environment); nothing is built or installed. Both licences
allow using the data in a benchmark; no image is redistributed with this
project.

Protocol: each acquisition gives a TUNING frame/crop and a separate REPORTED
frame/crop (other frames, and where the field allows another region), so a
parameter is never chosen on what is reported. A peer is given the frame on
the package's robust [0, 1] scale, its parameter is the best PSNR on the
tuning crop, and that parameter is applied to the reported crop (values
beyond the robust range are kept, not clipped: clipping costs the thunder
frame's one-pixel neurons 0.6 dB before any denoising, and gains the
photon-counting volume 0.4 dB). PSNR is taken in ADU against the reference,
with the reference's 0.1–99.9 percentile span as data range. BM3D is scored
where the ``bm3d`` package is importable.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.metrics import peak_signal_noise_ratio
from skimage.registration import phase_cross_correlation
from skimage.restoration import denoise_tv_chambolle

from napari_dip_l0.core.defects import robust_range

CACHE = Path("benchmarks/cache")  # the same default as microscopy.py's --cache
# name: (pip requirement, archive file name, licence)
PACKAGES = {
    "sima": ("sima==1.3.2", "sima-1.3.2.zip", "GNU GPL v2 or later"),
    "thunder-python": ("thunder-python==0.6.0", "thunder-python-0.6.0.tar.gz", "Apache 2.0"),
}
SIMA_MEMBER = "sima-1.3.2/sima/tests/data/example.tif"
SIMA_VOLUME = "sima-1.3.2/sima/tests/data/example-volume.h5"
THUNDER_MOUSE = "thunder-python-0.6.0/thunder/utils/data/mouse/images"
THUNDER_FRAMES = 500


# ----- fetching -------------------------------------------------------------

def package_files(cache: Path, package: str, members: list[str]) -> list[Path]:
    """Files from a package's archive on PyPI, downloaded and extracted once (nothing is installed)."""
    spec, archive, _ = PACKAGES[package]
    targets = [cache / "extracted" / m for m in members]
    missing = {m: t for m, t in zip(members, targets) if not t.exists()}
    if not missing:
        return targets
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / archive
    if not path.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), spec],
                       check=True)

    def write(target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_suffix(target.suffix + ".part")  # atomic: a killed run leaves no half file
        part.write_bytes(data)
        part.replace(target)

    if archive.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for m, t in missing.items():
                write(t, z.read(m))
    else:
        with tarfile.open(path) as tar:  # one pass over the archive for all members
            for info in tar:
                if info.name in missing:
                    write(missing[info.name], tar.extractfile(info).read())
    absent = [m for m, t in missing.items() if not t.exists()]
    if absent:
        raise FileNotFoundError(f"{archive} has no {absent[0]}")
    return targets


def sima_stack(cache: Path = CACHE) -> np.ndarray:
    import tifffile

    return tifffile.imread(package_files(cache, "sima", [SIMA_MEMBER])[0])  # (20, 128, 256) uint16


def sima_volume_stack(cache: Path = CACHE) -> np.ndarray:
    import h5py

    with h5py.File(package_files(cache, "sima", [SIMA_VOLUME])[0], "r") as f:
        return f["imaging"][()]  # (t 10, z 3, y 64, x 64, channel 2) uint8


def thunder_mouse_stack(cache: Path = CACHE) -> np.ndarray:
    # thunder's "images" format: one headerless little-endian int16 64×64 frame per file (conf.json: dims, dtype)
    paths = package_files(cache, "thunder-python", [f"{THUNDER_MOUSE}/image-{i:05d}.bin" for i in range(THUNDER_FRAMES)])
    frames = [np.fromfile(p, "<i2") for p in paths]
    return np.stack(frames).reshape(THUNDER_FRAMES, 64, 64)  # (500, 64, 64) int16


# ----- a frame and its reference --------------------------------------------

@dataclass
class Pair:
    """A noisy frame, its reference (float64, ADU) and what they are."""

    noisy: np.ndarray
    reference: np.ndarray
    meta: dict = field(default_factory=dict)

    def __iter__(self):  # noisy, reference, meta = sima()
        return iter((self.noisy, self.reference, self.meta))


def static_check(frames: np.ndarray) -> tuple[float, float]:
    """(largest rigid shift in pixels, correlation) between the means of the two halves of ``frames``, smoothed."""
    half = len(frames) // 2
    a, b = (ndi.gaussian_filter(frames[s].mean(0), 1.5) for s in (slice(None, half), slice(half, None)))
    shift = phase_cross_correlation(a, b, upsample_factor=10)[0]
    return float(np.abs(shift).max()), float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def make_pair(stack: np.ndarray, t: int, window: list[int], crop, name: str, source: str, licence: str,
              method: str) -> Pair:
    """Frame ``t`` of ``stack`` against the mean of the frames ``window`` (``t`` itself must not be in it)."""
    if t in window:
        raise ValueError("the noisy frame must not be part of its own reference")
    frames = stack[window][(slice(None), *crop)].astype(np.float64)
    noisy = stack[t][crop].astype(np.float64)
    reference = frames.mean(0)
    # Noise per frame from successive differences (half their mean square): slow changes (bleaching, drift,
    # calcium transients over several frames) cancel, unlike in the temporal variance.
    sigma = float(np.sqrt((np.diff(frames, axis=0) ** 2).mean() / 2))
    shift, corr = static_check(frames)
    lo, hi = np.percentile(reference, [0.1, 99.9])
    meta = {"name": name, "source": source, "licence": licence, "reference": method, "frame": t,
            "crop": ", ".join(f"{s.start or 0}:{'' if s.stop is None else s.stop}" for s in crop), "frames_averaged": len(window),
            "dtype": str(stack.dtype), "sigma": sigma, "sigma_reference": sigma / np.sqrt(len(window)),
            "data_range": float(hi - lo), "static_shift_px": shift, "static_corr": corr}
    return Pair(noisy, reference, meta)


def sima(split: str = "report", cache: Path = CACHE) -> Pair:
    """SIMA's two-photon example: tuning on frame 4's left half, reported on frame 15's right half."""
    stack = sima_stack(cache)
    t, crop = (4, np.s_[:, :128]) if split == "tune" else (15, np.s_[:, 128:])
    window = [i for i in range(len(stack)) if i != t]
    return make_pair(stack, t, window, crop, "SIMA two-photon (hippocampus, GCaMP)",
                     f"{PACKAGES['sima'][0]} sdist: {SIMA_MEMBER}", PACKAGES["sima"][2],
                     "mean of the other 19 frames of the movie")


def sima_volume(split: str = "report", cache: Path = CACHE) -> Pair:
    """SIMA's photon-limited two-photon volume, channel 0: tuning on plane 0 (frame 2), reported on plane 2 (frame 7)."""
    volume = sima_volume_stack(cache)
    z, t = (0, 2) if split == "tune" else (2, 7)
    stack = volume[:, z, :, :, 0]
    window = [i for i in range(len(stack)) if i != t]
    pair = make_pair(stack, t, window, np.s_[:, :], "SIMA two-photon volume (photon-limited, uint8)",
                     f"{PACKAGES['sima'][0]} sdist: {SIMA_VOLUME} (plane {z}, channel 0)", PACKAGES["sima"][2],
                     "mean of the other 9 time points of the same plane")
    pair.meta["plane"] = z
    return pair


def thunder_mouse(split: str = "report", cache: Path = CACHE, half_window: int = 10) -> Pair:
    """thunder's mouse example (whole 64² field): tuning on frame 120, reported on frame 370."""
    stack = thunder_mouse_stack(cache)
    t = 120 if split == "tune" else 370
    window = [i for i in range(t - half_window, t + half_window + 1) if i != t]
    return make_pair(stack, t, window, np.s_[:, :], "thunder mouse two-photon (barrel cortex, GCaMP)",
                     f"{PACKAGES['thunder-python'][0]} sdist: {THUNDER_MOUSE}/image-*.bin",
                     PACKAGES["thunder-python"][2],
                     f"mean of the {2 * half_window} frames around it ({half_window} before, {half_window} after)")


ACQUISITIONS = {"sima": sima, "sima volume": sima_volume, "thunder mouse": thunder_mouse}


# ----- scoring ----------------------------------------------------------------

def psnr(pair: Pair, image: np.ndarray) -> float:
    return peak_signal_noise_ratio(pair.reference, np.asarray(image, np.float64), data_range=pair.meta["data_range"])


def on_robust_scale(fn, noisy: np.ndarray, param) -> np.ndarray:
    """A [0, 1] denoiser applied on the package's robust scale and mapped back to ADU.

    Unlike microscopy.py, values beyond the robust range are not clipped: in the thunder frames single bright
    pixels are neurons, not hot pixels, and clipping them alone costs 0.6 dB.
    """
    lo, hi = robust_range(noisy)
    x = (noisy - lo) / (hi - lo)
    return lo + fn(x, param) * (hi - lo)


def peers() -> dict:
    """name: (fn(x on [0, 1], param) -> [0, 1], grid)."""
    found = {"TV (Chambolle)": (lambda x, p: denoise_tv_chambolle(x, weight=p),
                                [0.003, 0.006, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.22, 0.3, 0.45, 0.65, 1.0, 1.5, 2.2])}
    try:
        import bm3d
    except ImportError:
        return found
    found["BM3D"] = (lambda x, p: bm3d.bm3d(x, p),
                     [0.01, 0.02, 0.035, 0.05, 0.07, 0.1, 0.14, 0.2, 0.3, 0.45, 0.65, 1.0])
    return found


def tuned(fn, grid, tune: Pair, report: Pair) -> tuple:
    """(parameter best on the tuning crop, reported PSNR with it, best reported PSNR over the grid, at grid edge)."""
    scores = [psnr(tune, on_robust_scale(fn, tune.noisy, p)) for p in grid]
    best = int(np.argmax(scores))
    reported = [psnr(report, on_robust_scale(fn, report.noisy, p)) for p in grid]
    return grid[best], reported[best], max(reported), best in (0, len(grid) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the packages holding the data are kept")
    parser.add_argument("--no-bm3d", action="store_true", help="leave BM3D out (slow on 2 cores)")
    args = parser.parse_args()
    methods = peers()
    if args.no_bm3d:
        methods.pop("BM3D", None)
    rows = []
    for key, get in ACQUISITIONS.items():
        tune, report = get("tune", args.cache), get("report", args.cache)
        m = report.meta
        print(f"\n{m['name']}\n  source: {m['source']} ({m['licence']})\n  reference: {m['reference']}")
        for label, p in (("tuning", tune), ("reported", report)):
            q = p.meta
            print(f"  {label:<8} frame {q['frame']:>3} crop [{q['crop']}] shape {p.noisy.shape} {q['dtype']}: "
                  f"{q['frames_averaged']} frames averaged, σ {q['sigma']:.1f} ADU, reference residual "
                  f"σ/√N {q['sigma_reference']:.1f} ADU, range {q['data_range']:.0f} ADU, halves of the window "
                  f"shifted {q['static_shift_px']:.2f} px, correlated {q['static_corr']:.3f}")
        dr, s, sr = m["data_range"], m["sigma"], m["sigma_reference"]
        row = {"name": key, "shape": report.noisy.shape, "dtype": m["dtype"], "n": m["frames_averaged"],
               "input": psnr(report, report.noisy),
               "expected": 10 * np.log10(dr**2 / (s**2 + sr**2)), "ceiling": 10 * np.log10(dr**2 / sr**2)}
        for name, (fn, grid) in methods.items():
            param, score, oracle, edge = tuned(fn, grid, tune, report)
            row[name] = (param, score, oracle)
            print(f"  {name}: parameter {param} (tuning crop){' — at the edge of the grid' if edge else ''}, "
                  f"reported PSNR {score:.2f} dB (best over the grid on the reported crop: {oracle:.2f})", flush=True)
        rows.append(row)
    names = list(methods)
    print("\n| acquisition | reported crop | dtype | frames averaged | input PSNR (expected from σ) | "
          + " | ".join(f"{n} (param)" for n in names) + " | ceiling (reference noise) |")
    print("|---" * (6 + len(names)) + "|")
    for r in rows:
        cells = " | ".join(f"{r[n][1]:.2f} ({r[n][0]})" for n in names)
        print(f"| {r['name']} | {r['shape'][0]}×{r['shape'][1]} | {r['dtype']} | {r['n']} | "
              f"{r['input']:.2f} ({r['expected']:.2f}) | {cells} | {r['ceiling']:.2f} |")


if __name__ == "__main__":
    main()
