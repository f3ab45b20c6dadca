"""A JPEG's quantisation read back from its decoded pixels, and the deblocking runs that use it."""

import io
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data

from napari_dip_l0 import dip_l0_deblock
from napari_dip_l0.core.jpeg import read_jpeg_constraint, run_from_file_or_pixels
from napari_dip_l0.core.jpeg_history import constraint_from_pixels, estimate_quality, ijg_table
from napari_dip_l0.core.presets import FILE_PRESETS, PRESETS

PHOTO = data.astronaut()[100:196, 120:216]  # 96², colour
GREY = data.camera()[200:296, 180:276]


def _decoded(image, quality, **kwargs):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality, **kwargs)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def test_tables_are_libjpegs(tmp_path):
    path = tmp_path / "q.jpg"
    for quality in range(1, 101):  # libjpeg scales in integers: a float scale differs at 28, 30, 33, ...
        Image.fromarray(GREY[:16, :16]).save(path, quality=quality)
        np.testing.assert_array_equal(ijg_table(quality), read_jpeg_constraint(path).tables[0], err_msg=str(quality))


def test_table_quality_is_checked():
    for bad in (0, 101):
        with pytest.raises(ValueError, match="between 1 and 100"):
            ijg_table(bad)


@settings(max_examples=12, deadline=None)
@given(quality=st.integers(5, 75), colour=st.booleans(), subsampling=st.sampled_from([0, 2]))
def test_the_quality_of_a_decoded_jpeg_is_found(quality, colour, subsampling):
    decoded = _decoded(PHOTO if colour else GREY, quality, subsampling=subsampling)
    found, explained, origin = estimate_quality(decoded)
    # Neighbouring qualities may share a table, or differ by a step of 1 within the decoder's rounding.
    assert np.abs(ijg_table(found) - ijg_table(quality)).max() <= 1 and explained >= 0.9 and origin == (0, 0)


@pytest.mark.parametrize("origin", [(3, 5), (7, 1), (0, 6)])
def test_a_crop_off_the_block_grid_is_read_on_its_grid(origin):
    decoded = _decoded(PHOTO, 20)
    crop = decoded[origin[0] :, origin[1] :]
    found = estimate_quality(crop)
    assert (found.quality, found.origin) == (20, origin)
    qcs = constraint_from_pixels(crop, channel_axis=-1)
    assert qcs.origin == origin and qcs.shape == crop.shape[:2]
    # The crop is inside its set, blocks cut by its edges included; a noisy copy is projected back into it.
    assert qcs.violation(crop / 255.0)[0] < 0.05
    noisy = np.clip(crop / 255.0 + np.random.default_rng(0).normal(0, 0.05, crop.shape), 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]
    assert qcs.violation(x)[0] > 0.2
    projected = qcs.project(x, rounds=30)
    assert qcs.violation(projected)[0] < 0.05 and projected.shape == x.shape


@pytest.mark.parametrize("case", ["never compressed", "noise", "resized", "halved", "constant", "stripes", "labels",
                                  "float", "too small"])
