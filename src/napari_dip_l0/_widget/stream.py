"""Runs over every plane of a large (Dask-backed) layer, streamed: planes go to a Zarr store as they finish.

An in-memory run keeps its whole result and renders the whole stack for each
preview. A streamed run (:func:`streams`) keeps neither: the core run hands
each finished plane to :class:`PlaneStore` (a Zarr array in a temporary
folder, or the OME-Zarr the user chose), the result layer reads that store
lazily (dask from Zarr) and is refreshed as planes arrive, and the live
preview is the current plane alone, placed where it lies in the stack.
Memory stays a few planes, whatever the stack's size.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import threading
import time
from pathlib import Path

import napari
import numpy as np

from ..core.validation import is_lazy
from .job import Selection, layer_array, layer_kwargs, provenance, result_kwargs, result_name
from .worker import Job, ticks

# At most this often (seconds) does the result layer re-read its store.
REFRESH_INTERVAL = 0.5
_TEMP_DIRS: list[str] = []
_names = itertools.count()


@atexit.register
def _remove_temp_dirs() -> None:
    for path in _TEMP_DIRS:
        shutil.rmtree(path, ignore_errors=True)


def streams(sel: Selection, save_to: str | None) -> bool:
    """Whether a run on ``sel`` streams: every plane of a stack, Dask-backed or to be saved to a file."""
    n_lead = sel.data.ndim - 2 - (sel.channel_axis is not None)
    return sel.plane_index is None and n_lead > 0 and (is_lazy(sel.data) or bool(save_to))


def default_axes(n_lead: int) -> str:
    """NGFF axis letters for the leading axes of a layer: z, or t and z."""
    if n_lead > 2:
        raise ValueError(f"an OME-Zarr result holds t and z besides y and x; this layer has {n_lead} leading axes: "
                         f"leave 'save result to' empty (a temporary store) and save the layer yourself")
    return "tz"[2 - n_lead:]


class PlaneStore:
    """A streamed run's result on disk: planes written as they finish, read back lazily.

    Parameters
    ----------
    shape : tuple of int
        The result layer's shape (channels last for RGB).
    dtype : numpy dtype
    rgb : bool
    path : str, optional
        An OME-Zarr to write (:class:`..core.io.ngff.OmeZarrWriter`);
        ``None``: a Zarr array in a temporary folder, removed when napari
        exits.
    scale : sequence of float
        Physical size per layer axis, for the OME-Zarr.
    provenance : dict
        The run's settings, for the OME-Zarr's attributes.
    """

    def __init__(self, shape, dtype, rgb: bool, path: str | None, scale, provenance: dict):
        from ..core.io.ngff import require_zarr

        require_zarr()  # one line naming the extra to install, before anything runs
        import zarr

        shape = tuple(int(s) for s in shape)
        self.shape, self.dtype, self.rgb = shape, np.dtype(dtype), rgb
        self.path, self.writer, self.written, self._order = path, None, 0, None
        self._lock = threading.Lock()
        plane_chunks = (1,) * (len(shape) - 2 - rgb) + tuple(shape[len(shape) - 2 - rgb:])
        if path is None:
            folder = tempfile.mkdtemp(prefix="dip-l0-result-")
            _TEMP_DIRS.append(folder)
            self.array = zarr.open_array(str(Path(folder) / "result.zarr"), mode="w-", shape=shape, dtype=dtype,
                                         chunks=plane_chunks, fill_value=0)
            return
        from ..core.io.ngff import OmeZarrWriter

        # The layer's axes by NGFF letter; the OME-Zarr holds them in NGFF order (t, c, z, y, x).
        layer_axes = default_axes(len(shape) - 2 - rgb) + "yx" + ("c" if rgb else "")
        sizes = dict(zip(layer_axes, shape))
        scales = dict(zip(layer_axes, [*scale, 1.0]))
        axes = "".join(a for a in "tczyx" if a in sizes)
        self.writer = OmeZarrWriter(path, shape=tuple(sizes[a] for a in axes), dtype=dtype, axes=axes,
                                   scale=tuple(scales[a] for a in axes), provenance=provenance, overwrite=False)
        self.array = zarr.open_array(str(path), path="0", mode="r")
        self._order = [axes.index(a) for a in layer_axes]  # NGFF order to the layer's

    def write_plane(self, index: tuple, plane: np.ndarray) -> None:
        """Plane ``index`` (the leading axes), as the core run's ``on_plane`` gives it; called from the worker."""
        if self.writer is not None:
            self.writer.write_plane(index, plane)
        else:
            self.array[tuple(index)] = plane
        with self._lock:
            self.written += 1

    def lazy(self):
        """The store as a dask array in the layer's axis order, under a new name each time (napari caches
        chunks by name: a new one shows the planes written since)."""
        import dask.array as da

        data = da.from_zarr(self.array, name=f"dip-l0-result-{id(self)}-{next(_names)}")
        return data if self._order is None else data.transpose(self._order)

    def close(self, values: dict) -> None:
        """Record ``values`` (the run's outcome) with an OME-Zarr, and finish it (pyramid) if every plane is in."""
        if self.writer is not None:
            self.writer.note(values)
            self.writer.close()


def prepare_stream(layer, sel: Selection, params: dict, settings: dict, save_to: str | None):
    """The :class:`StreamJob` of a run with ``settings`` (:class:`DipL0Run`'s keywords) on ``sel``, and its
    snapshots to come. Every setting and the output are checked here, reading nothing of the layer; the run
    itself, whose first step measures the whole stack (its range, noise), is made in the worker."""
    from ..core.lazy import probe_run

    job = StreamJob(layer, sel, params, save_to)
    settings = {**settings, "collect": False, "on_plane": job.write_plane}
    job.open_store(probe_run(sel.data, params["mode"], settings).reader.layout.result_dtype)
    return job, DeferredRun(sel.data, params["mode"], settings)


