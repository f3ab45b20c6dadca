"""OME-Zarr and large TIFFs: lazy reading, plane-by-plane writing, resume, refusals, chains on Dask."""

import json
import time

import numpy as np
import pytest
import tifffile

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")
da = pytest.importorskip("dask.array")

from napari_dip_l0 import DipL0Run  # noqa: E402
from napari_dip_l0.batch import BatchOptions  # noqa: E402
from napari_dip_l0.cli import main  # noqa: E402
from napari_dip_l0.core.io.ngff import OmeZarrWriter, open_image  # noqa: E402
from napari_dip_l0.stream import chains, measure, open_output, run_chain, stream  # noqa: E402

ITS = ["--iterations", "2", "--quiet"]


def _stack(shape=(5, 24, 20), seed=0, hot=True):
    """Photon-noise planes of two blobs, uint16, with a hot pixel (the robust scale and defect filling matter)."""
    rng = np.random.default_rng(seed)
    clean = np.zeros(shape)
    clean[..., 4:14, 3:12] = 200
    clean[..., 12:20, 10:18] = 80
    stack = (rng.poisson(clean + 20) + 100).astype(np.uint16)
    if hot:
        stack.reshape(-1, *shape[-2:])[1, 5, 5] = 4000
    return stack


def _ome(path, data, axes, fmt=None, **kwargs):
    from ome_zarr.writer import write_image

    group = zarr.open_group(path, mode="w", zarr_format=2 if fmt is not None and fmt.version == "0.4" else 3)
    write_image(data, group, axes=axes, fmt=fmt, **kwargs)
    return path


# ----- reading -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_read_lazily_with_axes_scale_units_and_levels(tmp_path, version):
    from ome_zarr.format import FormatV04, FormatV05

    data = _stack((2, 3, 24, 20))[:, :, None].repeat(2, axis=2)  # t, c, z... made (t, c, z, y, x) below
    data = np.moveaxis(data, 2, 1)  # (2, 2, 3, 24, 20): t c z y x
    fmt = FormatV04() if version == "0.4" else FormatV05()
    path = _ome(tmp_path / "in.ome.zarr", data, "tczyx", fmt=fmt, scale_factors=[2],
                scale={"t": 4.0, "c": 1.0, "z": 2.5, "y": 0.5, "x": 0.5},
                axes_units={"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"})
    img = open_image(path)
    assert isinstance(img.data, da.Array) and img.axes == "tczyx" and img.channel_axis == 1
    assert img.shape == data.shape and img.dtype == np.uint16 and img.levels == 2 and img.level == 0
    np.testing.assert_array_equal(img.data.compute(), data)
    if version == "0.5":  # (ome-zarr-py writes units and scales in 0.5 only from these arguments)
        assert img.scale == (4.0, 1.0, 2.5, 0.5, 0.5)
        assert img.units == {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"}
    coarse = open_image(path, level=1)
    assert coarse.shape == (2, 2, 3, 12, 10) and coarse.level == 1
    with pytest.raises(ValueError, match="level 2 is not in"):
        open_image(path, level=2)


def test_plain_zarr_needs_axes_and_a_group_needs_ngff(tmp_path):
    arr = zarr.create_array(tmp_path / "plain.zarr", shape=(3, 24, 20), dtype="uint16", chunks=(1, 24, 20))
    arr[:] = _stack((3, 24, 20))
    with pytest.raises(ValueError, match="without OME-Zarr .NGFF. metadata.*axes='zyx'"):
        open_image(tmp_path / "plain.zarr")
    img = open_image(tmp_path / "plain.zarr", axes="zyx")
    assert img.axes == "zyx" and img.scale == (1.0, 1.0, 1.0)
    # Axes given in another order are put in NGFF's, lazily.
    arr2 = zarr.create_array(tmp_path / "yxz.zarr", shape=(24, 20, 3), dtype="uint16", chunks=(24, 20, 1))
    arr2[:] = np.moveaxis(_stack((3, 24, 20)), 0, -1)
    img2 = open_image(tmp_path / "yxz.zarr", axes="yxz")
    assert img2.axes == "zyx"
    np.testing.assert_array_equal(img2.data.compute(), _stack((3, 24, 20)))
    for bad in ("zy", "zyq", "zzx"):
        with pytest.raises(ValueError, match="axes"):
            open_image(tmp_path / "plain.zarr", axes=bad)
    zarr.open_group(tmp_path / "group.zarr", mode="w")
    with pytest.raises(ValueError, match="without OME-Zarr .NGFF. multiscales"):
        open_image(tmp_path / "group.zarr")
    with pytest.raises(FileNotFoundError):
        open_image(tmp_path / "missing.zarr")


def test_tiff_read_through_aszarr_with_imagej_and_ome_metadata(tmp_path):
    stack = _stack((2, 3, 24, 20))
    ij = tmp_path / "ij.tif"
    tifffile.imwrite(ij, stack, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "TZYX", "spacing": 1.5, "unit": "um", "finterval": 3.0})
    img = open_image(ij)
    assert img.axes == "tzyx" and isinstance(img.data, da.Array)
    assert img.scale == pytest.approx((3.0, 1.5, 0.25, 0.25))
    assert img.units["x"] == "micrometer" and img.units["t"] == "second"
    np.testing.assert_array_equal(img.data[1, 2].compute(), stack[1, 2])

    ome = tmp_path / "ome.ome.tif"
    tifffile.imwrite(ome, stack[0], ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2,
                                                          "PhysicalSizeZ": 1.0})
    img = open_image(ome)
    assert img.axes == "zyx" and img.scale == pytest.approx((1.0, 0.2, 0.2))

    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((24, 20, 3), np.uint8), photometric="rgb")
    img = open_image(rgb)
    assert img.axes == "cyx" and img.shape == (3, 24, 20) and img.channel_axis == 0

    unnamed = tmp_path / "unnamed.tif"
    tifffile.imwrite(unnamed, _stack((5, 24, 20)), metadata=None)  # five pages, axes unknown to tifffile
    with pytest.raises(ValueError, match="name them"):
        open_image(unnamed)
    assert open_image(unnamed, axes="zyx").axes == "zyx"


