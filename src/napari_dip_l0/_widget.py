"""The napari dock widgets: DIP-ℓ0 with live preview and Stop, and fast ℓ0 smoothing.

All maths lives in :mod:`napari_dip_l0.core`; this module only turns a layer
into an array, runs the core generator in a thread worker, and turns snapshots
back into layers.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Annotated, NamedTuple

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget

from . import __version__
from .core.admm import iter_dip_l0
from .core.api import l0_smooth
from .core.l0 import L0_SOLVERS
from .core.layout import n_planes
from .core.presets import PRESETS

MODES = {"edge-preserving smoothing": "smooth", "JPEG deblocking": "deblock"}
CURRENT, ALL = "current plane", "all planes"
# Largest plane (pixels) taken from a multiscale pyramid; finer levels are skipped.
MAX_PLANE_PIXELS = 4096 * 4096
# At most this often (seconds) does the preview layer get new data.
PREVIEW_INTERVAL = 0.2
_SETTINGS = ("mode", "lam", "iterations", "preview_every", "keep_every", "planes", "seed", "device", "l0_solver")


def _devices() -> list[str]:
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


class _CloseWatcher(QObject):
    """Calls ``on_close`` when the widget leaves its dock or its window closes.

    napari's ``remove_dock_widget`` only un-parents the widget and closing the
    viewer only closes its window, so ``destroyed`` cannot be relied on.
    """

    def __init__(self, widget: QWidget, window: QWidget | None, on_close):
        super().__init__(widget)
        self._widget = widget
        self._on_close = on_close
        widget.installEventFilter(self)
        if window is not None:
            # No reference kept: it would keep the whole viewer alive.
            window.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        widget = getattr(self, "_widget", None)  # Qt may call in while Python tears us down
        if widget is None:
            return False
        kind = event.type()
        if obj is widget and kind == QEvent.Type.ParentChange and widget.parent() is None:
            self._on_close(wait=False)
        elif obj is not widget and kind == QEvent.Type.Close:  # the only other object watched is the window
            self._on_close(wait=True)
        return False


def _settings_store():
    """Where the widget's settings live between sessions (the platform's usual place)."""
    from qtpy.QtCore import QSettings

    return QSettings("napari-dip-l0", "dip-l0-widget")


class _Selection(NamedTuple):
    """The part of a layer that a run smooths, and how to place results back."""

    data: np.ndarray
    channel_axis: int | None
    plane_index: tuple | None  # leading indices of the one plane, or None for the whole layer
    alpha: np.ndarray | None  # RGBA layers: the alpha channel, put back unchanged
    downsample: np.ndarray  # per layer axis: size of the full-resolution level / size of the level used
    note: str


class _Job:
    """What one run needs to place its results: the source layer and how its data was sliced."""

    def __init__(self, layer, sel: _Selection, params):
        self.layer = layer
        self.sel = sel
        self.params = params
        self.last = None  # newest snapshot: the result if the run stops now
        self.preview = None
        self.error = None  # message of the exception that ended the run
        self.pbar = None

    def layer_data(self, snap) -> np.ndarray:
        """The snapshot's estimate shaped as layer data (alpha restored, one-plane slab)."""
        return _layer_array(snap.image, self.sel)


