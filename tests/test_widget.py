"""The napari plugin on a real viewer (make_napari_viewer; Xvfb in CI, PyQt6 or PyQt5 through qtpy)."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

napari = pytest.importorskip("napari")  # the `testing` extra installs it; CI never skips

import yaml  # noqa: E402  (napari depends on PyYAML)
from qtpy.QtCore import QThreadPool  # noqa: E402

from napari_dip_l0 import _widget  # noqa: E402
from napari_dip_l0._widget import DipL0Widget, RunState, form, job  # noqa: E402
from napari_dip_l0.core.l0 import L0_SOLVERS  # noqa: E402
from napari_dip_l0.core.presets import FILE_PRESETS, PRESETS  # noqa: E402

TIMEOUT = 120_000
MANIFEST = yaml.safe_load((Path(_widget.__file__).parent.parent / "napari.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def inserted(viewer):
    names = []
    viewer.layers.events.inserted.connect(lambda e: names.append(e.value.name))
    return names


def _cells(shape=(24, 28), dtype=np.uint16):
    rng = np.random.default_rng(0)
    img = np.zeros(shape)
    img[..., 4:16, 5:20] = 1000
    img = np.clip(img + rng.normal(300, 60, shape), 0, None)
    return img.astype(dtype)


def _results(viewer, source):
    """Final DIP-ℓ0 results made from ``source`` (not previews, not kept snapshots)."""
    return [lay for lay in viewer.layers if lay.name.startswith(f"{source} · DIP-ℓ0 λ=") and "@" not in lay.name]


def _result(viewer, source):
    found = _results(viewer, source)
    assert len(found) == 1, [lay.name for lay in viewer.layers]
    return found[0]


def _run(qtbot, widget, **settings):
    for name, value in settings.items():
        getattr(widget, name).value = value
    widget.run()
    assert widget.worker is not None and widget.state is RunState.RUNNING
    assert not widget.run_button.enabled and widget.stop_button.enabled
    with qtbot.waitSignal(widget.worker.finished, timeout=TIMEOUT):
        pass
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5000)
    assert widget.state is RunState.IDLE


def _start_long_run(qtbot, viewer, widget):
    viewer.add_image(_cells(), name="cells")
    widget.iterations.value = 100_000
    widget.run()
    worker = widget.worker
    with qtbot.waitSignal(worker.yielded, timeout=TIMEOUT):
        pass
    return worker


# ----- the manifest, opened the way napari opens it ----------------------------------------------------
@pytest.mark.parametrize("name", [w["display_name"] for w in MANIFEST["contributions"]["widgets"]])
def test_every_manifest_widget_opens(make_napari_viewer, name):
    viewer = make_napari_viewer()
    viewer.add_image(_cells(), name="cells")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-dip-l0", name)
    assert dock is not None and widget is not None
    if isinstance(widget, DipL0Widget):
        widget._shutdown()


@pytest.mark.parametrize("key", [s["key"] for s in MANIFEST["contributions"]["sample_data"]])
def test_every_manifest_sample_opens(viewer, key):
    layers = viewer.open_sample("napari-dip-l0", key)
    assert layers and layers[0].data.ndim >= 2 and layers[0].data.shape[0] >= 64


@pytest.mark.slow  # npe2 in a subprocess, importing napari
def test_manifest_validates():
    res = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-dip-l0", "--imports"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "valid" in res.stdout + res.stderr


def test_fast_widget_computes_in_a_worker(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    src = viewer.add_image(_cells(), name="cells", scale=(2, 2), gamma=0.8)
    _, gui = viewer.window.add_plugin_dock_widget("napari-dip-l0", "ℓ0 smoothing (fast)")
    gui.image.value = src
    gui.lam.value = 0.05
    assert [c for c in gui.method.choices] == list(L0_SOLVERS)
    assert "_" not in gui.method.native.currentText()  # words, not identifiers
    worker = gui()
    from napari.qt.threading import FunctionWorker

    assert isinstance(worker, FunctionWorker)
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=TIMEOUT)
    out = viewer.layers[-1]
    assert out.name.startswith("cells · ℓ0 λ=0.05")
    assert out.data.shape == src.data.shape and tuple(out.scale) == (2, 2) and out.gamma == pytest.approx(0.8)
    assert not np.array_equal(out.data, src.data)


def test_no_private_napari_api():
    sources = list(Path(_widget.__file__).parent.glob("*.py"))
    assert len(sources) >= 5
    for path in sources:
        source = path.read_text(encoding="utf-8")
        assert "_qt_window" not in source and "napari._" not in source, path.name


# ----- runs -------------------------------------------------------------------------------------------
def test_run_adds_preview_intermediate_and_final_layers(qtbot, viewer, widget, inserted):
    data = _cells()
    src = viewer.add_image(data, name="cells", scale=(0.5, 0.25), translate=(10.0, -3.0), gamma=0.7,
                           metadata={"objective": "40x"}, colormap="magma", contrast_limits=(0, 1500))
    assert widget.image.value is src  # follows the viewer's selection
    _run(qtbot, widget, iterations=6, preview_every=2, keep_every=3)
    assert "cells · DIP-ℓ0 (live preview)" in inserted
    assert "cells · DIP-ℓ0 (live preview)" not in viewer.layers  # it became the result
    kept = viewer.layers[f"cells · DIP-ℓ0 λ={widget.lam.value:g} @3"]
    final = _result(viewer, "cells")
    assert final.name == f"cells · DIP-ℓ0 λ={widget.lam.value:g}, 6 it"
    # Kept snapshots go below the live preview (which became the result), never over it.
    assert viewer.layers.index(kept) < viewer.layers.index(final)
    assert final.data.dtype == np.uint16 and final.data.shape == data.shape
    np.testing.assert_allclose(final.scale, src.scale)
    np.testing.assert_allclose(final.translate, src.translate)
    assert final.colormap.name == "magma" and tuple(final.contrast_limits) == (0, 1500)
    assert final.gamma == pytest.approx(0.7)
    assert final.metadata["objective"] == "40x"
    prov = final.metadata["dip_l0"]
    assert prov["iterations_done"] == 6 and prov["mode"] == "smooth" and not prov["stopped_early"]
    assert prov["lam"] == pytest.approx(widget.lam.value) and "version" in prov
    np.testing.assert_array_equal(src.data, data)  # input untouched
    assert widget.image.value is src  # not moved onto the layers the run added
    assert widget.run_button.enabled and not widget.stop_button.enabled
    assert "done" in widget.status.value and widget.progress.native.isHidden()


def test_progress_settings_lock_and_state_machine(qtbot, viewer, widget, monkeypatch):
    stack = np.stack([_cells(), _cells()[::-1]])
    viewer.add_image(stack, name="stack")
    texts, states, bars = [], [], []
    shown = job.Progress.text
    monkeypatch.setattr(job.Progress, "text", lambda self, snap: texts.append(shown(self, snap)) or texts[-1])
    import napari.utils

    class Bar(napari.utils.progress):  # napari's activity-dock progress, recorded
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(napari.utils, "progress", Bar)
    _run(qtbot, widget, iterations=3, planes="all planes")
    # The run in napari's activity dock too: one bar, counted to the end, closed with the run.
    assert len(bars) == 1 and bars[0].desc.startswith("DIP-ℓ0 on stack") and bars[0].total == 4
    assert bars[0].n == 4 and bars[0].disable
    # The counts the user set, plane by plane, and time left in words.
    assert any("plane 1 of 2 · iteration 3 of 3" in t for t in texts), texts
    assert any("plane 2 of 2 · iteration 1 of 1" in t for t in texts), texts
    assert any("left" in t for t in texts)
    assert "plane 0" not in _result(viewer, "stack").name  # all planes: no plane in the name

    worker = _start_long_run(qtbot, viewer, widget)
    assert not widget.progress.native.isHidden() and widget.progress.max > 0
    for field in (widget.image, widget.lam, widget.iterations, widget.mode, widget.seed, widget.l0_button):
        assert not field.enabled  # settings are locked during a run
    with pytest.raises(RuntimeError):
        widget._set_state(RunState.RUNNING)  # no such transition
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT):
        widget.stop()
        states.append(widget.state)
    assert states == [RunState.STOPPING] and widget.state is RunState.IDLE
    assert widget.lam_auto.enabled and widget.image.enabled
    assert not widget.lam.enabled  # automatic λ: the spin box only shows the preset's
    widget.lam_auto.value = False
    assert widget.lam.enabled


def test_stop_keeps_result_and_leaves_no_thread(qtbot, viewer, widget):
    worker = _start_long_run(qtbot, viewer, widget)
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT):
        widget.stop()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5000)
    final = _result(viewer, "cells")
    assert "stopped at" in final.name
    assert final.metadata["dip_l0"]["stopped_early"]
    assert final.metadata["dip_l0"]["iterations_done"] < 100_000
    assert widget.run_button.enabled
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=10_000)


def test_replace_previous_result(qtbot, viewer, widget):
    viewer.add_image(_cells(), name="cells")
    _run(qtbot, widget, iterations=2)
    _run(qtbot, widget, iterations=3)
    assert len(_results(viewer, "cells")) == 2  # default: results are kept side by side
    widget.replace.value = True
    _run(qtbot, widget, iterations=4)
    names = [lay.name for lay in _results(viewer, "cells")]
    assert len(names) == 2 and any(n.endswith("4 it") for n in names) and not any(n.endswith("3 it") for n in names)


def test_removing_source_layer_stops_worker_and_picks_another(qtbot, viewer, widget):
    other = viewer.add_image(_cells(), name="other")
    worker = _start_long_run(qtbot, viewer, widget)
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT):
        viewer.layers.remove("cells")
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5000)
    assert not [lay for lay in viewer.layers if "DIP-ℓ0" in lay.name]
    assert widget.image.value is other  # not left empty while an image exists


def test_bad_layer_reports_error_then_clears_it(qtbot, viewer, widget, notes):
    data = np.full((16, 16), np.nan, np.float32)
    viewer.add_image(data, name="broken", contrast_limits=(0, 1))
    widget.run()
    assert widget.worker is None and widget.run_button.enabled
    assert any("NaN" in str(n.message) for n in notes)
    assert [layer.name for layer in viewer.layers] == ["broken"]
    assert widget.status.value.startswith("error")
    viewer.add_image(_cells(), name="cells")  # the user picks something else: the stale error goes
    assert not widget.status.value.startswith("error")


def test_solver_failure_reports_error(qtbot, viewer, widget, notes, monkeypatch):
    data = _cells()
    layer = viewer.add_image(data, name="cells")
    real = form.run_from_file_or_pixels

    class Failing:
        def __init__(self, run):
            self.jpeg, self._run = run.jpeg, run

        def __iter__(self):
            yield next(iter(self._run))
            raise MemoryError("out of memory while fitting")

    def failing(*args, **kwargs):
        run, why_not = real(*args, **kwargs)
        return Failing(run), why_not

    monkeypatch.setattr(form, "run_from_file_or_pixels", failing)
    widget.iterations.value = 50
    widget.run()
    worker = widget.worker
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT):
        pass
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5000)
    assert any("out of memory" in str(n.message) for n in notes)
    assert widget.run_button.enabled and "error" in widget.status.value
    assert [lay.name for lay in viewer.layers] == ["cells"]
    np.testing.assert_array_equal(layer.data, data)


def test_all_planes_and_current_plane(qtbot, viewer, widget):
    stack = np.stack([_cells(), _cells()[::-1]])
    src = viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5))
    _run(qtbot, widget, iterations=3, planes="all planes")
    out = _result(viewer, "stack")
    assert out.data.shape == stack.shape and out.data.dtype == stack.dtype
    meta = out.metadata["dip_l0"]
    # Plane 2 warm-starts from plane 1 with a third of the iterations (at least one).
    assert meta["iterations_done"] == 3 + 1 and not meta["stopped_early"]
    assert meta["l0_solver"] == PRESETS["smooth"].l0_solver  # the solver the preset chose, not None
    viewer.layers.remove(out)

    viewer.dims.set_current_step(0, 1)
    widget.image.value = src
    _run(qtbot, widget, iterations=3, planes="current plane")
    one = _result(viewer, "stack")
    assert one.name.endswith("· plane 1")
    assert one.data.shape == (1,) + stack.shape[1:]
    assert one.translate[0] == pytest.approx(2.0)  # sits at plane 1 in world coordinates
    assert one.metadata["dip_l0"]["planes"] == [1]


def test_rgb_layer(qtbot, viewer, widget):
    rgb = np.random.default_rng(1).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    viewer.add_image(rgb, name="colour", rgb=True)
    _run(qtbot, widget, iterations=3)
    out = _result(viewer, "colour")
    assert out.rgb and out.data.shape == rgb.shape and out.data.dtype == np.uint8


def test_rgba_keeps_alpha(qtbot, viewer, widget):
    rgba = np.random.default_rng(2).integers(0, 255, (20, 24, 4), dtype=np.uint8)
    rgba[..., 3] = np.arange(24, dtype=np.uint8)[None, :] * 10
    viewer.add_image(rgba, name="rgba", rgb=True)
    _run(qtbot, widget, iterations=3)
    out = _result(viewer, "rgba").data
    assert out.shape == rgba.shape
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    assert not np.array_equal(out[..., :3], rgba[..., :3])


def test_l0_preview_in_a_worker_follows_lambda(qtbot, viewer, widget, monkeypatch):
    widget.preview.follow.setTimeout(50)
    data = _cells()
    viewer.add_image(data, name="cells", scale=(2, 2))
    widget.lam_auto.value = False
    widget.lam.value = 0.05
    widget.preview.request()
    assert widget.preview.worker is not None  # computing off the GUI thread
    qtbot.waitUntil(lambda: widget.preview.worker is None and len(viewer.layers) == 2, timeout=TIMEOUT)
    layer = viewer.layers[-1]
    assert layer.name == "cells · ℓ0 λ=0.05 (preview)"
    assert layer.data.shape == data.shape and layer.data.dtype == data.dtype
    assert not np.array_equal(layer.data, data)
    widget.lam.value = 0.2  # dragging λ: the same layer follows, debounced
    qtbot.waitUntil(lambda: layer.name == "cells · ℓ0 λ=0.2 (preview)", timeout=TIMEOUT)
    assert len(viewer.layers) == 2


def test_a_run_with_automatic_lambda_keeps_its_status_beside_a_preview(qtbot, viewer, widget, monkeypatch):
    widget.preview.follow.setTimeout(50)
    viewer.add_image(_photons(peak=5), name="frame")
    widget.mode.value = "camera-noise denoising"
    widget.preview.request()  # with automatic λ: the mode's choice from the noise
    qtbot.waitUntil(lambda: widget.preview.worker is None and len(viewer.layers) == 2, timeout=TIMEOUT)
    preview = viewer.layers[-1]
    _run(qtbot, widget, iterations=2)
    chosen = _result(viewer, "frame").metadata["dip_l0"]["lam"]
    assert widget.lam.value == pytest.approx(chosen, abs=5e-4)  # the greyed box shows the λ chosen ...
    assert round(chosen, 3) != PRESETS["denoise"].lam  # (a change of the box's value)
    qtbot.wait(300)  # ... and that is no change of λ for the preview to follow
    assert widget.preview.worker is None and widget.status.value.startswith("done")
    assert preview.name == f"frame · ℓ0 λ={chosen:.3g} (preview)"  # it had used that λ already


def _photons(shape=(32, 32), peak=20, hot=True):
    """A camera frame: Poisson counts of a bright square, gain 2, offset 100, a hot pixel."""
    rng = np.random.default_rng(1)
    clean = np.full(shape, 0.1)
    clean[8:24, 6:20] = 1.0
    frame = 100 + 2 * rng.poisson(peak * clean)
    if hot:
        frame[3, 3] = 4095
    return frame.astype(np.uint16)


def test_denoise_mode_reads_lambda_from_the_noise(qtbot, viewer, widget):
    quiet, noisy = _photons(peak=200, hot=False), _photons(peak=5, hot=False)
    widget.mode.value = "camera-noise denoising"
    assert widget.lam_auto.value and not widget.lam.enabled
    lams = []
    for name, data in (("quiet", quiet), ("noisy", noisy)):
        viewer.add_image(data, name=name)
        _run(qtbot, widget, iterations=2)
        prov = _result(viewer, name).metadata["dip_l0"]
        assert prov["mode"] == "denoise" and prov["lam_auto"] is True
        assert _result(viewer, name).name == f"{name} · DIP-ℓ0 λ={prov['lam']:.3g}, 2 it"
        assert widget.lam.value == pytest.approx(prov["lam"], abs=5e-4)  # the box shows the λ chosen
        assert prov["noise_model"][0] > 0  # shot noise found: λ is on the stabilised scale
        lams.append(prov["lam"])
    assert lams[1] > 3 * lams[0]  # fewer photons, more noise, a larger λ


def test_denoise_result_shows_where_it_stopped_and_is_visible(qtbot, viewer, widget, monkeypatch):
    # How the rule stops is tested in test_denoise.py; here it only has to stop, so with a short patience.
    patience, cap = 10, 200
    monkeypatch.setitem(PRESETS, "denoise", replace(PRESETS["denoise"], patience=patience))
    frame = _photons(peak=5)  # the hot pixel sets the frame's contrast limits: 100 to 4095
    layer = viewer.add_image(frame, name="frame")
    widget.mode.value = "camera-noise denoising"
    _run(qtbot, widget, iterations=cap)
    result = _result(viewer, "frame")
    prov = result.metadata["dip_l0"]
    kept = prov["kept_iteration"]
    assert kept is not None and patience <= kept < cap - patience  # the stopping rule ended the run
    assert result.name == f"frame · DIP-ℓ0 λ={prov['lam']:.3g}, {kept} it (stopping rule)"
    assert result.data.dtype == np.float32  # the frame's ADU, between its levels
    assert result.data[3, 3] < 200  # the hot pixel is gone ...
    assert tuple(layer.contrast_limits) == (frame.min(), 4095)
    # ... so the source's limits would show the result black: it gets its own range (set from the first
    # preview, which the result replaces).
    lo, hi = result.contrast_limits
    assert hi < 200 and np.ptp(result.data) >= 0.5 * (hi - lo)


def test_a_denoised_stack_is_shown_in_its_own_range(qtbot, viewer, widget):
    # The first preview holds the later planes as they are, hot pixels and all, so it takes the source's limits;
    # the result that replaces it must not keep them (it showed black).
    stack = np.stack([_photons(), _photons()[::-1]])
    layer = viewer.add_image(stack, name="stack")
    assert layer.contrast_limits[1] == 4095
    widget.mode.value = "camera-noise denoising"
    _run(qtbot, widget, iterations=3, planes="all planes")
    result = _result(viewer, "stack")
    lo, hi = result.contrast_limits
    assert hi < 1000 and np.ptp(result.data) >= 0.5 * (hi - lo)


def test_denoised_rgb_layer_keeps_its_look(qtbot, viewer, widget):
    rng = np.random.default_rng(4)
    data = np.clip(rng.normal(120, 30, (40, 44, 3)), 0, 255).astype(np.uint8)
    layer = viewer.add_image(data, name="rgb")
    assert layer.rgb
    widget.mode.value = "camera-noise denoising"
    _run(qtbot, widget, iterations=2)
    result = _result(viewer, "rgb")
    # napari draws RGB thumbnails of floats on [0, 1]: the result keeps the layer's uint8 (the API would not)
    assert result.rgb and result.data.dtype == np.uint8 and result.data.shape == data.shape
    assert tuple(result.contrast_limits) == tuple(layer.contrast_limits) == (0, 255)
    assert result.thumbnail[..., :3].mean() < 250


def test_manual_lambda_is_used_when_automatic_is_off(qtbot, viewer, widget):
    viewer.add_image(_photons(), name="frame")
    widget.mode.value = "camera-noise denoising"
    widget.lam_auto.value = False
    widget.lam.value = 0.02
    _run(qtbot, widget, iterations=2)
    prov = _result(viewer, "frame").metadata["dip_l0"]
    assert prov["lam"] == pytest.approx(0.02) and prov["lam_auto"] is False


def test_mode_switch_sets_preset(widget):
    from napari_dip_l0.core.presets import PRESETS

    widget.mode.value = "JPEG deblocking"
    assert widget.lam.value == pytest.approx(PRESETS["deblock"].lam)
    assert widget.iterations.value == PRESETS["deblock"].iterations
    assert widget.l0_solver.value == "auto"  # the widget does not pick the preset's solver itself
    widget.mode.value = "edge-preserving smoothing"
    assert widget.lam.value == pytest.approx(PRESETS["smooth"].lam)


def test_labels_tooltips_and_advanced_section(widget):
    fields = [widget.image, widget.mode, widget.lam, widget.iterations, widget.planes, widget.replace,
              widget.seed, widget.device, widget.l0_solver, widget.preview_every, widget.keep_every,
              widget.l0_button, widget.run_button, widget.stop_button]
    for field in fields:
        assert field.tooltip and len(field.tooltip) > 20, field.label
    for field in (widget.lam, widget.iterations, widget.seed, widget.preview_every, widget.keep_every):
        assert "count" in field.tooltip or "unit" in field.tooltip, field.label
    for combo in (widget.device, widget.l0_solver):
        assert all("_" not in combo.native.itemText(i) for i in range(combo.native.count()))
    assert widget.l0_solver.native.itemText(0).startswith("automatic")
    assert widget.advanced.native.isHidden()  # expert settings start collapsed
    widget.advanced_button.native.click()
    assert not widget.advanced.native.isHidden() and widget.advanced_button.text.startswith("▾")
    widget.advanced_button.native.click()
    assert widget.advanced.native.isHidden()


def test_solver_labels_fall_back_to_words(monkeypatch):
    labels = [label for label, _ in job.solver_choices(("region_fusion", "fft", "some_new_solver"))]
    assert labels[-1] == "some new solver" and labels[0].startswith("automatic")
    assert job.solver_arg("fft") == "fft"
    assert job.solver_arg("auto") is None  # the core takes the preset's solver


def test_removing_dock_widget_stops_worker(qtbot, viewer):
    widget = DipL0Widget(viewer, persist=False)
    dock = viewer.window.add_dock_widget(widget, name="DIP-ℓ0")
    worker = _start_long_run(qtbot, viewer, widget)
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        viewer.window.remove_dock_widget(dock)
    qtbot.wait(100)
    assert [layer.name for layer in viewer.layers] == ["cells"]  # a closed widget adds nothing


def test_closing_viewer_stops_worker(qtbot, viewer):
    widget = DipL0Widget(viewer, persist=False)
    viewer.window.add_dock_widget(widget, name="DIP-ℓ0")
    worker = _start_long_run(qtbot, viewer, widget)
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        viewer.close()
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=10_000)


def test_settings_persist_between_widgets(viewer, tmp_path, monkeypatch):
    from qtpy.QtCore import QSettings

    from napari_dip_l0.core.presets import PRESETS

    path = str(tmp_path / "settings.ini")
    monkeypatch.setattr(form, "settings_store", lambda: QSettings(path, QSettings.Format.IniFormat))
    first = DipL0Widget(viewer, persist=True)
    first.lam.value = 0.07
    first.iterations.value = 123
    first.planes.value = "all planes"
    first.l0_solver.value = "fft"
    first.replace.value = False
    second = DipL0Widget(viewer, persist=True)
    assert second.lam.value == pytest.approx(0.07)
    assert second.iterations.value == 123 and second.planes.value == "all planes"
    assert second.l0_solver.value == "fft" and second.replace.value is False
    assert DipL0Widget(viewer, persist=False).lam.value == pytest.approx(PRESETS["smooth"].lam)


def test_dask_layer_reads_only_the_current_plane(viewer):
    da = pytest.importorskip("dask.array")
    stack = np.stack([_cells(), _cells()[::-1], _cells()])
    reads = []

    def record(block, block_info=None):
        reads.append(block_info[0]["chunk-location"][0])
        return block

    lazy = da.from_array(stack, chunks=(1, 24, 28)).map_blocks(record, dtype=stack.dtype)
    layer = viewer.add_image(lazy, name="lazy", contrast_limits=(0, 2000))
    viewer.dims.set_current_step(0, 2)
    reads.clear()
    sel = job.select(layer, job.CURRENT, viewer.dims.point)
    assert sel.plane_index == (2,) and sel.data.shape == stack.shape[1:] and sel.alpha is None
    assert set(reads) == {2}
    np.testing.assert_array_equal(sel.data, stack[2])


def test_multiscale_uses_a_level_that_fits(viewer, monkeypatch):
    monkeypatch.setattr(job, "MAX_PLANE_PIXELS", 24 * 28)
    full = np.repeat(np.repeat(_cells(), 2, axis=0), 2, axis=1)
    layer = viewer.add_image([full, _cells()], name="pyramid", multiscale=True, scale=(0.5, 0.5))
    sel = job.select(layer, job.ALL)
    assert sel.data.shape == (24, 28) and "level 1" in sel.note
    np.testing.assert_allclose(job.layer_kwargs(layer, sel)["scale"], (1.0, 1.0))


def test_current_plane_follows_world_position(viewer):
    stack = np.stack([_cells() * 0, _cells(), _cells() * 2])
    layer = viewer.add_image(stack, name="zs", scale=(3.0, 1.0, 1.0), translate=(-3.0, 0, 0))
    viewer.dims.set_point(0, 3.0)  # world z 3 = data plane (3 + 3) / 3 = 2
    sel = job.select(layer, job.CURRENT, viewer.dims.point)
    assert sel.plane_index == (2,)
    np.testing.assert_array_equal(sel.data, stack[2])


def test_time_left_in_words():
    assert job.time_left(10.4) == "about 10 s left"
    assert job.time_left(0.2) == "about 1 s left"
    assert job.time_left(130) == "about 2 minutes left"
    assert job.time_left(3 * 3600 + 600) == "about 3 h 10 min left"


def test_deblocking_a_layer_opened_from_a_jpeg_uses_the_file(qtbot, viewer, widget, notes, tmp_path):
    from PIL import Image
    from skimage import data

    from napari_dip_l0.core.jpeg import read_jpeg_constraint

    path = tmp_path / "photo.jpg"
    Image.fromarray(data.astronaut()[90:130, 110:158]).save(path, quality=10)
    layer = viewer.open(path)[0]
    assert str(layer.source.path) == str(path)
    widget.image.value = layer
    widget.mode.value = "JPEG deblocking"
    # A layer from a JPEG file loads the file preset's λ and iteration cap, a plain layer the pixels' preset.
    assert widget.iterations.value == FILE_PRESETS["deblock"].iterations
    assert widget.lam.value == pytest.approx(FILE_PRESETS["deblock"].lam)
    plain = viewer.add_image(data.astronaut()[:40, :48], name="plain")
    widget.image.value = plain
    assert widget.iterations.value == PRESETS["deblock"].iterations
    widget.image.value = layer
    assert widget.iterations.value == FILE_PRESETS["deblock"].iterations
    viewer.layers.remove(plain)
    widget.image.value = layer
    widget.preview.request()  # automatic λ: the one a run with the file takes, from its quantisation step
    qtbot.waitUntil(lambda: widget.preview.worker is None and len(viewer.layers) == 2, timeout=TIMEOUT)
    step = read_jpeg_constraint(path).dc_step
    assert viewer.layers[-1].metadata["dip_l0"]["lam"] == pytest.approx(FILE_PRESETS["deblock"].lam_step * step / 255)
    viewer.layers.remove(viewer.layers[-1])
    widget.image.value = layer
    _run(qtbot, widget, iterations=4)
    assert "quantisation tables" in str(widget.status.value)
    assert any("quantisation tables" in str(n.message) for n in notes)
    out = _result(viewer, "photo")
    assert out.metadata["dip_l0"]["jpeg_file"] == str(path)
    assert out.metadata["dip_l0"]["jpeg_box"] == FILE_PRESETS["deblock"].jpeg_box  # quality 10: not a fine step
    rgb = np.ascontiguousarray(out.data.transpose(2, 0, 1), np.float64)[None] / 255
    assert read_jpeg_constraint(path).violation(torch.from_numpy(rgb)).max() < 0.06
    # Edited pixels are not the file's any more: deblocked as pixels, and the widget says why; the file
    # preset's cap shown becomes the pixels' preset's count.
    layer.data = layer.data // 2
    notes.clear()
    widget.iterations.value = FILE_PRESETS["deblock"].iterations
    widget.run()
    worker = widget.worker
    with qtbot.waitSignal(worker.yielded, timeout=TIMEOUT):
        pass
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT):
        widget.stop()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5000)
    assert "quantisation" not in str(widget.status.value)
    assert viewer.layers[-1].metadata["dip_l0"]["iterations"] == PRESETS["deblock"].iterations
    assert any("differ from its JPEG file" in str(n.message) for n in notes)
    assert viewer.layers[-1].metadata["dip_l0"]["jpeg_file"] is None
    assert viewer.layers[-1].metadata["dip_l0"]["jpeg_box"] is None
    # Smoothing never uses the file.
    widget.replace.value = False
    _run(qtbot, widget, mode="edge-preserving smoothing", iterations=2)
    assert "quantisation" not in str(widget.status.value)


def test_deblocking_pixels_that_show_a_jpegs_quantisation_stays_within_it(qtbot, viewer, widget, notes):
    import io

    from PIL import Image
    from skimage import data

    from napari_dip_l0.core.jpeg_history import constraint_from_pixels

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()[90:130, 110:158]).save(buf, "JPEG", quality=10)
    pasted = np.asarray(Image.open(io.BytesIO(buf.getvalue())))  # a JPEG's pixels with no file behind them
    layer = viewer.add_image(pasted, name="pasted")
    widget.mode.value = "JPEG deblocking"
    widget.image.value = layer
    # The form shows the preset such a run starts from: the file preset's cap, as for a layer with its file.
    assert widget.iterations.value == FILE_PRESETS["deblock"].iterations
    _run(qtbot, widget, iterations=4)
    said = "within the JPEG quantisation its pixels show (quality 10)"
    assert said in str(widget.status.value) and any(said in str(n.message) for n in notes)
    out = _result(viewer, "pasted")
    meta = out.metadata["dip_l0"]
    assert meta["jpeg_file"] is None and meta["jpeg_tables"] == said
    assert meta["jpeg_box"] == FILE_PRESETS["deblock"].jpeg_box
    assert constraint_from_pixels(pasted, channel_axis=-1).violation(out.data / 255.0)[0] < 0.06
    np.testing.assert_array_equal(layer.data, pasted)  # the layer is never changed


def test_a_layer_that_names_its_mode_switches_the_form(qtbot, viewer, widget):
    # The bundled samples carry metadata={"dip_l0_mode": ...}: choosing one sets the mode and its preset.
    frame = viewer.add_image(_photons(), name="frame", metadata={"dip_l0_mode": "denoise"})
    assert widget.image.value is frame and widget.mode.value == "camera-noise denoising"
    assert widget.lam.value == pytest.approx(PRESETS["denoise"].lam)
    assert widget.iterations.value == PRESETS["denoise"].iterations
    plain = viewer.add_image(_cells(), name="plain")  # names no mode: the form keeps the user's
    assert widget.image.value is plain and widget.mode.value == "camera-noise denoising"
    blocky = viewer.add_image(_cells(dtype=np.uint8), name="blocky", metadata={"dip_l0_mode": "deblock"})
    assert widget.image.value is blocky and widget.mode.value == "JPEG deblocking"
    assert widget.lam.value == pytest.approx(PRESETS["deblock"].lam)
    assert widget.iterations.value == PRESETS["deblock"].iterations
    widget.image.value = frame
    assert widget.mode.value == "camera-noise denoising"
    _run(qtbot, widget, iterations=2)
    assert _result(viewer, "frame").metadata["dip_l0"]["mode"] == "denoise"
    # The result carries the source's metadata (its mode too) but is never picked as a source.
    assert widget.image.value is frame and widget.mode.value == "camera-noise denoising"
    # A mode the form does not know is ignored.
    odd = viewer.add_image(_cells(), name="odd", metadata={"dip_l0_mode": "sharpen"})
    assert widget.image.value is odd and widget.mode.value == "camera-noise denoising"
