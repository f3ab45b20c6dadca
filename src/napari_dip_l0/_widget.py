"""The napari dock widgets: DIP-ℓ0 with live preview and Stop, and fast ℓ0 smoothing.

All maths lives in :mod:`napari_dip_l0.core`; this module only turns a layer
into an array, runs the core generator in a thread worker, and turns snapshots
back into layers. Everything slow (fitting, rendering estimates, ℓ0
smoothing) runs in workers; the GUI thread only swaps finished arrays into
layers. Only napari's public API is used.

No ``from __future__ import annotations`` here: magicgui resolves the
annotations of :func:`l0_widget` at runtime, and napari builds it from the
manifest by that function's real types.
"""

import gc
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, NamedTuple

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.qt.threading import FunctionWorker, create_worker
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QApplication

from . import __version__, iter_dip_l0, l0_smooth
from .core.api import l0_preview
from .core.l0 import L0_SOLVERS
from .core.layout import n_planes
from .core.presets import FILE_PRESETS, PRESETS, Preset, get_preset

MODES = {"edge-preserving smoothing": "smooth", "camera-noise denoising": "denoise", "JPEG deblocking": "deblock"}
CURRENT, ALL = "current plane", "all planes"
# Largest plane (pixels) taken from a multiscale pyramid; finer levels are skipped.
MAX_PLANE_PIXELS = 4096 * 4096
# At most this often (seconds) does the preview layer get new data.
PREVIEW_INTERVAL = 0.2
# At most this often (seconds) do the progress bar and status line change.
STATUS_INTERVAL = 0.25
# The ℓ0 preview follows λ this long (ms) after the last change.
L0_DEBOUNCE_MS = 300
_SETTINGS = ("mode", "lam_auto", "lam", "iterations", "planes", "replace", "preview_every", "keep_every", "seed", "device",
             "l0_solver")

# Readable names of the ℓ0 solvers; a solver the core adds later shows under its own name.
SOLVER_LABELS = {
    "parallel_fusion": "Region Fusion (exact, sharp edges; every core)",
    "region_fusion": "Region Fusion, sequential (the reference; slower)",
    "fft": "FFT (fast, approximate)",
}
AUTO_SOLVER = "automatic (the mode's preset)"
DEVICE_LABELS = {"auto": "automatic (GPU if available)", "cpu": "CPU", "cuda": "NVIDIA GPU (CUDA)",
                 "mps": "Apple GPU (MPS)"}


def _solver_choices() -> list[tuple[str, str]]:
    return [(AUTO_SOLVER, "auto")] + [(SOLVER_LABELS.get(n, n.replace("_", " ")), n) for n in L0_SOLVERS]


def _solver_arg(choice: str, mode: str) -> str | None:
    """The ``l0_solver`` passed to the core for the widget's solver choice: None (the preset's) for "auto"."""
    return None if choice == "auto" else choice


def _devices() -> list[tuple[str, str]]:
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return [(DEVICE_LABELS.get(n, n), n) for n in names]


def _time_left(seconds: float) -> str:
    """A duration in the words a person uses: 'about 3 minutes left'."""
    if seconds < 45:
        return "less than a minute left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''} left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min left"


_WARM = threading.Event()  # set when the warm-up starts
WARMED = threading.Event()  # set when it is done


def _warm_up(device: str) -> None:
    """A tiny run and a tiny ℓ0 smoothing, once per session, before the user's first run.

    The first run in a process imports parts of torch lazily and loads numba's
    compiled solvers; both hold Python's lock for hundreds of milliseconds and
    would freeze the GUI thread then. Done in a worker when the widget opens.
    """
    if _WARM.is_set():
        return
    _WARM.set()
    tiny = np.random.default_rng(0).random((16, 16))
    try:
        for method in L0_SOLVERS:
            l0_smooth(tiny, 0.02, method=method)
        for _ in iter_dip_l0(tiny, "smooth", lam=0.02, iterations=2, device=device):
            pass
    finally:
        WARMED.set()


_gc_frozen = 0  # runs (in any viewer) holding the garbage collector's freeze


def _freeze_gc(freeze: bool) -> None:
    """Keep the objects that exist when a run starts out of Python's garbage collections until it ends.

    A full collection walks every object of napari (hundreds of ms, measured by
    benchmarks/gui_latency.py --trace) while holding Python's lock, and the
    allocations of a run trigger one every few seconds: each froze the GUI.
    ``gc.freeze`` is cheap and undone by ``gc.unfreeze`` when the last run ends;
    nothing is leaked, collection is only postponed.
    """
    global _gc_frozen
    if freeze:
        if _gc_frozen == 0:
            gc.freeze()
        _gc_frozen += 1
    elif _gc_frozen > 0:
        _gc_frozen -= 1
        if _gc_frozen == 0:
            gc.unfreeze()