def _select(layer, planes: str, viewer) -> _Selection:
    """The array to smooth: the plane shown in ``viewer`` or the whole layer, loaded lazily."""
    note = ""
    data = layer.data
    n_axes = layer.ndim  # rgb layers: without the colour axis
    downsample = np.ones(n_axes)
    if getattr(layer, "multiscale", False):
        levels = list(data)
        level = 0
        while level < len(levels) - 1 and np.prod(levels[level].shape[n_axes - 2 : n_axes]) > MAX_PLANE_PIXELS:
            level += 1
        if level:
            note = f"multiscale: level {level} used, finer levels exceed {MAX_PLANE_PIXELS} pixels per plane"
        downsample = np.array(levels[0].shape[:n_axes], float) / np.array(levels[level].shape[:n_axes])
        data = levels[level]
    lead = n_axes - 2
    plane_index = None
    if lead > 0 and planes == CURRENT:
        # The viewer's position in world coordinates, mapped through this layer's transforms.
        position = layer.world_to_data(viewer.dims.point) if viewer is not None else np.zeros(n_axes)
        index = np.round(np.asarray(position[:lead]) / downsample[:lead])
        plane_index = tuple(int(min(max(i, 0), n - 1)) for i, n in zip(index, data.shape[:lead]))
        data = data[plane_index]  # a dask array loads just this plane below
    data = np.asarray(data)
    alpha = None
    if layer.rgb and data.shape[-1] == 4:
        data, alpha = data[..., :3], data[..., 3:]
    return _Selection(data, -1 if layer.rgb else None, plane_index, alpha, downsample, note)


def _layer_kwargs(layer, sel: _Selection) -> dict:
    """Spatial metadata, look and metadata of ``layer`` for a layer made from ``sel``."""
    kwargs = {
        "scale": np.array(layer.scale, float) * sel.downsample,
        "translate": np.array(layer.translate, float),
        "rotate": layer.rotate,
        "shear": layer.shear,
        "affine": layer.affine,
        "blending": layer.blending,
        "rgb": layer.rgb,
        "metadata": dict(layer.metadata),
    }
    for name in ("units", "axis_labels"):
        if hasattr(layer, name):
            kwargs[name] = getattr(layer, name)
    if not layer.rgb:
        kwargs["colormap"] = layer.colormap
        kwargs["contrast_limits"] = tuple(layer.contrast_limits)
    if sel.plane_index is not None:
        # One plane kept as a slab of thickness 1, placed where it came from in the stack.
        k = len(sel.plane_index)
        kwargs["translate"][:k] += np.asarray(sel.plane_index) * kwargs["scale"][:k]
    return kwargs


def _layer_array(image: np.ndarray, sel: _Selection) -> np.ndarray:
    """A result as layer data: alpha put back, and one plane kept as a slab of thickness 1."""
    if sel.alpha is not None:
        image = np.concatenate([image, sel.alpha.astype(image.dtype, copy=False)], axis=-1)
    return image if sel.plane_index is None else image.reshape((1,) * len(sel.plane_index) + image.shape)


