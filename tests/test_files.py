"""Image files, adversarially: property-based round trips, header-first descriptions, refusals before the work.

Each round trip draws a dtype, a channel layout (grey, grey+alpha, RGB,
RGBA), a format, a page layout (one write, pages written one at a time) and
a value range (full, constant, the extremes, a narrow band), writes the
file, and checks that :func:`describe` (header only) says what :func:`read`
gives, and that the pixels come back exactly (JPEG: closely).
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import napari_dip_l0.core.io as files
from napari_dip_l0.cli import main
from napari_dip_l0.core.io import (
    check_output,
    colour_shape,
    describe,
    join_alpha,
    output_format_error,
    png,
    read,
    split_alpha,
    write_image,
)
from napari_dip_l0.core.io import output as io_output

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

VALUE_RANGES = ["full", "constant", "extremes", "narrow"]


def _values(rng, shape, dtype, kind):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        lo, hi = {"full": (-3e4, 3e4), "constant": (7.5, 7.5), "extremes": (-1e30, 1e30),
                  "narrow": (0.5, 0.5 + 1e-3)}[kind]
        if kind == "extremes":
            return rng.choice(np.array([lo, hi, 0.0], dtype), shape)
        return (lo + (hi - lo) * rng.random(shape)).astype(dtype)
    info = np.iinfo(dtype)
    if kind == "constant":
        return np.full(shape, info.max // 3, dtype)
    if kind == "extremes":
        return rng.choice(np.array([info.min, info.max], dtype), shape)
    lo, hi = (info.min, info.max) if kind == "full" else (info.max // 2, info.max // 2 + 3)
    return rng.integers(lo, hi, shape, dtype=dtype, endpoint=True)


LAYOUTS = {"grey": (), "grey+alpha": (2,), "rgb": (3,), "rgba": (4,)}


def _fresh(tmp_path):
    """A new folder per example: hypothesis runs many examples in one test's tmp_path."""
    return Path(tempfile.mkdtemp(dir=tmp_path))


@SETTINGS
@given(dtype=st.sampled_from(["uint8", "uint16"]), layout=st.sampled_from(sorted(LAYOUTS)),
       values=st.sampled_from(VALUE_RANGES), h=st.integers(2, 19), w=st.integers(2, 23), seed=st.integers(0, 2**16))
def test_png_round_trip(tmp_path, dtype, layout, values, h, w, seed):
    tmp_path = _fresh(tmp_path)
    image = _values(np.random.default_rng(seed), (h, w) + LAYOUTS[layout], dtype, values)
    path = write_image(tmp_path / "x.png", image)
    info = describe(path)
    assert (info.shape, info.dtype, info.alpha) == (image.shape, image.dtype, layout in ("grey+alpha", "rgba"))
    out = read(info)
    assert out.dtype == image.dtype
    np.testing.assert_array_equal(out, image)  # 16-bit colour keeps its 16 bits
    axis = info.channel_axis("auto")
    assert axis == (None if layout == "grey" else 2)
    colour, alpha = split_alpha(out, info, axis)
    assert colour.shape == colour_shape(info, axis)
    np.testing.assert_array_equal(join_alpha(colour, alpha), out)


@SETTINGS
@given(mode=st.sampled_from(["L", "LA", "RGB", "RGBA", "I;16", "1", "P", "P+transparency"]),
       optimize=st.booleans(), h=st.integers(2, 17), w=st.integers(2, 17), seed=st.integers(0, 2**16))
def test_png_from_pillow_is_described_as_read(tmp_path, mode, optimize, h, w, seed):
    """Files written by another encoder (Pillow: adaptive row filters, palettes, 1-bit)."""
    tmp_path = _fresh(tmp_path)
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    elif mode in ("P", "P+transparency"):
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).quantize(8)
        if mode == "P+transparency":
            im.info["transparency"] = 0
    else:
        bands = len(mode) if mode != "1" else 1
        im = Image.fromarray(rng.integers(0, 255, (h, w, bands), dtype=np.uint8).squeeze(-1) if bands == 1 else
                             rng.integers(0, 255, (h, w, bands), dtype=np.uint8)).convert(mode)
    path = tmp_path / "p.png"
    im.save(path, optimize=optimize, **({"transparency": 0} if mode == "P+transparency" else {}))
    info = describe(path)
    out = read(info)
    assert out.shape == info.shape and out.dtype == info.dtype
    with Image.open(path) as again:
        want = {"1": "L", "P": "RGB", "P+transparency": "RGBA"}.get(mode)
        expected = np.asarray(again.convert(want) if want else again)
    np.testing.assert_array_equal(out, expected.astype(out.dtype))
    assert info.alpha == (mode in ("LA", "RGBA", "P+transparency"))


def test_own_png_decoder_matches_pillow_on_every_row_filter(tmp_path):
    rng = np.random.default_rng(5)
    img = rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)
    img[20:40] = np.linspace(0, 255, 48, dtype=np.uint8)[None, :, None]  # smooth rows: Sub/Avg/Paeth chosen
    Image.fromarray(img).save(tmp_path / "f.png", optimize=True)
    np.testing.assert_array_equal(png.decode_png(tmp_path / "f.png"), img)