class RunState(Enum):
    """Where a DIP-ℓ0 run is. idle → running → (stopping →) idle."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"


_TRANSITIONS = {
    RunState.IDLE: {RunState.RUNNING},
    RunState.RUNNING: {RunState.STOPPING, RunState.IDLE},
    RunState.STOPPING: {RunState.IDLE},
}


class _CloseWatcher(QObject):
    """Calls ``on_close`` when the widget leaves its dock, its window closes or the application quits.

    Plain Qt, no napari internals: the widget's own ParentChange events, the
    ParentChange events of its ancestors (the dock goes into the main window
    after the widget goes into the dock), and the Close events of the
    top-level window it ends up in (``QWidget.window()``). napari's
    ``remove_dock_widget`` only un-parents the widget and closing the viewer
    only closes its window, so ``destroyed`` cannot be relied on.
    """

    def __init__(self, widget, on_close):
        super().__init__(widget)
        self._widget = widget
        self._on_close = on_close
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._quit)
        self._watch()

    def _quit(self):
        self._on_close(wait=True)

    def _watch(self):
        """Watch the widget and each of its ancestors (installing twice is a no-op in Qt).

        No reference to an ancestor is kept: it would keep the whole viewer alive.
        Former ancestors stay watched, and their events are ignored below.
        """
        obj = self._widget
        while obj is not None:
            obj.installEventFilter(self)
            obj = obj.parentWidget()

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        widget = getattr(self, "_widget", None)  # Qt may call in while Python tears us down
        if widget is None:
            return False
        kind = event.type()
        if kind == QEvent.Type.ParentChange:
            if obj is widget and widget.parent() is None:
                self._on_close(wait=False)
            else:
                self._watch()
        elif kind == QEvent.Type.Close and obj is not widget and obj is widget.window():
            if not event.spontaneous():
                # A programmatic close: viewer.close(), or napari's own File > Close after its confirmation.
                self._on_close(wait=True)
        elif kind == QEvent.Type.Hide and obj is widget.window() and obj is not widget and not event.spontaneous():
            # The window went away after a close the user asked for (a spontaneous Close may still be refused).
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


class _Tick(NamedTuple):
    """What the worker hands the GUI thread after a snapshot; images are rendered already."""

    snap: object
    image: np.ndarray | None
    kind: str  # "progress", "preview", "keep" or "final"


class _Job:
    """One run: its worker, the source layer, how its data was sliced, and what it has produced."""

    def __init__(self, layer, sel: "_Selection", params: dict, iterations: int):
        self.layer = layer
        self.sel = sel
        self.params = params
        self.iterations = iterations  # what the user set: iterations of the first plane (tile)
        self.worker = None
        self.stop_requested = threading.Event()
        self.last = None  # newest snapshot
        self.final = None  # the _Tick holding the result, once the worker has rendered it
        self.preview = None  # the live preview layer
        self.error = None  # message of the exception that ended the run
        self.unit_start = (0, 0, 0)  # (plane, tile, iteration) where the current plane/tile began
        self.first_timed = None  # (iteration, seconds) of the first fitted iteration, for the ETA
        self.shown_at = 0.0  # when the progress bar and status line last changed

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


def _jpeg_file(layer, sel: _Selection) -> tuple[str | None, str]:
    """The JPEG file ``layer`` was opened from, if its pixels are that file's as they stand; else None, and why.

    Only a whole, unedited, single-resolution layer qualifies: the file's
    coefficients describe exactly the pixels it decodes to, nothing else.
    """
    from .core.imageio import JPEG, read_image

    path = getattr(getattr(layer, "source", None), "path", None)
    if not path or Path(path).suffix.lower() not in JPEG:
        return None, ""
    if not Path(path).is_file():
        return None, f"its JPEG file {Path(path).name} is gone"
    if getattr(layer, "multiscale", False) or sel.plane_index is not None or sel.alpha is not None:
        return None, "the layer is not the JPEG file's whole image"
    try:
        decoded = read_image(path)
    except (ValueError, OSError, MemoryError):
        return None, f"its JPEG file {Path(path).name} cannot be read"
    if decoded.shape != sel.data.shape or not np.array_equal(decoded, sel.data):
        return None, f"the layer's pixels differ from its JPEG file {Path(path).name}"
    return str(path), ""


JPEG_NOTE = "using the JPEG file's quantisation tables"


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
        "gamma": layer.gamma,
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


def _display_dtype(layer, sel: _Selection):
    """The dtype of a result layer: the mode's choice (None), but an RGB layer's own, since napari draws RGB
    thumbnails of floats on [0, 1] whatever their contrast limits (a float 0-255 result would look white)."""
    return sel.data.dtype if layer.rgb else None


def _layer_array(image: np.ndarray, sel: _Selection) -> np.ndarray:
    """A result as layer data: alpha put back, and one plane kept as a slab of thickness 1."""
    if sel.alpha is not None:
        image = np.concatenate([image, sel.alpha.astype(image.dtype, copy=False)], axis=-1)
    return image if sel.plane_index is None else image.reshape((1,) * len(sel.plane_index) + image.shape)


def _result_kwargs(layer, sel: _Selection, image: np.ndarray) -> dict:
    """:func:`_layer_kwargs` for a result ``image``: the source's look, except contrast limits that it
    would fill less than a quarter of (a denoised camera frame whose hot pixels set the source's
    limits would show black), which become the result's own range."""
    kwargs = _layer_kwargs(layer, sel)
    if "contrast_limits" in kwargs and image.size:
        lo, hi = kwargs["contrast_limits"]
        a, b = float(np.min(image)), float(np.max(image))
        if b > a and hi > lo and min(b, hi) - max(a, lo) < 0.25 * (hi - lo):
            kwargs["contrast_limits"] = (a, b)
    return kwargs