class DipL0Widget(Container):
    """Run DIP-ℓ0 on an image layer and watch the estimate improve.

    Parameters
    ----------
    viewer : napari.Viewer
    persist : bool
        Restore and save the settings between sessions (off in tests).
    """

    def __init__(self, viewer: napari.viewer.Viewer, persist: bool = True):
        super().__init__(labels=True)
        self.viewer = viewer
        self._persist = persist
        smooth = PRESETS["smooth"]
        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.mode = ComboBox(label="mode", choices=list(MODES), value="edge-preserving smoothing")
        self.lam = FloatSpinBox(label="λ (ℓ0 weight)", value=smooth.lam, min=0.0, max=1.0, step=0.005,
                                tooltip="Weight of the ℓ0 gradient term on the [0, 1] intensity scale. "
                                        "Larger: fewer, larger flat regions. Try it with 'ℓ0 preview'.")
        self.iterations = SpinBox(label="iterations", value=smooth.iterations, min=1, max=100_000)
        self.preview_every = SpinBox(label="preview every", value=10, min=1, max=10_000,
                                     tooltip="Update the preview layer every N iterations")
        self.keep_every = SpinBox(label="keep every", value=0, min=0, max=100_000,
                                  tooltip="Add the estimate as a new layer every M iterations (0: never)")
        self.planes = ComboBox(label="planes", choices=[CURRENT, ALL], value=CURRENT)
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.device = ComboBox(label="device", choices=_devices(), value="auto")
        self.l0_solver = ComboBox(label="ℓ0 solver", choices=list(L0_SOLVERS), value="region_fusion")
        self.l0_button = PushButton(text="ℓ0 preview (fast)")
        self.run_button = PushButton(text="Run")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.status = Label(value="idle")
        self.extend([self.image, self.mode, self.lam, self.iterations, self.preview_every, self.keep_every,
                     self.planes, self.seed, self.device, self.l0_solver, self.l0_button, self.run_button,
                     self.stop_button, self.status])

        self.worker = None
        self._job: _Job | None = None
        if persist:
            self._restore_settings()
        self.mode.changed.connect(self._on_mode)
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.l0_button.changed.connect(self.l0_preview)
        for name in _SETTINGS:
            getattr(self, name).changed.connect(self._save_settings)
        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        self._closed = False
        # napari has no public "window closing" event; its Qt main window is the one place to watch.
        window = getattr(getattr(viewer, "window", None), "_qt_window", None)
        self._close_watcher = _CloseWatcher(self.native, window, self._shutdown)
        self._follow_selection()

    # ----- layer list -------------------------------------------------
    def _image_layers(self, _widget=None):
        return [layer for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def _refresh_layers(self, event=None):
        self.image.reset_choices()

    def _follow_selection(self, event=None):
        self.image.reset_choices()
        active = self.viewer.layers.selection.active
        # Our own outputs get selected as napari adds them; the selector stays on the source.
        if isinstance(active, napari.layers.Image) and active in self.image.choices and "dip_l0" not in active.metadata:
            self.image.value = active

    def _on_layer_removed(self, event):
        removed = event.value
        if self._job is not None and removed is self._job.layer:
            self.stop()
        if self._job is not None and removed is self._job.preview:
            self._job.preview = None
        self.image.reset_choices()

    def _on_mode(self, value=None):
        preset = PRESETS[MODES[self.mode.value]]
        self.lam.value = preset.lam
        self.iterations.value = preset.iterations
        if MODES[self.mode.value] == "deblock":
            self.l0_solver.value = "region_fusion"

    # ----- settings ---------------------------------------------------
    def _save_settings(self, value=None):
        if not self._persist:
            return
        settings = _settings_store()
        for name in _SETTINGS:
            settings.setValue(name, getattr(self, name).value)

    def _restore_settings(self):
        settings = _settings_store()
        for name in _SETTINGS:
            value = settings.value(name)
            if value is None:
                continue
            widget = getattr(self, name)
            try:
                widget.value = type(widget.value)(value)
            except (TypeError, ValueError):
                pass  # a stale or foreign value: keep the default

    # ----- running ----------------------------------------------------
    def _notify_error(self, message: str):
        from napari.utils.notifications import show_error

        self.status.value = f"error: {message}"
        show_error(f"DIP-ℓ0: {message}")

    def _set_running(self, running: bool):
        self.run_button.enabled = not running
        self.l0_button.enabled = not running
        self.stop_button.enabled = running

    def l0_preview(self, value=None):
        """ℓ0 smoothing alone at the current λ, as a layer: for choosing λ in a second."""
        layer = self.image.value
        if layer is None:
            self._notify_error("choose an image layer first")
            return
        try:
            sel = _select(layer, CURRENT, self.viewer)
            method = "fft" if self.l0_solver.value == "fft" else "region_fusion"
            t0 = time.perf_counter()
            result = l0_smooth(sel.data, self.lam.value, method=method, channel_axis=sel.channel_axis)
        except (ValueError, TypeError, MemoryError) as exc:
            self._notify_error(str(exc))
            return
        name = f"{layer.name} · ℓ0 (preview)"
        kwargs = _layer_kwargs(layer, sel)
        kwargs["metadata"]["dip_l0"] = {"method": f"l0 {method}", "lam": self.lam.value, "version": __version__}
        result = _layer_array(result, sel)
        if name in self.viewer.layers:
            self.viewer.layers[name].data = result
            self.viewer.layers[name].metadata = kwargs["metadata"]
        else:
            self.viewer.add_image(result, name=name, **kwargs)
        self.status.value = f"ℓ0 {method} λ={self.lam.value:g}: {time.perf_counter() - t0:.2f} s"

    def run(self, value=None):
        """Start DIP-ℓ0 on the chosen layer in a thread worker."""
        from napari.qt.threading import create_worker
        from napari.utils import progress

        if self.worker is not None:
            return
        layer = self.image.value
        if layer is None:
            self._notify_error("choose an image layer first")
            return
        mode = MODES[self.mode.value]
        params = {
            "mode": mode,
            "lam": float(self.lam.value),
            "iterations": int(self.iterations.value),
            "seed": int(self.seed.value),
            "device": self.device.value,
            "l0_solver": self.l0_solver.value if mode == "smooth" else "region_fusion",
        }
        try:
            sel = _select(layer, self.planes.value, self.viewer)
            # Checks the arguments now, so bad input is reported before any thread starts.
            snapshots = iter_dip_l0(sel.data, mode, lam=params["lam"], iterations=params["iterations"],
                                    channel_axis=sel.channel_axis, seed=params["seed"], device=params["device"],
                                    l0_solver=params["l0_solver"])
        except (ValueError, TypeError, MemoryError) as exc:
            self._notify_error(str(exc))
            return
        job = self._job = _Job(layer, sel, params)
        preview_every = int(self.preview_every.value)
        keep_every = int(self.keep_every.value)

        def work():
            # Runs in the worker thread: images are rendered here, never on the GUI thread.
            last_render = 0.0
            for snap in snapshots:
                now = time.perf_counter()
                show = snap.done or snap.iteration == 0 or (
                    snap.iteration % preview_every == 0 and now - last_render >= PREVIEW_INTERVAL)
                keep = keep_every > 0 and snap.iteration > 0 and snap.iteration % keep_every == 0 and not snap.done
                image = None
                if show or keep:
                    image = job.layer_data(snap)  # rendered here, off the GUI thread
                    last_render = now
                yield snap, image, show, keep

        total = job.params["iterations"] * n_planes(sel.data.shape, sel.channel_axis)
        job.pbar = progress(total=total, desc=f"DIP-ℓ0 {layer.name}")
        # Errors are reported by _on_error as a notification, not re-raised.
        worker = self.worker = create_worker(work, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.status.value = "starting…"
        if sel.note:
            from napari.utils.notifications import show_info

            show_info(f"DIP-ℓ0: {sel.note}")
        worker.start()

    def stop(self, value=None):
        """Stop at the next iteration; the estimate so far becomes the result."""
        if self.worker is not None and self._job is not None:
            self.status.value = "stopping…"
            self.worker.quit()

    def _on_yielded(self, item):
        # napari's progress bar and add_image can run the Qt event loop, so the
        # finished/errored handlers may run in the middle of this one: state is
        # written first, and the job is re-checked after each such call.
        snap, image, show, keep = item
        job = self._job
        if job is None or job.error is not None or self._closed:
            return
        job.last = snap
        loss = f", loss {snap.losses['loss']:.2e}" if snap.losses else ""
        plane = f", plane {snap.plane + 1}/{snap.planes}" if snap.planes > 1 else ""
        if snap.tiles > 1:
            plane += f", tile {snap.tile + 1}/{snap.tiles}"
        self.status.value = f"iteration {snap.iteration}/{snap.total}{plane}{loss}, {snap.seconds:.1f} s"
        layer = job.layer
        if show:
            data = image
            if job.preview is None or job.preview not in self.viewer.layers:
                kwargs = _layer_kwargs(layer, job.sel)
                kwargs["metadata"]["dip_l0"] = {"preview": True}
                job.preview = self.viewer.add_image(data, name=f"{layer.name} · DIP-ℓ0 (preview)", **kwargs)
                if self._job is not job and job.preview in self.viewer.layers:
                    self.viewer.layers.remove(job.preview)  # the run ended meanwhile
                    return
            else:
                job.preview.data = data
        if keep and self._job is job:
            kwargs = _layer_kwargs(layer, job.sel)
            kwargs["metadata"]["dip_l0"] = _provenance(job, snap)
            self.viewer.add_image(image, name=f"{layer.name} · DIP-ℓ0 @{snap.iteration}", **kwargs)
        if job.pbar is not None and self._job is job:
            if job.pbar.total != snap.total:  # warm-started planes and tiles change the count
                job.pbar.total = snap.total
            job.pbar.update(snap.iteration - job.pbar.n)

    def _on_finished(self):
        job, self._job, self.worker = self._job, None, None
        if job is not None and job.pbar is not None:
            job.pbar.close()
        if self._closed:  # the widget (maybe the viewer) is gone: touch nothing
            return
        self._set_running(False)
        if job is None:
            return
        if job.preview is not None and job.preview in self.viewer.layers:
            self.viewer.layers.remove(job.preview)
        snap = job.last
        if job.error is not None:
            self.status.value = f"error: {job.error}"
            return
        if snap is None:
            self.status.value = "stopped before the first estimate"
            return
        if job.layer not in self.viewer.layers:
            self.status.value = "source layer removed: no result added"
            return
        kwargs = _layer_kwargs(job.layer, job.sel)
        kwargs["metadata"]["dip_l0"] = _provenance(job, snap)
        self.viewer.add_image(job.layer_data(snap), name=f"{job.layer.name} · DIP-ℓ0", **kwargs)
        state = "stopped" if not snap.done else "done"
        self.status.value = f"{state} at iteration {snap.iteration}/{snap.total}, {snap.seconds:.1f} s"

    def _on_error(self, exc):
        message = f"{type(exc).__name__}: {exc}"
        if self._job is not None:
            self._job.error = message
        if not self._closed:
            self._notify_error(message)

    def _shutdown(self, wait: bool = True):
        """Stop a running job because the widget or the viewer is closing: no layers are added after this."""
        self._closed = True
        if self.worker is None:
            return
        self.worker.quit()
        job = self._job
        if not wait and job is not None and job.preview is not None and job.preview in self.viewer.layers:
            self.viewer.layers.remove(job.preview)  # the viewer lives on: drop our temporary layer
        if wait:
            # The thread stops at its next iteration; wait so it never outlives the viewer.
            self.worker.await_workers(msecs=30_000)


def _provenance(job: _Job, snap) -> dict:
    """Parameters and outcome of a run, stored in the result layer's metadata."""
    return {
        "method": "DIP-ℓ0",
        **job.params,
        "iterations_done": snap.iteration,
        "planes": "all" if job.sel.plane_index is None else list(job.sel.plane_index),
        "seconds": round(snap.seconds, 3),
        "stopped_early": not snap.done,
        "version": __version__,
    }


L0Method = Enum("L0Method", {name: name for name in L0_SOLVERS})


def l0_widget(
    image: napari.layers.Image,
    lam: Annotated[float, {"min": 0.0, "max": 1.0, "step": 0.005, "label": "λ"}] = 0.03,
    method: L0Method = L0Method.region_fusion,
) -> napari.types.LayerDataTuple:
    """ℓ0 gradient smoothing alone: a result in about a second, for choosing λ."""
    if image is None:
        raise ValueError("choose an image layer")
    method = L0Method(method).value
    sel = _select(image, ALL, None)
    result = _layer_array(l0_smooth(sel.data, lam, method=method, channel_axis=sel.channel_axis), sel)
    kwargs = _layer_kwargs(image, sel)
    kwargs["metadata"]["dip_l0"] = {"method": f"l0 {method}", "lam": lam, "version": __version__}
    kwargs["name"] = f"{image.name} · ℓ0"
    return result, kwargs, "image"
