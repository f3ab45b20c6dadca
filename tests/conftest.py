import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_dip_l0

# napari finds the manifest in the package's folder (entry point napari_dip_l0:napari.yaml). A wheel has it
# there; run from a source tree (editable install, or PYTHONPATH=src), the package gets a copy of the
# top-level napari.yaml, refreshed here so that tests never see a stale one (hatch_build.py writes it too).
_ROOT = Path(__file__).resolve().parents[1]
_PACKAGE = Path(napari_dip_l0.__file__).resolve().parent
if _PACKAGE == _ROOT / "src" / "napari_dip_l0":
    _manifest = _ROOT / "napari.yaml"
    _copy = _PACKAGE / "napari.yaml"
    if not _copy.exists() or _copy.read_bytes() != _manifest.read_bytes():
        shutil.copyfile(_manifest, _copy)

# Tests that use one of these fixtures are marked without a decorator: `gui` for a napari viewer or Qt,
# `slow` for a dask.distributed cluster of worker processes (test_batch.py).
GUI_FIXTURES = {"make_napari_viewer", "qtbot"}
SLOW_FIXTURES = {"cluster"}


def pytest_collection_modifyitems(items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & GUI_FIXTURES:
            item.add_marker(pytest.mark.gui)
        if names & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _few_threads():
    # The suite runs on 2 cores; more torch threads than cores only adds contention.
    torch.set_num_threads(2)


@pytest.fixture
def cartoon():
    """(noisy, truth): a small piecewise-constant RGB image plus Gaussian noise, float64."""
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 48, 3))
    truth[5:25, 5:30] = (0.8, 0.2, 0.3)
    truth[20:38, 25:45] = (0.2, 0.6, 0.9)
    truth[:, :, :] += np.linspace(0, 0.05, 48)[None, :, None]
    noisy = np.clip(truth + rng.normal(0, 0.06, truth.shape), 0, 1)
    return noisy, truth


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    """A folder that takes no new files: mode 0555, and for root (who writes anywhere) a ``tempfile.mkstemp``
    that refuses there."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):
        real = tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == ro:
                raise PermissionError(13, "Permission denied")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    yield ro
    ro.chmod(0o755)


# ----- napari (imported only by the tests that ask for these) ------------------------------------------
@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def widget(viewer):
    from napari_dip_l0._widget import DipL0Widget

    w = DipL0Widget(viewer, persist=False)
    viewer.window.add_dock_widget(w, name="DIP-ℓ0")
    yield w
    w._shutdown()


@pytest.fixture
def notes():
    """The napari notifications shown while the test runs."""
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)
