"""Decoded JPEGs cropped off their block grid, deblocked from their pixels (not a test).

    python benchmarks/jpeg_offgrid.py [--qualities 10 30]

jpeg_quality.py's reported pictures at 72², re-encoded with Pillow, decoded, then
cropped to 64² from (3, 5), so the crop's corner lies inside a block: the
quality and grid read back from the pixels (``estimate_quality``), and
``dip_l0_deblock(pixels)`` (within what they show) against the pixels alone
(``jpeg=False``). PSNR (dB) against the same crop of the picture before
encoding; CPU seconds of one thread.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jpeg_quality as jq
import numpy as np
import torch

from napari_dip_l0 import dip_l0_deblock
from napari_dip_l0.core.jpeg_history import estimate_quality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qualities", type=int, nargs="+", default=[10, 30])
    args = ap.parse_args()
    torch.set_num_threads(1)
    jq.SIZE = 72
    tmp = Path(tempfile.mkdtemp())
    print("| picture | quality | read back (quality, origin) | input | pixels (tables read back) | pixels alone |")
    print("|---|---|---|---|---|---|")
    for name, (truth, reported) in jq.pictures().items():
        if not reported:
            continue
        for q in args.qualities:
            _, decoded = jq.encode(tmp, name, truth, q)
            clean, crop = truth[3:67, 5:69], np.ascontiguousarray(decoded[3:67, 5:69])
            found = estimate_quality(crop)
            t0 = time.process_time()
            out = dip_l0_deblock(crop, channel_axis=-1, device="cpu")
            seconds = time.process_time() - t0
            alone = dip_l0_deblock(crop, channel_axis=-1, device="cpu", jpeg=False)
            base = jq.psnr(clean, crop)
            print(f"| {name} | {q} | {found and (found.quality, found.origin)} | {base:.2f} | "
                  f"{jq.psnr(clean, out):.2f} ({jq.psnr(clean, out) - base:+.2f}, {seconds:.0f} s) | "
                  f"{jq.psnr(clean, alone):.2f} ({jq.psnr(clean, alone) - base:+.2f}) |", flush=True)


if __name__ == "__main__":
    main()