def test_pixels_that_show_no_quantisation_give_none(case):
    rng = np.random.default_rng(0)
    image = {
        "never compressed": PHOTO,
        "noise": rng.integers(0, 256, (64, 64), dtype=np.uint8),
        "halved": _decoded(PHOTO, 10) // 2,
        # Drawn images repeat a few coefficient values in every block, which some table fits by chance.
        "constant": np.full((64, 64), 10, np.uint8),
        "stripes": np.repeat((np.arange(64) // 5 % 3 * 60 + 20).astype(np.uint8)[:, None], 64, axis=1),
        "labels": (rng.integers(0, 6, (16, 16)).repeat(8, 0).repeat(8, 1) * 40 + 10).astype(np.uint8),
        "resized": np.asarray(Image.fromarray(_decoded(PHOTO, 10)).resize((80, 80))),
        "float": _decoded(PHOTO, 10) / 255.0,
        "too small": _decoded(PHOTO, 10)[:6, :40],
    }[case]
    assert constraint_from_pixels(image, channel_axis=-1 if image.ndim == 3 else None) is None
    if case in ("float", "too small"):  # not what a decoder gives: the explicit call says why
        with pytest.raises(ValueError, match="decoded JPEG"):
            estimate_quality(image)
    else:
        assert estimate_quality(image) is None


def test_only_grey_or_rgb_with_its_channel_axis_last_is_read():
    decoded = _decoded(PHOTO, 10)
    assert constraint_from_pixels(np.array(5, np.uint8)) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one row or column of blocks: no numpy warnings of empty slices
        for thin in (decoded[:8, :64], decoded[:64, :8], decoded[:8, :8]):
            found = constraint_from_pixels(np.ascontiguousarray(thin), channel_axis=-1)
            assert found is None or (found.quality, found.shape) == (10, thin.shape[:2])
    assert constraint_from_pixels(decoded, channel_axis=-1) is not None
    assert constraint_from_pixels(decoded) is None  # (H, W, 3) without a channel axis is a stack, not colour
    assert constraint_from_pixels(np.moveaxis(decoded, -1, 0), channel_axis=0) is None
    assert constraint_from_pixels(np.dstack([decoded, decoded[..., :1]]), channel_axis=-1) is None  # RGBA
    assert constraint_from_pixels(decoded.tolist(), channel_axis=-1) is None  # not an array a layer holds


def test_the_luma_read_back_is_the_files(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(PHOTO).save(path, quality=20)
    decoded = np.asarray(Image.open(path))
    filed, read = read_jpeg_constraint(path), constraint_from_pixels(decoded, channel_axis=-1)
    assert read.quality == 20 and read.dc_step == filed.dc_step and read.channels == 3
    np.testing.assert_array_equal(read.tables[0], filed.tables[0])
    same = read.coefficients[0] == filed.coefficients[0]
    assert same.mean() > 0.999  # the decoder's rounding flips a rare coefficient near half a step
    # The decoded pixels are inside the set read back; its chroma is free.
    assert read.violation(decoded / 255.0)[0] < 0.1 and read.violation(decoded / 255.0)[1:].max() == 0


def test_a_deblocking_run_on_decoded_pixels_uses_what_they_show():
    decoded = _decoded(PHOTO[:48, :64], 10)
    run, why_not = run_from_file_or_pixels(decoded, "deblock", None, channel_axis=-1, iterations=3, device="cpu")
    assert why_not == "" and run.jpeg.quality == 10
    assert run.preset.lam == pytest.approx(FILE_PRESETS["deblock"].lam_step * 80 / 255)  # λ from the DC step
    alone, _ = run_from_file_or_pixels(decoded, "deblock", None, channel_axis=-1, iterations=3, device="cpu",
                                       tables_from_pixels=False)
    assert alone.jpeg is None and alone.preset == replace(PRESETS["deblock"], iterations=3)
    # Other modes never read tables; settings a constraint cannot take fall back to the pixels alone.
    smooth, _ = run_from_file_or_pixels(decoded, "smooth", None, channel_axis=-1, iterations=3, device="cpu")
    assert smooth.jpeg is None
    ranged, _ = run_from_file_or_pixels(decoded, "deblock", None, channel_axis=-1, iterations=3, device="cpu",
                                        data_range=(0, 255))
    assert ranged.jpeg is None
    # A bad setting is still an error, not a reason to fall back.
    with pytest.raises(ValueError, match="device"):
        run_from_file_or_pixels(decoded, "deblock", None, channel_axis=-1, device="nope")


def test_api_refuses_an_empty_file_name():
    with pytest.raises(ValueError, match="names no file"):
        dip_l0_deblock(_decoded(GREY[:16, :16], 10), jpeg="", iterations=1, device="cpu")


def test_api_deblocks_decoded_pixels_within_their_quantisation():
    decoded = _decoded(PHOTO[:48, :64], 10)
    before = decoded.copy()
    out = dip_l0_deblock(decoded, channel_axis=-1, iterations=4, device="cpu")
    np.testing.assert_array_equal(decoded, before)  # the input is never modified
    read = constraint_from_pixels(decoded, channel_axis=-1)
    assert out.dtype == np.uint8 and out.shape == decoded.shape
    assert read.violation(out / 255.0)[0] < 0.06  # within the luma's set, up to rounding to 8 bits
    alone = dip_l0_deblock(decoded, channel_axis=-1, iterations=4, device="cpu", jpeg=False)
    assert read.violation(alone / 255.0)[0] > 0.1  # the pixels alone leave it
    # Same seed, same input: the same result.
    np.testing.assert_array_equal(out, dip_l0_deblock(decoded, channel_axis=-1, iterations=4, device="cpu"))


def test_cli_says_it_deblocks_within_what_the_pixels_show(tmp_path, capsys):
    from napari_dip_l0.cli import main

    png = tmp_path / "decoded.png"  # a JPEG's pixels saved losslessly: the file is gone
    Image.fromarray(_decoded(GREY[:48, :64], 20)).save(png)
    assert main(["deblock", str(png), "-o", str(tmp_path / "out.png"), "--iterations", "3", "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "quality 20" in notes[0] and "--pixels-only" in notes[0]
    assert main(["deblock", str(png), "-o", str(tmp_path / "alone.png"), "--iterations", "3", "--quiet",
                 "--pixels-only"]) == 0
    assert "quantisation" not in capsys.readouterr().err
    Image.fromarray(GREY[:48, :64]).save(png)  # never compressed: nothing to say
    assert main(["deblock", str(png), "-o", str(tmp_path / "raw.png"), "--iterations", "3", "--quiet"]) == 0
    assert "note:" not in capsys.readouterr().err
