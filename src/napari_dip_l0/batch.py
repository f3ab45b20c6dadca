"""Batch DIP-ℓ0 over many files (or the planes of stacks) on dask.distributed.

Each file, or with ``split_planes`` each plane of a stack, is one task. Work
already on disk is skipped, so an interrupted batch resumes where it
stopped: outputs are written atomically, and finished planes of a split
stack are kept as ``.npy`` parts until the whole file is assembled. A file
that cannot be read or processed is reported and skipped; the rest finish.
JPEG inputs in 'deblock' mode are deblocked from their files, as by
``dip-l0 deblock photo.jpg`` (their pixels alone where the file cannot be used).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core.io import (
    SUPPORTED,
    check_output,
    colour_shape,
    describe,
    join_alpha,
    output_dtype,
    read,
    split_alpha,
    temp_prefix,
    write_image,
)
from .core.memory import check_run_memory
from .core.planes import Layout, PlaneReader, assemble, n_planes
from .core.validation import first_line

__all__ = ["BatchOptions", "Task", "Summary", "find_inputs", "plan", "run_batch", "local_cluster_size"]

_PARTS = ".dip-l0-parts"
_PART_TEMP = ".part."
LEDGER = ".dip-l0-outputs"  # in an output folder: the names of the outputs batches planned there


@dataclass(frozen=True)
class BatchOptions:
    """What to run on every input (the CLI's options)."""

    mode: str = "smooth"
    lam: float | str = "auto"
    iterations: int | None = None
    seed: int = 0
    channel_axis: int | None | str = "auto"
    device: str = "cpu"
    tile_size: int | None = None
    warm_start: bool = True
    l0_solver: str | None = None  # None: the preset's

    def __post_init__(self):
        """Refuse a bad setting here, when the batch is set up, not on every worker for every file.

        The settings are checked as a run checks them (a :class:`DipL0Run` is
        set up on a small image), except whether ``device`` is usable: that
        depends on the worker (:func:`run_batch` checks it for a local cluster).
        """
        from .core.device import resolve_device
        from .core.run import DipL0Run

        axis = self.channel_axis
        if not (axis is None or axis == "auto" or (isinstance(axis, int) and not isinstance(axis, bool))):
            raise TypeError(f"channel_axis must be an int, None or 'auto', got {axis!r}")
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {self.device!r}")
        try:
            resolve_device(self.device)
        except ValueError as exc:
            if "not available" not in str(exc):  # an unknown name; one that is not here may be on a worker
                raise
        probe = np.random.default_rng(0).random((16, 16))
        DipL0Run(probe, self.mode, lam=self.lam, iterations=self.iterations, l0_solver=self.l0_solver,
                 seed=self.seed, device="cpu", warm_start=self.warm_start, tile_size=self.tile_size)


@dataclass
class Task:
    """One unit of work: a whole file, or plane ``plane`` of a stack file."""

    input: Path
    output: Path
    plane: int | None = None
    planes: int = 1
    part: Path | None = None  # where a finished plane waits for assembly


@dataclass
class Summary:
    """Outcome of a batch: outputs written, outputs found already there, failures with their reason."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    planes: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def planes_per_minute(self) -> float:
        return 60.0 * self.planes / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        out = [f"{len(self.done)} written, {len(self.skipped)} already there (skipped), {len(self.failed)} failed; "
               f"{self.planes} planes in {self.seconds:.1f} s ({self.planes_per_minute:.1f} planes/minute)"]
        out += [f"  failed: {path}: {why}" for path, why in self.failed.items()]
        if self.interrupted:
            out.append("  interrupted: run the same command again to resume")
        return out


def find_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files (.tif/.tiff/.png/.jpg) directly inside folders, sorted."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED
                            and not p.name.startswith("."))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not found:
        raise ValueError(f"no input images found (looked for {', '.join(SUPPORTED)})")
    return found


def _output_path(path: Path, outdir: Path, fmt: str | None) -> Path:
    suffix = path.suffix if fmt is None else "." + fmt.lstrip(".")
    return outdir / (path.stem + suffix)


def plan(inputs: list[Path], outdir: Path, *, options: BatchOptions, split_planes: bool = False,
         fmt: str | None = None) -> tuple[list[Task], Summary]:
    """Tasks still to run, and a summary holding what is already done or cannot run.

    Every input is described from its header and every output checked (type
    against the input's dtype and layout, never an input's path) here,
    before any task runs: an input that cannot be read or an output that
    cannot hold it is put in the summary as failed. Raises ``ValueError``
    when two inputs would write the same output or an output would
    overwrite an input. Where inputs lie in ``outdir`` itself, the outputs'
    names are noted in its ledger (``.dip-l0-outputs``), so that a rerun does
    not take a result written beside its inputs for an input (:func:`_not_results`).
    """
    summary = Summary()
    tasks: list[Task] = []
    seen: dict[Path, Path] = {}
    inputs = _not_results(inputs, outdir)
    for path in inputs:
        out = _output_path(path, outdir, fmt)
        if out in seen:
            raise ValueError(f"{path} and {seen[out]} would both be written to {out}; rename one")
        seen[out] = path
        for other in inputs:
            if out.resolve() == Path(other).resolve():
                raise ValueError(f"output {out} would overwrite the input {other}; choose another output folder")
    for path in inputs:
        out = _output_path(path, outdir, fmt)
        if out.exists():
            summary.skipped.append(out)
            continue
        try:
            info = describe(path)
            axis = info.channel_axis(options.channel_axis)
            check_output(out, info.shape, output_dtype(out, info.shape, info.dtype, options.mode), inputs=inputs,
                         probe=False)
            n = n_planes(colour_shape(info, axis), axis)
        except (ValueError, TypeError, OSError) as exc:
            summary.failed[path] = first_line(exc)
            continue
        if not split_planes or n == 1:
            tasks.append(Task(path, out))
            continue
        parts = _parts_dir(Task(path, out))
        for p in range(n):
            part = parts / f"plane_{p:06d}.npy"
            if part.exists():
                continue
            tasks.append(Task(path, out, plane=p, planes=n, part=part))
        if not any(t.output == out for t in tasks):  # every plane done: only the assembly is left
            tasks.append(Task(path, out, plane=None, planes=n))
    here = Path(outdir).resolve()
    if any(Path(path).resolve().parent == here for path in inputs):  # results will lie beside inputs
        _note_outputs(outdir, [_output_path(path, outdir, fmt) for path in inputs])
    return tasks, summary


def _ledger(outdir: Path) -> set[str]:
    try:
        return set((Path(outdir) / LEDGER).read_text(encoding="utf-8").splitlines()) - {""}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _not_results(inputs: list[Path], outdir: Path) -> list[Path]:
    """``inputs`` less the results of earlier batches into ``outdir`` (named in its ledger).

    With the output folder among the input folders (``dip-l0 batch DIR -o DIR
    --format png``), a rerun finds the first run's results beside the inputs;
    they are that run's outputs, to be skipped as done, not new inputs (whose
    outputs would overwrite them). Results in any other folder are inputs
    like any file, so that one batch's output folder can be the next one's input.
    """
    names = _ledger(outdir)
    if not names or not Path(outdir).is_dir():
        return list(inputs)
    here = Path(outdir).resolve()
    return [p for p in inputs if not (p.name in names and Path(p).resolve().parent == here)]


def _note_outputs(outdir: Path, outputs: list[Path]) -> None:
    """Add the names of ``outputs`` to ``outdir``'s ledger (atomically), before any of them is written."""
    names = _ledger(outdir)
    new = names | {p.name for p in outputs}
    if new == names or not Path(outdir).is_dir():
        return
    fd, tmp = tempfile.mkstemp(prefix=LEDGER + ".", suffix=".tmp", dir=outdir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(f"{name}\n" for name in sorted(new)))
        os.replace(tmp, Path(outdir) / LEDGER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _run_image(image: np.ndarray, channel_axis, options: BatchOptions, data_range=None, dtype=None,
               jpeg_path: Path | None = None) -> np.ndarray:
    """DIP-ℓ0 of ``image`` with ``options``; with ``jpeg_path`` (a JPEG input to deblock) from the file, as
    ``dip-l0 deblock photo.jpg`` runs it, and from the pixels alone where the file cannot be used."""
    from .core.jpeg import run_from_file_or_pixels

    settings = {"lam": options.lam, "iterations": options.iterations, "l0_solver": options.l0_solver,
                "channel_axis": channel_axis, "seed": options.seed, "device": options.device,
                "tile_size": options.tile_size, "warm_start": options.warm_start, "data_range": data_range,
                "dtype": dtype}
    run, _ = run_from_file_or_pixels(image, options.mode, jpeg_path, **settings)  # a bad setting is an error
    return run.run()


def process_file(task: Task, options: BatchOptions, threads: int | None = None) -> dict:
    """Run one file, or one plane of a stack, and write its result atomically (runs on a worker).

    Never raises: returns ``{"status": "done" | "failed", "message", "planes", "seconds"}``.
    """
    t0 = time.perf_counter()
    try:
        _set_threads(threads)
        info = describe(task.input)
        axis = info.channel_axis(options.channel_axis)
        dtype = output_dtype(task.output, info.shape, info.dtype, options.mode)
        check_output(task.output, info.shape, dtype, probe=False)
        check_run_memory(info, axis, mode=options.mode, tile_size=options.tile_size)
        colour, alpha = split_alpha(read(info), info, axis)
        if task.plane is None:
            jpeg = task.input if options.mode == "deblock" and info.kind == "jpeg" else None
            write_image(task.output, join_alpha(_run_image(colour, axis, options, dtype=dtype, jpeg_path=jpeg), alpha))
            planes = n_planes(colour.shape, axis)
        else:
            reader = PlaneReader(colour, axis)  # the whole stack's range, so every plane means the same
            lo, hi = reader.layout.lo, reader.layout.hi
            plane = reader.raw(task.plane)
            result = plane.astype(dtype) if not hi > lo else _run_image(plane, -1, options, (lo, hi), dtype)
            _save_part(task.part, result)
            planes = 1
        return {"status": "done", "message": "", "planes": planes, "seconds": time.perf_counter() - t0}
    except Exception as exc:  # one bad file must not stop the batch
        return {"status": "failed", "message": first_line(exc), "planes": 0, "seconds": time.perf_counter() - t0}


def _save_part(path: Path, plane: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_PART_TEMP, suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, plane)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def assemble_parts(task: Task, options: BatchOptions) -> None:
    """Write a split stack's output from its finished planes, then drop the parts (runs on the client)."""
    info = describe(task.input)
    axis = info.channel_axis(options.channel_axis)
    parts = _parts_dir(task)
    planes = np.stack([np.load(parts / f"plane_{p:06d}.npy") for p in range(task.planes)])
    result = assemble(planes, Layout(colour_shape(info, axis), info.dtype, axis, 0.0, 1.0))
    if info.alpha:  # kept as it was, as for a whole file
        result = join_alpha(result, split_alpha(read(info), info, axis)[1])
    write_image(task.output, result)
    shutil.rmtree(parts, ignore_errors=True)
    try:
        parts.parent.rmdir()  # the parts folder, once no other stack uses it
    except OSError:
        pass


def _parts_dir(task: Task) -> Path:
    return task.output.parent / _PARTS / task.output.name


def local_cluster_size(workers: int | None) -> tuple[int, int]:
    """(workers, torch threads per task) for a LocalCluster on this machine's cores.

    By default one single-threaded worker per core: separate processes beat
    torch threads for throughput (benchmarks/batch.py: 2 workers x 1 thread
    did 1.6x the planes per minute of 1 worker x 2 threads), as many as fit
    at about 2 GiB each.
    """
    from .core.memory import available_memory

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers is None:
        avail = available_memory()
        workers = cores if avail is None else max(1, min(cores, avail // (2 * 1024**3)))
    return workers, max(1, cores // workers)


def _thread_plan(client) -> dict[str, int]:
    """Torch threads per task on each worker: its host's cores shared among that host's worker threads."""
    info = client.scheduler_info()["workers"]
    cores = client.run(lambda: len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    per_host: dict[str, int] = {}
    for w in info.values():
        per_host[w["host"]] = per_host.get(w["host"], 0) + w["nthreads"]
    return {addr: max(1, cores.get(addr, 1) // per_host[w["host"]]) for addr, w in info.items()}


def _task_on_worker(task: Task, options: BatchOptions, plan_: dict[str, int], fixed: int | None) -> dict:
    from distributed import get_worker

    threads = fixed or plan_.get(get_worker().address, 1)
    return process_file(task, options, threads)


def run_batch(tasks: list[Task], options: BatchOptions, summary: Summary, *, scheduler: str | None = None,
              workers: int | None = None, threads_per_task: int | None = None,
              stop: Callable[[], bool] | None = None) -> Iterator[tuple[Task, dict]]:
    """Run ``tasks`` on dask.distributed, yielding (task, result) as each finishes; fills ``summary``.

    A LocalCluster of ``workers`` processes (default: :func:`local_cluster_size`)
    when ``scheduler`` is None, else the scheduler at that address. When
    ``stop()`` turns true (the CLI's Ctrl-C), no further result is waited
    for: the cluster is closed, ``summary.interrupted`` is set, and
    ``summary.done`` lists the outputs that are on disk, including any a
    worker finished meanwhile. The local workers ignore SIGINT (a Ctrl-C
    reaches the whole process group) and are stopped by the closing.
    """
    try:
        from distributed import as_completed
    except ImportError:
        raise ImportError("batch runs need dask.distributed: pip install 'napari-dip-l0[batch]'") from None

    stop = stop or (lambda: False)
    t0 = time.perf_counter()
    client, cluster, fixed = connect(scheduler, workers, threads_per_task, options.device)
    try:
        plan_ = {} if fixed else _thread_plan(client)
        runs = [t for t in tasks if not (t.plane is None and t.planes > 1)]
        left: dict[Path, int] = {}
        for t in runs:
            if t.plane is not None:
                left[t.output] = left.get(t.output, 0) + 1
        # pure=False: a rerun must really run, not be served from the scheduler's memory
        futures = {client.submit(_task_on_worker, t, options, plan_, fixed, pure=False, retries=0): t for t in runs}
        for t in tasks:  # stacks whose planes all finished in an earlier run
            if t not in runs and not stop():
                yield t, _assemble_result(t, options, summary)
        finished = as_completed(futures)
        while not stop() and not finished.is_empty():
            if not finished.has_ready():
                time.sleep(0.05)  # a Ctrl-C is seen within this, not only when the next task ends
                continue
            fut = next(finished)
            task = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # a worker died (out of memory, killed)
                result = {"status": "failed", "message": f"worker lost: {first_line(exc)}", "planes": 0,
                          "seconds": 0.0}
            _record(summary, task, result)
            yield task, result
            if task.plane is not None:
                left[task.output] -= 1
                if left[task.output] == 0 and task.input not in summary.failed and not stop():
                    _assemble_result(Task(task.input, task.output, None, task.planes), options, summary)
        summary.interrupted = summary.interrupted or stop()
    except KeyboardInterrupt:  # a caller without ``stop``
        summary.interrupted = True
        raise
    finally:
        summary.seconds = time.perf_counter() - t0
        client.close()
        if cluster is not None:  # (a remote cluster's workers may still be writing: theirs to finish)
            cluster.close()
            _sweep(tasks)
        for t in tasks:  # what is on disk now: a worker may have finished a file after the last result was seen
            if t.plane is None and t.output.exists() and t.output not in summary.done:
                summary.done.append(t.output)


def connect(scheduler: str | None, workers: int | None, threads_per_task: int | None, device: str):
    """(client, local cluster or None, torch threads per task or None for a per-worker plan): a client of
    the running scheduler at ``scheduler``, or of a LocalCluster here (whose ``device`` must then be usable
    here, as its tasks compute here)."""
    from distributed import Client

    if scheduler is not None:
        return Client(scheduler, timeout="20s"), None, threads_per_task
    from .core.device import resolve_device

    resolve_device(device)
    cluster, fixed = _local_cluster(workers)
    return Client(cluster), cluster, threads_per_task or fixed


def _local_cluster(workers: int | None):
    """A LocalCluster sized by :func:`local_cluster_size`, its workers deaf to SIGINT; (cluster, threads per task)."""
    import logging
    import multiprocessing
    import signal

    import dask
    from distributed import LocalCluster

    n, threads = local_cluster_size(workers)
    # dask's default worker environment (malloc trimmed at 64 kB, OpenMP sized for one thread)
    # made a 1-worker batch 1.8x slower (benchmarks/batch.py; 14x the system time over the run).
    environ = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        # Logs at CRITICAL only: a task's failure comes back as its result and a lost worker as the future's
        # error, both in the summary; what dask logs at ERROR is the noise of a cluster closed mid-run (a
        # worker's heartbeat to a scheduler that has just gone, with a traceback).
        cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.CRITICAL)
        # The worker processes are started with SIGINT ignored, which they keep (an ignored signal is
        # inherited; a handler is not): a Ctrl-C to the whole process group then reaches only this client,
        # which closes the cluster, instead of printing a traceback from every worker. SIGINT is ignored
        # here only until the processes exist (well under a second), not while they start up.
        try:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread
            previous = None
        try:
            before = len(multiprocessing.active_children())
            cluster.scale(n)
            deadline = time.monotonic() + 30
            while len(multiprocessing.active_children()) < before + n and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
    return cluster, threads


def _sweep(tasks: list[Task]) -> None:
    """Remove temporary files that a worker stopped mid-write left beside the outputs and parts."""
    for folder, pattern in {(t.output.parent, temp_prefix(t.output) + "*") for t in tasks} | {
            (t.part.parent, _PART_TEMP + "*") for t in tasks if t.part is not None}:
        for stray in folder.glob(pattern):
            stray.unlink(missing_ok=True)


def _assemble_result(task: Task, options: BatchOptions, summary: Summary) -> dict:
    try:
        assemble_parts(task, options)
        result = {"status": "done", "message": "", "planes": 0, "seconds": 0.0}
    except Exception as exc:
        result = {"status": "failed", "message": f"assembling planes: {first_line(exc)}", "planes": 0,
                  "seconds": 0.0}
    _record(summary, task, result)
    return result


def _record(summary: Summary, task: Task, result: dict) -> None:
    if result["status"] == "failed":
        summary.failed.setdefault(task.input, result["message"])
    else:
        summary.planes += result["planes"]
        if task.plane is None and task.output.exists() and task.output not in summary.done:
            summary.done.append(task.output)