def _plane_words(sel: _Selection) -> str:
    return "" if sel.plane_index is None else " · plane " + ",".join(str(i) for i in sel.plane_index)


def result_name(source: str, job: _Job, snap) -> str:
    """What made a result, in its name: λ, iterations (or where it stopped), the plane."""
    lam = f"λ={snap.preset.lam:.3g}"
    if not snap.done:
        runs = f"stopped at {snap.iteration}/{snap.total}"
    elif snap.kept and snap.planes * snap.tiles == 1:  # the iteration whose estimate the stopping rule kept
        runs = f"{snap.kept} it (stopping rule)"
    else:
        runs = f"{job.iterations} it"
    return f"{source} · DIP-ℓ0 {lam}, {runs}{_plane_words(job.sel)}"


class DipL0Widget(Container):
    """Run DIP-ℓ0 on an image layer and watch the estimate improve.

    Parameters
    ----------
    viewer : napari.Viewer
    persist : bool
        Restore and save the settings between sessions (off in tests).
    """

    def __init__(self, viewer: "napari.viewer.Viewer", persist: bool = True):
        super().__init__(labels=True)
        self.viewer = viewer
        self._persist = persist
        smooth = PRESETS["smooth"]
        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True,
                              tooltip="The image layer to work on (follows the layer selected in the layer list). "
                                      "It is never changed: results are new layers.")
        self.mode = ComboBox(label="mode", choices=list(MODES), value="edge-preserving smoothing",
                             tooltip="Edge-preserving smoothing flattens texture and keeps edges; camera-noise "
                                     "denoising is for photon-limited data such as fluorescence (λ follows the "
                                     "noise the image shows; slower); JPEG deblocking removes 8×8 block "
                                     "artefacts (with the file's tables, for a layer opened from a JPEG "
                                     "file). Changing it loads the mode's λ and iterations.")
        self.lam_auto = CheckBox(text="automatic λ", value=True,
                                 tooltip="Let the mode choose λ: camera-noise denoising measures the image's "
                                         "noise, evens out how it grows with brightness and sets λ from it; "
                                         "JPEG deblocking of a layer opened from a JPEG file sets it from the "
                                         "file's quantisation step (the coarser, the stronger); otherwise the "
                                         "mode's tuned λ. The λ used is in the result's name.")
        self.lam = FloatSpinBox(label="λ (strength)", value=smooth.lam, min=0.0, max=1.0, step=0.005,
                                tooltip="Smoothing strength: weight of the ℓ0 gradient term, on the image's "
                                        "intensities scaled to 0–1 (no unit; typical 0.005–0.1; camera-noise "
                                        "denoising: after evening out the shot noise). Larger: fewer, larger "
                                        "flat regions. 'ℓ0 preview' shows its effect in a second and then "
                                        "follows λ as you change it.")
        self.iterations = SpinBox(label="iterations", value=smooth.iterations, min=1, max=100_000,
                                  tooltip="Optimisation steps for the image, or the first plane of a stack "
                                          "(count). More: a closer fit and a longer run. Later planes start "
                                          "from the previous one and take fewer. Camera-noise denoising, and "
                                          "deblocking a layer opened from a JPEG file, stop by themselves once "
                                          "the fit turns to the noise: for them it is a cap.")
        self.planes = ComboBox(label="planes", choices=[CURRENT, ALL], value=CURRENT,
                               tooltip="Stacks and time series: only the plane shown in the viewer, or every "
                                       "plane (each later plane starts from the previous one).")
        self.replace = CheckBox(text="replace the previous result", value=False,
                                tooltip="Replace this image's previous DIP-ℓ0 result instead of adding "
                                        "another layer.")
        self.advanced_button = PushButton(text="▸ Advanced settings",
                                          tooltip="Seed, device, solver and how often to show and keep estimates.")
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1,
                            tooltip="Random seed of the network (an integer, no unit). Same seed, same computer: "
                                    "the same result.")
        self.device = ComboBox(label="device", choices=_devices(), value="auto",
                               tooltip="Where to compute. Automatic uses a GPU when there is one, else the CPU.")
        self.l0_solver = ComboBox(label="ℓ0 solver", choices=_solver_choices(), value="auto",
                                  tooltip="Algorithm of the ℓ0 step. Automatic takes the mode's preset; Region "
                                          "Fusion gives sharp flat regions, FFT is faster and softer.")
        self.preview_every = SpinBox(label="preview every", value=10, min=1, max=10_000,
                                     tooltip="Update the live preview layer every N iterations (count; at most "
                                             "5 times a second).")
        self.keep_every = SpinBox(label="keep every", value=0, min=0, max=100_000,
                                  tooltip="Also keep the estimate as a layer every M iterations (count; 0: "
                                          "never), to compare stages.")
        self.advanced = Container(widgets=[self.seed, self.device, self.l0_solver, self.preview_every,
                                           self.keep_every], labels=True, visible=False)
        self.l0_button = PushButton(text="ℓ0 preview (fast)",
                                    tooltip="ℓ0 smoothing alone at this λ, in about a second, as a layer; it then "
                                            "follows λ as you change it. Use it to choose λ before a run.")
        self.run_button = PushButton(text="Run", tooltip="Start DIP-ℓ0 in the background.")
        self.stop_button = PushButton(text="Stop", enabled=False,
                                      tooltip="End the run after the current iteration and keep the estimate "
                                              "so far as the result.")
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress", visible=False,
                                    tooltip="Iterations done over all planes.")
        self.status = Label(value="idle", label="status")
        self.extend([self.image, self.mode, self.lam_auto, self.lam, self.iterations, self.planes, self.replace,
                     self.advanced_button, self.advanced, self.l0_button, self.run_button, self.stop_button,
                     self.progress, self.status])
        self._locked = [self.image, self.mode, self.lam_auto, self.lam, self.iterations, self.planes, self.replace, self.seed,
                        self.device, self.l0_solver, self.preview_every, self.keep_every, self.l0_button]

        self.state = RunState.IDLE
        self._job: _Job | None = None
        self._closed = False
        self._results = {}  # id(source layer) -> its newest result layer, for "replace"
        self._l0_worker = None  # the ℓ0 preview being computed
        self._l0_again = False  # λ changed while it was computed: compute once more
        self._l0_layer = None  # the ℓ0 preview layer, which follows λ
        self._l0_source_id = None  # id() of the layer it was made from
        self._l0_timer = QTimer()
        self._l0_timer.setSingleShot(True)
        self._l0_timer.setInterval(L0_DEBOUNCE_MS)
        self._l0_timer.timeout.connect(self._l0_follow)
        if persist:
            self._restore_settings()
        self.lam.enabled = not self.lam_auto.value
        self.mode.changed.connect(self._on_mode)
        self.lam.changed.connect(self._on_lam)
        self.lam_auto.changed.connect(self._on_lam_auto)
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.l0_button.changed.connect(self.l0_preview)
        self.advanced_button.changed.connect(self._toggle_advanced)
        for name in _SETTINGS:
            getattr(self, name).changed.connect(self._save_settings)
            getattr(self, name).changed.connect(self._clear_error)
        self.image.changed.connect(self._clear_error)
        self._shown_preset = self._mode_preset()
        self.image.changed.connect(self._on_image)
        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        self._close_watcher = _CloseWatcher(self.native, self._shutdown)
        self._follow_selection()
        if not _WARM.is_set():
            self._warm_worker = create_worker(_warm_up, self.device.value, _ignore_errors=True)
            self._warm_worker.start()

    @property
    def worker(self):
        """The worker of the run in progress, or None when idle."""
        return None if self._job is None else self._job.worker

    # ----- the run's state machine --------------------------------------
    def _set_state(self, state: RunState):
        if state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"DIP-ℓ0 widget: no transition from {self.state.value} to {state.value}")
        if state is RunState.RUNNING:
            _freeze_gc(True)
        elif state is RunState.IDLE:
            _freeze_gc(False)
        self.state = state
        if self._closed:
            return
        idle = state is RunState.IDLE
        for widget in self._locked:
            widget.enabled = idle
        self.lam.enabled = idle and not self.lam_auto.value
        self.run_button.enabled = idle
        self.stop_button.enabled = state is RunState.RUNNING
        self.progress.visible = not idle
        self.run_button.tooltip = ("Start DIP-ℓ0 in the background." if idle else
                                   "A run is going: settings are locked until it ends (or Stop it).")

    # ----- layer list -------------------------------------------------
    def _image_layers(self, _widget=None):
        return [layer for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def _refresh_layers(self, event=None):
        if not self._closed:
            self.image.reset_choices()

    def _follow_selection(self, event=None):
        if self._closed:
            return
        self.image.reset_choices()
        if self.state is not RunState.IDLE:
            return  # the picker is locked on the run's source
        active = self.viewer.layers.selection.active
        # Our own outputs get selected as napari adds them; the selector stays on the source.
        if isinstance(active, napari.layers.Image) and active in self.image.choices and "dip_l0" not in active.metadata:
            self.image.value = active
        elif self.image.value is None:
            self._pick_any()

    def _pick_any(self):
        """Choose some source image when none is chosen (e.g. after the chosen one was deleted)."""
        sources = [lay for lay in self.image.choices if lay is not None and "dip_l0" not in lay.metadata]
        if sources:
            self.image.value = sources[-1]

    def _on_layer_removed(self, event):
        removed = event.value
        job = self._job
        if job is not None and removed is job.layer:
            self._abort("source layer removed: no result added")
        if job is not None and removed is job.preview:
            job.preview = None
        if removed is self._l0_layer:
            self._l0_layer = None
        if self._closed:
            return
        self.image.reset_choices()
        if self.image.value is None and self.state is RunState.IDLE:
            self._pick_any()

    def _has_file_preset(self) -> bool:
        """Whether a run would likely start from the mode's file preset: a layer opened from a JPEG file."""
        from .core.imageio import JPEG

        path = getattr(getattr(self.image.value, "source", None), "path", None)
        return MODES[self.mode.value] in FILE_PRESETS and bool(path) and Path(path).suffix.lower() in JPEG

    def _mode_preset(self) -> Preset:
        return get_preset(MODES[self.mode.value], jpeg=self._has_file_preset())

    def _on_mode(self, value=None):
        preset = self._mode_preset()
        self._shown_preset = preset
        self.lam.value = preset.lam
        self.iterations.value = preset.iterations

    def _pixel_settings(self, mode: str, settings: dict) -> dict:
        """``settings`` for a run on the pixels alone: where the file preset's iteration cap was shown (and
        kept), the mode's own count instead."""
        filed = get_preset(mode, jpeg=True)
        if self._shown_preset == filed and filed != PRESETS[mode] and settings["iterations"] == filed.iterations:
            return {**settings, "iterations": PRESETS[mode].iterations}
        return settings

    def _on_image(self, value=None):
        # Deblocking a layer opened from a JPEG file starts from another preset (its λ and iteration cap).
        if self.state is RunState.IDLE and self._mode_preset() != self._shown_preset:
            self._on_mode()

    def _on_lam_auto(self, value=None):
        self.lam.enabled = self.state is RunState.IDLE and not self.lam_auto.value
        if self.lam_auto.value:  # the preset's λ (denoising's is its fallback; a run reads the noise)
            self.lam.value = self._mode_preset().lam

    def _toggle_advanced(self, value=None):
        show = self.advanced.native.isHidden()
        self.advanced.visible = show
        self.advanced_button.text = ("▾" if show else "▸") + " Advanced settings"

    def _clear_error(self, value=None):
        if self.state is RunState.IDLE and str(self.status.value).startswith("error"):
            self.status.value = "idle"

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
                if isinstance(widget, ComboBox):
                    if value in widget.choices:
                        widget.value = value
                elif isinstance(widget, CheckBox):
                    widget.value = value in (True, "true", "True", 1, "1")
                else:
                    widget.value = type(widget.value)(value)
            except (TypeError, ValueError):
                pass  # a stale or foreign value: keep the default

    # ----- ℓ0 preview -------------------------------------------------
    def _notify_error(self, message: str):
        from napari.utils.notifications import show_error

        self.status.value = f"error: {message}"
        show_error(f"DIP-ℓ0: {message}")

    def _on_lam(self, value=None):
        # The ℓ0 preview follows λ once it has been asked for once (and while its layer is there).
        if self._l0_layer is not None and self._l0_layer in self.viewer.layers and self.state is RunState.IDLE:
            self._l0_timer.start()

    def _l0_follow(self):
        if self._l0_layer is not None and self._l0_layer in self.viewer.layers and not self._closed:
            self.l0_preview()

    def l0_preview(self, value=None):
        """ℓ0 smoothing alone at the current λ, as a layer, computed in a worker: for choosing λ."""
        if self._l0_worker is not None:
            self._l0_again = True  # one more once this one is done, with the newest λ
            return
        layer = self.image.value
        if layer is None:
            self._notify_error("choose an image layer first")
            return
        mode = MODES[self.mode.value]
        # "auto": the preset's v-step solver, as a run would use it.
        method = _solver_arg(self.l0_solver.value, mode) or PRESETS[mode].l0_solver
        lam = "auto" if self.lam_auto.value else float(self.lam.value)
        try:
            sel = _select(layer, CURRENT, self.viewer)
        except (ValueError, TypeError, MemoryError) as exc:
            self._notify_error(str(exc))
            return
        t0 = time.perf_counter()

        def compute():
            # On the run's own intensity scale and with its λ, so the preview shows what a run's ℓ0 step does.
            kwargs = {"lam": lam, "method": method, "channel_axis": sel.channel_axis,
                      "dtype": _display_dtype(layer, sel)}
            jpeg = _jpeg_file(layer, sel)[0] if mode in FILE_PRESETS else None
            try:  # a run would deblock with the file where it can, so λ as that run chooses it
                planes, used = l0_preview(sel.data, mode, jpeg=jpeg, **kwargs)
            except (ValueError, ImportError):
                if jpeg is None:
                    raise
                planes, used = l0_preview(sel.data, mode, **kwargs)
            return _layer_array(planes, sel), used

        worker = self._l0_worker = create_worker(compute, _ignore_errors=True)
        worker.returned.connect(lambda result: self._l0_done(layer, sel, method, result[1], result[0], t0))
        worker.errored.connect(lambda exc: self._notify_error(f"{type(exc).__name__}: {exc}"))
        worker.finished.connect(self._l0_finished)
        self.status.value = f"ℓ0 preview λ={'auto' if lam == 'auto' else format(lam, 'g')}…"
        _freeze_gc(True)  # ended in _l0_finished, after the layer is in place
        worker.start()

    def _l0_done(self, layer, sel, method, lam, result, t0):
        if self._closed or layer not in self.viewer.layers:
            return
        kwargs = _result_kwargs(layer, sel, result)
        kwargs["metadata"]["dip_l0"] = {"method": f"l0 {method}", "lam": lam, "preview": True,
                                        "version": __version__}
        name = f"{layer.name} · ℓ0 λ={lam:.3g} (preview)"
        target = self._l0_layer
        if target is not None and target in self.viewer.layers and self._l0_source_id == id(layer):
            target.data = result
            target.metadata = kwargs["metadata"]
            target.name = name
        else:
            self._l0_layer = self.viewer.add_image(result, name=name, **kwargs)
            self._l0_source_id = id(layer)
        if self.state is RunState.IDLE:
            self.status.value = f"ℓ0 preview λ={lam:.3g}: {time.perf_counter() - t0:.2f} s (follows λ)"

    def _l0_finished(self):
        self._l0_worker = None
        _freeze_gc(False)
        if self._l0_again and not self._closed:
            self._l0_again = False
            self.l0_preview()

    # ----- running ----------------------------------------------------
    def run(self, value=None):
        """Start DIP-ℓ0 on the chosen layer in a thread worker."""
        if self.state is not RunState.IDLE or self._closed:
            return
        layer = self.image.value
        if layer is None:
            self._notify_error("choose an image layer first")
            return
        mode = MODES[self.mode.value]
        params = {
            "mode": mode,
            "lam": "auto" if self.lam_auto.value else float(self.lam.value),
            "iterations": int(self.iterations.value),
            "seed": int(self.seed.value),
            "device": self.device.value,
            "l0_solver": _solver_arg(self.l0_solver.value, mode),
        }
        try:
            sel = _select(layer, self.planes.value, self.viewer)
            settings = dict(lam=params["lam"], iterations=params["iterations"], channel_axis=sel.channel_axis,
                            seed=params["seed"], device=params["device"], l0_solver=params["l0_solver"],
                            dtype=_display_dtype(layer, sel))
            jpeg, why_not = _jpeg_file(layer, sel) if mode in FILE_PRESETS else (None, "")
            # Checks the arguments now, so bad input is reported before any thread starts.
            snapshots = iter_dip_l0(sel.data, mode, **self._pixel_settings(mode, settings))
        except (ValueError, TypeError, MemoryError) as exc:
            self._notify_error(str(exc))
            return
        if jpeg is not None:
            try:  # the file's coefficients bound every estimate; if they cannot, deblock the pixels as before
                snapshots = iter_dip_l0(sel.data, mode, jpeg=jpeg, **settings)
            except (ValueError, ImportError, MemoryError) as exc:
                jpeg, why_not = None, f"its JPEG file cannot be used ({exc})"
        if jpeg is None:
            params["iterations"] = self._pixel_settings(mode, settings)["iterations"]
        params["jpeg_file"] = jpeg
        job = _Job(layer, sel, params, params["iterations"])
        preview_every = int(self.preview_every.value)
        keep_every = int(self.keep_every.value)

        def work():
            # Runs in the worker thread: every image is rendered here, never on the GUI thread.
            last_render = 0.0
            snap = None
            for snap in snapshots:
                if job.stop_requested.is_set():
                    break
                now = time.perf_counter()
                if snap.done:
                    yield _Tick(snap, job.layer_data(snap), "final")
                    return
                if keep_every > 0 and snap.iteration > 0 and snap.iteration % keep_every == 0:
                    yield _Tick(snap, job.layer_data(snap), "keep")
                elif snap.iteration == 0 or (
                        snap.iteration % preview_every == 0 and now - last_render >= PREVIEW_INTERVAL):
                    last_render = now
                    yield _Tick(snap, job.layer_data(snap), "preview")
                else:
                    yield _Tick(snap, None, "progress")
            if snap is not None:  # stopped: the estimate so far is the result
                yield _Tick(snap, job.layer_data(snap), "final")

        # Errors are reported by _on_error as a notification, not re-raised.
        job.worker = create_worker(work, _ignore_errors=True)
        job.worker.yielded.connect(self._on_yielded)
        job.worker.errored.connect(self._on_error)
        job.worker.finished.connect(self._on_finished)
        self._job = job
        self._l0_timer.stop()
        self._set_state(RunState.RUNNING)
        self._set_progress(0, 0)  # busy until the first snapshot
        self.status.value = "preparing (building the network)…" if jpeg is None else f"preparing ({JPEG_NOTE})…"
        notes = [sel.note] + ([f"{JPEG_NOTE} ({Path(jpeg).name})"] if jpeg else
                              [f"deblocking the pixels alone: {why_not}"] if why_not else [])
        for note in filter(None, notes):
            from napari.utils.notifications import show_info

            show_info(f"DIP-ℓ0: {note}")
        job.worker.start()

    def stop(self, value=None):
        """Stop at the next iteration; the estimate so far becomes the result."""
        if self.state is RunState.RUNNING:
            self._job.stop_requested.set()
            self._set_state(RunState.STOPPING)
            self.status.value = "stopping after this iteration…"

    def _abort(self, message: str):
        """End the run without a result (the source layer went away)."""
        job = self._job
        if job is None:
            return
        job.error = message
        job.stop_requested.set()
        job.worker.quit()
        if self.state is RunState.RUNNING:
            self._set_state(RunState.STOPPING)

    def _set_progress(self, value: int, maximum: int):
        # QProgressBar.setValue repaints at once, and a synchronous repaint next to napari's OpenGL
        # canvas can take a large part of a second: let it repaint with the rest of the window instead.
        bar = self.progress.native
        bar.setUpdatesEnabled(False)
        try:
            if self.progress.max != maximum:
                self.progress.max = maximum
            self.progress.value = min(value, maximum) if maximum else 0
        finally:
            bar.setUpdatesEnabled(True)  # schedules an ordinary update

    def _progress_text(self, job: _Job, snap) -> str:
        unit = (snap.plane, snap.tile)
        if unit != job.unit_start[:2]:
            job.unit_start = (snap.plane, snap.tile, snap.iteration)
        if snap.planes * snap.tiles > 1:
            first = job.iterations
            rest = (snap.total - first * snap.tiles) // max(1, (snap.planes - 1) * snap.tiles)
            count = first if snap.plane == 0 else rest
            done_here = snap.iteration - job.unit_start[2]
        else:
            count, done_here = snap.total, snap.iteration
        where = []
        if snap.planes > 1:
            where.append(f"plane {snap.plane + 1} of {snap.planes}")
        if snap.tiles > 1:
            where.append(f"tile {snap.tile + 1} of {snap.tiles}")
        where.append(f"iteration {done_here} of {count}")
        if snap.iteration >= 1 and job.first_timed is None:
            job.first_timed = (snap.iteration, snap.seconds)
        if job.first_timed is not None and snap.iteration > job.first_timed[0]:
            rate = (snap.seconds - job.first_timed[1]) / (snap.iteration - job.first_timed[0])
            where.append(_time_left(rate * (snap.total - snap.iteration)))
        else:
            where.append("estimating time left…")
        if job.params.get("jpeg_file"):
            where.append(JPEG_NOTE)
        return " · ".join(where)

    def _on_yielded(self, tick: _Tick):
        job = self._job
        if job is None or job.error is not None or self._closed:
            return
        snap = job.last = tick.snap
        now = time.perf_counter()
        # Each repaint of the dock costs a composition of the whole window (napari's canvas is OpenGL):
        # the progress bar and the status line change at most a few times a second.
        if tick.kind != "progress" or now - job.shown_at >= STATUS_INTERVAL:
            job.shown_at = now
            self._set_progress(snap.iteration, snap.total)
            if self.state is RunState.RUNNING:
                self.status.value = self._progress_text(job, snap)
        else:
            self._progress_text(job, snap)  # keeps count of where planes and tiles begin
        if tick.kind == "final":
            job.final = tick
            return
        if tick.kind == "progress":
            return
        kwargs = None
        if job.preview is None or job.preview not in self.viewer.layers:
            kwargs = _result_kwargs(job.layer, job.sel, tick.image)
            kwargs["metadata"]["dip_l0"] = {"preview": True}
            job.preview = self.viewer.add_image(tick.image, name=f"{job.layer.name} · DIP-ℓ0 (live preview)",
                                                **kwargs)
        else:
            job.preview.data = tick.image
        if tick.kind == "keep":
            kwargs = _result_kwargs(job.layer, job.sel, tick.image)
            kwargs["metadata"]["dip_l0"] = _provenance(job, snap)
            kept = napari.layers.Image(tick.image, name=f"{job.layer.name} · DIP-ℓ0 λ={snap.preset.lam:.3g} "
                                                        f"@{snap.iteration}{_plane_words(job.sel)}", **kwargs)
            # Below the live preview, so that it stays in view.
            self.viewer.layers.insert(self.viewer.layers.index(job.preview), kept)

    def _on_finished(self):
        job, self._job = self._job, None
        if self.state is not RunState.IDLE:
            self._set_state(RunState.IDLE)
        if self._closed or job is None:  # the widget (maybe the viewer) is gone: touch nothing
            return
        self.progress.visible = False
        layers = self.viewer.layers
        preview = job.preview if job.preview is not None and job.preview in layers else None
        if job.error is not None or job.final is None:
            if preview is not None:
                layers.remove(preview)
            if job.error is not None:
                self.status.value = job.error if job.error.startswith("source") else f"error: {job.error}"
            else:
                self.status.value = "stopped before the first estimate"
            return
        snap, image = job.final.snap, job.final.image
        kwargs = _result_kwargs(job.layer, job.sel, image)
        kwargs["metadata"]["dip_l0"] = _provenance(job, snap)
        name = result_name(job.layer.name, job, snap)
        old = self._results.get(id(job.layer))
        if self.replace.value and old is not None and old in layers:
            layers.remove(old)
        if preview is not None:
            # The preview becomes the result: one data swap, no layer removed and added.
            preview.data = image
            preview.metadata = kwargs["metadata"]
            preview.name = name
            result = preview
        else:
            result = self.viewer.add_image(image, name=name, **kwargs)
        self._results[id(job.layer)] = result
        if job.params["lam"] == "auto" and not self._closed:
            # The greyed box shows the λ the run chose, not the fallback. Not a change of λ for the ℓ0 preview
            # to follow: with automatic λ it already used that choice, and recomputing it would replace this
            # run's status line.
            with self.lam.changed.blocked():
                self.lam.value = snap.preset.lam
        state = "done" if snap.done else f"stopped at iteration {snap.iteration} of {snap.total}"
        tables = f" ({JPEG_NOTE})" if job.params.get("jpeg_file") else ""
        self.status.value = f"{state} in {snap.seconds:.1f} s{tables}: {result.name}"

    def _on_error(self, exc):
        message = f"{type(exc).__name__}: {exc}"
        if self._job is not None:
            self._job.error = message
        if not self._closed:
            self._notify_error(message)

    def _shutdown(self, wait: bool = True):
        """Stop a running job because the widget or the viewer is closing: no layers are added after this."""
        if not self._closed:
            self._closed = True
            events = self.viewer.layers.events
            for emitter, slot in ((events.inserted, self._refresh_layers), (events.removed, self._on_layer_removed),
                                  (self.viewer.layers.selection.events.active, self._follow_selection)):
                emitter.disconnect(slot)
        try:
            self._l0_timer.stop()
        except RuntimeError:  # at interpreter exit Qt may already have deleted the timer
            pass
        if self._l0_worker is not None:
            self._l0_worker.quit()
        job = self._job
        if job is None:
            return
        job.stop_requested.set()
        job.worker.quit()
        if not wait and job.preview is not None and job.preview in self.viewer.layers:
            self.viewer.layers.remove(job.preview)  # the viewer lives on: drop our temporary layer
        if wait:
            # The thread stops at its next iteration; wait so it never outlives the viewer.
            job.worker.await_workers(msecs=30_000)
            if self.state is not RunState.IDLE:
                self._set_state(RunState.IDLE)  # also ends the garbage collector's freeze


def _provenance(job: _Job, snap) -> dict:
    """Parameters and outcome of a run, stored in the result layer's metadata."""
    return {
        "method": "DIP-ℓ0",
        **job.params,
        "lam": snap.preset.lam,  # the λ used, also when the run chose it
        "lam_auto": job.params["lam"] == "auto",
        # (a, b) of the noise variance a·x + b on the [0, 1] scale when the fit (and λ) was on the stabilised image
        "noise_model": list(snap.noise_model) if snap.noise_model else None,
        "l0_solver": snap.preset.l0_solver,  # the solver used, also when the preset chose it
        # the fraction of each quantisation interval estimates were kept in, when deblocking from the file
        "jpeg_box": snap.preset.jpeg_box if job.params.get("jpeg_file") else None,
        "iterations_done": snap.iteration,
        "planes": "all" if job.sel.plane_index is None else list(job.sel.plane_index),
        "seconds": round(snap.seconds, 3),
        "stopped_early": not snap.done,
        "kept_iteration": snap.kept,  # the iteration the stopping rule kept for the (last) plane, if any
        "version": __version__,
    }


def _l0_layer_tuple(image, lam: float, method: str):
    """ℓ0 smoothing of a whole layer, as a napari layer-data tuple (runs in a worker)."""
    sel = _select(image, ALL, None)
    result = _layer_array(l0_smooth(sel.data, lam, method=method, channel_axis=sel.channel_axis), sel)
    kwargs = _layer_kwargs(image, sel)
    kwargs["metadata"]["dip_l0"] = {"method": f"l0 {method}", "lam": lam, "version": __version__}
    kwargs["name"] = f"{image.name} · ℓ0 λ={lam:g} ({SOLVER_LABELS.get(method, method).split(' (')[0]})"
    return result, kwargs, "image"


def l0_widget(
    image: Annotated[napari.layers.Image, {"label": "image", "tooltip": "The image layer to smooth."}],
    lam: Annotated[float, {"min": 0.0, "max": 1.0, "step": 0.005, "label": "λ (strength)",
                           "tooltip": "Weight of the ℓ0 gradient term, on intensities scaled to 0–1 (no unit). "
                                      "Larger: fewer, larger flat regions."}] = 0.03,
    method: Annotated[str, {"widget_type": "ComboBox", "label": "ℓ0 solver",
                            "choices": [(SOLVER_LABELS.get(n, n.replace("_", " ")), n) for n in L0_SOLVERS],
                            "tooltip": "Region Fusion: exact, sharp flat regions (the parallel form is the "
                                       "fastest). FFT: approximate, softer."}
                      ] = "parallel_fusion",
) -> FunctionWorker[napari.types.LayerDataTuple]:
    """ℓ0 gradient smoothing alone, computed in the background: a result in about a second, for choosing λ."""
    if image is None:
        raise ValueError("choose an image layer")
    worker = create_worker(_l0_layer_tuple, image, float(lam), method, _ignore_errors=False)
    # napari connects worker.returned to adding the layer once this returns; start after that.
    QTimer.singleShot(0, worker.start)
    return worker
