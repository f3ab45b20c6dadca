"""The DIP-ℓ0 widget's decisions without Qt: selection, names, provenance, progress text, state, worker ticks."""

import gc
import subprocess
import sys
import threading
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_dip_l0._widget import job, status, worker  # noqa: E402
from napari_dip_l0.core.presets import FILE_PRESETS, PRESETS  # noqa: E402


def _snap(iteration, total, *, plane=0, planes=1, tile=0, tiles=1, seconds=0.0, done=False, kept=None,
          image=None, lam=0.03):
    return SimpleNamespace(iteration=iteration, total=total, plane=plane, planes=planes, tile=tile, tiles=tiles,
                           seconds=seconds, done=done, kept=kept, ends_by=None, image=image, noise_model=None,
                           preset=replace(PRESETS["smooth"], lam=lam))


def test_the_decisions_import_without_qt():
    code = ("import sys; import napari_dip_l0._widget.job, napari_dip_l0._widget.status, "
            "napari_dip_l0._widget.worker; "
            "bad = [m for m in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6') if m in sys.modules]; "
            "assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_progress_text_counts_the_users_iterations_and_the_seconds_left():
    progress = job.Progress(iterations=10)
    # Two planes: the first takes the 10 set, the second (warm-started) 3; 1 s per iteration.
    texts = [progress.text(_snap(i, 13, plane=int(i > 10), planes=2, seconds=float(i))) for i in range(14)]
    assert texts[0].startswith("plane 1 of 2 · iteration 0 of 10") and texts[0].endswith("estimating time left…")
    assert texts[1].endswith("estimating time left…")  # one timed iteration gives no rate yet
    assert texts[3] == "plane 1 of 2 · iteration 3 of 10 · about 10 s left"
    assert texts[12] == "plane 2 of 2 · iteration 1 of 3 · about 1 s left"
    from_file = job.Progress(iterations=4, tables=job.JPEG_NOTE).text(_snap(0, 4))
    assert from_file.endswith(job.JPEG_NOTE)


def test_what_bounds_a_deblocking_run_in_words():
    from napari_dip_l0.core.jpeg import JpegConstraint

    assert job.tables_note(None) == ""
    table, blocks = [np.ones((8, 8))], [np.zeros((1, 1, 8, 8))]
    assert job.tables_note(JpegConstraint(blocks, table, [(1, 1)], (8, 8), path="a.jpg")) == job.JPEG_NOTE
    read = JpegConstraint(blocks, table, [(1, 1)], (8, 8), quality=10)
    assert job.tables_note(read) == "within the JPEG quantisation its pixels show (quality 10)"


def test_a_run_that_stops_itself_says_when_its_rule_would_end_it_and_its_cap():
    denoise = PRESETS["denoise"]  # patience 200, a cap of 2000 iterations
    progress = job.Progress(iterations=2000)

    def text(i, ends_by=None, planes=1, total=2000, plane=0):
        snap = _snap(i, total, plane=plane, planes=planes, seconds=0.1 * i)
        snap.preset, snap.ends_by = denoise, ends_by
        return progress.text(snap)

    text(1)  # the first timed iteration: 0.1 s per iteration from here
    # Before the rule has a minimum it cannot stop the plane: at least until its window is full.
    assert text(100) == "iteration 100 of 2000 · at least 10 s left (at most 3 minutes)"
    # Then it ends the plane `patience` steps after the minimum, unless a new one comes.
    assert text(300, ends_by=450) == "iteration 300 of 2000 · about 15 s left unless the fit keeps improving " \
                                     "(at most 3 minutes)"
    # A cap below the rule's window: the cap ends the plane, and the line says only its time.
    progress = job.Progress(iterations=60)
    text(1, total=60)
    assert text(20, total=60) == "iteration 20 of 60 · about 4 s left"
    # A stack: the first plane's rule as above, plus the later planes' counts (here one of 50), ...
    progress = job.Progress(iterations=2000)
    text(1, planes=2, total=2050)
    assert text(100, planes=2, total=2050) == ("plane 1 of 2 · iteration 100 of 2000 · at least 15 s left "
                                               "(at most 3 minutes)")
    assert text(300, ends_by=450, planes=2, total=2050) == ("plane 1 of 2 · iteration 300 of 2000 · about 20 s left "
                                                            "unless the fit keeps improving (at most 3 minutes)")
    # ... and the later planes, too short for the rule's window, the plain time left (from iteration 2000, where
    # the rule ended the first plane and its snapshot counted the iterations it skipped).
    text(2000, planes=2, total=2050, plane=1)  # plane 2 begins
    assert text(2010, planes=2, total=2050, plane=1) == "plane 2 of 2 · iteration 10 of 50 · about 4 s left"


def test_time_left_in_seconds_then_minutes_then_hours():
    assert [job.time_left(s) for s in (0.3, 42.4, 59.4)] == ["about 1 s left", "about 42 s left",
                                                              "about 59 s left"]
    assert job.time_left(60) == "about 1 minute left" and job.time_left(150) == "about 2 minutes left"
    assert job.time_left(2 * 3600 + 5 * 60) == "about 2 h 05 min left"


def test_result_names_and_provenance():
    sel = job.Selection(np.zeros((4, 5)), None, (2,), None, np.ones(3), "")
    params = {"mode": "smooth", "lam": "auto", "iterations": 10, "seed": 0, "device": "cpu",
              "l0_solver": None, "jpeg_file": None, "jpeg_tables": ""}
    done = _snap(10, 10, done=True, seconds=1.23456, lam=0.0412)
    assert job.result_name("cells", sel, 10, done) == "cells · DIP-ℓ0 λ=0.0412, 10 it · plane 2"
    assert job.result_name("cells", sel, 10, _snap(4, 10)) == "cells · DIP-ℓ0 λ=0.03, stopped at 4/10 · plane 2"
    assert job.result_name("c", sel._replace(plane_index=None), 10, _snap(10, 10, done=True, kept=7)) == \
        "c · DIP-ℓ0 λ=0.03, 7 it (stopping rule)"
    stack = sel._replace(plane_index=None)  # a stack's later planes, warm-started, run their own count
    assert job.result_name("c", stack, 2000, _snap(2150, 2150, planes=4, done=True)) == \
        "c · DIP-ℓ0 λ=0.03, 2000 it, then 50 a plane"
    assert job.result_name("c", stack, 30, _snap(90, 90, planes=3, done=True)) == "c · DIP-ℓ0 λ=0.03, 30 it"
    assert job.kept_name("cells", sel, _snap(3, 10)) == "cells · DIP-ℓ0 λ=0.03 @3 · plane 2"
    prov = job.provenance(params, sel, done)
    assert prov["lam"] == pytest.approx(0.0412) and prov["lam_auto"] is True and prov["planes"] == [2]
    assert prov["seconds"] == 1.235 and not prov["stopped_early"] and prov["jpeg_box"] is None
    assert prov["l0_solver"] == PRESETS["smooth"].l0_solver and "version" in prov
    text = job.finished_text(done, "cells · result", job.JPEG_NOTE)
    assert text == f"done in 1.2 s ({job.JPEG_NOTE}): cells · result"
    assert prov["planes_finished"] == 1
    stopped = _snap(2022, 2150, plane=1, planes=4, seconds=27.9)
    assert job.finished_text(stopped, "s") == "stopped at iteration 2022 of 2150 (in plane 2 of 4) in 27.9 s: s"
    assert job.provenance(params, sel, stopped)["planes_finished"] == 1


def test_mode_named_by_a_layer():
    layer = napari.layers.Image(np.zeros((8, 8)), metadata={job.MODE_KEY: "deblock"})
    assert job.mode_label(layer) == "JPEG deblocking"
    assert job.mode_label(napari.layers.Image(np.zeros((8, 8)))) is None
    assert job.mode_label(napari.layers.Image(np.zeros((8, 8)), metadata={job.MODE_KEY: "x"})) is None
    assert job.mode_label(None) is None
    assert set(job.MODES.values()) == set(PRESETS)  # every mode a layer can name is one the form offers


def test_pixel_iterations_replace_the_file_cap_only_when_it_was_shown_and_kept():
    filed, pixels = FILE_PRESETS["deblock"], PRESETS["deblock"]
    assert job.pixel_iterations("deblock", filed, filed.iterations) == pixels.iterations
    assert job.pixel_iterations("deblock", filed, 77) == 77  # the user's own count stays
    assert job.pixel_iterations("deblock", pixels, filed.iterations) == filed.iterations
    assert job.pixel_iterations("smooth", PRESETS["smooth"], 5) == 5


def test_selection_of_rgba_and_planes_without_a_viewer():
    rgba = np.random.default_rng(0).integers(0, 255, (6, 7, 4), dtype=np.uint8)
    sel = job.select(napari.layers.Image(rgba, rgb=True), job.CURRENT)
    assert sel.channel_axis == -1 and sel.data.shape == (6, 7, 3) and sel.alpha.shape == (6, 7, 1)
    out = job.layer_array(sel.data.astype(np.float32), sel)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    stack = napari.layers.Image(np.arange(3 * 4 * 5).reshape(3, 4, 5), scale=(2, 1, 1))
    sel = job.select(stack, job.CURRENT, point=(4.2, 0, 0))  # world z 4.2: plane 2
    assert sel.plane_index == (2,) and job.layer_array(sel.data, sel).shape == (1, 4, 5)
    assert job.layer_kwargs(stack, sel)["translate"][0] == pytest.approx(4.0)
    assert job.select(stack, job.ALL).data.shape == (3, 4, 5)


def test_jpeg_file_only_for_the_files_own_pixels(tmp_path):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    path = tmp_path / "p.jpg"
    Image.fromarray(pixels).save(path, quality=20)
    decoded = np.asarray(Image.open(path))
    layer = SimpleNamespace(source=SimpleNamespace(path=str(path)), multiscale=False)
    whole = job.Selection(decoded, -1, None, None, np.ones(2), "")
    assert job.jpeg_file(layer, whole) == (str(path), "")
    assert "differ" in job.jpeg_file(layer, whole._replace(data=decoded // 2))[1]
    assert "whole image" in job.jpeg_file(layer, whole._replace(plane_index=(0,)))[1]
    path.unlink()
    assert "gone" in job.jpeg_file(layer, whole)[1]
    png = SimpleNamespace(source=SimpleNamespace(path=str(tmp_path / "p.png")), multiscale=False)
    assert job.jpeg_file(png, whole) == (None, "")


def test_run_status_moves_only_along_the_state_machine():
    seen = []
    st = status.RunStatus()
    st.events.state.connect(seen.append)
    st.move(status.RunState.RUNNING)
    st.move(status.RunState.STOPPING)
    with pytest.raises(RuntimeError, match="no transition"):
        st.move(status.RunState.RUNNING)
    st.move(status.RunState.IDLE)
    assert seen == [status.RunState.RUNNING, status.RunState.STOPPING, status.RunState.IDLE] and st.idle


def test_ticks_render_previews_keeps_and_a_final_also_when_stopped():
    sel = job.Selection(np.zeros((2, 2)), None, None, None, np.ones(2), "")
    snaps = [_snap(i, 6, image=np.full((2, 2), float(i))) for i in range(6)] + [
        _snap(6, 6, done=True, image=np.ones((2, 2)))]
    kinds = [(t.kind, t.snap.iteration) for t in worker.ticks(iter(snaps), sel, threading.Event(), 1, 4)]
    assert kinds[0] == ("preview", 0) and ("keep", 4) in kinds and kinds[-1] == ("final", 6)
    stop = threading.Event()
    gen = worker.ticks(iter(snaps), sel, stop, 100, 0)
    first = next(gen)
    stop.set()
    rest = list(gen)
    assert first.kind == "preview" and [(t.kind, t.snap.iteration) for t in rest] == [("final", 1)]
    np.testing.assert_array_equal(rest[0].image, np.full((2, 2), 1.0))


def test_gc_hold_survives_unpaired_calls():
    assert gc.get_freeze_count() == 0  # nothing else holds the collector here
    hold = worker.GcHold()
    hold.hold("a")
    hold.hold("a")  # twice: still one holder
    hold.hold("b")
    assert gc.get_freeze_count() > 0
    hold.release("a")
    hold.release("a")  # unpaired: changes nothing, "b" still holds
    assert hold.held and gc.get_freeze_count() > 0
    hold.release("b")
    assert not hold.held and gc.get_freeze_count() == 0
    hold.release("b")  # unpaired again: nothing to thaw, no error
    hold.hold("c")
    assert gc.get_freeze_count() > 0
    hold.release("c")
    assert gc.get_freeze_count() == 0


def test_a_tick_during_the_activity_bars_making_opens_no_second_bar(monkeypatch):
    # Making napari's progress bar can run pending Qt events, among them the run's next tick.
    import napari.utils

    from napari_dip_l0._widget.status import Activity

    activity, made = Activity(), []

    class Bar:
        def __init__(self, total, desc):
            self.total, self.n, self.closed = total, 0, False
            made.append(self)
            activity.show(2, total, desc)  # the tick Qt runs meanwhile

        def update(self, step):
            self.n += step

        def close(self):
            self.closed = True

    monkeypatch.setattr(napari.utils, "progress", Bar)
    activity.show(1, 10, "run")
    assert len(made) == 1 and made[0].n == 1
    activity.show(5, 10, "run")
    activity.close(done=7)
    assert made[0].n == 7 and made[0].closed
