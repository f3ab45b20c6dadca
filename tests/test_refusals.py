"""Refusals at the root, for the three classes of issue 30, each member with its test.

1. Front ends that need a resource they did not check: ``dip-l0 gui`` without a display; ``dip-l0 batch``
   without dask.distributed, or with a device its local cluster cannot use.
2. Outputs that can become inputs: a batch writing into the folder it reads resumes.
3. Parameters whose range was checked late or not at all: the seed (torch takes 0 to 2**64 - 1), a
   data_range whose span overflows, a batch's settings (checked on every worker, for every file),
   and the CLI's --workers, --threads-per-task and demo --size.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_dip_l0 import DipL0Run, dip_l0_deblock, dip_l0_denoise, dip_l0_smooth
from napari_dip_l0.batch import LEDGER, BatchOptions, find_inputs, plan
from napari_dip_l0.cli import CLIError, check_display, main
from napari_dip_l0.core.io import write_image
from napari_dip_l0.core.validation import check_data_range, check_seed

IMAGE = np.random.default_rng(0).random((24, 24))


# ----- 1. resources a front end needs -------------------------------------------------------------------
def _headless_env():
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="no display server to miss")
def test_gui_without_a_display_is_one_line_and_status_2():
    res = subprocess.run([sys.executable, "-m", "napari_dip_l0.cli", "gui"], env=_headless_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, (res.returncode, res.stderr)  # not -6 (Qt's abort) with a core dump
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dip-l0: error: no display"), lines


def test_display_check_knows_the_platforms_that_need_none():
    with pytest.raises(CLIError, match="no display"):
        check_display({}, "linux")
    with pytest.raises(CLIError, match="no display"):
        check_display({"QT_QPA_PLATFORM": "xcb"}, "linux")
    check_display({"DISPLAY": ":99"}, "linux")
    check_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    check_display({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    check_display({}, "win32")
    check_display({}, "darwin")


def test_batch_without_distributed_refuses_before_making_the_output_folder(tmp_path, monkeypatch, capsys):
    write_image(tmp_path / "a.png", (IMAGE * 255).astype(np.uint8))
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    assert main(["batch", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert "dask.distributed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_batch_on_a_device_this_machine_lacks_refuses_up_front(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    write_image(tmp_path / "a.png", (IMAGE * 255).astype(np.uint8))
    assert main(["batch", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--device", "cuda", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA is not available" in err[0]
    assert not (tmp_path / "out").exists()
    BatchOptions(device="cuda")  # fine for a remote cluster, whose workers may have it


# ----- 2. outputs that can become inputs ----------------------------------------------------------------
def _tiffs(folder, n=2):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        tifffile.imwrite(folder / f"img{i}.tif", (IMAGE * 200 + i).astype(np.uint8))


def test_batch_into_its_own_input_folder_resumes(tmp_path):
    """``dip-l0 batch DIR -o DIR --format png``: the rerun sees its own results as done, not as new inputs."""
    src = tmp_path / "dir"
    _tiffs(src)
    options = BatchOptions(iterations=1)
    tasks, summary = plan(find_inputs([src]), src, options=options, fmt="png")
    assert [t.output.name for t in tasks] == ["img0.png", "img1.png"] and not summary.skipped
    assert (src / LEDGER).read_text().split() == ["img0.png", "img1.png"]
    write_image(src / "img0.png", (IMAGE * 255).astype(np.uint8))  # the first run wrote one result, then stopped
    inputs = find_inputs([src])
    assert [p.name for p in inputs] == ["img0.png", "img0.tif", "img1.tif"]
    tasks, summary = plan(inputs, src, options=options, fmt="png")  # before: ValueError, would overwrite
    assert [t.input.name for t in tasks] == ["img1.tif"]
    assert [p.name for p in summary.skipped] == ["img0.png"] and not summary.failed


def test_batch_into_its_own_input_folder_end_to_end(tmp_path):
    src = tmp_path / "dir"
    _tiffs(src)
    cmd = [sys.executable, "-m", "napari_dip_l0.cli", "batch", str(src), "-o", str(src), "--format", "png",
           "--iterations", "1", "--workers", "1", "--quiet"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    written = {p.name: p.stat().st_mtime_ns for p in src.glob("*.png")}
    assert sorted(written) == ["img0.png", "img1.png"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "0 written, 2 already there" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in src.glob("*.png")} == written


def test_results_in_another_folder_are_inputs_of_the_next_batch(tmp_path):
    """The ledger only speaks for its own folder as an output folder: a chain A -> B -> C reads B's files."""
    a, b = tmp_path / "a", tmp_path / "b"
    _tiffs(a)
    _tiffs(b)  # as if written by `dip-l0 batch a -o b`, with b also holding inputs of its own earlier run
    (b / LEDGER).write_text("img0.tif\nimg1.tif\n")
    (tmp_path / "c").mkdir()
    tasks, summary = plan(find_inputs([b]), tmp_path / "c", options=BatchOptions(iterations=1))
    assert [t.input.name for t in tasks] == ["img0.tif", "img1.tif"] and not summary.failed


