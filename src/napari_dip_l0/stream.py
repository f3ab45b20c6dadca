"""Large stacks (OME-Zarr, big TIFFs) through DIP-ℓ0 in chains of planes, written plane by plane.

A stack is split into chains of consecutive planes. Each chain is one
:class:`~napari_dip_l0.core.run.DipL0Run` (warm start from plane to plane
along it) over the lazily read input, whose ``on_plane`` hook writes each
plane into the OME-Zarr output as soon as it is final, so memory holds a
chain's planes, never the stack. Every chain uses the settings measured once
for the whole stack (:func:`measure`: the intensity range, the robust scale,
the noise model and λ), so chains run anywhere, in any order, agree.

:func:`stream` runs the chains one after the other in this process (``dip-l0
denoise in.ome.zarr -o out.ome.zarr``); :func:`run_chains` sends them to
dask.distributed (``dip-l0 batch in.ome.zarr -o out.ome.zarr``). Both skip
the planes the output already holds, so a rerun resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .batch import BatchOptions
from .core.io.ngff import OmeZarrWriter, ZarrImage, open_image

if TYPE_CHECKING:
    from .core.run import Calibration

__all__ = ["StackSettings", "measure", "chains", "run_chain", "stream", "run_chains", "open_output",
           "StreamSummary", "DEFAULT_CHAIN"]

DEFAULT_CHAIN = 8  # planes per chain: the warm start pays off after a few planes (benchmarks/stack.py)


@dataclass(frozen=True)
class StackSettings:
    """What every chain of one stack shares (picklable, for workers): the preset with λ fixed and the stack's
    :class:`~napari_dip_l0.core.run.Calibration` (intensity mapping, noise model), as one
    :class:`~napari_dip_l0.core.run.DipL0Run` over the whole stack measures them."""

    preset: object  # Preset, λ fixed
    calibration: Calibration
    dtype: str
    seed: int = 0
    device: str = "cpu"
    tile_size: int | None = None
    warm_start: bool = True

    def provenance(self) -> dict:
        """The measured part of the ``dip_l0`` provenance."""
        cal = self.calibration

        def floats(pair):
            return None if pair is None else [float(v) for v in pair]

        return {"lam": self.preset.lam, "data_range": floats(cal.data_range), "robust_range": floats(cal.scale),
                "noise_model": floats(cal.noise_model)}


def _run_keywords(image: ZarrImage, options: BatchOptions) -> dict:
    """``options`` as the keywords of a :class:`DipL0Run` over ``image``'s data."""
    return {"lam": options.lam, "iterations": options.iterations, "l0_solver": options.l0_solver,
            "channel_axis": image.channel_axis, "seed": options.seed, "device": options.device,
            "tile_size": options.tile_size, "warm_start": options.warm_start}


def _check_mode(options: BatchOptions) -> None:
    if options.mode == "deblock":
        raise ValueError("deblock needs a JPEG file; large stacks are smoothed or denoised (mode 'smooth' or "
                         "'denoise')")


def result_dtype_for(image: ZarrImage, options: BatchOptions) -> np.dtype:
    """The dtype a run of ``options.mode`` gives ``image``, from a run checked on its shape (nothing read)."""
    from .core.lazy import probe_run

    _check_mode(options)
    return np.dtype(probe_run(image.data, options.mode, _run_keywords(image, options)).reader.layout.result_dtype)


def measure(image: ZarrImage, options: BatchOptions) -> StackSettings:
    """The settings all chains of ``image`` share: those of one :class:`DipL0Run` over the whole stack.

    One pass over the data for its range (and, for floats, that it is
    finite), then a few evenly spaced planes for the robust range, the noise
    model ('denoise') and, with ``lam='auto'``, λ. Nothing else is read.
    """
    import dask

    from .core.run import DipL0Run

    _check_mode(options)
    # Read here, in threads, even where a dask.distributed client is the default (the workers need not see it).
    with dask.config.set(scheduler="threads"):
        run = DipL0Run(image.data, options.mode, **_run_keywords(image, options), collect=False,
                       on_plane=_discard)
    return StackSettings(run.preset, run.calibration, np.dtype(run.reader.layout.result_dtype).str, options.seed,
                         options.device, options.tile_size, options.warm_start)