# ----- writing ---------------------------------------------------------------------------------------------
def test_writer_round_trip_axes_scale_dtype_chunks_provenance_pyramid(tmp_path):
    out = tmp_path / "out.ome.zarr"
    shape = (2, 2, 3, 40, 36)
    w = OmeZarrWriter(out, shape=shape, dtype=np.float32, axes="tczyx", scale=(2.0, 1.0, 1.5, 0.5, 0.5),
                      units={"x": "micrometer", "y": "micrometer"}, chunks=(1, 2, 1, 16, 2048), pyramid_levels=2,
                      provenance={"mode": "denoise", "seed": 3})
    rng = np.random.default_rng(1)
    planes = {(t, z): rng.random((40, 36, 2)).astype(np.float32) for t in range(2) for z in range(3)}
    for index, plane in planes.items():
        w.write_plane(index, plane)  # channels last, as DipL0Run's on_plane gives them
    assert w.done() == set(planes) and w.close()
    img = open_image(out)
    assert img.axes == "tczyx" and img.dtype == np.float32 and img.scale == (2.0, 1.0, 1.5, 0.5, 0.5)
    assert img.units == {"x": "micrometer", "y": "micrometer"} and img.levels == 2
    assert zarr.open_array(out / "0").chunks == (1, 2, 1, 16, 36)  # one plane per chunk; y/x as given, capped
    assert img.attrs["dip_l0"]["mode"] == "denoise" and img.attrs["dip_l0"]["complete"] is True
    data = img.data.compute()
    for (t, z), plane in planes.items():
        np.testing.assert_array_equal(data[t, :, z], np.moveaxis(plane, -1, 0))
    coarse = open_image(out, level=1)
    assert coarse.shape == (2, 2, 3, 20, 18) and coarse.scale == (2.0, 1.0, 1.5, 1.0, 1.0)
    expected = data[..., ::2, ::2] + data[..., 1::2, ::2] + data[..., ::2, 1::2] + data[..., 1::2, 1::2]
    np.testing.assert_allclose(coarse.data.compute(), expected / 4, rtol=1e-6)
    meta = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]
    assert meta["version"] == "0.5" and [a["name"] for a in meta["multiscales"][0]["axes"]] == list("tczyx")


