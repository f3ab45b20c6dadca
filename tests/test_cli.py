"""The dip-l0 command line, end to end on small files."""

import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_dip_l0.cli import main


@pytest.fixture
def rgb_png(tmp_path):
    rng = np.random.default_rng(0)
    img = np.zeros((24, 28, 3), np.uint8)
    img[4:20, 6:18] = (200, 40, 60)
    img = np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "in.png"
    iio.imwrite(path, img)
    return path, img


@pytest.fixture
def stack_tif(tmp_path):
    img = (np.random.default_rng(1).random((2, 20, 22)) * 4000).astype(np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, img)
    return path, img


def test_smooth_png(rgb_png, tmp_path, capsys):
    path, img = rgb_png
    out = tmp_path / "out.png"
    assert main(["smooth", str(path), "-o", str(out), "--iterations", "4", "--lam", "0.02", "--quiet"]) == 0
    res = iio.imread(out)
    assert res.shape == img.shape and res.dtype == np.uint8
    np.testing.assert_array_equal(iio.imread(path), img)  # input untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temp file's private 0600


def test_smooth_tif_keeps_dtype_and_saves_every(stack_tif, tmp_path):
    path, img = stack_tif
    out = tmp_path / "out.tif"
    rc = main(["smooth", str(path), "-o", str(out), "--iterations", "4", "--save-every", "2", "--quiet",
               "--l0-solver", "fft", "--seed", "1", "--cold-start"])
    assert rc == 0
    res = tifffile.imread(out)
    assert res.shape == img.shape and res.dtype == np.uint16
    # cold start: planes x iterations = 8 in all: snapshots at 2, 4, 6 (not the final one)
    assert sorted(p.name for p in tmp_path.glob("out_iter*.tif")) == [
        "out_iter00002.tif", "out_iter00004.tif", "out_iter00006.tif"]


def test_deblock_and_l0(rgb_png, tmp_path):
    path, img = rgb_png
    assert main(["deblock", str(path), "-o", str(tmp_path / "d.tif"), "--iterations", "3", "--quiet"]) == 0
    assert tifffile.imread(tmp_path / "d.tif").dtype == np.uint8
    assert main(["l0", str(path), "-o", str(tmp_path / "l.png"), "--lam", "0.05", "--method", "fft"]) == 0
    assert iio.imread(tmp_path / "l.png").shape == img.shape


def test_denoise_reads_lambda_from_the_noise(tmp_path, capsys):
    rng = np.random.default_rng(3)
    clean = np.full((32, 32), 0.1)
    clean[8:24, 8:24] = 1.0
    frame = (100 + 2 * rng.poisson(10 * clean)).astype(np.uint16)
    frame[2, 2] = 4095  # a hot pixel
    tifffile.imwrite(tmp_path / "frame.tif", frame)
    out = tmp_path / "clean.tif"
    assert main(["denoise", str(tmp_path / "frame.tif"), "-o", str(out), "--iterations", "3", "--quiet"]) == 0
    res = tifffile.imread(out)
    # A TIFF holds the float result; a PNG gets it rounded to the frame's levels.
    assert res.dtype == np.float32 and res.shape == frame.shape
    assert frame.min() <= res.min() and res.max() <= frame.max() and np.any(res != np.rint(res))
    assert main(["denoise", str(tmp_path / "frame.tif"), "-o", str(tmp_path / "clean.png"), "--iterations", "3",
                 "--quiet"]) == 0
    png = iio.imread(tmp_path / "clean.png")
    assert png.dtype == np.uint16
    np.testing.assert_allclose(png, res, atol=0.5 + 1e-3)
    from napari_dip_l0 import DipL0Run

    lam = DipL0Run(frame, "denoise", device="cpu").preset.lam
    err = capsys.readouterr().err
    assert err.count(f"λ={lam:.3g} on the shot-noise-stabilised scale") == 2  # the λ the noise gave, and its scale
    assert main(["denoise", str(tmp_path / "frame.tif"), "-o", str(out), "--iterations", "2", "--lam", "auto",
                 "--quiet"]) == 0
    assert main(["denoise", str(tmp_path / "frame.tif"), "-o", str(out), "--iterations", "2", "--lam", "0.01",
                 "--quiet"]) == 0
    assert "λ=0.01" in capsys.readouterr().err