def _discard(index: tuple, plane: np.ndarray) -> None:
    """Planes of a run made only to measure the stack (it is never stepped)."""


def chains(planes: list[int], length: int, row: int) -> list[list[int]]:
    """``planes`` (flat plane numbers, sorted) cut into runs of consecutive planes of at most ``length``,
    never across a row of ``row`` planes (the innermost plane axis: a chain follows z within one t).

    Examples
    --------
    >>> chains([0, 1, 2, 3, 5, 6, 7, 8, 9], 3, row=5)
    [[0, 1, 2], [3], [5, 6, 7], [8, 9]]
    """
    out: list[list[int]] = []
    for p in planes:
        if out and p == out[-1][-1] + 1 and len(out[-1]) < length and p // row == out[-1][-1] // row:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def _lead_shape(image: ZarrImage) -> tuple[int, ...]:
    return tuple(n for a, n in zip(image.axes, image.shape) if a not in "cyx")


def plane_index(image: ZarrImage, p: int) -> tuple:
    """Flat plane number ``p`` as an index over the plane axes (``t``, ``z``)."""
    lead = _lead_shape(image)
    return tuple(int(i) for i in np.unravel_index(p, lead)) if lead else ()


def _plane(image: ZarrImage, index: tuple):
    """Plane ``index`` of ``image`` lazily: ``(C, Y, X)`` with channels, else ``(Y, X)``."""
    sel, it = [], iter(index)
    for a in image.axes:
        sel.append(slice(None) if a in "cyx" else next(it))
    return image.data[tuple(sel)]


def run_chain(image: ZarrImage, settings: StackSettings, planes: list[int], write: Callable[[tuple, np.ndarray], None],
              stop: Callable[[], bool] | None = None) -> int:
    """DIP-ℓ0 over the consecutive planes ``planes`` of ``image`` as one run (warm start along them), each plane
    handed to ``write(index, plane)`` as soon as it is final. Returns the planes written (fewer if ``stop()``
    turned true)."""
    import dask.array as da

    from .core.run import DipL0Run

    indices = [plane_index(image, p) for p in planes]
    chain = da.stack([_plane(image, i) for i in indices])  # (n, [C,] Y, X), read plane by plane
    written = []

    def on_plane(k: tuple, plane: np.ndarray) -> None:
        write(indices[k[0]], plane)
        written.append(k)

    run = DipL0Run(chain, preset=settings.preset, lam=settings.preset.lam, channel_axis=1 if "c" in image.axes else None,
                   seed=settings.seed, device=settings.device, warm_start=settings.warm_start,
                   tile_size=settings.tile_size, dtype=np.dtype(settings.dtype), calibration=settings.calibration,
                   collect=False, on_plane=on_plane)
    for _ in run:
        if stop is not None and stop():
            break
    return len(written)


def _where(source: str) -> str:
    """A local input by its absolute path (the same command from another folder resumes), a URL as given."""
    from pathlib import Path

    return source if "://" in source else str(Path(source).resolve())


def provenance(image: ZarrImage, options: BatchOptions, chain: int) -> dict:
    """The ``dip_l0`` attributes of an output, as given (a rerun must give the same to resume)."""
    return {"method": "DIP-ℓ0", "mode": options.mode, "lam_given": options.lam, "iterations": options.iterations,
            "l0_solver": options.l0_solver, "seed": options.seed, "warm_start": options.warm_start,
            "tile_size": options.tile_size, "chain": chain, "source": _where(image.source), "level": image.level,
            "version": __version__}


