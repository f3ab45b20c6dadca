"""The JPEG quantisation constraint: reading files, the projection, and runs that use it."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data

from napari_dip_l0 import DipL0Run
from napari_dip_l0.core.jpeg import read_jpeg_constraint


def _save(tmp_path, img, name, **kwargs):
    path = tmp_path / name
    Image.fromarray(img).save(path, **{"quality": 10, **kwargs})
    return path


def _tensor(img):
    arr = img[..., None] if img.ndim == 2 else img
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), np.float64) / 255)[None]


@pytest.mark.parametrize("subsampling, factors", [(0, (1, 1)), (1, (1, 2)), (2, (2, 2))])
@pytest.mark.parametrize("shape", [(48, 64), (37, 53)])  # whole MCUs, and sides that are not multiples of 8 or 16
def test_colour_files_original_inside_decoded_outside_projected_inside(tmp_path, subsampling, factors, shape):
    original = data.astronaut()[100 : 100 + shape[0], 120 : 120 + shape[1]]
    path = _save(tmp_path, original, "q10.jpg", subsampling=subsampling)
    qcs = read_jpeg_constraint(path)
    assert qcs.shape == shape and qcs.channels == 3 and qcs.factors == [(1, 1), factors, factors]
    decoded = np.asarray(Image.open(path).convert("RGB"))
    # The true image is inside the box (up to the encoder's integer colour conversion) ...
    assert qcs.violation(_tensor(original)).max() < 0.03
    # ... the decoded one need not be (decoders clip to 0-255), and projection puts it back.
    projected = qcs.project(_tensor(decoded))
    assert projected.shape == (1, 3, *shape) and 0 <= projected.min() and projected.max() <= 1
    assert qcs.violation(projected).max() < 0.06
    assert qcs.violation(projected).max() <= qcs.violation(_tensor(decoded)).max()
    np.testing.assert_allclose(qcs.project(projected), projected, atol=2e-3)  # nearly idempotent


def test_greyscale_and_progressive_files(tmp_path):
    grey = data.camera()[:50, :70]
    qcs = read_jpeg_constraint(_save(tmp_path, grey, "grey.jpg"))
    assert qcs.channels == 1 and qcs.shape == (50, 70)
    assert qcs.violation(_tensor(grey)).max() < 0.03
    prog = read_jpeg_constraint(_save(tmp_path, data.astronaut()[:64, :64], "prog.jpg", progressive=True))
    assert prog.channels == 3 and prog.shape == (64, 64)


def test_unsupported_files_are_refused_in_one_line(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(data.astronaut()[:32, :32]).convert("CMYK").save(cmyk, quality=50)
    with pytest.raises(ValueError, match="colour space"):
        read_jpeg_constraint(cmyk)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(ValueError, match="cannot read"):
        read_jpeg_constraint(broken)
    with pytest.raises(FileNotFoundError):
        read_jpeg_constraint(tmp_path / "missing.jpg")


def test_run_with_the_file_is_consistent_with_it(tmp_path):
    original = data.astronaut()[80:128, 100:164]
    path = _save(tmp_path, original, "q10.jpg", subsampling=2)
    decoded = np.asarray(Image.open(path).convert("RGB"))
    run = DipL0Run(decoded, "deblock", iterations=6, channel_axis=-1, jpeg=path)
    assert run.tile_size >= 64
    result = run.run()
    assert result.dtype == np.uint8 and result.shape == decoded.shape
    # Re-encoding the estimate finds every coefficient inside its interval (up to rounding to 8 bits), and
    # inside the narrower box the preset projects onto.
    assert read_jpeg_constraint(path).violation(_tensor(result)).max() < 0.06
    assert read_jpeg_constraint(path).violation(_tensor(result), box=run.preset.jpeg_box).max() < 0.06
    assert run.preset.jpeg_box < 1


def test_run_refuses_an_image_that_is_not_the_files(tmp_path):
    path = _save(tmp_path, data.astronaut()[:48, :64], "q10.jpg")
    decoded = np.asarray(Image.open(path).convert("RGB"))
    with pytest.raises(ValueError, match="48×64"):
        DipL0Run(decoded[:40], "deblock", channel_axis=-1, jpeg=path)
    with pytest.raises(ValueError, match="channel_axis"):
        DipL0Run(decoded, "deblock", jpeg=path)
    with pytest.raises(ValueError, match="data_range"):
        DipL0Run(decoded, "deblock", channel_axis=-1, jpeg=path, data_range=(0, 1))


# ----- the paths in: command line, API, napari (the widget's test is in test_widget.py) -------------------
def test_cli_deblock_uses_the_file_by_default_and_pixels_only_opts_out(tmp_path, capsys):
    from napari_dip_l0.cli import main

    path = _save(tmp_path, data.astronaut()[90:130, 110:166], "photo.jpg", subsampling=2)
    qcs = read_jpeg_constraint(path)
    out = tmp_path / "file.png"
    assert main(["deblock", str(path), "-o", str(out), "--iterations", "4", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "using the quantisation tables of photo.jpg" in err and "--pixels-only" in err
    assert qcs.violation(_tensor(np.asarray(Image.open(out)))).max() < 0.06
    plain = tmp_path / "pixels.png"
    assert main(["deblock", str(path), "-o", str(plain), "--iterations", "4", "--quiet", "--pixels-only"]) == 0
    assert "quantisation" not in capsys.readouterr().err
    assert qcs.violation(_tensor(np.asarray(Image.open(plain)))).max() > 0.1  # the pixel-only run leaves the file's set


def test_cli_falls_back_to_the_pixels_in_one_line(tmp_path, capsys):
    from napari_dip_l0.cli import main

    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(data.astronaut()[:32, :32]).convert("CMYK").save(cmyk, quality=50)
    assert main(["deblock", str(cmyk), "-o", str(tmp_path / "out.png"), "--iterations", "2", "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "colour space" in notes[0] and "pixels alone" in notes[0]
    # A bad setting stays an error (exit 2), not a fallback.
    rgb = _save(tmp_path, data.astronaut()[:32, :32], "rgb.jpg")
    assert main(["deblock", str(rgb), "-o", str(tmp_path / "o.png"), "--device", "nope", "--quiet"]) == 2
    assert "note:" not in capsys.readouterr().err


def test_api_takes_a_jpeg_path_or_names_the_file(tmp_path):
    from napari_dip_l0 import dip_l0_deblock

    path = _save(tmp_path, data.astronaut()[60:100, 40:88], "q10.jpg", subsampling=1)
    decoded = np.asarray(Image.open(path).convert("RGB"))
    fast = dict(iterations=4, device="cpu")
    from_path = dip_l0_deblock(path, **fast)
    assert from_path.dtype == np.uint8 and from_path.shape == decoded.shape
    assert read_jpeg_constraint(path).violation(_tensor(from_path)).max() < 0.06
    # The same run as decoded pixels plus the file named explicitly.
    np.testing.assert_array_equal(dip_l0_deblock(decoded, channel_axis=-1, jpeg=str(path), **fast), from_path)
    pixels_only = dip_l0_deblock(path, jpeg=False, **fast)
    np.testing.assert_array_equal(pixels_only, dip_l0_deblock(decoded, channel_axis=-1, jpeg=False, **fast))
    assert not np.array_equal(pixels_only, from_path)
    # With no file named, decoded pixels are deblocked within the quantisation they show (tests/test_jpeg_history.py).
    assert not np.array_equal(dip_l0_deblock(decoded, channel_axis=-1, **fast), pixels_only)


def test_api_greyscale_progressive_file_with_odd_sides(tmp_path):
    from napari_dip_l0 import dip_l0_deblock

    path = _save(tmp_path, data.camera()[100:141, 200:259], "grey.jpg", progressive=True)
    out = dip_l0_deblock(str(path), iterations=4, device="cpu")
    assert out.shape == (41, 59) and out.dtype == np.uint8
    assert read_jpeg_constraint(path).violation(_tensor(out)).max() < 0.06


def test_api_refuses_bad_jpeg_arguments_before_work(tmp_path):
    from napari_dip_l0 import dip_l0_deblock

    png = tmp_path / "x.png"
    Image.fromarray(data.camera()[:16, :16]).save(png)
    with pytest.raises(ValueError, match="JPEG files"):
        dip_l0_deblock(png)
    with pytest.raises(FileNotFoundError):
        dip_l0_deblock(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="jpeg=True"):
        dip_l0_deblock(np.zeros((16, 16)), jpeg=True)
    with pytest.raises(TypeError, match="jpeg must be"):
        dip_l0_deblock(np.zeros((16, 16)), jpeg=3)
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(data.astronaut()[:32, :32]).convert("CMYK").save(cmyk, quality=50)
    with pytest.raises(ValueError, match="colour space"):
        dip_l0_deblock(cmyk)
    assert dip_l0_deblock(cmyk, jpeg=False, iterations=2, device="cpu").shape == (32, 32, 3)


# ----- what the file adds: the projection, its box, and λ with the file ------------------------------------
@pytest.fixture(scope="module")
def grey_file(tmp_path_factory):
    path = _save(tmp_path_factory.mktemp("grey"), data.camera()[200:232, 240:288], "grey.jpg")
    return read_jpeg_constraint(path), data.camera()[200:232, 240:288]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), spread=st.floats(0.0, 0.5))
def test_projection_never_moves_two_images_apart(grey_file, seed, spread):
    # Block DCT, clip to the box and clip to [0, 1] are projections onto convex sets in an orthonormal
    # basis (greyscale, whole blocks): their composition is non-expansive. With the true image as one
    # of the two, the projected estimate is no further from the truth than the estimate was.
    qcs, truth = grey_file
    rng = np.random.default_rng(seed)
    x = _tensor(truth) if seed % 2 else torch.from_numpy(rng.random((1, 1, 32, 48)))
    y = (x + spread * torch.from_numpy(rng.standard_normal(x.shape))).clamp(0, 1)
    # A fixed number of rounds (tol=0): the stopping test would make the map depend on its input.
    moved = qcs.project(y, rounds=4, tol=0) - qcs.project(x, rounds=4, tol=0)
    assert torch.linalg.norm(moved) <= torch.linalg.norm(y - x) * (1 + 1e-9) + 1e-12


def test_projection_leaves_the_true_image_where_it_is(grey_file):
    qcs, truth = grey_file
    # Within a tenth of a grey level: the encoder's integer DCT puts a few coefficients just outside.
    assert float((qcs.project(_tensor(truth)) - _tensor(truth)).abs().max()) * 255 < 0.1


def test_a_file_gets_the_file_preset(tmp_path):
    from napari_dip_l0.core.presets import FILE_PRESETS, PRESETS

    filed, pixels = FILE_PRESETS["deblock"], PRESETS["deblock"]
    path = _save(tmp_path, data.astronaut()[100:148, 120:184], "q10.jpg")
    decoded = np.asarray(Image.open(path).convert("RGB"))
    with_file = DipL0Run(decoded, "deblock", channel_axis=-1, jpeg=path).preset
    # Quality 10: the coarse box, λ from the file's luma DC step.
    assert with_file == replace(filed, lam=filed.lam_step * read_jpeg_constraint(path).dc_step / 255)
    assert not with_file.residual and with_file.patience > 0  # fits the image, stopped by the spread rule
    # The coarser the file, the larger λ.
    fine = _save(tmp_path, data.astronaut()[100:148, 120:184], "q50.jpg", quality=50)
    assert DipL0Run(decoded, "deblock", channel_axis=-1, jpeg=path).preset.lam > DipL0Run(
        np.asarray(Image.open(fine).convert("RGB")), "deblock", channel_axis=-1, jpeg=fine).preset.lam > 0
    assert DipL0Run(decoded, "deblock", channel_axis=-1).preset == pixels  # pixels alone
    assert pixels.residual and filed.lam != pixels.lam
    assert DipL0Run(decoded, "deblock", channel_axis=-1, jpeg=path, lam=0.005).preset.lam == 0.005
    # Other modes keep their own preset with a file too (smoothing a JPEG's pixels within its set).
    assert DipL0Run(decoded, "smooth", channel_axis=-1, jpeg=path).preset == PRESETS["smooth"]
    # A preset given explicitly is used as it is, with a file or not.
    assert DipL0Run(decoded, preset=pixels, channel_axis=-1, jpeg=path).preset == pixels
    # The ℓ0 preview (the widget's) takes the λ a run with the file takes.
    from napari_dip_l0.core.api import l0_preview

    flat, used = l0_preview(decoded, "deblock", channel_axis=-1, jpeg=path)
    assert used == with_file.lam and flat.shape == decoded.shape and flat.dtype == np.uint8
    assert l0_preview(decoded, "deblock", channel_axis=-1)[1] == pixels.lam
    with pytest.raises(ValueError, match="JPEG file"):
        l0_preview(decoded[:, :40], "deblock", channel_axis=-1, jpeg=path)
    with pytest.raises(TypeError, match="the image's"):  # as a run refuses it
        l0_preview(decoded, "deblock", channel_axis=-1, dtype="int32")


def test_box_follows_the_files_quantisation_step(tmp_path):
    from napari_dip_l0.core.presets import FILE_PRESETS, PRESETS

    shipped = FILE_PRESETS["deblock"]
    assert 0 < shipped.jpeg_box_fine < shipped.jpeg_box
    crop = data.astronaut()[100:148, 120:184]
    for quality, box in ((10, shipped.jpeg_box), (20, shipped.jpeg_box_fine), (50, shipped.jpeg_box_fine)):
        path = _save(tmp_path, crop, f"q{quality}.jpg", quality=quality)
        qcs = read_jpeg_constraint(path)
        assert (qcs.dc_step < shipped.jpeg_fine_step) == (box == shipped.jpeg_box_fine)
        decoded = np.asarray(Image.open(path).convert("RGB"))
        run = DipL0Run(decoded, "deblock", channel_axis=-1, jpeg=qcs, iterations=2, device="cpu")
        assert run.preset.jpeg_box == box
        result = run.run()
        assert qcs.violation(_tensor(result), box=box).max() < 0.06  # within the box it chose
    # Without a fine box, or without a file, the box stays.
    coarse = replace(shipped, jpeg_box_fine=0.0)
    assert DipL0Run(decoded, preset=coarse, channel_axis=-1, jpeg=qcs, iterations=1).preset.jpeg_box == shipped.jpeg_box
    assert DipL0Run(decoded, "deblock", channel_axis=-1, iterations=1).preset.jpeg_box == PRESETS["deblock"].jpeg_box


def test_box_narrows_the_set_and_is_checked(grey_file):
    from napari_dip_l0.core.presets import get_preset

    qcs, truth = grey_file
    rough = _tensor(truth) + 0.2 * torch.from_numpy(np.random.default_rng(1).standard_normal((1, 1, 32, 48)))
    # Noise this strong presses many samples against 0 and 1, where the rounds converge slowly.
    half = qcs.project(rough.clamp(0, 1), box=0.5, rounds=40)
    assert qcs.violation(half, box=0.5).max() < 1e-3
    assert qcs.violation(qcs.project(rough.clamp(0, 1), box=0.5), box=0.5).max() < 0.06  # the default 8 rounds
    # The whole set is closer to the rough estimate than its middle half is.
    whole = qcs.project(rough.clamp(0, 1), rounds=40)
    assert torch.linalg.norm(whole - rough) < torch.linalg.norm(half - rough)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="box"):
            qcs.project(half, box=bad)
    with pytest.raises(ValueError, match="jpeg_box"):
        get_preset("deblock", jpeg_box=2.0)
