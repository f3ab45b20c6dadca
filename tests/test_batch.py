"""`dip-l0 batch` on dask.distributed: a 2-worker LocalCluster, a corrupt file, resume."""

import os

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_dip_l0 import DipL0Run
from napari_dip_l0.batch import BatchOptions, Task, find_inputs, plan, process_file
from napari_dip_l0.cli import main

distributed = pytest.importorskip("distributed")

ITS = ["--iterations", "3", "--quiet"]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    images = {}
    for i in range(2):
        img = np.zeros((32, 36, 3), np.uint8)
        img[6:20, 8:30] = (200, 60, 30)
        images[f"rgb{i}.png"] = np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)
        iio.imwrite(src / f"rgb{i}.png", images[f"rgb{i}.png"])
    stack = (rng.random((3, 30, 34)) * 3000 + 500).astype(np.uint16)
    tifffile.imwrite(src / "stack.tif", stack)
    images["stack.tif"] = stack
    (src / "broken.tif").write_bytes(b"II*\x00" + b"not really a tiff" * 20)
    (src / "notes.txt").write_text("not an image: ignored when a folder is given")
    return src, images


def _read(path):
    return tifffile.imread(path) if path.suffix == ".tif" else iio.imread(path)


def test_batch_on_two_workers_reports_corrupt_file_and_resumes(cluster, inputs, tmp_path, capsys):
    src, images = inputs
    out = tmp_path / "out"
    code = main(["batch", str(src), "-o", str(out), "--scheduler", cluster.scheduler_address, *ITS])
    err = capsys.readouterr().err
    assert code == 1  # some input failed
    assert "broken.tif" in err and "cannot read" in err and "3 written" in err and "1 failed" in err
    for name, img in images.items():
        res = _read(out / name)
        assert res.shape == img.shape and res.dtype == img.dtype
        np.testing.assert_array_equal(_read(src / name), img)  # inputs untouched
    assert not (out / "broken.tif").exists()
    assert sorted(p.name for p in out.iterdir()) == ["rgb0.png", "rgb1.png", "stack.tif"]  # no temporary files

    # Resume: outputs already written are skipped; a missing one is redone.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "rgb1.png").unlink()
    code = main(["batch", str(src), "-o", str(out), "--scheduler", cluster.scheduler_address, *ITS])
    err = capsys.readouterr().err
    assert code == 1 and "1 written, 2 already there" in err
    assert (out / "rgb0.png").stat().st_mtime_ns == before["rgb0.png"]
    assert (out / "stack.tif").stat().st_mtime_ns == before["stack.tif"]
    assert (out / "rgb1.png").exists()


def test_batch_split_planes_resumes_from_finished_planes(cluster, inputs, tmp_path, capsys):
    src, images = inputs
    out = tmp_path / "out"
    stack = images["stack.tif"]
    options = BatchOptions(iterations=3)
    # An interrupted earlier run left plane 1 finished (a marker value shows it is reused, not redone).
    out.mkdir()
    tasks, summary = plan([src / "stack.tif"], out, options=options, split_planes=True)
    assert [t.plane for t in tasks] == [0, 1, 2] and not summary.failed
    marker = np.full((30, 34, 1), 1234, np.uint16)
    parts = tasks[1].part.parent
    parts.mkdir(parents=True)
    np.save(tasks[1].part, marker)
    code = main(["batch", str(src / "stack.tif"), "-o", str(out), "--split-planes",
                 "--scheduler", cluster.scheduler_address, *ITS])
    assert code == 0, capsys.readouterr().err
    res = tifffile.imread(out / "stack.tif")
    assert res.shape == stack.shape and res.dtype == stack.dtype
    np.testing.assert_array_equal(res[1], marker[..., 0])
    assert not parts.exists()  # parts are removed once the stack is assembled
    # The other planes are cold DIP-ℓ0 runs on the stack's intensity range (bit-identical only at equal
    # thread counts: the workers run single-threaded).
    first = DipL0Run(stack[0], iterations=3, device="cpu", data_range=(stack.min(), stack.max())).run()
    assert np.abs(res[0].astype(float) - first).mean() < 0.01 * np.ptp(stack)


