"""Batch throughput: planes per minute with 1 and 2 dask workers, beside a plain loop.

    python benchmarks/batch.py [--files 8] [--size 128] [--iterations N]

Writes ``--files`` textured RGB images to a temporary folder and runs
``dip-l0 batch``'s machinery on them: a LocalCluster of 1 worker (all cores to
torch) and of 2 workers (cores split between them), both timed from cluster
start to the last file written, and, as the peer, the same files in one
process in a plain loop. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from napari_dip_l0.batch import BatchOptions, Task, find_inputs, local_cluster_size, plan, process_file, run_batch
from napari_dip_l0.core.presets import PRESETS
from napari_dip_l0.data import cartoon_example

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "camera", "page"]


def make_inputs(folder: Path, files: int, size: int) -> None:
    for i in range(files):
        noisy, _ = cartoon_example(PHOTOS[i % len(PHOTOS)], "gravel", size, seed=i)
        iio.imwrite(folder / f"img{i:02d}.png", (noisy * 255).round().astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args()
    options = BatchOptions(iterations=args.iterations)
    its = args.iterations or PRESETS["smooth"].iterations
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        make_inputs(src, args.files, args.size)
        inputs = find_inputs([src])

        out = Path(tmp) / "loop"
        out.mkdir()
        torch.set_num_threads(cores)
        t0 = time.perf_counter()
        for path in inputs:
            result = process_file(Task(path, out / path.name), options)
            assert result["status"] == "done", result
        rows.append((f"one process, plain loop ({cores} torch threads)", time.perf_counter() - t0))

        for workers in (1, 2):
            out = Path(tmp) / f"w{workers}"
            out.mkdir()
            _, threads = local_cluster_size(workers)
            t0 = time.perf_counter()
            tasks, summary = plan(inputs, out, options=options)
            for _ in run_batch(tasks, options, summary, workers=workers):
                pass
            assert not summary.failed, summary.failed
            rows.append((f"dip-l0 batch, {workers} worker(s) × {threads} torch thread(s)", time.perf_counter() - t0))

    print(f"{args.files} RGB files of {args.size}², preset 'smooth' ({its} iterations), {cores} cores; "
          "wall time includes cluster start-up\n")
    print("| run | seconds | planes per minute | vs plain loop |")
    print("|---|---|---|---|")
    base = rows[0][1]
    for name, sec in rows:
        print(f"| {name} | {sec:.1f} | {60 * args.files / sec:.1f} | {base / sec:.2f}× |")


if __name__ == "__main__":
    main()