def test_rgba_png_keeps_alpha(tmp_path):
    img = np.random.default_rng(2).integers(0, 255, (16, 16, 4), dtype=np.uint8)
    img[..., 3] = np.arange(16, dtype=np.uint8)[None, :] * 10
    iio.imwrite(tmp_path / "a.png", img)
    assert main(["l0", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--lam", "0.1"]) == 0
    res = iio.imread(tmp_path / "b.png")
    np.testing.assert_array_equal(res[..., 3], img[..., 3])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["smooth", "{missing}", "-o", "{out}"], "not found"),
        (["smooth", "{bad}", "-o", "{out}"], "cannot read"),
        (["smooth", "{txt}", "-o", "{out}"], "unsupported file type"),
        (["smooth", "{png}", "-o", "{png}"], "is the input"),
        (["smooth", "{png}", "-o", "{out_bmp}"], "unsupported file type"),
        (["smooth", "{png}", "-o", "{out}", "--device", "tpu"], "device"),
        (["smooth", "{png}", "-o", "{out}", "--channel-axis", "7"], "out of range"),
        (["l0", "{png}", "-o", "{nodir}", "--lam", "0.1"], "does not exist"),
        (["smooth", "{float_tif}", "-o", "{out}", "--iterations", "1"], "PNG holds uint8"),
    ],
)
def test_errors_are_one_line_exit_2(argv, message, rgb_png, tmp_path, capsys):
    path, _ = rgb_png
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    (tmp_path / "notes.txt").write_text("hello")
    tifffile.imwrite(tmp_path / "f.tif", np.random.default_rng(0).random((8, 8)).astype(np.float32))
    names = dict(missing=tmp_path / "nope.png", bad=tmp_path / "bad.png", txt=tmp_path / "notes.txt", png=path,
                 out=tmp_path / "out.png", out_bmp=tmp_path / "out.bmp", nodir=tmp_path / "no" / "x.png",
                 float_tif=tmp_path / "f.tif")
    before = path.read_bytes()
    rc = main([a.format(**names) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("dip-l0: error:") and message in err[0], err
    assert "Traceback" not in "\n".join(err)
    assert path.read_bytes() == before
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("argv", [["smooth", "x.png", "-o", "y.png", "--lam", "-1"],
                                  ["denoise", "x.png", "-o", "y.png", "--lam", "automatic"],
                                  ["smooth", "x.png", "-o", "y.png", "--iterations", "0"],
                                  ["l0", "x.png", "-o", "y.png"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


@pytest.mark.slow  # the console script in a subprocess
def test_console_script_demo(tmp_path):
    """The installed `dip-l0` command runs the demo on the bundled sample."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    exe = os.path.join(os.path.dirname(sys.executable), "dip-l0")
    res = subprocess.run([exe, "demo", "-o", str(tmp_path), "--size", "64", "--iterations", "5", "--quiet"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "PSNR" in res.stdout
    side = iio.imread(tmp_path / "side_by_side.png")
    assert side.shape == (64, 4 * 64 + 3 * 4, 3)
    for name in ("input.png", "l0_only.png", "dip_l0.png", "ground_truth.png"):
        assert (tmp_path / name).is_file()



def test_big_endian_uint16_writes_to_png(tmp_path):
    from napari_dip_l0.core.io import check_output, write_image

    img = (np.random.default_rng(3).random((16, 18)) * 4000).astype(">u2")  # as some readers return it
    check_output(tmp_path / "out.png", img.shape, img.dtype)
    write_image(tmp_path / "out.png", img)
    out = iio.imread(tmp_path / "out.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, img.astype(np.uint16))


def test_the_progress_bar_keeps_redrawing_after_a_plane_ends_early(capsys):
    # A stopping rule ends a stack's first plane early: its snapshot jumps to the cap. tqdm's default learns
    # its redraw step from that jump, and the 50-iteration warm planes after it never reached it (frozen bar).
    from napari_dip_l0.cli import _progress

    bar = _progress(2150, False, "DIP-ℓ0 denoise")
    bar.update(2000)
    bar.update(1)
    assert bar.miniters == 1 and not bar.dynamic_miniters
    bar.close()


def test_an_interrupted_stack_says_which_planes_it_left_as_they_were():
    from types import SimpleNamespace

    from napari_dip_l0.cli import _unreached

    def snap(plane, planes, done=False):
        return SimpleNamespace(plane=plane, planes=planes, done=done)

    assert _unreached(snap(1, 4)) == " (planes 3-4 of 4 not reached: the input's values)"
    assert _unreached(snap(2, 4)) == " (plane 4 of 4 not reached: the input's values)"
    assert _unreached(snap(3, 4)) == _unreached(snap(0, 1)) == _unreached(snap(0, 3, done=True)) == ""