TIFF_DTYPES = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float16", "float32",
               "float64"]


@SETTINGS
@given(dtype=st.sampled_from(TIFF_DTYPES), layout=st.sampled_from(sorted(LAYOUTS)),
       pages=st.sampled_from(["one", "stack", "separate"]), byteorder=st.sampled_from(["<", ">"]),
       values=st.sampled_from(VALUE_RANGES), seed=st.integers(0, 2**16))
def test_tiff_round_trip(tmp_path, dtype, layout, pages, byteorder, values, seed):
    tmp_path = _fresh(tmp_path)
    rng = np.random.default_rng(seed)
    n = 1 if pages == "one" else 3
    stack = _values(rng, (n, 9, 11) + LAYOUTS[layout], dtype, values)
    path = tmp_path / "x.tif"
    if pages == "separate":  # pages written one at a time: one stack, not page 1
        for plane in stack:
            tifffile.imwrite(path, plane.astype(np.dtype(dtype).newbyteorder(byteorder)), append=True)
        expected = stack
    else:
        expected = stack[0] if pages == "one" else stack
        if pages == "one":
            write_image(path, expected.astype(np.dtype(dtype).newbyteorder(byteorder)))
        else:
            tifffile.imwrite(path, expected.astype(np.dtype(dtype).newbyteorder(byteorder)))
    info = describe(path)
    assert info.shape == expected.shape and info.dtype == expected.dtype
    out = read(info)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype.isnative


def test_tiff_pages_of_different_shapes_are_refused(tmp_path):
    path = tmp_path / "mixed.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    tifffile.imwrite(path, np.zeros((6, 8), np.uint8), append=True)
    with pytest.raises(ValueError, match="not one stack"):
        describe(path)


@SETTINGS
@given(layout=st.sampled_from(["grey", "rgb"]), h=st.integers(8, 24), w=st.integers(8, 24),
       seed=st.integers(0, 2**16))
