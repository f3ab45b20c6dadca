"""JPEG deblocking from the files themselves: DIP-ℓ0 with and without the file's quantisation tables (not a test).

    python benchmarks/jpeg_quality.py [--qualities 5 10 20 30 50] [--images ...] [--tag NAME] [--docs]

Each picture is re-encoded with Pillow (libjpeg, 4:2:0 chroma, the standard
tables scaled to the quality factor) and decoded again; scores are PSNR (dB)
against the picture before encoding. Pictures (SIZE² crops, RGB; --size): a photograph
(scikit-image's astronaut) and two real histology images, an H&E section
(stardist's histo.jpg, itself a JPEG: its decoded pixels are the truth here;
its wheel is fetched once with ``pip download --no-deps`` into --cache)
and an immunohistochemistry stain (scikit-image). The peers' one parameter per
quality is the best mean PSNR on five tuning pictures (chelsea, coffee, rocket,
and crops of the two stains away from the reported ones). Rows:

  input                 the decoded JPEG
  TV                    skimage's denoise_tv_chambolle
  TV + file             the TV result projected onto the file's quantisation set
  BM3D                  bm3d.bm3d_rgb (when the bm3d package is installed)
  DIP-ℓ0, pixels alone  the 'deblock' preset on the decoded pixels: dip_l0_deblock(pixels, jpeg=False)
  DIP-ℓ0, pixels        dip_l0_deblock(pixels): no file, but the luma's quantisation read back from the
                        pixels where they show one (core.jpeg_history), the file preset within it
  DIP-ℓ0, file          the file preset with the file: dip_l0_deblock(path) (λ from the file)

Results are kept per (method, quality, picture) in OUT/jpeg_quality_TAG.json,
so runs resume and can be split across processes (--tag, --images,
--qualities); --docs merges every such file and writes the table into
docs/jpeg.md between its markers. Seconds are CPU seconds of one thread per picture.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio
from skimage.restoration import denoise_tv_chambolle

from napari_dip_l0 import dip_l0_deblock
from napari_dip_l0.core.jpeg import read_jpeg_constraint
from readme import write_section

CACHE = Path("benchmarks/cache")  # shared with microscopy.py: one copy of stardist's wheel
QUALITIES = [5, 10, 20, 30, 50]
SIZE = 128
TV_WEIGHTS = [0.005, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15]
BM3D_SIGMAS = [0.01, 0.02, 0.04, 0.07, 0.1, 0.15]
METHODS = ["input", "TV", "TV + file", "BM3D", "DIP-ℓ0, pixels alone", "DIP-ℓ0, pixels", "DIP-ℓ0, file"]


def _crop(image: np.ndarray, centre: tuple[int, int]) -> np.ndarray:
    y, x = centre[0] - SIZE // 2, centre[1] - SIZE // 2
    return np.ascontiguousarray(image[y : y + SIZE, x : x + SIZE])


def pictures(cache: Path | None = None) -> dict[str, tuple[np.ndarray, bool]]:
    """name -> (uint8 RGB truth, reported?): SIZE² crops around fixed centres."""
    from microscopy import wheel_file

    cache = CACHE if cache is None else cache
    found = {
        "chelsea": (_crop(data.chelsea(), (114, 214)), False),
        "coffee": (_crop(data.coffee(), (200, 300)), False),
        "rocket": (_crop(data.rocket(), (300, 200)), False),
        "astronaut": (_crop(data.astronaut(), (124, 224)), True),
        "ihc": (_crop(data.immunohistochemistry(), (128, 128)), True),
    }
    # Tuning crops of the two stains too, away from the reported ones: users deblock microscopy, not only photos.
    found["ihc-tune"] = (_crop(data.immunohistochemistry(), (400, 300)), False)
    histo = np.asarray(Image.open(wheel_file(cache, "stardist histo")).convert("RGB"))
    found["histo (H&E)"] = (_crop(histo, (164, 184)), True)
    found["H&E-tune"] = (_crop(histo, (80, 400)), False)
    return found


def psnr(truth, image) -> float:
    return float(peak_signal_noise_ratio(truth, image, data_range=255))


def _to8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _project(path: Path, image8: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(image8.transpose(2, 0, 1), np.float64) / 255)[None]
    return _to8(read_jpeg_constraint(path).project(t, rounds=10)[0].permute(1, 2, 0).numpy())


def _bm3d(decoded8: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return _to8(bm3d.bm3d_rgb(decoded8 / 255.0, sigma))


def run_method(method: str, path: Path, decoded: np.ndarray, param) -> np.ndarray:
    if method == "input":
        return decoded
    if method == "TV":
        return _to8(denoise_tv_chambolle(decoded / 255.0, weight=param, channel_axis=-1))
    if method == "TV + file":
        return _project(path, _to8(denoise_tv_chambolle(decoded / 255.0, weight=param, channel_axis=-1)))
    if method == "BM3D":
        return _bm3d(decoded, param)
    if method == "DIP-ℓ0, pixels alone":
        return dip_l0_deblock(decoded, channel_axis=-1, device="cpu", jpeg=False)
    if method == "DIP-ℓ0, pixels":
        return dip_l0_deblock(decoded, channel_axis=-1, device="cpu")
    if method == "DIP-ℓ0, file":
        return dip_l0_deblock(path, device="cpu")
    raise ValueError(method)


class Store:
    def __init__(self, path: Path):
        self.path = path
        self.rows = json.loads(path.read_text()) if path.is_file() else {}

    def key(self, method, q, name):
        return f"{method}|{q}|{name}"

    def get(self, method, q, name):
        return self.rows.get(self.key(method, q, name))

    def put(self, method, q, name, row):
        self.rows[self.key(method, q, name)] = row
        self.path.write_text(json.dumps(self.rows, indent=1, ensure_ascii=False))


def best_param(method, grid, q, tmp, pics, store):
    """The grid value with the best mean PSNR on the tuning pictures (cached)."""
    cached = store.get(method, q, "#param")
    if cached is not None:
        return cached["param"]
    scores = np.zeros(len(grid))
    for name, (truth, reported) in pics.items():
        if reported:
            continue
        path, decoded = encode(tmp, name, truth, q)
        scores += [psnr(truth, run_method(method, path, decoded, p)) for p in grid]
    param = grid[int(np.argmax(scores))]
    store.put(method, q, "#param", {"param": param})
    return param


def encode(tmp: Path, name: str, truth: np.ndarray, q: int):
    path = tmp / f"{name.split()[0]}_q{q}.jpg"
    if not path.is_file():
        Image.fromarray(truth).save(path, quality=q)  # Pillow's default: 4:2:0 chroma, baseline
    return path, np.asarray(Image.open(path).convert("RGB"))


def evaluate(args):
    torch.set_num_threads(1)
    store = Store(args.out / f"jpeg_quality_{args.tag}.json")
    tmp = Path(tempfile.mkdtemp())
    pics = pictures()
    try:
        import bm3d  # noqa: F401
        have_bm3d = True
    except ImportError:
        have_bm3d = False
    methods = [m for m in args.methods if have_bm3d or m != "BM3D"]
    for q in args.qualities:
        for method in methods:
            param = None
            if method in ("TV", "TV + file"):
                param = best_param("TV", TV_WEIGHTS, q, tmp, pics, store)
            elif method == "BM3D":
                param = best_param("BM3D", BM3D_SIGMAS, q, tmp, pics, store)
            for name, (truth, reported) in pics.items():
                if not reported or (args.images and name not in args.images) or store.get(method, q, name):
                    continue
                path, decoded = encode(tmp, name, truth, q)
                c0 = time.process_time()
                out = run_method(method, path, decoded, param)
                seconds = time.process_time() - c0
                viol = float(read_jpeg_constraint(path).violation(out / 255.0).max())
                row = {"psnr": psnr(truth, out), "seconds": seconds, "param": param, "violation": viol}
                store.put(method, q, name, row)
                print(f"q{q:<3} {method:<16} {name:<12} {row['psnr']:.2f} dB  {seconds:6.1f} s  "
                      f"violation {viol:.3f}  param {param}", flush=True)


def merged(out: Path) -> dict:
    rows = {}
    for f in sorted(out.glob("jpeg_quality_*.json")):
        rows.update(json.loads(f.read_text()))
    return rows


def table(rows: dict) -> str:
    def cell(method, q, names):
        vals = [rows.get(f"{method}|{q}|{n}") for n in names]
        if not names or any(v is None for v in vals):
            return None
        return np.mean([v["psnr"] for v in vals]), np.mean([v["seconds"] for v in vals])

    names = [n for n, (_, rep) in pictures().items() if rep]
    qs = sorted(set(QUALITIES) | {int(k.split("|")[1]) for k in rows})
    # The DIP-ℓ0 columns always show, "—" where a run has not finished.
    methods = [m for m in METHODS if m.startswith("DIP") or any(k.startswith(m + "|") for k in rows)]
    lines = [(f"Mean PSNR (dB) over {len(names)} pictures of {SIZE}² ({', '.join(names)}), each re-encoded "
              f"with Pillow at the quality factor (4:2:0); in brackets, CPU seconds per picture (one thread)."), "",
             "| quality | " + " | ".join(methods) + " | pixels − input | file − input |",
             "|---|" + "---|" * (len(methods) + 2)]
    for q in qs:
        cells, got = [], {}
        for m in methods:
            c = cell(m, q, names)
            got[m] = c
            cells.append("—" if c is None else f"{c[0]:.2f} ({c[1]:.1f} s)" if c[1] >= 0.05 else f"{c[0]:.2f}")
        f, p, i = got.get("DIP-ℓ0, file"), got.get("DIP-ℓ0, pixels"), got.get("input")
        d1 = f"{p[0] - i[0]:+.2f}" if p and i else "—"
        d2 = f"{f[0] - i[0]:+.2f}" if f and i else "—"
        lines.append(f"| {q} | " + " | ".join(cells) + f" | {d1} | {d2} |")
    lines += ["", ("Per picture, DIP-ℓ0 minus the input (dB) from the pixels (tables read back from them) and "
                   "from the file, and the largest distance of a re-encoded coefficient of the file's result "
                   "outside its interval (units of Q):"), "",
              "| quality | " + " | ".join(f"{n}, pixels | {n}, file" for n in names) + " | largest violation |",
              "|---|" + "---|" * (2 * len(names) + 1)]
    for q in qs:
        diffs, viols = [], []
        for n in names:
            i = rows.get(f"input|{q}|{n}")
            for m in ("DIP-ℓ0, pixels", "DIP-ℓ0, file"):
                r = rows.get(f"{m}|{q}|{n}")
                diffs.append(f"{r['psnr'] - i['psnr']:+.2f}" if r and i else "—")
            f = rows.get(f"DIP-ℓ0, file|{q}|{n}")
            if f:
                viols.append(f["violation"])
        lines.append(f"| {q} | " + " | ".join(diffs) + (f" | {max(viols):.3f} |" if viols else " | — |"))
    params = {m: {k.split("|")[1]: v["param"] for k, v in rows.items() if k.startswith(m + "|") and "#param" in k}
              for m in ("TV", "BM3D")}
    lines += ["", "Peers' parameters (chosen on the tuning pictures): " + "; ".join(
        f"{m} " + ", ".join(f"q{q}: {p}" for q, p in sorted(v.items(), key=lambda t: int(t[0])))
        for m, v in params.items() if v) + "."]
    return "\n".join(lines)


def main():
    global SIZE, CACHE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qualities", type=int, nargs="+", default=QUALITIES)
    ap.add_argument("--images", nargs="+", default=None, help="reported pictures to run (default all)")
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--tag", default="main", help="name of this process's results file")
    ap.add_argument("--size", type=int, default=SIZE, help=f"side of the crops (default {SIZE})")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--cache", type=Path, default=CACHE, help="where stardist's wheel is kept")
    ap.add_argument("--docs", "--readme", dest="docs", action="store_true",
                    help="only merge the results and write the table into docs/jpeg.md")
    args = ap.parse_args()
    SIZE, CACHE = args.size, args.cache
    args.out = args.out / f"jpeg_{SIZE}px"
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.docs:
        evaluate(args)
    text = table(merged(args.out))
    print("\n" + text)
    if args.docs:
        write_section("quality:jpeg-files", text)


if __name__ == "__main__":
    main()
