"""The DIP-ℓ0 run off the GUI thread, and what its snapshots become in the viewer.

:func:`ticks` is the worker's generator (plain Python: testable without a
thread): it renders every image it hands over, so the GUI thread only swaps
finished arrays into layers. :class:`Job` is one run: its source layer and
selection, its worker, and the live preview, kept and result layers it makes.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import napari
import numpy as np

from .job import Progress, Selection, kept_name, layer_array, provenance, result_kwargs, result_name

# At most this often (seconds) does the preview layer get new data.
PREVIEW_INTERVAL = 0.2


class Tick(NamedTuple):
    """What the worker hands the GUI thread after a snapshot; images are rendered already."""

    snap: object
    image: np.ndarray | None
    kind: str  # "progress", "preview", "keep" or "final"


def ticks(snapshots: Iterable, sel: Selection, stop: threading.Event, preview_every: int,
          keep_every: int, streamed: bool = False) -> Iterator[Tick]:
    """The run's snapshots as ticks: every ``keep_every``-th kept, a preview every ``preview_every``-th
    (at most every :data:`PREVIEW_INTERVAL` s), and last a "final" tick, also when ``stop`` ends it early.

    ``streamed`` (a run whose planes go to a store, :mod:`.stream`): the images are the current plane alone,
    and the final tick has none (the store holds the result)."""

    def render(snap):
        return snap.plane_image if streamed else layer_array(snap.image, sel)

    last_render = 0.0
    snap = None
    snapshots = iter(snapshots)
    for snap in snapshots:
        if stop.is_set():
            break
        now = time.perf_counter()
        if snap.done:
            if streamed:  # the run hands its last plane over after its last snapshot
                for _ in snapshots:
                    pass
            yield Tick(snap, None if streamed else render(snap), "final")
            return
        if keep_every > 0 and snap.iteration > 0 and snap.iteration % keep_every == 0:
            yield Tick(snap, render(snap), "keep")
        elif snap.iteration == 0 or (snap.iteration % preview_every == 0 and now - last_render >= PREVIEW_INTERVAL):
            last_render = now
            yield Tick(snap, render(snap), "preview")
        else:
            yield Tick(snap, None, "progress")
    if snap is not None:  # stopped: the estimate so far is the result
        yield Tick(snap, None if streamed else render(snap), "final")


class Job:
    """One run: its worker, the source layer, how its data was sliced, and the layers it has made."""

    def __init__(self, layer, sel: Selection, params: dict):
        self.layer = layer
        self.sel = sel
        self.params = params
        self.iterations = params["iterations"]  # what the user set: iterations of the first plane (tile)
        self.progress = Progress(self.iterations, params.get("jpeg_tables", ""))
        self.worker = None
        self.stop_requested = threading.Event()
        self.final = None  # the Tick holding the result, once the worker has rendered it
        self.preview = None  # the live preview layer
        self.preview_limits = None  # its contrast limits when it was made
        self.error = None  # message of the exception that ended the run

    def show(self, viewer, tick: Tick, sel: Selection | None = None) -> None:
        """Put a preview or kept estimate into the viewer (the live preview layer is made on the first);
        ``sel`` places it (the job's selection by default)."""
        sel = self.sel if sel is None else sel
        if self.preview is None or self.preview not in viewer.layers:
            kwargs = result_kwargs(self.layer, sel, tick.image, {"preview": True})
            self.preview = viewer.add_image(tick.image, name=f"{self.layer.name} · DIP-ℓ0 (live preview)",
                                            **kwargs)
            self.preview_limits = tuple(self.preview.contrast_limits)
        else:
            self.preview.data = tick.image
        if tick.kind == "keep":
            snap = tick.snap
            kwargs = result_kwargs(self.layer, sel, tick.image, provenance(self.params, sel, snap))
            kept = napari.layers.Image(tick.image, name=kept_name(self.layer.name, sel, snap), **kwargs)
            # Below the live preview, so that it stays in view.
            viewer.layers.insert(viewer.layers.index(self.preview), kept)

    def result(self, viewer, old=None):
        """The result layer (the live preview turned into it, or a new one), replacing ``old`` if given."""
        layers = viewer.layers
        snap, image = self.final.snap, self.final.image
        kwargs = result_kwargs(self.layer, self.sel, image, provenance(self.params, self.sel, snap))
        name = result_name(self.layer.name, self.sel, self.iterations, snap)
        if old is not None and old in layers:
            layers.remove(old)
        if self.preview is not None and self.preview in layers:
            # The preview becomes the result: one data swap, no layer removed and added.
            self.preview.data = image
            self.preview.metadata = kwargs["metadata"]
            self.preview.name = name
            # The first preview's limits may be the source's (a stack's later planes still raw, hot pixels and
            # all), which would show the result black: it gets a result's, unless the user has set others.
            if "contrast_limits" in kwargs and tuple(self.preview.contrast_limits) == self.preview_limits:
                self.preview.contrast_limits = kwargs["contrast_limits"]
            return self.preview
        return viewer.add_image(image, name=name, **kwargs)

    def ticks(self, snapshots: Iterable, preview_every: int, keep_every: int) -> Iterator[Tick]:
        """The worker's generator (a generator function, so napari makes a generator worker): :func:`ticks`."""
        yield from ticks(snapshots, self.sel, self.stop_requested, preview_every, keep_every)

    def update(self, viewer, force: bool = False) -> None:
        """After each tick: nothing here (a streamed run shows its finished planes, :mod:`.stream`)."""

    def drop_preview(self, viewer) -> None:
        if self.preview is not None and self.preview in viewer.layers:
            viewer.layers.remove(self.preview)
        self.preview = None


class GcHold:
    """Keeps the objects that exist while anyone holds it out of Python's garbage collections.

    A full collection walks every object of napari (hundreds of ms, measured by
    benchmarks/gui_latency.py --trace) while holding Python's lock, and the
    allocations of a run trigger one every few seconds: each froze the GUI.
    ``gc.freeze`` is cheap and undone by ``gc.unfreeze`` when the last holder
    lets go; nothing is leaked, collection is only postponed. Holders are
    named, and holding or releasing twice changes nothing, so an unpaired call
    cannot leave the collector frozen or thaw it under another run.
    """

    def __init__(self):
        self._holders: set = set()
        self._lock = threading.Lock()

    def hold(self, holder) -> None:
        with self._lock:
            if not self._holders:
                gc.freeze()
            self._holders.add(holder)

    def release(self, holder) -> None:
        with self._lock:
            if holder in self._holders:
                self._holders.discard(holder)
                if not self._holders:
                    gc.unfreeze()

    @property
    def held(self) -> bool:
        return bool(self._holders)


GC_HOLD = GcHold()  # process-wide: every widget of every viewer shares the one collector

_WARM = threading.Event()  # set when the warm-up starts
WARMED = threading.Event()  # set when it is done


def warm_up(device: str) -> None:
    """A tiny run and a tiny ℓ0 smoothing, once per session, before the user's first run.

    The first run in a process imports parts of torch lazily and loads numba's
    compiled solvers; both hold Python's lock for hundreds of milliseconds and
    would freeze the GUI thread then. Done in a worker when the widget opens.
    """
    if _WARM.is_set():
        return
    _WARM.set()
    from .. import iter_dip_l0, l0_smooth
    from ..core.l0 import L0_SOLVERS

    tiny = np.random.default_rng(0).random((16, 16))
    try:
        for method in L0_SOLVERS:
            l0_smooth(tiny, 0.02, method=method)
        for _ in iter_dip_l0(tiny, "smooth", lam=0.02, iterations=2, device=device):
            pass
    finally:
        WARMED.set()


def needs_warm_up() -> bool:
    return not _WARM.is_set()