def test_plane_task_equals_the_plane_run_on_the_stack_range(inputs, tmp_path):
    src, images = inputs
    stack = images["stack.tif"]
    (tmp_path / "out").mkdir()
    tasks, _ = plan([src / "stack.tif"], tmp_path / "out", options=BatchOptions(iterations=3), split_planes=True)
    assert process_file(tasks[2], BatchOptions(iterations=3))["status"] == "done"
    plane = DipL0Run(stack[2], iterations=3, device="cpu", data_range=(stack.min(), stack.max())).run()
    np.testing.assert_array_equal(np.load(tasks[2].part)[..., 0], plane)


@pytest.mark.slow  # starts a dask LocalCluster
def test_batch_default_local_cluster(inputs, tmp_path, capsys):
    src, images = inputs
    out = tmp_path / "out"
    code = main(["batch", str(src / "rgb0.png"), str(src / "rgb1.png"), "-o", str(out), "--workers", "2",
                 "--format", "tif", *ITS])
    assert code == 0, capsys.readouterr().err
    for name in ("rgb0", "rgb1"):
        assert tifffile.imread(out / f"{name}.tif").shape == images[f"{name}.png"].shape


def test_process_file_in_process_matches_api(inputs, tmp_path):
    src, images = inputs
    out = tmp_path / "o.png"
    result = process_file(Task(src / "rgb0.png", out), BatchOptions(iterations=3))
    assert result["status"] == "done" and result["planes"] == 1
    np.testing.assert_array_equal(iio.imread(out), DipL0Run(images["rgb0.png"], iterations=3, channel_axis=-1,
                                                            device="cpu").run())
    bad = process_file(Task(src / "broken.tif", tmp_path / "b.tif"), BatchOptions(iterations=3))
    assert bad["status"] == "failed" and "cannot read" in bad["message"]


def test_denoise_writes_the_float_result_where_the_file_holds_it(inputs, tmp_path):
    src, images = inputs
    options = BatchOptions(mode="denoise", iterations=3)
    assert process_file(Task(src / "stack.tif", tmp_path / "s.tif"), options)["status"] == "done"
    res = tifffile.imread(tmp_path / "s.tif")
    assert res.dtype == np.float32
    np.testing.assert_array_equal(res, DipL0Run(images["stack.tif"], "denoise", iterations=3, device="cpu").run())
    # One plane of a split stack: the same dtype, on the stack's range.
    tasks, _ = plan([src / "stack.tif"], tmp_path, options=options, split_planes=True)
    assert process_file(tasks[1], options)["status"] == "done"
    assert np.load(tasks[1].part).dtype == np.float32
    # A PNG holds integers only: the result is rounded to the input's levels.
    assert process_file(Task(src / "rgb0.png", tmp_path / "r.png"), options)["status"] == "done"
    assert iio.imread(tmp_path / "r.png").dtype == np.uint8


def test_deblocking_a_jpeg_input_uses_its_file(tmp_path):
    import torch
    from PIL import Image
    from skimage import data

    from napari_dip_l0.core.jpeg import read_jpeg_constraint

    path = tmp_path / "photo.jpg"
    Image.fromarray(data.astronaut()[100:140, 120:168]).save(path, quality=10)
    pixels = iio.imread(path)
    options = BatchOptions(mode="deblock", iterations=4)
    assert process_file(Task(path, tmp_path / "o.png"), options)["status"] == "done"
    result = iio.imread(tmp_path / "o.png")
    np.testing.assert_array_equal(result, DipL0Run(pixels, "deblock", iterations=4, channel_axis=-1, device="cpu",
                                                   jpeg=path).run())
    rgb = np.ascontiguousarray(result.transpose(2, 0, 1), np.float64)[None] / 255
    assert read_jpeg_constraint(path).violation(torch.from_numpy(rgb)).max() < 0.06
    # Smoothing a JPEG input never uses the file.
    assert process_file(Task(path, tmp_path / "s.png"), BatchOptions(iterations=2))["status"] == "done"
    np.testing.assert_array_equal(iio.imread(tmp_path / "s.png"),
                                  DipL0Run(pixels, iterations=2, channel_axis=-1, device="cpu").run())