class DeferredRun:
    """A :class:`DipL0Run` made when its snapshots are first asked for (in the worker thread)."""

    def __init__(self, image, mode: str, settings: dict):
        self.image, self.mode, self.settings = image, mode, settings

    def __iter__(self):
        from ..core.run import DipL0Run

        yield from DipL0Run(self.image, self.mode, **self.settings)


class StreamJob(Job):
    """A run whose planes stream into a :class:`PlaneStore`, shown as a lazy result layer."""

    def __init__(self, layer, sel: Selection, params: dict, save_to: str | None):
        super().__init__(layer, sel, params)
        self.save_to = save_to
        self.store: PlaneStore | None = None
        self.layer_out = None  # the result layer, reading the store
        self.outcome = None  # the result's provenance, once the store is closed
        self._shown = (-1, 0.0)  # planes written when the result layer last re-read its store, and when
        self._lead = tuple(sel.data.shape[: sel.data.ndim - 2 - (sel.channel_axis is not None)])

    def open_store(self, dtype) -> None:
        """The store for the result (of ``dtype``), made before the run starts (refusals come first)."""
        shape = list(self.sel.data.shape)
        if self.sel.alpha is not None:
            shape[-1] += self.sel.alpha.shape[-1]
        self.store = PlaneStore(shape, dtype, bool(self.layer.rgb), self.save_to, layer_kwargs(self.layer, self.sel)
                                ["scale"], {k: v for k, v in self.params.items() if v is not None})

    def ticks(self, snapshots, preview_every: int, keep_every: int):
        """The worker's generator: the run's ticks (the current plane's images), then, still in the worker, the
        store closed with the run's outcome (an OME-Zarr's pyramid is built from every plane: slow)."""
        final = None
        for tick in ticks(snapshots, self.sel, self.stop_requested, preview_every, keep_every, streamed=True):
            final = tick if tick.kind == "final" else final
            yield tick
        if final is not None:
            self.outcome = provenance(self.params, self.sel, final.snap)
            self.outcome.update(planes_done=self.store.written, store=self.save_to or "temporary")
            self.store.close(self.outcome)

    def write_plane(self, index: tuple, plane: np.ndarray) -> None:
        """The core run's ``on_plane``: the layer's alpha put back, then into the store."""
        if self.sel.alpha is not None:
            alpha = np.asarray(self.sel.alpha[index])
            plane = np.concatenate([plane, alpha.astype(plane.dtype, copy=False)], axis=-1)
        self.store.write_plane(index, plane)

    def _plane_sel(self, plane: int) -> Selection:
        """The selection of plane number ``plane`` alone, for a layer of it placed where it lies."""
        index = tuple(int(i) for i in np.unravel_index(plane, self._lead))
        return self.sel._replace(plane_index=index, alpha=None)

    def show(self, viewer, tick) -> None:
        psel = self._plane_sel(tick.snap.plane)
        image = layer_array(tick.image, psel)
        if self.preview is not None and self.preview in viewer.layers:
            self.preview.translate = layer_kwargs(self.layer, psel)["translate"]  # to the plane now fitted
        super().show(viewer, tick._replace(image=image), psel)
        self.preview.name = self._preview_name(tick.snap)

    def _preview_name(self, snap) -> str:
        return f"{self.layer.name} · DIP-ℓ0 (live preview, plane {snap.plane + 1} of {snap.planes})"

    def update(self, viewer, force: bool = False) -> None:
        """Show the planes written since the last look (at most every :data:`REFRESH_INTERVAL` s)."""
        written, now = self.store.written, time.perf_counter()
        if not force and (written == self._shown[0] or now - self._shown[1] < REFRESH_INTERVAL):
            return
        self._shown = (written, now)
        n = int(np.prod(self._lead))
        name = f"{self.layer.name} · DIP-ℓ0 ({written} of {n} planes done)"
        if self.layer_out is None or self.layer_out not in viewer.layers:
            kwargs = layer_kwargs(self.layer, self.sel)
            kwargs["metadata"]["dip_l0"] = {"running": True, **self.params}
            self.layer_out = napari.layers.Image(self.store.lazy(), name=name, **kwargs)
            # Below the live preview, whose plane it would hide (zero until finished).
            below = viewer.layers.index(self.preview) if self.preview in viewer.layers else len(viewer.layers)
            viewer.layers.insert(below, self.layer_out)
        else:
            self.layer_out.data = self.store.lazy()
            self.layer_out.name = name

    def result(self, viewer, old=None):
        """The result layer: the store as it ends (finished planes; the rest zero after a Stop)."""
        snap = self.final.snap
        info = self.outcome or provenance(self.params, self.sel, snap)
        n = int(np.prod(self._lead))
        if old is not None and old in viewer.layers:
            viewer.layers.remove(old)
        self.drop_preview(viewer)
        self.update(viewer, force=True)
        kwargs = result_kwargs(self.layer, self.sel, np.zeros(0), info)
        name = result_name(self.layer.name, self.sel, self.iterations, snap)
        if self.store.written < n:
            name += f" · {self.store.written} of {n} planes"
        self.layer_out.metadata = kwargs["metadata"]
        self.layer_out.name = name
        return self.layer_out
