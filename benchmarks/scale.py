"""A large stack as OME-Zarr on Dask: planes per minute, peak memory per worker, the cost of a resume.

    python benchmarks/scale.py [--planes 200] [--size 1024] [--iterations 3] [--chain 8] [--docs]

Generates offline an OME-Zarr stack of ``--planes`` planes of ``--size``²
uint16: the bundled BBBC038 nuclei crop mirrored into tiles, drifting a
pixel a plane, with simulated camera noise (:func:`napari_dip_l0.data.camera_frame`:
20 photons, read noise, hot pixels). Then runs ``dip-l0 batch``'s machinery
(:func:`napari_dip_l0.stream.run_chains`, mode 'denoise' capped at
``--iterations``) on a LocalCluster of 1 and of 2 workers, reading each
worker's peak RSS when half the planes are done and at the end (bounded
memory: the two agree, whatever the number of planes). Then the resume's
cost, twice on 2 workers: one worker killed (SIGKILL) at half way, which
dask replaces and whose chain restarts from its first unfinished plane; and
the whole run stopped at half way (as Ctrl-C stops it) and run again.
Prints the load average beside every figure: the machine may be shared.
With ``--docs`` the table goes into docs/large-data.md. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from napari_dip_l0.batch import BatchOptions, _local_cluster  # noqa: E402
from napari_dip_l0.core.io.ngff import open_image  # noqa: E402
from napari_dip_l0.data import camera_frame  # noqa: E402
from napari_dip_l0.stream import measure, open_output, run_chains  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "napari_dip_l0" / "samples" / "nuclei_bbbc038.png"


def make_stack(path: Path, planes: int, size: int) -> None:
    """The input OME-Zarr (NGFF 0.5, z y x, 2 µm × 0.65 µm × 0.65 µm), written plane by plane."""
    import imageio.v3 as iio
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    crop = iio.imread(SAMPLE).astype(np.float64) / 255.0
    reps = -(-(size + planes) // crop.shape[0])
    tiled = np.block([[crop[:: 1 - 2 * (i % 2)][:, :: 1 - 2 * (j % 2)] for j in range(reps)] for i in range(reps)])
    group = zarr.open_group(path, mode="w", zarr_format=3)
    side = min(size, 1024)
    arr = group.create_array("0", shape=(planes, size, size), dtype="uint16", chunks=(1, side, side))
    for p in range(planes):
        clean = tiled[p: p + size, p: p + size]  # a pixel of drift a plane
        arr[p] = camera_frame(clean, peak=20.0, seed=p)[0]
    write_multiscales_metadata(group, [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [2.0, 0.65, 0.65]}]}], fmt=FormatV05(),
        axes=[{"name": "z", "type": "space", "unit": "micrometer"},
              {"name": "y", "type": "space", "unit": "micrometer"},
              {"name": "x", "type": "space", "unit": "micrometer"}])


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _cpu_seconds() -> float:
    """CPU time of this process and its threads so far: a figure that another job on the cores barely moves."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(src: Path, out: Path, workers: int, args, *, stop_at: float | None = None,
        kill_at: float | None = None) -> dict:
    """One batch on a fresh LocalCluster; stopped (``stop_at``) or one worker killed (``kill_at``) at that
    fraction of the planes."""
    from distributed import Client

    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    image = open_image(src)
    options = BatchOptions(mode="denoise", iterations=args.iterations, device="cpu")
    writer = open_output(image, out, options, args.chain)
    settings = measure(image, options)  # as the CLI does: here, before the cluster
    cluster, threads = _local_cluster(workers)
    client = Client(cluster)
    t_ready = time.perf_counter() - t0
    total = image.shape[0]
    state = {"mid": None, "killed": None, "stop": False}
    summary = None
    for done, summary in run_chains(image, writer, settings, chain=args.chain, scheduler=cluster.scheduler_address,
                                    threads_per_task=threads, stop=lambda: state["stop"], poll=0.5):
        if state["mid"] is None and done >= total / 2:
            state["mid"] = client.run(_peak_mib)
        if stop_at is not None and done >= stop_at * total:
            state["stop"] = True
        if kill_at is not None and state["killed"] is None and done >= kill_at * total:
            pids = client.run(os.getpid)
            state["killed"] = min(pids.values())
            os.kill(state["killed"], signal.SIGKILL)
    end = client.run(_peak_mib)
    cpu = sum(client.run(_cpu_seconds).values())  # (a killed worker's CPU time is lost with it)
    client.close()
    cluster.close()
    return {"workers": workers, "seconds": time.perf_counter() - t0, "ready": t_ready, "written": summary.written,
            "found": summary.found, "failed": summary.failed, "complete": summary.complete,
            "mid": max((state["mid"] or {0: float("nan")}).values()), "end": max(end.values()), "cpu": cpu,
            "load": (load + os.getloadavg()[0]) / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=3, help="cap of the 'denoise' preset (a short run)")
    parser.add_argument("--chain", type=int, default=8)
    parser.add_argument("--docs", action="store_true", help="write the table into docs/large-data.md")
    args = parser.parse_args()
    mib_in = args.planes * args.size**2 * 2 / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.ome.zarr"
        t = time.perf_counter()
        make_stack(src, args.planes, args.size)
        print(f"input: {args.planes} × {args.size}² uint16, {mib_in:.0f} MiB, made in {time.perf_counter() - t:.0f} s",
              flush=True)
        rows = []
        for workers in (1, 2):
            r = run(src, Path(tmp) / f"w{workers}.ome.zarr", workers, args)
            rows.append((f"{workers} worker{'s' * (workers > 1)}", r, ""))
            print(rows[-1], flush=True)
        clean = rows[-1][1]
        r = run(src, Path(tmp) / "kill.ome.zarr", 2, args, kill_at=0.5)
        rows.append(("2 workers, one killed at half way", r,
                     f"{r['seconds'] - clean['seconds']:+.0f} s against the run above; "
                     f"{'complete' if r['complete'] else 'incomplete'}"))
        print(rows[-1], flush=True)
        first = run(src, Path(tmp) / "stop.ome.zarr", 2, args, stop_at=0.5)
        again = run(src, Path(tmp) / "stop.ome.zarr", 2, args)
        both = first["seconds"] + again["seconds"]
        rows.append(("2 workers, stopped at half way", first, f"{first['written']} planes kept"))
        rows.append(("… and the same command again", again,
                     f"resumed at {again['found']} of {args.planes}: both runs {both:.0f} s, "
                     f"{both - clean['seconds']:+.0f} s against one run ({again['ready']:.0f} s of it to start "
                     f"the cluster and read the range again)"))
        print(rows[-1], flush=True)
    lines = [f"`python benchmarks/scale.py --planes {args.planes} --size {args.size} --iterations {args.iterations}` "
             f"(mode 'denoise' capped at {args.iterations} iterations, chains of {args.chain}; the input "
             f"{args.planes} × {args.size}² uint16, {mib_in:.0f} MiB, the output float32, {2 * mib_in:.0f} MiB; "
             f"2 cores; the load average beside each run, as another job shared the machine):", "",
             "| run | planes written | seconds (of which start-up) | planes per minute | workers' CPU s per plane | "
             "peak RSS per worker at half way / at the end (MiB) | load | note |", "|---|---|---|---|---|---|---|---|"]
    for name, r, note in rows:
        ppm = 60 * r["written"] / r["seconds"] if r["seconds"] else 0
        per = f"{r['cpu'] / r['written']:.1f}" if r["written"] else "–"
        lines.append(f"| {name} | {r['written']} | {r['seconds']:.0f} ({r['ready']:.0f}) | {ppm:.1f} | {per} | "
                     f"{r['mid']:.0f} / {r['end']:.0f} | {r['load']:.1f} | {note} |")
    text = "\n".join(lines)
    print(text)
    if args.docs:
        from readme import write_section

        write_section("scale", text)


if __name__ == "__main__":
    main()