def open_output(image: ZarrImage, out, options: BatchOptions, chain: int, overwrite: bool = False) -> OmeZarrWriter:
    """The OME-Zarr writer for ``image``'s result at ``out``: new, or an earlier run's to resume.

    Refuses (before any work) an output that is the input, exists and is not
    a DIP-ℓ0 output, holds another result, or cannot be written.
    """
    from pathlib import Path

    if "://" not in image.source and Path(out).resolve() == Path(image.source).resolve():
        raise ValueError(f"output {out} is the input; choose another name")
    if isinstance(chain, bool) or not isinstance(chain, int) or chain < 1:
        raise ValueError(f"chain must be a positive number of planes, got {chain!r}")
    return OmeZarrWriter(out, shape=image.shape, dtype=result_dtype_for(image, options), axes=image.axes,
                         scale=image.scale, units=image.units, chunks=image.data.chunksize,
                         pyramid_levels=image.levels, provenance=provenance(image, options, chain),
                         overwrite=overwrite)


@dataclass
class StreamSummary:
    """Planes of a stack: in all, found done, written now, in how long; failures by chain."""

    total: int = 0
    found: int = 0
    written: int = 0
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False
    complete: bool = False

    @property
    def planes_per_minute(self) -> float:
        return 60.0 * self.written / self.seconds if self.seconds > 0 else 0.0

    def lines(self, out) -> list[str]:
        done = self.found + self.written
        lines = [f"{self.written} planes written in {self.seconds:.1f} s ({self.planes_per_minute:.1f} planes/minute); "
                 f"{done} of {self.total} done in {out}"]
        lines += [f"  failed: {why}" for why in self.failed]
        if not self.complete:
            why = "interrupted" if self.interrupted else "not finished"
            lines.append(f"  {why}: run the same command again to resume (finished planes are kept)")
        return lines


def todo(writer: OmeZarrWriter, image: ZarrImage) -> tuple[list[int], int]:
    """Flat numbers of the planes still to do, and how many are done."""
    lead = _lead_shape(image)
    n = int(np.prod(lead, dtype=np.int64)) if lead else 1
    done = writer.done()
    missing = [p for p in range(n) if plane_index(image, p) not in done]
    return missing, n - len(missing)


def resume_line(found: int, total: int) -> str | None:
    """What a rerun says: ``resuming: 37 of 200 planes done``, or ``None`` for a fresh output."""
    return f"resuming: {found} of {total} planes done" if found else None


def stream(image: ZarrImage, writer: OmeZarrWriter, settings: StackSettings, chain: int = DEFAULT_CHAIN,
           stop: Callable[[], bool] | None = None, on_plane: Callable[[tuple], None] | None = None) -> StreamSummary:
    """Run the planes ``writer`` lacks, chain after chain in this process; finish the output when all are done."""
    t0 = time.perf_counter()
    writer.note(settings.provenance())
    missing, found = todo(writer, image)
    summary = StreamSummary(total=len(missing) + found, found=found)
    stop = stop or (lambda: False)

    def write(index, plane):
        writer.write_plane(index, plane)
        summary.written += 1
        if on_plane is not None:
            on_plane(index)

    row = _lead_shape(image)[-1] if _lead_shape(image) else 1
    for planes in chains(missing, chain, row):
        if stop():
            break
        run_chain(image, settings, planes, write, stop)
    summary.interrupted = stop()
    summary.complete = writer.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _halted(name: str, every: float = 1.0) -> Callable[[], bool]:
    """Whether the client has set the dask ``Event`` ``name`` (asked at most every ``every`` seconds)."""
    from distributed import Event

    event, state = Event(name), {"at": 0.0, "set": False}

    def halted() -> bool:
        now = time.monotonic()
        if not state["set"] and now - state["at"] >= every:
            state["at"], state["set"] = now, event.is_set()
        return state["set"]

    return halted