def test_batch_input_errors(inputs, tmp_path, capsys):
    src, _ = inputs
    assert [p.name for p in find_inputs([src])] == ["broken.tif", "rgb0.png", "rgb1.png", "stack.tif"]
    assert main(["batch", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), *ITS]) == 2
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    iio.imwrite(tmp_path / "other" / "rgb0.png", np.zeros((8, 8), np.uint8))
    assert main(["batch", str(src / "rgb0.png"), str(tmp_path / "other" / "rgb0.png"), "-o", str(tmp_path / "o"),
                 *ITS]) == 2
    assert "would both be written" in capsys.readouterr().err
    assert main(["batch", str(src), "-o", str(src), *ITS]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert main(["batch", str(src), "-o", str(tmp_path / "o"), "--workers", "2", "--scheduler", "tcp://x:1",
                 *ITS]) == 2
    assert os.path.isdir(tmp_path / "o") is False or not os.listdir(tmp_path / "o")


@pytest.mark.slow  # the CLI in a subprocess, with its cluster
def test_batch_interrupted_then_resumed(inputs, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    src, images = inputs
    files = [str(src / n) for n in ("rgb0.png", "rgb1.png")]
    for i in range(2, 5):  # more files, so the run is still busy when interrupted
        iio.imwrite(src / f"rgb{i}.png", images["rgb0.png"][::-1])
        files.append(str(src / f"rgb{i}.png"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "napari_dip_l0.cli", "batch", *files, "-o", str(out), "--workers", "1",
           "--iterations", "15", "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out.is_dir() and any(p.suffix == ".png" for p in out.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "batch ended before writing anything"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert 1 <= len(written) < 5
    rc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    assert f"{len(written)} already there" in rc.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"rgb{i}.png" for i in range(5)]
    for name, mtime in written.items():
        assert (out / name).stat().st_mtime_ns == mtime  # not redone


def test_batch_refuses_at_planning_time_and_passes_its_options(inputs, tmp_path, capsys, monkeypatch):
    """Outputs that cannot hold an input are refused when the batch is planned, before any task runs."""
    import napari_dip_l0.batch as batch
    from napari_dip_l0.core.io import write_image

    src, _ = inputs
    write_image(src / "rgba.png", np.zeros((16, 16, 4), np.uint8))
    seen = {}

    def run_batch(tasks, options, summary, **kwargs):
        seen["tasks"] = sorted(t.input.name for t in tasks)
        seen["options"] = options
        return iter(())

    monkeypatch.setattr(batch, "run_batch", run_batch)
    out = tmp_path / "out"
    code = main(["batch", str(src), "-o", str(out), "--format", "jpg", "--cold-start", "--l0-solver", "fft", *ITS])
    err = capsys.readouterr().err
    assert code == 1
    assert seen["tasks"] == ["rgb0.png", "rgb1.png"]
    assert seen["options"].warm_start is False and seen["options"].l0_solver == "fft"
    assert "broken.tif: cannot read" in err
    assert "stack.tif: cannot write" in err and "JPEG holds uint8, not uint16" in err
    assert "rgba.png: cannot write" in err and "no alpha" in err
    assert "3 failed" in err and ".dip-l0" not in err
    assert not out.exists() or not [p for p in out.iterdir() if p.name != ".dip-l0-parts"]