def test_writer_refuses_wrong_planes(tmp_path):
    w = OmeZarrWriter(tmp_path / "o.ome.zarr", shape=(2, 8, 8), dtype="uint16", axes="zyx")
    with pytest.raises(IndexError):
        w.write_plane((2,), np.zeros((8, 8), np.uint16))
    with pytest.raises(ValueError, match="does not fit"):
        w.write_plane((0,), np.zeros((8, 9), np.uint16))
    with pytest.raises(TypeError, match="cannot be written"):
        w.write_plane((0,), np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="NGFF order"):
        OmeZarrWriter(tmp_path / "p.ome.zarr", shape=(8, 8, 2), dtype="uint8", axes="yxz")
    assert w.done() == set() and not w.close()


# ----- chains -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["smooth", "denoise"])
def test_one_chain_is_one_run_over_the_stack_bit_for_bit(tmp_path, mode):
    stack = _stack()
    zarr.create_array(tmp_path / "in.zarr", shape=stack.shape, dtype=stack.dtype, chunks=(1, 24, 20))[:] = stack
    img = open_image(tmp_path / "in.zarr", axes="zyx")
    options = BatchOptions(mode=mode, iterations=3)
    writer = open_output(img, tmp_path / "out.ome.zarr", options, chain=5)
    summary = stream(img, writer, measure(img, options), chain=5)
    assert summary.complete and summary.written == 5
    ref = DipL0Run(stack, mode, iterations=3, device="cpu").run()
    out = open_image(tmp_path / "out.ome.zarr")
    assert out.dtype == ref.dtype
    np.testing.assert_array_equal(out.data.compute(), ref)
    assert out.attrs["dip_l0"]["lam"] == pytest.approx(DipL0Run(stack, mode, iterations=3, device="cpu").preset.lam)


def test_chains_share_the_stack_settings(tmp_path):
    """Two chains measure nothing of their own: each plane's run sees the whole stack's range and noise model."""
    stack = _stack((4, 24, 20))
    stack[3] //= 2  # a dim last plane: its own range and noise would differ from the stack's
    img = open_image(_ome(tmp_path / "in.ome.zarr", stack, "zyx", scale_factors=[]))
    options = BatchOptions(mode="denoise", iterations=2)
    settings = measure(img, options)
    got = {}
    run_chain(img, settings, [3], lambda i, p: got.setdefault(i, p))
    ref = DipL0Run(stack, "denoise", iterations=2, device="cpu", warm_start=False)
    full = ref.run()
    assert ref.preset.lam == settings.preset.lam and ref.noise_model == settings.calibration.noise_model
    np.testing.assert_array_equal(got[(3,)], full[3])  # cold start on plane 3, as the cold whole-stack run


def test_chains_stay_within_a_row_and_a_length():
    assert chains(list(range(7)), 3, row=7) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chains([0, 1, 3, 4, 5, 6], 8, row=4) == [[0, 1], [3], [4, 5, 6]]


# ----- resume -----------------------------------------------------------------------------------------------
def test_resume_after_kill_keeps_finished_planes_and_redoes_a_half_written_one(tmp_path):
    stack = _stack((6, 40, 36))
    path = _ome(tmp_path / "in.ome.zarr", stack, "zyx", scale_factors=[], storage_options={"chunks": (1, 20, 18)})
    img = open_image(path)
    options = BatchOptions(mode="smooth", iterations=2)
    out = tmp_path / "out.ome.zarr"
    settings = measure(img, options)
    # A run killed after 2 planes (the writer simply dropped, never closed)...
    w = open_output(img, out, options, chain=3)
    stream(img, w, settings, chain=3, stop=lambda: len(w.done()) >= 2)
    assert w.done() == {(0,), (1,)}
    # ...marked here so that a redone plane would show, and plane 2 cut off mid-write: one chunk of its four.
    for z in (0, 1):
        w._array[z] = 7
    w._array[2, :20, :18] = 9
    del w
    w = open_output(img, out, options, chain=3)
    assert w.done() == {(0,), (1,)}  # the half-written plane is not taken for finished
    summary = stream(img, w, settings, chain=3)
    assert summary.found == 2 and summary.written == 4 and summary.complete
    data = open_image(out).data.compute()
    assert (data[:2] == 7).all()  # kept, not redone
    assert not (data[2, :20, :18] == 9).all()
    # The planes after the cut equal a run of them as one chain from plane 2 (cold there, then warm).
    ref = {}
    run_chain(img, settings, [2], lambda i, p: ref.setdefault(i, p))
    np.testing.assert_array_equal(data[2], ref[(2,)])
    before = (out / "0" / "c" / "0" / "0" / "0").stat().st_mtime_ns
    summary = stream(img, open_output(img, out, options, chain=3), settings, chain=3)  # all done: nothing to do
    assert summary.written == 0 and summary.complete
    assert (out / "0" / "c" / "0" / "0" / "0").stat().st_mtime_ns == before


