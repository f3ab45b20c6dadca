"""The widget on Dask-backed stacks: every plane streamed to a Zarr store, shown as a lazy result layer."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")
da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")


from napari_dip_l0 import DipL0Run  # noqa: E402
from napari_dip_l0._widget import RunState, job  # noqa: E402
from napari_dip_l0._widget.stream import StreamJob  # noqa: E402

TIMEOUT = 120_000


def _stack(planes=4, shape=(24, 28)):
    rng = np.random.default_rng(0)
    img = np.zeros((planes, *shape))
    img[:, 4:16, 5:20] = 1000
    img[:, :, :] += np.arange(planes)[:, None, None] * 50
    return np.clip(img + rng.normal(300, 60, img.shape), 0, None).astype(np.uint16)


class Reads:
    """A dask stack that records which planes each of its chunk reads touches."""

    def __init__(self, stack):
        self.planes = []
        self.array = da.from_array(stack, chunks=(1, *stack.shape[1:])).map_blocks(
            self._record, dtype=stack.dtype, meta=np.empty((0, 0, 0), stack.dtype))

    def _record(self, block, block_info=None):
        self.planes.append(block_info[0]["array-location"][0][0])
        return block


def _start(qtbot, widget, layer, **settings):
    widget.image.value = layer
    widget.planes.value = job.ALL
    for name, value in settings.items():
        getattr(widget, name).value = value
    widget.run()
    assert widget.state is RunState.RUNNING and isinstance(widget._job, StreamJob), widget.status.value
    return widget._job


def _finish(qtbot, widget, worker):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT)
    assert widget.state is RunState.IDLE


def test_all_planes_of_a_dask_layer_stream_into_a_lazy_result(qtbot, viewer, widget):
    stack = _stack()
    reads = Reads(stack)
    layer = viewer.add_image(reads.array, name="lazy", scale=(2.0, 0.5, 0.5), contrast_limits=(0, 2000))
    sel = job.select(layer, job.ALL)
    assert isinstance(sel.data, da.Array)  # not loaded
    widget.iterations.value = 3
    run = _start(qtbot, widget, layer)
    previews = []
    widget.worker.yielded.connect(lambda tick: previews.append(tick))
    _finish(qtbot, widget, run.worker)
    result = viewer.layers[-1]
    assert result.name.startswith("lazy · DIP-ℓ0 λ=") and result.metadata["dip_l0"]["planes_done"] == 4
    assert isinstance(result.data, da.Array)
    assert any("from-zarr" in str(k) or "dip-l0-result" in str(k) for k in result.data.dask)
    np.testing.assert_allclose(result.scale, (2.0, 0.5, 0.5))
    # The same run in memory gives the same planes, bit for bit.
    ref = DipL0Run(stack, lam=widget.lam.value, iterations=3, seed=0, device=widget.device.value).run()
    np.testing.assert_array_equal(np.asarray(result.data), ref)
    # Previews were single planes, never the stack; no layer holds the stack in memory.
    shown = [t.image for t in previews if t.image is not None]
    assert shown and all(img.shape == stack.shape[1:] for img in shown)
    assert not any(isinstance(lay.data, np.ndarray) and lay.data.shape == stack.shape for lay in viewer.layers)
    # No read of more than one plane at a time: every chunk read is one plane's.
    assert set(reads.planes) <= set(range(4))


def test_planes_appear_while_the_run_goes_on_and_stop_keeps_them(qtbot, viewer, widget):
    layer = viewer.add_image(da.from_array(_stack(planes=3), chunks=(1, 24, 28)), name="lazy")
    widget.iterations.value = 300  # later planes take 100 iterations: time to stop in the second
    widget.preview_every.value = 1
    run = _start(qtbot, widget, layer)
    qtbot.waitUntil(lambda: run.store is not None and run.store.written >= 1, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: run.layer_out is not None and run.layer_out in viewer.layers, timeout=TIMEOUT)
    assert "planes done)" in run.layer_out.name
    assert run.preview is None or run.preview.data.shape == (1, 24, 28)
    widget.stop()
    _finish(qtbot, widget, run.worker)
    result = run.layer_out
    done = result.metadata["dip_l0"]["planes_done"]
    assert done >= 1 and result.metadata["dip_l0"]["store"] == "temporary"
    data = np.asarray(result.data)
    assert np.all(data[:done].max(axis=(1, 2)) > 0)  # finished planes kept
    assert done < 3 and "of 3 planes" in result.name and not data[done:].any()  # the rest never written
    assert run.preview is None or run.preview not in viewer.layers


def test_save_result_to_a_path_writes_it_there(qtbot, viewer, widget, tmp_path):
    stack = _stack(planes=2)
    layer = viewer.add_image(stack, name="small", scale=(3.0, 1.0, 1.0))  # numpy, but saved: streamed
    out = tmp_path / "result.ome.zarr"
    widget.iterations.value = 2
    run = _start(qtbot, widget, layer, save_to=str(out))
    _finish(qtbot, widget, run.worker)
    assert out.exists()
    result = viewer.layers[-1]
    try:
        from napari_dip_l0.core.io.ngff import open_image
    except ImportError:
        stored = np.asarray(zarr.open_array(str(out), mode="r"))
    else:
        image = open_image(str(out))
        assert image.axes == "zyx" and image.scale[0] == 3.0
        stored = np.asarray(image.data)
    np.testing.assert_array_equal(stored, np.asarray(result.data))
    assert stored.any()


def test_an_existing_output_is_refused_before_any_work(qtbot, viewer, widget, notes, tmp_path):
    taken = tmp_path / "taken.ome.zarr"
    taken.mkdir()
    (taken / "mine.txt").write_text("not a DIP-l0 output")
    layer = viewer.add_image(da.from_array(_stack(planes=2)), name="lazy")
    widget.image.value = layer
    widget.planes.value = job.ALL
    widget.save_to.value = str(taken)
    widget.run()
    assert widget.state is RunState.IDLE and widget.worker is None
    assert "exists" in widget.status.value and (taken / "mine.txt").exists()


def test_current_plane_of_a_dask_layer_is_not_streamed(qtbot, viewer, widget):
    layer = viewer.add_image(da.from_array(_stack(planes=3)), name="lazy")
    sel = job.select(layer, job.CURRENT, viewer.dims.point)
    assert isinstance(sel.data, np.ndarray) and sel.plane_index is not None
    widget.image.value = layer
    widget.planes.value = job.CURRENT
    widget.iterations.value = 2
    widget.run()
    assert not isinstance(widget._job, StreamJob)
    _finish(qtbot, widget, widget.worker)


def test_an_rgb_dask_stack_streams_as_colour(qtbot, viewer, widget):
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 255, (2, 20, 24, 3), dtype=np.uint8)
    layer = viewer.add_image(da.from_array(stack, chunks=(1, 20, 24, 3)), name="rgb", rgb=True)
    widget.iterations.value = 2
    run = _start(qtbot, widget, layer)
    _finish(qtbot, widget, run.worker)
    result = run.layer_out
    assert result.rgb and isinstance(result.data, da.Array) and result.data.shape == stack.shape
    ref = DipL0Run(stack, lam=widget.lam.value, iterations=2, channel_axis=-1, dtype=np.uint8,
                   device=widget.device.value).run()
    np.testing.assert_array_equal(np.asarray(result.data), ref)


def test_an_rgb_stack_saved_to_a_path(qtbot, viewer, widget, tmp_path):
    """An OME-Zarr holds channels before z (NGFF order); the layer reads them back last, as RGB."""
    stack = np.random.default_rng(2).integers(0, 255, (2, 20, 24, 3), dtype=np.uint8)
    layer = viewer.add_image(da.from_array(stack, chunks=(1, 20, 24, 3)), name="rgb", rgb=True)
    widget.iterations.value = 2
    run = _start(qtbot, widget, layer, save_to=str(tmp_path / "colour.ome.zarr"))
    _finish(qtbot, widget, run.worker)
    assert run.layer_out.rgb and run.layer_out.data.shape == stack.shape
    ref = DipL0Run(stack, lam=widget.lam.value, iterations=2, channel_axis=-1, dtype=np.uint8,
                   device=widget.device.value).run()
    np.testing.assert_array_equal(np.asarray(run.layer_out.data), ref)
