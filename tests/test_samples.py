"""The File ▸ Open Sample images: one per mode, made from files shipped in the package."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_dip_l0 import _sample_data
from napari_dip_l0.cli import SAMPLE_KEYS
from napari_dip_l0.core.io import describe, read_image
from napari_dip_l0.data import camera_frame

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = yaml.safe_load((ROOT / "napari.yaml").read_text(encoding="utf-8"))
SAMPLES = {s["key"]: s for s in MANIFEST["contributions"]["sample_data"]}
COMMANDS = {c["id"]: c["python_name"] for c in MANIFEST["contributions"]["commands"]}
WORDS = {"smooth": "smoothing", "denoise": "denoising", "deblock": "deblocking"}


def _layers(key):
    module, name = COMMANDS[SAMPLES[key]["command"]].split(":")
    assert module == "napari_dip_l0._sample_data"
    return getattr(_sample_data, name)()


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_each_sample_names_and_sets_its_mode(key):
    layers = _layers(key)
    modes = {kwargs["metadata"]["dip_l0_mode"] for _, kwargs in layers}
    assert len(modes) == 1 and modes <= set(WORDS)
    assert WORDS[modes.pop()] in SAMPLES[key]["display_name"]  # the menu says what the sample is for


def test_gui_command_offers_the_manifest_samples():
    assert sorted(SAMPLE_KEYS) == sorted(SAMPLES)


def test_nuclei_frame_is_a_camera_frame_with_its_noise_free_original():
    (truth, t_kw), (frame, f_kw) = _layers("nuclei_camera")
    assert frame.dtype == np.uint16 and frame.shape == truth.shape == (256, 256)
    assert t_kw["visible"] is False and f_kw.get("visible", True)  # the frame is what the user sees (and picks)
    hot = frame == 4095
    assert 1 <= hot.sum() <= 0.001 * frame.size  # a few hot pixels
    background = np.median(frame[truth < np.percentile(truth, 20)])
    assert 95 <= background <= 115  # the camera's offset of 100 ADU, plus a little signal
    residual = frame[~hot].astype(float) - truth[~hot]
    # Poisson with gain 2 and read noise 1.5 e-: the variance grows with the signal as 2 (x - 100) + 9.
    bright, dim = truth[~hot] > np.percentile(truth, 90), truth[~hot] < np.percentile(truth, 20)
    assert residual[bright].var() > 3 * residual[dim].var()
    assert abs(residual.mean()) < 0.5
    again = _layers("nuclei_camera")[1][0]
    np.testing.assert_array_equal(frame, again)  # same frame every time (seed 0)
    lo, hi = f_kw["contrast_limits"]
    assert lo <= frame[~hot].min() + 20 and hi < 4095  # hot pixels do not set the display range


def test_histology_sample_is_the_jpeg_file_itself():
    [(data, kwargs)] = _layers("histology_jpeg")
    path = kwargs["metadata"]["dip_l0_jpeg_file"]
    assert describe(path).kind == "jpeg" and kwargs["rgb"] is True
    np.testing.assert_array_equal(data, read_image(path))  # the layer's pixels are the file's as they decode
    from napari_dip_l0.core.jpeg import read_jpeg_constraint

    assert read_jpeg_constraint(path).shape[-2:] == data.shape[:2]  # its quantisation tables can be used


def test_shipped_sample_files_are_small_and_attributed():
    files = sorted(p for p in _sample_data.SAMPLES.iterdir() if p.name != "README.md")
    assert [p.name for p in files] == ["ihc_q15.jpg", "nuclei_bbbc038.png"]
    notes = (_sample_data.SAMPLES / "README.md").read_text(encoding="utf-8")
    for p in files:
        assert p.stat().st_size < 100_000 and p.name in notes
    assert "CC0" in notes


def test_camera_frame_has_the_statistics_of_its_model():
    clean = np.full((200, 200), 0.5)
    frame, truth, hot = camera_frame(clean, peak=40, gain=2.0, offset=100, read_noise=1.5, hot_fraction=0, seed=1)
    assert not hot.any() and truth[0, 0] == 140
    values = frame.astype(float)
    assert abs(values.mean() - 140) < 0.5
    assert abs(values.var() - (4 * 20 + 4 * 1.5**2)) < 8  # gain² (photons + read noise²)


@pytest.mark.parametrize("key, mode", [("nuclei_camera", "camera-noise denoising"),
                                       ("histology_jpeg", "JPEG deblocking"),
                                       ("textured_cartoon", "edge-preserving smoothing")])
def test_dip_l0_gui_opens_each_sample_in_its_mode(key, mode, qtbot):
    pytest.importorskip("napari")
    from qtpy.QtCore import QThreadPool

    from napari_dip_l0.cli import open_viewer

    viewer, widget = open_viewer(key)
    try:
        assert widget.mode.value == mode
        assert widget.image.value is viewer.layers[-1]  # the sample's working layer, not the noise-free reference
        assert "noise-free" not in widget.image.value.name
    finally:
        QThreadPool.globalInstance().waitForDone(120_000)
        viewer.close()


def test_histology_sample_is_deblocked_from_its_file(make_napari_viewer):
    from napari_dip_l0._sample_data import HISTOLOGY_JPEG
    from napari_dip_l0._widget import job

    viewer = make_napari_viewer()
    [layer] = viewer.open_sample("napari-dip-l0", "histology_jpeg")
    assert job.opened_from_jpeg(layer) and job.mode_preset("deblock", layer).patience > 0  # the file's preset
    path, why_not = job.jpeg_file(layer, job.select(layer, job.CURRENT))
    assert (path, why_not) == (str(HISTOLOGY_JPEG), "")
    layer.data = layer.data.copy()
    layer.data[0, 0] = 255 - layer.data[0, 0]  # edited: no longer the file's pixels
    assert job.jpeg_file(layer, job.select(layer, job.CURRENT))[0] is None
