"""The DIP-ℓ0 dock widget: the magicgui form and its wiring, nothing else.

What to run on is decided in :mod:`.job` (pure functions), the run happens in
:mod:`.worker`, its state lives in :mod:`.status`, the ℓ0 preview in
:mod:`.preview`. Only napari's public API is used.
"""

from __future__ import annotations

from pathlib import Path

import napari
from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, ProgressBar, PushButton,
                               SpinBox)
from napari.qt.threading import create_worker
from superqt.utils import qthrottled

from ..core.jpeg import run_from_file_or_pixels
from ..core.presets import FILE_PRESETS, PRESETS
from .closing import CloseWatcher
from .job import (
    ALL,
    CURRENT,
    JPEG_NOTE,
    MODES,
    devices,
    display_dtype,
    finished_text,
    is_result,
    jpeg_file,
    mode_label,
    mode_preset,
    pixel_iterations,
    select,
    solver_arg,
    solver_choices,
    tables_note,
)
from .preview import L0Preview
from .status import Activity, RunState, RunStatus
from .stream import prepare_stream, streams
from .worker import GC_HOLD, Job, needs_warm_up, warm_up

# At most this often (ms) do the progress bar and status line change.
STATUS_INTERVAL_MS = 250
SETTINGS = ("mode", "lam_auto", "lam", "iterations", "planes", "replace", "preview_every", "keep_every", "seed",
            "device", "l0_solver")


def settings_store():
    """Where the widget's settings live between sessions (the platform's usual place)."""
    from qtpy.QtCore import QSettings

    return QSettings("napari-dip-l0", "dip-l0-widget")


def save_settings(form) -> None:
    settings = settings_store()
    for name in SETTINGS:
        settings.setValue(name, getattr(form, name).value)


def restore_settings(form) -> None:
    """The form's saved settings; a stale or foreign value keeps the field's default."""
    settings = settings_store()
    for name in SETTINGS:
        value = settings.value(name)
        if value is None:
            continue
        widget = getattr(form, name)
        try:
            if isinstance(widget, ComboBox):
                if value in widget.choices:
                    widget.value = value
            elif isinstance(widget, CheckBox):
                widget.value = value in (True, "true", "True", 1, "1")
            else:
                widget.value = type(widget.value)(value)
        except (TypeError, ValueError):
            pass


def set_progress(progress: ProgressBar, value: int, maximum: int) -> None:
    """``value`` of ``maximum`` on the bar (0 of 0: busy), without a repaint of its own.

    QProgressBar.setValue repaints at once, and a synchronous repaint next to
    napari's OpenGL canvas can take a large part of a second: the bar repaints
    with the rest of the window instead.
    """
    bar = progress.native
    bar.setUpdatesEnabled(False)
    try:
        if progress.max != maximum:
            progress.max = maximum
        progress.value = min(value, maximum) if maximum else 0
    finally:
        bar.setUpdatesEnabled(True)  # schedules an ordinary update


def prepare(form, layer):
    """The job and the run of ``form``'s settings on ``layer``, and what to tell the user; every setting
    checked, so bad input is reported before any thread starts (``ValueError``, ``TypeError``)."""
    mode = MODES[form.mode.value]
    params = {"mode": mode, "lam": "auto" if form.lam_auto.value else float(form.lam.value),
              "iterations": int(form.iterations.value), "seed": int(form.seed.value),
              "device": form.device.value, "l0_solver": solver_arg(form.l0_solver.value)}
    sel = select(layer, form.planes.value, form.viewer.dims.point)
    settings = dict(lam=params["lam"], iterations=params["iterations"], channel_axis=sel.channel_axis,
                    seed=params["seed"], device=params["device"], l0_solver=params["l0_solver"],
                    dtype=display_dtype(layer, sel))
    save_to = str(form.save_to.line_edit.value).strip() or None
    if streams(sel, save_to):  # every plane of a large stack: to a store as they finish, none kept in memory
        params.update(iterations=pixel_iterations(mode, form.shown_preset, params["iterations"]), jpeg_file=None,
                      jpeg_tables="")
        job, run = prepare_stream(layer, sel, params, {**settings, "iterations": params["iterations"]}, save_to)
        return job, run, [sel.note, f"streaming every plane to {save_to or 'a temporary Zarr store'}; the live "
                                    f"preview shows the plane being fitted"]
    path, why_not = jpeg_file(layer, sel) if mode in FILE_PRESETS else (None, "")
    pixels = {"iterations": pixel_iterations(mode, form.shown_preset, params["iterations"])}
    run, failed = run_from_file_or_pixels(sel.data, mode, path, pixel_settings=pixels, **settings)
    if failed:
        why_not = f"its JPEG file cannot be used ({failed})"
    params["jpeg_file"] = path if run.jpeg is not None and run.jpeg.quality is None else None
    params["jpeg_tables"] = tables_note(run.jpeg)
    if run.jpeg is None:
        params["iterations"] = pixels["iterations"]
    if params["jpeg_file"]:
        notes = [sel.note, f"{JPEG_NOTE} ({Path(path).name})"]
    elif run.jpeg is not None:  # the file is gone, or not the pixels' any more, but they show its quantisation
        notes = [sel.note, f"deblocking {params['jpeg_tables']}" + (f" ({why_not})" if why_not else "")]
    else:
        notes = [sel.note] + ([f"deblocking the pixels alone: {why_not}"] if why_not else [])
    if save_to:
        notes.append("'save result to' is for runs on all planes of a stack; this result is a layer "
                     "(File ▸ Save Selected Layers)")
    return Job(layer, sel, params), run, notes


