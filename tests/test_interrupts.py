"""Ctrl-C at random moments to a real `dip-l0` process: exit 130, one line, no traceback, nothing half-written.

Each test starts the console script in its own process group and sends
SIGINT to the whole group (as a terminal's Ctrl-C does) after a random
delay drawn across the command's run, including inside the ℓ0 (Region
Fusion, numba) step. Afterwards the output is either absent (or the
previous file, unchanged) or complete and valid, no temporary file is left,
and no input changed. The delays are drawn from a seeded generator; the
seed is in the failure message (set DIP_L0_SIGNAL_SEED to replay).
"""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from napari_dip_l0.core.io import describe, read, write_image

EXE = os.path.join(os.path.dirname(sys.executable), "dip-l0")
SEED = int(os.environ.get("DIP_L0_SIGNAL_SEED", random.SystemRandom().randrange(2**32)))
ENV = dict(os.environ, PYTHONWARNINGS="ignore")

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"), pytest.mark.slow]


@pytest.fixture(scope="module")
def startup():
    """Seconds for the console script to start (imports): the window before a command runs at all."""
    t0 = time.perf_counter()
    subprocess.run([EXE, "--version"], capture_output=True, env=ENV, check=True, timeout=120)
    return time.perf_counter() - t0


def _interrupt(argv, delay):
    """Run ``dip-l0 argv``, SIGINT its process group after ``delay`` s; (returncode, stderr, signalled)."""
    proc = subprocess.Popen([EXE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    signalled = proc.poll() is None
    if signalled:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err, signalled


def _check_exit(code, err, signalled, what):
    assert "Traceback" not in err and "Error" not in err.replace("error:", ""), (what, err)
    if signalled and code != 0:
        assert code == 130, (what, code, err)
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("dip-l0:")]
        assert len(lines) == 1 and "interrupted" in lines[0], (what, err)
    else:  # it finished before the signal was sent, or the signal came while it was exiting after its write
        assert code == 0 and err.strip().splitlines()[-1].startswith("wrote "), (what, code, err)


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_l0_interrupted_inside_region_fusion_leaves_the_previous_file(tmp_path, startup):
    """`dip-l0 l0` on a large image: Ctrl-C inside the numba step ends it at once, the old output untouched."""
    rng = random.Random(SEED)
    img = np.random.default_rng(0).integers(0, 255, (1536, 1536, 3), dtype=np.uint8)
    src = write_image(tmp_path / "big.png", img)
    out = tmp_path / "out.png"
    previous = np.full((8, 8, 3), 42, np.uint8)
    for k in range(3):
        write_image(out, previous)
        before = out.read_bytes()
        delay = startup + rng.uniform(0.2, 4.0)
        t0 = time.perf_counter()
        code, err, signalled = _interrupt(["l0", str(src), "-o", str(out), "--lam", "0.05"], delay)
        what = f"seed {SEED}, try {k}, delay {delay:.2f} s"
        _check_exit(code, err, signalled, what)
        if signalled:
            assert time.perf_counter() - t0 < delay + 10, what  # no waiting for the solver to finish
            if out.read_bytes() != before:  # the signal came after the write: then it is complete
                assert read(describe(out)).shape == img.shape, what
        assert _no_temp_files(tmp_path) == [], what
        assert src.read_bytes() == write_image(tmp_path / "ref.png", img).read_bytes()


def test_smooth_interrupted_writes_a_complete_estimate_or_nothing(tmp_path, startup):
    rng = random.Random(SEED + 1)
    img = np.zeros((96, 96, 3), np.uint8)
    img[20:70, 30:80] = (200, 90, 40)
    img = np.clip(img + np.random.default_rng(1).integers(0, 30, img.shape), 0, 255).astype(np.uint8)
    src = write_image(tmp_path / "in.png", img)
    src_bytes = src.read_bytes()
    for k in range(3):
        out = tmp_path / f"out{k}.png"
        delay = startup + rng.uniform(0.0, 6.0)
        code, err, signalled = _interrupt(["smooth", str(src), "-o", str(out), "--iterations", "3", "--quiet",
                                           "--save-every", "1", "--device", "cpu"], delay)
        what = f"seed {SEED}, try {k}, delay {delay:.2f} s"
        _check_exit(code, err, signalled, what)
        # Complete and valid, or absent (a signal before the first write leaves no file at all).
        for path in [p for p in [out, *tmp_path.glob(f"out{k}_iter*.png")] if p.exists()]:
            res = read(describe(path))
            assert res.shape == img.shape and res.dtype == img.dtype, what
        if "wrote the estimate so far" in err:
            assert out.exists(), what
        assert _no_temp_files(tmp_path) == [], what
        assert src.read_bytes() == src_bytes


def test_batch_interrupted_by_group_ctrl_c(tmp_path, startup):
    """Ctrl-C to the whole process group (client and dask workers): no worker tracebacks, a true count."""
    rng = random.Random(SEED + 2)
    src = tmp_path / "in"
    src.mkdir()
    base = np.random.default_rng(2).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    for i in range(5):
        write_image(src / f"im{i}.png", np.roll(base, i, axis=0))
    out = tmp_path / "out"
    delay = startup + rng.uniform(2.0, 12.0)
    code, err, signalled = _interrupt(["batch", str(src), "-o", str(out), "--workers", "2", "--iterations", "20",
                                       "--quiet"], delay)
    what = f"seed {SEED}, delay {delay:.2f} s"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, (what, err)
    written = sorted(p.name for p in out.glob("*.png")) if out.exists() else []
    if signalled and code != 0:
        assert code == 130, (what, code, err)
        assert f"{len(written)} written" in err, (what, written, err)
    else:  # finished before the signal, or it came while the process was exiting
        assert code == 0 and len(written) == 5 and "5 written" in err, (what, err)
    for name in written:
        assert read(describe(out / name)).shape == base.shape, what
    if out.exists():
        assert _no_temp_files(out) == [], what