def test_jpeg_round_trip(tmp_path, layout, h, w, seed):
    tmp_path = _fresh(tmp_path)
    image = np.full((h, w) + LAYOUTS[layout], 90, np.uint8)
    image[: h // 2] = 160 + np.random.default_rng(seed).integers(0, 3, image[: h // 2].shape, dtype=np.uint8)
    path = write_image(tmp_path / "x.jpg", image)
    info = describe(path)
    out = read(info)
    assert (info.shape, info.dtype) == (out.shape, out.dtype) == (image.shape, np.uint8)
    assert np.abs(out.astype(int) - image).mean() < 8


@SETTINGS
@given(suffix=st.sampled_from([".png", ".jpg", ".tif"]),
       dtype=st.sampled_from(["uint8", "uint16", "int16", "float32"]),
       shape=st.sampled_from([(6, 7), (6, 7, 2), (6, 7, 3), (6, 7, 4), (3, 6, 7), (2, 6, 7, 3)]))
def test_refusal_before_the_work_agrees_with_the_writer(tmp_path, suffix, dtype, shape):
    """What the preflight refuses is exactly what could not be written, and it names the output, not a temp file."""
    tmp_path = _fresh(tmp_path)
    image = np.ones(shape, dtype)
    out = tmp_path / f"o{suffix}"
    why = output_format_error(suffix, shape, dtype)
    if why is None:
        check_output(out, shape, dtype)
        write_image(out, image)
        assert describe(out).shape == shape
    else:
        with pytest.raises(ValueError) as refused:
            check_output(out, shape, dtype)
        assert str(out) in str(refused.value)
        with pytest.raises(ValueError):
            write_image(out, image)
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_outputs_checked_before_reading(tmp_path, capsys, monkeypatch):
    """Each output refusal comes from the header, before a pixel is decoded."""
    monkeypatch.setattr(files, "read", lambda info: pytest.fail("decoded before refusing"))
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 16, 16), np.uint8))
    rgba = tmp_path / "rgba.png"
    write_image(rgba, np.zeros((16, 16, 4), np.uint8))
    snap = tmp_path / "a_iter00002.png"
    write_image(snap, np.zeros((16, 16, 3), np.uint8))
    before = snap.read_bytes()
    (tmp_path / "folder.png").mkdir()
    os.link(snap, tmp_path / "hardlink.png")
    (tmp_path / "symlink.png").symlink_to(snap)
    cases = [
        (["smooth", str(stack), "-o", str(tmp_path / "s.jpg")], "a stack"),
        (["smooth", str(stack), "-o", str(tmp_path / "s.png")], "a stack"),
        (["deblock", str(rgba), "-o", str(tmp_path / "r.jpg")], "no alpha"),
        (["l0", str(rgba), "-o", str(tmp_path / "r.jpg"), "--lam", "0.1"], "no alpha"),
        (["smooth", str(snap), "-o", str(tmp_path / "a.png"), "--save-every", "2"], "would overwrite the input"),
        (["smooth", str(snap), "-o", str(tmp_path)], "is a folder"),
        (["smooth", str(snap), "-o", str(tmp_path / "folder.png")], "is a folder"),
        (["l0", str(snap), "-o", str(tmp_path / "x" / "a.png"), "--lam", "0.1"], "does not exist"),
        (["l0", str(snap), "-o", str(tmp_path / "hardlink.png"), "--lam", "0.1"], "is the input"),
        (["deblock", str(snap), "-o", str(tmp_path / "symlink.png")], "is the input"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
        assert ".dip-l0" not in err[0] and "/." not in err[0]  # no hidden temp file named
    assert snap.read_bytes() == before


def test_read_only_folder_refused_before_the_work(tmp_path, capsys, monkeypatch, read_only_dir):
    png = tmp_path / "in.png"
    write_image(png, np.zeros((16, 16, 3), np.uint8))
    ro = read_only_dir
    monkeypatch.setattr(files, "read", lambda info: pytest.fail("decoded before refusing"))
    for argv in (["smooth", str(png), "-o", str(ro / "o.png")], ["l0", str(png), "-o", str(ro / "o.png"),
                                                                  "--lam", "0.1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "cannot write to the output folder" in err and ".dip-l0" not in err, err
    assert list(ro.iterdir()) == []


def test_write_failure_names_the_output_not_the_temp_file(tmp_path, monkeypatch):
    def broken(fh, image, suffix):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io_output, "_encode", broken)
    out = tmp_path / "o.png"
    with pytest.raises(OSError) as err:
        write_image(out, np.zeros((4, 4), np.uint8))
    assert str(out) in str(err.value) and "No space" in str(err.value) and ".dip-l0" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_small_file_declaring_a_huge_image_is_refused_from_its_header(tmp_path, capsys, monkeypatch):
    """A compressed TIFF declaring far more than memory is refused before its pixels are decoded."""
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((4000, 4000), np.uint8), compression="zlib", tile=(256, 256))
    assert path.stat().st_size < 200_000
    monkeypatch.setattr("napari_dip_l0.core.memory.available_memory", lambda: 10 * 1024**2)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", lambda *a, **k: pytest.fail("decoded before refusing"))
    for argv in (["smooth", str(path), "-o", str(tmp_path / "o.tif")],
                 ["l0", str(path), "-o", str(tmp_path / "o.tif"), "--lam", "0.1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "needs about" in err or "declares an image" in err, err
    assert not (tmp_path / "o.tif").exists()


def test_cli_keeps_16_bit_colour_alpha_and_separate_pages(tmp_path):
    """The three silent misreads of issue 11, end to end through `dip-l0 l0`."""
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65535, (16, 16, 3), dtype=np.uint16)
    rgb16[:, :8] = 300  # a level an 8-bit read could not hold
    write_image(tmp_path / "rgb16.png", rgb16)
    assert main(["l0", str(tmp_path / "rgb16.png"), "-o", str(tmp_path / "o16.png"), "--lam", "0"]) == 0
    np.testing.assert_array_equal(read(describe(tmp_path / "o16.png")), rgb16)

    ga = np.stack([rng.integers(0, 255, (16, 16), dtype=np.uint8),
                   np.tile(np.arange(16, dtype=np.uint8) * 16, (16, 1))], axis=-1)
    write_image(tmp_path / "ga.png", ga)
    assert main(["l0", str(tmp_path / "ga.png"), "-o", str(tmp_path / "oga.png"), "--lam", "0.5"]) == 0
    out = read(describe(tmp_path / "oga.png"))
    assert out.shape == ga.shape
    np.testing.assert_array_equal(out[..., 1], ga[..., 1])  # alpha kept
    assert np.unique(out[..., 0]).size < np.unique(ga[..., 0]).size  # grey smoothed as one image

    pages = tmp_path / "pages.tif"
    for k in range(3):
        tifffile.imwrite(pages, np.full((12, 12), 10 * k, np.uint16), append=True)
    assert main(["l0", str(pages), "-o", str(tmp_path / "op.tif"), "--lam", "0.1"]) == 0
    assert tifffile.imread(tmp_path / "op.tif").shape == (3, 12, 12)


def test_interrupted_write_leaves_the_previous_file(tmp_path, monkeypatch):
    """Ctrl-C (or any error) in the middle of a write: the previous file stays, whole, and no temp file."""
    out = write_image(tmp_path / "o.tif", np.arange(64, dtype=np.uint16).reshape(8, 8))
    before = out.read_bytes()

    def interrupted(fh, image, suffix):
        fh.write(b"II*\x00half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(io_output, "_encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(out, np.zeros((8, 8), np.uint16))
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["o.tif"]


@pytest.mark.parametrize("shape", [(3, 10, 12), (10, 12, 2), (10, 12, 3), (2, 10, 12, 4), (4, 10, 12)])
def test_tiff_outputs_read_back_with_the_same_channel_axis(tmp_path, shape):
    image = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    info = describe(write_image(tmp_path / "o.tif", image))
    assert info.shape == shape
    assert info.channel_axis("auto") == (len(shape) - 1 if shape[-1] in (2, 3, 4) else None)
    np.testing.assert_array_equal(read(info), image)