def _build_fields(f) -> None:
    """The form's fields, with their tooltips, as attributes of ``f``."""
    smooth = PRESETS["smooth"]
    f.image = ComboBox(label="image", choices=f.image_layers, nullable=True,
                       tooltip="The image layer to work on (follows the layer selected in the layer list). "
                               "It is never changed: results are new layers.")
    f.mode = ComboBox(label="mode", choices=list(MODES), value="edge-preserving smoothing",
                      tooltip="Edge-preserving smoothing flattens texture and keeps edges; camera-noise "
                              "denoising is for photon-limited data such as fluorescence (λ follows the "
                              "noise the image shows; slower); JPEG deblocking removes 8×8 block "
                              "artefacts (with the file's tables, for a layer opened from a JPEG "
                              "file). Changing it loads the mode's λ and iterations. Choosing a layer that names its "
                              "mode (the samples do) switches to that mode.")
    f.lam_auto = CheckBox(text="automatic λ", value=True,
                          tooltip="Let the mode choose λ: camera-noise denoising measures the image's "
                                  "noise, evens out how it grows with brightness and sets λ from it; "
                                  "JPEG deblocking of a layer opened from a JPEG file sets it from the "
                                  "file's quantisation step (the coarser, the stronger); otherwise the "
                                  "mode's tuned λ. The λ used is in the result's name.")
    f.lam = FloatSpinBox(label="λ (strength)", value=smooth.lam, min=0.0, max=1.0, step=0.005,
                         tooltip="Smoothing strength: weight of the ℓ0 gradient term, on the image's "
                                 "intensities scaled to 0–1 (no unit; typical 0.005–0.1; camera-noise "
                                 "denoising: after evening out the shot noise). Larger: fewer, larger "
                                 "flat regions. 'ℓ0 preview' shows its effect in a second and then "
                                 "follows λ as you change it.")
    f.iterations = SpinBox(label="iterations", value=smooth.iterations, min=1, max=100_000,
                           tooltip="Optimisation steps for the image, or the first plane of a stack "
                                   "(count). More: a closer fit and a longer run. Later planes start "
                                   "from the previous one and take fewer. Camera-noise denoising, and "
                                   "deblocking a layer opened from a JPEG file, stop by themselves once "
                                   "the fit turns to the noise: for them it is a cap.")
    f.planes = ComboBox(label="planes", choices=[CURRENT, ALL], value=CURRENT,
                        tooltip="Stacks and time series: only the plane shown in the viewer, or every "
                                "plane (each later plane starts from the previous one).")
    f.replace = CheckBox(text="replace the previous result", value=False,
                         tooltip="Replace this image's previous DIP-ℓ0 result instead of adding "
                                 "another layer.")
    f.save_to = FileEdit(label="save result to", mode="w", filter="*.ome.zarr",
                         tooltip="All planes of a stack: write the result plane by plane into this OME-Zarr "
                                 "as each plane finishes, and show it from there. Empty: a temporary store, "
                                 "used for Dask-backed layers (they are never loaded whole).")
    f.advanced_button = PushButton(text="▸ Advanced settings",
                                   tooltip="Seed, device, solver and how often to show and keep estimates.")
    f.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1,
                     tooltip="Random seed of the network (an integer, no unit). Same seed, same computer: "
                             "the same result.")
    f.device = ComboBox(label="device", choices=devices(), value="auto",
                        tooltip="Where to compute. Automatic uses a GPU when there is one, else the CPU.")
    f.l0_solver = ComboBox(label="ℓ0 solver", choices=solver_choices(), value="auto",
                           tooltip="Algorithm of the ℓ0 step. Automatic takes the mode's preset; Region "
                                   "Fusion gives sharp flat regions, FFT is faster and softer.")
    f.preview_every = SpinBox(label="preview every", value=10, min=1, max=10_000,
                              tooltip="Update the live preview layer every N iterations (count; at most "
                                      "5 times a second).")
    f.keep_every = SpinBox(label="keep every", value=0, min=0, max=100_000,
                           tooltip="Also keep the estimate as a layer every M iterations (count; 0: "
                                   "never), to compare stages.")
    f.advanced = Container(widgets=[f.seed, f.device, f.l0_solver, f.preview_every,
                                       f.keep_every], labels=True, visible=False)
    f.l0_button = PushButton(text="ℓ0 preview (fast)",
                             tooltip="ℓ0 smoothing alone at this λ, in about a second, as a layer; it then "
                                     "follows λ as you change it. Use it to choose λ before a run.")
    f.run_button = PushButton(text="Run", tooltip="Start DIP-ℓ0 in the background.")
    f.stop_button = PushButton(text="Stop", enabled=False,
                               tooltip="End the run after the current iteration and keep the estimate "
                                       "so far as the result.")
    f.progress = ProgressBar(value=0, min=0, max=1, label="progress", visible=False,
                             tooltip="Iterations done over all planes.")
    f.status = Label(value="idle", label="status")
    f.status.native.setWordWrap(True)  # a long line (time left, the tables used, the result) must not widen the dock
    f.extend([f.image, f.mode, f.lam_auto, f.lam, f.iterations, f.planes, f.save_to, f.replace, f.advanced_button,
              f.advanced, f.l0_button, f.run_button, f.stop_button, f.progress, f.status])
    f.locked = [f.image, f.mode, f.lam_auto, f.lam, f.iterations, f.planes, f.save_to, f.replace, f.seed, f.device,
                f.l0_solver, f.preview_every, f.keep_every, f.l0_button]


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
        self.closed = False
        self._job: Job | None = None
        self._results = {}  # id(source layer) -> its newest result layer, for "replace"
        _build_fields(self)
        self.run_status = RunStatus()
        self._activity = Activity()
        self.run_status.events.state.connect(self._on_state)
        self.run_status.events.text.connect(self._on_text)
        self.preview = L0Preview(self)
        # Each repaint of the dock costs a composition of the whole window (napari's canvas is OpenGL):
        # the progress bar and the status line change at most a few times a second.
        self._show_progress = qthrottled(self._show_progress_now, timeout=STATUS_INTERVAL_MS, leading=True)
        if persist:
            restore_settings(self)
        self.lam.enabled = not self.lam_auto.value
        self.mode.changed.connect(self._on_mode)
        self.lam.changed.connect(self.preview.on_lam)
        self.lam_auto.changed.connect(self._on_lam_auto)
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.l0_button.changed.connect(self.preview.request)
        self.advanced_button.changed.connect(self._toggle_advanced)
        for name in SETTINGS:
            getattr(self, name).changed.connect(self._save_settings)
            getattr(self, name).changed.connect(self._clear_error)
        self.image.changed.connect(self._clear_error)
        self.shown_preset = self._mode_preset()
        self.image.changed.connect(self._on_image)
        # napari keeps the image choices in step with the layer list (reset_choices) for dock widgets.
        viewer.layers.events.removed.connect(self._on_layer_removed)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        self._close_watcher = CloseWatcher(self.native, self._shutdown)
        self._follow_selection()
        if needs_warm_up():
            self._warm_worker = create_worker(warm_up, self.device.value, _ignore_errors=True)
            self._warm_worker.start()

    @property
    def worker(self):
        """The worker of the run in progress, or None when idle."""
        return None if self._job is None else self._job.worker

    @property
    def state(self) -> RunState:
        return self.run_status.state

    # ----- the run's state machine --------------------------------------
    def _set_state(self, state: RunState):
        self.run_status.move(state)

    def _on_state(self, state: RunState):
        if state is RunState.RUNNING:
            GC_HOLD.hold(self)
        elif state is RunState.IDLE:
            GC_HOLD.release(self)
        if self.closed:
            return
        idle = state is RunState.IDLE
        for widget in self.locked:
            widget.enabled = idle
        self.lam.enabled = idle and not self.lam_auto.value
        self.run_button.enabled = idle
        self.stop_button.enabled = state is RunState.RUNNING
        self.progress.visible = not idle
        self.run_button.tooltip = ("Start DIP-ℓ0 in the background." if idle else
                                   "A run is going: settings are locked until it ends (or Stop it).")

    def _on_text(self, text: str):
        if not self.closed:
            self.status.value = text

    # ----- layer list -------------------------------------------------
    def image_layers(self, _widget=None):
        return [layer for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def _follow_selection(self, event=None):
        if self.closed:
            return
        self.image.reset_choices()
        if not self.run_status.idle:
            return  # the picker is locked on the run's source
        active = self.viewer.layers.selection.active
        # Our own outputs get selected as napari adds them; the selector stays on the source.
        if isinstance(active, napari.layers.Image) and active in self.image.choices and not is_result(active):
            self.image.value = active
        elif self.image.value is None:
            self._pick_any()

    def _pick_any(self):
        """Choose some source image when none is chosen (e.g. after the chosen one was deleted)."""
        sources = [lay for lay in self.image.choices if lay is not None and not is_result(lay)]
        if sources:
            self.image.value = sources[-1]

    def _on_layer_removed(self, event):
        removed = event.value
        job = self._job
        if job is not None and removed is job.layer:
            self._abort("source layer removed: no result added")
        if job is not None and removed is job.preview:
            job.preview = None
        self.preview.on_layer_removed(removed)
        if self.closed:
            return
        self.image.reset_choices()
        if self.image.value is None and self.run_status.idle:
            self._pick_any()

    # ----- mode, presets and λ ----------------------------------------
    def _mode_preset(self):
        return mode_preset(MODES[self.mode.value], self.image.value)

    def _on_mode(self, value=None):
        preset = self.shown_preset = self._mode_preset()
        self.lam.value = preset.lam
        self.iterations.value = preset.iterations

    def _on_image(self, value=None):
        if not self.run_status.idle:
            return
        label = mode_label(self.image.value)
        if label is not None and label != self.mode.value:
            self.mode.value = label  # a layer that names its mode (a sample) switches to it, with its preset
        elif self._mode_preset() != self.shown_preset:
            # Deblocking a layer opened from a JPEG file starts from another preset (its λ and iteration cap).
            self._on_mode()

    def _on_lam_auto(self, value=None):
        self.lam.enabled = self.run_status.idle and not self.lam_auto.value
        if self.lam_auto.value:  # the preset's λ (denoising's is its fallback; a run reads the noise)
            self.lam.value = self._mode_preset().lam

    def _save_settings(self, value=None):
        if self._persist:
            save_settings(self)

    def _toggle_advanced(self, value=None):
        show = self.advanced.native.isHidden()
        self.advanced.visible = show
        self.advanced_button.text = ("▾" if show else "▸") + " Advanced settings"

    def _clear_error(self, value=None):
        if self.run_status.idle and str(self.status.value).startswith("error"):
            self.run_status.text = "idle"

    def notify_error(self, message: str):
        from napari.utils.notifications import show_error

        self.run_status.text = f"error: {message}"
        show_error(f"DIP-ℓ0: {message}")

    # ----- running ----------------------------------------------------
    def run(self, value=None):
        """Start DIP-ℓ0 on the chosen layer in a thread worker."""
        if not self.run_status.idle or self.closed:
            return
        layer = self.image.value
        if layer is None:
            self.notify_error("choose an image layer first")
            return
        try:
            job, run, notes = prepare(self, layer)
        except (ValueError, TypeError, MemoryError, OSError) as exc:
            self.notify_error(str(exc))
            return
        # Errors are reported by _on_error as a notification, not re-raised.
        job.worker = create_worker(job.ticks, iter(run), int(self.preview_every.value), int(self.keep_every.value),
                                   _ignore_errors=True)
        job.worker.yielded.connect(self._on_yielded)
        job.worker.errored.connect(self._on_error)
        job.worker.finished.connect(self._on_finished)
        self._job = job
        # Fresh per run: the first snapshot shows at once, whenever the last run's last one was shown.
        self._activity = Activity()
        self._show_progress = qthrottled(self._show_progress_now, timeout=STATUS_INTERVAL_MS, leading=True)
        self.preview.follow.cancel()
        self._set_state(RunState.RUNNING)
        self._set_progress(0, 0)  # busy until the first snapshot
        tables = job.params["jpeg_tables"]
        self.run_status.text = f"preparing ({tables})…" if tables else "preparing (building the network)…"
        from napari.utils.notifications import show_info

        for note in filter(None, notes):
            show_info(f"DIP-ℓ0: {note}")
        job.worker.start()

    def stop(self, value=None):
        """Stop at the next iteration; the estimate so far becomes the result."""
        if self.state is RunState.RUNNING:
            self._job.stop_requested.set()
            self._set_state(RunState.STOPPING)
            self.run_status.text = "stopping after this iteration…"

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
        set_progress(self.progress, value, maximum)

    def _show_progress_now(self, snap, text: str):
        if self._job is None or self.closed:
            return  # a late call of the throttle: the run has ended
        self._set_progress(snap.iteration, snap.total)
        self._activity.show(snap.iteration, snap.total, f"DIP-ℓ0 on {self._job.layer.name}")
        if self.state is RunState.RUNNING:
            self.run_status.text = text

    def _on_yielded(self, tick):
        job = self._job
        if job is None or job.error is not None or self.closed:
            return
        if tick.kind == "final":
            job.final = tick
        elif tick.kind != "progress":
            job.show(self.viewer, tick)
        job.update(self.viewer)
        # Every snapshot counts for the text (planes and tiles begin between shows); few are shown. Last, as
        # napari's activity bar may process pending events, the run's end among them.
        self._show_progress(tick.snap, job.progress.text(tick.snap))

    def _on_finished(self):
        job, self._job = self._job, None
        self._show_progress.cancel()
        self._activity.close(None if job is None or job.final is None else job.final.snap.iteration)
        if self.state is not RunState.IDLE:
            self._set_state(RunState.IDLE)
        if self.closed or job is None:  # the widget (maybe the viewer) is gone: touch nothing
            return
        self.progress.visible = False
        if job.error is not None or job.final is None:
            job.drop_preview(self.viewer)
            if job.error is not None:
                self.run_status.text = job.error if job.error.startswith("source") else f"error: {job.error}"
            else:
                self.run_status.text = "stopped before the first estimate"
            return
        old = self._results.get(id(job.layer)) if self.replace.value else None
        result = self._results[id(job.layer)] = job.result(self.viewer, old)
        snap = job.final.snap
        if job.params["lam"] == "auto":
            # The greyed box shows the λ the run chose, not the fallback. Not a change of λ for the ℓ0 preview
            # to follow: with automatic λ it already used that choice, and recomputing it would replace this
            # run's status line.
            with self.lam.changed.blocked():
                self.lam.value = snap.preset.lam
        self.run_status.text = finished_text(snap, result.name, job.params["jpeg_tables"])

    def _on_error(self, exc):
        message = f"{type(exc).__name__}: {exc}"
        if self._job is not None:
            self._job.error = message
        if not self.closed:
            self.notify_error(message)

    def _shutdown(self, wait: bool = True):
        """Stop a running job because the widget or the viewer is closing: no layers are added after this."""
        if not self.closed:
            self.closed = True
            events = self.viewer.layers.events
            events.removed.disconnect(self._on_layer_removed)
            self.viewer.layers.selection.events.active.disconnect(self._follow_selection)
        self.preview.close()
        job = self._job
        if job is None:
            return
        job.stop_requested.set()
        job.worker.quit()
        if not wait:
            job.drop_preview(self.viewer)  # the viewer lives on: drop our temporary layer
        if wait:
            # The thread stops at its next iteration; wait so it never outlives the viewer.
            job.worker.await_workers(msecs=30_000)
            if self.state is not RunState.IDLE:
                self._set_state(RunState.IDLE)  # also ends the garbage collector's hold