def _chain_task(source: str, level: int, axes: str | None, out: str, settings: StackSettings, planes: list[int],
                plan_: dict, fixed: int | None, halt: str) -> dict:
    """One chain on a worker: open the input and the output there, run the planes not yet done, write them;
    stop within an iteration once the client sets the event ``halt``."""
    t0 = time.perf_counter()
    try:
        from distributed import get_worker

        from .batch import _set_threads

        _set_threads(fixed or plan_.get(get_worker().address, 1))
        image = open_image(source, level=level, axes=axes)  # its own handles to the input, not the client's
        writer = OmeZarrWriter.open(out)
        done = writer.done()
        planes = [p for p in planes if plane_index(image, p) not in done]  # a chain sent again after a loss
        import dask

        with dask.config.set(scheduler="synchronous"):  # a plane's chunks read in this task, not sent as tasks
            halted = _halted(halt)
            n = run_chain(image, settings, planes, writer.write_plane, halted) if planes and not halted() else 0
        return {"status": "done", "message": "", "planes": n, "seconds": time.perf_counter() - t0}
    except Exception as exc:  # reported, not raised: the other chains go on
        from .core.validation import first_line

        return {"status": "failed", "message": first_line(exc), "planes": 0, "seconds": time.perf_counter() - t0}


def run_chains(image: ZarrImage, writer: OmeZarrWriter, settings: StackSettings, *, chain: int = DEFAULT_CHAIN,
               scheduler: str | None = None, workers: int | None = None, threads_per_task: int | None = None,
               stop: Callable[[], bool] | None = None, poll: float = 1.0,
               grace: float = 30.0) -> Iterator[tuple[int, StreamSummary]]:
    """Run the planes ``writer`` lacks as chains on dask.distributed; yields (planes done, summary) as they finish.

    A LocalCluster (see :func:`.batch.local_cluster_size`) unless
    ``scheduler`` names a running one, whose workers must see the input and
    the output at the same paths. Workers write their planes straight into
    the output (each plane its own chunks). Progress is read from the
    output's finished-plane flags every ``poll`` seconds. When ``stop()``
    turns true, chains not started return at once and running ones stop
    within an iteration (waited for up to ``grace`` seconds, then the
    cluster is closed): finished planes are kept, the rest are done by a
    rerun. The output is finished (pyramid, final metadata) when every plane is.
    """
    import uuid

    from distributed import Event, wait

    from .batch import _thread_plan, connect

    stop = stop or (lambda: False)
    t0 = time.perf_counter()
    writer.note(settings.provenance())
    missing, found = todo(writer, image)
    summary = StreamSummary(total=len(missing) + found, found=found)
    row = _lead_shape(image)[-1] if _lead_shape(image) else 1
    work = chains(missing, chain, row)
    client, cluster, fixed = connect(scheduler, workers, threads_per_task, settings.device)
    try:
        plan_ = {} if fixed else _thread_plan(client)
        halt = Event(f"dip-l0-stop-{uuid.uuid4().hex}", client=client)
        futures = [client.submit(_chain_task, image.source, image.level, image.axes_given, str(writer.path), settings,
                                 planes, plan_, fixed, halt.name, pure=False, retries=0) for planes in work]
        pending = set(futures)
        last = time.monotonic()
        while pending and not stop():
            time.sleep(0.05)
            for fut in [f for f in pending if f.done()]:
                pending.discard(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # a worker died (killed, out of memory)
                    from .core.validation import first_line

                    result = {"status": "failed", "message": f"worker lost: {first_line(exc)}"}
                if result["status"] == "failed":
                    planes = work[futures.index(fut)]
                    summary.failed.append(f"planes {planes[0]}-{planes[-1]}: {result['message']}")
            if time.monotonic() - last >= poll or not pending:
                last = time.monotonic()
                summary.written = len(writer.done()) - found
                summary.seconds = time.perf_counter() - t0
                yield found + summary.written, summary
        summary.interrupted = stop()
        if pending:  # stopped: no new chain, and the running ones end their current iteration
            halt.set()  # (chains not started yet return at once; cancelling would leave running ones to go on)
            try:
                wait(list(pending), timeout=grace)
            except TimeoutError:  # (a chain that does not answer is cut off by the cluster's closing)
                pass
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    summary.written = len(writer.done()) - found
    summary.complete = writer.close()
    summary.seconds = time.perf_counter() - t0
    yield found + summary.written, summary
