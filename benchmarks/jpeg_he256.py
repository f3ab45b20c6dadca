"""A real H&E section re-encoded as JPEG, deblocked three ways at 256² (not a test).

    python benchmarks/jpeg_he256.py [--quality 10] [--cache benchmarks/cache]

stardist's histo.jpg (a real H&E JPEG, fetched once from stardist's wheel into
--cache; its decoded pixels are the truth), a 256² crop re-encoded with Pillow
at --quality, then: TV (three weights), DIP-ℓ0 from the decoded pixels alone
(``dip_l0_deblock(pixels, jpeg=False)``), from the pixels with the quantisation
read back from them (``dip_l0_deblock(pixels)``) and from the file
(``dip_l0_deblock(path)``). PSNR against the crop before encoding, and wall
seconds on 2 torch threads: run it with nothing else on the cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from microscopy import wheel_file
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio
from skimage.restoration import denoise_tv_chambolle

from napari_dip_l0 import dip_l0_deblock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", type=int, default=10)
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/cache"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    histo = np.asarray(Image.open(wheel_file(args.cache, "stardist histo")).convert("RGB"))
    truth = np.ascontiguousarray(histo[22:278, 122:378])
    path = Path(tempfile.mkdtemp()) / f"he_q{args.quality}.jpg"
    Image.fromarray(truth).save(path, quality=args.quality)
    decoded = np.asarray(Image.open(path).convert("RGB"))

    def psnr(x):
        return peak_signal_noise_ratio(truth, x, data_range=255)

    print("| method | PSNR (dB) | gain over the input | seconds |\n|---|---|---|---|")
    print(f"| input | {psnr(decoded):.2f} | | |")
    for weight in (0.01, 0.02, 0.04):
        t = time.perf_counter()
        tv = denoise_tv_chambolle(decoded / 255.0, weight=weight, channel_axis=-1)
        tv = np.clip(np.round(tv * 255), 0, 255).astype(np.uint8)
        print(f"| TV, weight {weight} | {psnr(tv):.2f} | {psnr(tv) - psnr(decoded):+.2f} | "
              f"{time.perf_counter() - t:.2f} |", flush=True)
    for name, kwargs in (("DIP-ℓ0, pixels alone", dict(image=decoded, channel_axis=-1, jpeg=False)),
                         ("DIP-ℓ0, pixels (tables read back)", dict(image=decoded, channel_axis=-1)),
                         ("DIP-ℓ0, file", dict(image=path))):
        t = time.perf_counter()
        out = dip_l0_deblock(device="cpu", **kwargs)
        print(f"| {name} | {psnr(out):.2f} | {psnr(out) - psnr(decoded):+.2f} | {time.perf_counter() - t:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