def test_no_ledger_when_outputs_go_elsewhere(tmp_path):
    src = tmp_path / "in"
    _tiffs(src)
    (tmp_path / "out").mkdir()
    tasks, _ = plan(find_inputs([src]), tmp_path / "out", options=BatchOptions(iterations=1))
    assert len(tasks) == 2
    assert not (src / LEDGER).exists() and not (tmp_path / "out" / LEDGER).exists()


# ----- 3. parameter ranges, checked at the call ---------------------------------------------------------
@pytest.mark.parametrize("seed", [2**64, 2**70, -1])
def test_out_of_range_seed_is_refused_at_the_call(seed):
    for call in (lambda: DipL0Run(IMAGE, seed=seed, device="cpu"),
                 lambda: dip_l0_smooth(IMAGE, seed=seed, iterations=1, device="cpu"),
                 lambda: dip_l0_denoise(IMAGE, seed=seed, iterations=1, device="cpu"),
                 lambda: dip_l0_deblock(IMAGE, seed=seed, iterations=1, device="cpu"),
                 lambda: BatchOptions(seed=seed)):
        with pytest.raises(ValueError, match="seed must be an int from 0 to 2\\*\\*64 - 1"):
            call()


def test_largest_seed_runs():
    assert check_seed(np.uint64(2**64 - 1)) == 2**64 - 1
    run = DipL0Run(IMAGE, seed=2**64 - 1, iterations=1, device="cpu")
    assert run.run().shape == IMAGE.shape
    with pytest.raises(TypeError, match="seed must be an int"):
        check_seed(1.0)


def test_data_range_whose_span_overflows_is_refused():
    with pytest.raises(ValueError, match="overflows"):
        check_data_range((-1e308, 1e308))
    with pytest.raises(ValueError, match="overflows"):
        DipL0Run(IMAGE, data_range=(-1e308, 1e308), device="cpu")  # was: a result of zeros


@pytest.mark.parametrize("settings, error, message", [
    ({"mode": "sharpen"}, ValueError, "mode"),
    ({"lam": -1.0}, ValueError, "lam"),
    ({"lam": "strong"}, TypeError, "lam"),
    ({"iterations": 0}, ValueError, "iterations"),
    ({"tile_size": 8}, ValueError, "tile_size"),
    ({"l0_solver": "magic"}, ValueError, "l0_solver|solver"),
    ({"warm_start": "yes"}, TypeError, "warm_start"),
    ({"channel_axis": 1.5}, TypeError, "channel_axis"),
    ({"device": "tpu"}, ValueError, "device"),
    ({"device": 0}, TypeError, "device"),
])
def test_batch_options_are_checked_when_made(settings, error, message):
    """Before, each of these failed on the workers, once per file, after the batch had started."""
    with pytest.raises(error, match=message):
        BatchOptions(**settings)


@pytest.mark.parametrize("argv", [
    ["smooth", "x.png", "-o", "y.png", "--seed", str(2**70)],
    ["batch", "x", "-o", "y", "--seed", str(2**64)],
    ["batch", "x", "-o", "y", "--workers", "100000"],
    ["batch", "x", "-o", "y", "--threads-per-task", str(2**40)],
    ["demo", "--size", "100000"],
    ["demo", "--size", "4"],
])
def test_cli_ranges_are_refused_when_parsed(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: argument" in err and ("expected a number from" in err or "seed must be an int from 0" in err), err