def test_cli_resume_says_so_and_finishes(tmp_path, capsys):
    stack = _stack((4, 24, 20))
    path = _ome(tmp_path / "in.ome.zarr", stack, "zyx", scale_factors=[])
    out = tmp_path / "out.ome.zarr"
    img = open_image(path)
    options = BatchOptions(mode="denoise", iterations=2, device="auto")
    w = open_output(img, out, options, chain=8)
    w.write_plane((1,), np.zeros((24, 20), np.float32))  # left by an interrupted run of the same command
    assert main(["denoise", str(path), "-o", str(out), *ITS]) == 0
    err = capsys.readouterr().err
    assert "resuming: 1 of 4 planes done" in err and "3 planes written" in err and "4 of 4 done" in err
    data = open_image(out).data.compute()
    assert (data[1] == 0).all() and not (data[[0, 2, 3]] == 0).all()
    assert main(["denoise", str(path), "-o", str(out), *ITS]) == 0
    assert "0 planes written" in capsys.readouterr().err


# ----- refusals ---------------------------------------------------------------------------------------------
def _one_line_exit_2(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err
    return err[0]


def test_cli_refusals_are_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    stack = _stack((3, 24, 20))
    zarr.create_array(tmp_path / "plain.zarr", shape=stack.shape, dtype=stack.dtype, chunks=(1, 24, 20))[:] = stack
    ome = _ome(tmp_path / "in.ome.zarr", stack, "zyx", scale_factors=[])
    from napari_dip_l0 import stream as stream_mod

    monkeypatch.setattr(stream_mod, "measure", lambda *a, **k: pytest.fail("worked before refusing"))
    _one_line_exit_2(["denoise", str(tmp_path / "plain.zarr"), "-o", str(tmp_path / "o.ome.zarr"), *ITS], capsys,
                     "without OME-Zarr", "--axes zyx")
    other = tmp_path / "mine.ome.zarr"
    other.mkdir()
    (other / "notes.txt").write_text("somebody's data")
    _one_line_exit_2(["smooth", str(ome), "-o", str(other), *ITS], capsys, "not a DIP-ℓ0 OME-Zarr output")
    assert (other / "notes.txt").read_text() == "somebody's data"
    _one_line_exit_2(["smooth", str(ome), "-o", str(ome), *ITS], capsys, "is the input")
    _one_line_exit_2(["smooth", str(ome), "-o", str(tmp_path / "o.tif"), *ITS], capsys, "name the output with .zarr")
    _one_line_exit_2(["deblock", str(ome), "-o", str(tmp_path / "o.ome.zarr"), "--quiet"], capsys, "JPEG")
    _one_line_exit_2(["batch", str(ome), "-o", str(tmp_path / "o.ome.zarr"), "--split-planes", *ITS], capsys,
                     "--split-planes")
    # An output of another shape, or written with other settings, is not resumed into.
    img = open_image(ome)
    OmeZarrWriter(tmp_path / "small.ome.zarr", shape=(2, 24, 20), dtype="uint16", axes="zyx",
                  provenance={"mode": "smooth"})
    _one_line_exit_2(["smooth", str(ome), "-o", str(tmp_path / "small.ome.zarr"), *ITS], capsys, "holds another result")
    open_output(img, tmp_path / "lam.ome.zarr", BatchOptions(lam=0.05, iterations=2, device="auto"), 8)
    _one_line_exit_2(["smooth", str(ome), "-o", str(tmp_path / "lam.ome.zarr"), *ITS], capsys, "other settings",
                     "lam_given")
    assert not (tmp_path / "o.ome.zarr").exists()


def test_read_only_location_refused_before_any_work(tmp_path, capsys, read_only_dir):
    ome = _ome(tmp_path / "in.ome.zarr", _stack((2, 24, 20)), "zyx", scale_factors=[])
    _one_line_exit_2(["smooth", str(ome), "-o", str(read_only_dir / "o.ome.zarr"), *ITS], capsys, "cannot write to")
    assert list(read_only_dir.iterdir()) == []


# ----- Dask ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_batch_chains_on_a_cluster_match_the_same_chains_in_process(cluster, tmp_path, capsys):
    stack = _stack((2, 3, 24, 20))
    ome = _ome(tmp_path / "in.ome.zarr", stack, "tzyx", scale_factors=[2], scale={"t": 2.0, "z": 1.0, "y": 0.4, "x": 0.4})
    out = tmp_path / "out.ome.zarr"
    argv = ["batch", str(ome), "-o", str(out), "--mode", "denoise", "--chain", "2", "--threads-per-task", "1",
            "--l0-solver", "fft"]
    assert main([*argv, "--scheduler", cluster.scheduler_address, *ITS]) == 0
    err = capsys.readouterr().err
    assert "6 planes written" in err and "6 of 6 done" in err
    img = open_image(out)
    assert img.axes == "tzyx" and img.scale == (2.0, 1.0, 0.4, 0.4) and img.levels == 2
    assert img.attrs["dip_l0"]["chain"] == 2 and img.attrs["dip_l0"]["complete"]
    # The same chains run here, one after the other, give the same planes (torch on one thread, as there).
    import torch

    torch.set_num_threads(1)
    local = tmp_path / "local.ome.zarr"
    assert main(["denoise", str(ome), "-o", str(local), "--chain", "2", "--device", "cpu", "--l0-solver", "fft",
                 *ITS]) == 0
    np.testing.assert_array_equal(img.data.compute(), open_image(local).data.compute())
    # A rerun finds everything done.
    assert main([*argv, "--scheduler", cluster.scheduler_address, *ITS]) == 0
    assert "0 planes written" in capsys.readouterr().err


# ----- napari --------------------------------------------------------------------------------------------
def test_output_opens_in_napari_with_its_axes_and_scale(make_napari_viewer, tmp_path):
    pytest.importorskip("napari_ome_zarr")
    stack = _stack((2, 24, 20))
    ome = _ome(tmp_path / "in.ome.zarr", stack, "zyx", scale_factors=[], scale={"z": 2.0, "y": 0.5, "x": 0.5},
               axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"})
    out = tmp_path / "out.ome.zarr"
    assert main(["smooth", str(ome), "-o", str(out), *ITS]) == 0
    viewer = make_napari_viewer()
    layers = viewer.open(str(out), plugin="napari-ome-zarr")
    assert len(layers) == 1
    layer = layers[0]
    assert tuple(layer.scale) == (2.0, 0.5, 0.5)
    assert viewer.dims.axis_labels == ("z", "y", "x")
    assert isinstance(layer.data, da.Array) or isinstance(layer.data[0], da.Array)  # lazy, not loaded


def test_stopped_chains_end_within_an_iteration_and_keep_their_planes(cluster, tmp_path):
    from napari_dip_l0.stream import run_chains, todo

    stack = np.tile(_stack((8, 24, 20)), (1, 3, 3))  # planes long enough (a second or so) to stop mid-run
    img = open_image(_ome(tmp_path / "in.ome.zarr", stack, "zyx", scale_factors=[]))
    options = BatchOptions(mode="smooth", iterations=300, l0_solver="fft")
    writer = open_output(img, tmp_path / "out.ome.zarr", options, chain=4)
    settings = measure(img, options)
    for done, summary in run_chains(img, writer, settings, chain=4, scheduler=cluster.scheduler_address,
                                    threads_per_task=1, stop=lambda: len(writer.done()) >= 1, poll=0.2):
        pass
    assert summary.interrupted and not summary.complete
    kept = writer.done()
    assert 1 <= len(kept) < 8 and summary.found + summary.written == len(kept)
    time.sleep(2)
    assert writer.done() == kept  # nothing still running on the workers after the return
    missing, found = todo(open_output(img, tmp_path / "out.ome.zarr", options, chain=4), img)  # what a rerun does
    assert found == len(kept) and len(missing) == 8 - len(kept)
