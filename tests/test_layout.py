"""Validation and the round trip to normalised float planes (PlaneReader, Layout)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_dip_l0 import l0_smooth
from napari_dip_l0.core.planes import PlaneReader, result_dtype
from napari_dip_l0.core.validation import check_dtype, check_image

DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.uint32, np.int64, np.uint64, np.float16, np.float32,
          np.float64, ">f4", ">u2"]


def _round_trip(img, channel_axis=None, data_range=None):
    arr, axis = check_image(img, channel_axis)
    reader = PlaneReader(arr, axis, data_range)
    out = reader.new_output()
    planes = [reader.read(p) for p in range(len(reader))]
    for p, plane in enumerate(planes):
        reader.store(out, p, plane)
    return planes, reader.assemble(out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_identity(dtype):
    rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        img = (rng.normal(100, 50, (5, 6))).astype(dtype)
    else:
        info = np.iinfo(dtype)
        img = rng.integers(info.min, info.max, (5, 6), endpoint=True, dtype=dtype.newbyteorder("="))
        img = img.astype(dtype)
    planes, back = _round_trip(img)
    assert planes[0].dtype == np.float32 and planes[0].shape == (5, 6, 1)
    assert planes[0].min() == 0 and planes[0].max() == 1
    assert back.dtype == dtype and back.shape == img.shape
    assert back.min() == img.min() and back.max() == img.max()  # the range's ends map back exactly
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        np.testing.assert_array_equal(back, img)
    else:  # float32 planes hold 24 bits of the range
        span = float(img.max()) - float(img.min())
        np.testing.assert_allclose(back.astype(float), img.astype(float), rtol=0, atol=span * 2e-7 + 1e-3)


@pytest.mark.parametrize(
    "shape, channel_axis, plane_shape, n",
    [
        ((7, 9), None, (7, 9, 1), 1),
        ((7, 9, 3), -1, (7, 9, 3), 1),
        ((4, 7, 9), None, (7, 9, 1), 4),
        ((2, 7, 9), 0, (7, 9, 2), 1),
        ((3, 4, 7, 9, 2), 4, (7, 9, 2), 12),
        ((3, 2, 7, 9), 1, (7, 9, 2), 3),
    ],
)
def test_axes_round_trip(shape, channel_axis, plane_shape, n):
    img = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    planes, back = _round_trip(img, channel_axis)
    assert len(planes) == n and planes[0].shape == plane_shape
    np.testing.assert_allclose(back, img, atol=1e-5 * img.max())


def test_integer_results_rounded_and_clipped():
    img = np.array([[10, 20], [30, 40]], np.uint8)
    reader = PlaneReader(img, None)
    out = reader.new_output()
    reader.store(out, 0, reader.read(0) + np.float32(0.3))  # pushes values above the range
    back = reader.assemble(out)
    assert back.dtype == np.uint8 and back.max() == 40 and back.min() >= 10


def test_input_is_not_modified():
    img = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    img.setflags(write=False)
    before = img.copy()
    plane = PlaneReader(img, None).read(0)
    plane[:] = 0
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize("dtype, offset", [("i8", 2**40), ("i8", -(2**62)), ("u8", 2**63), ("u4", 4_000_000_000),
                                           ("i4", -(2**31))])
def test_large_integer_offsets_keep_every_level(dtype, offset):
    img = (np.int64(offset) + np.arange(1024).reshape(32, 32)).astype(dtype) if dtype != "u8" else \
        (np.uint64(offset) + np.arange(1024, dtype=np.uint64).reshape(32, 32))
    np.testing.assert_array_equal(l0_smooth(img, 0), img)


@pytest.mark.parametrize("dtype", ["i8", "u8"])
def test_full_range_64_bit_integers_keep_their_ends(dtype):
    info = np.iinfo(dtype)
    img = np.array([[info.min, info.min // 2 + info.max // 2], [info.max, info.max]], dtype)
    back = l0_smooth(img, 0)
    assert back.dtype == img.dtype
    assert back[0, 0] == info.min and back[1, 0] == info.max
    assert abs(int(back[0, 1]) - int(img[0, 1])) <= 2**40


@pytest.mark.parametrize("big", [1e39, 1.7e308])
def test_huge_floats_stay_finite(big):
    img = np.array([[-big, 0.0], [big / 2, big]])
    with np.errstate(all="raise"):
        back = l0_smooth(img, 0)
    assert np.isfinite(back).all() and back[0, 0] == -big and back[1, 1] == big


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.int64, np.uint64, np.float32,
                                   np.float64]),
                  hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=6),
                  elements={"allow_nan": False, "allow_infinity": False, "allow_subnormal": False}))
def test_round_trip_property(img):
    """Any finite image comes back in its dtype, shape and range, within float32's resolution of the range."""
    _, back = _round_trip(img)
    assert back.dtype == img.dtype and back.shape == img.shape
    lo, hi = float(img.min()), float(img.max())
    assert float(back.min()) >= lo and float(back.max()) <= hi
    tolerance = (hi - lo) * 2e-7 + (1.0 if img.dtype.kind in "iu" else 0.0)
    assert np.all(np.abs(back.astype(np.float64) - img.astype(np.float64)) <= tolerance + abs(hi) * 1e-15)


# ----- results in another dtype ----------------------------------------------------------------------------------
@given(dtype=st.sampled_from(["u1", "u2", "i2", "i4", "u8", ">u2"]), robust=st.booleans(),
       seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_float_result_keeps_levels_and_what_lies_between(dtype, robust, seed):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    img = (20 + rng.integers(0, 90, (10, 12))).astype(dtype)
    img[0, 0] = 250  # an outlier, so the robust scale differs from the plain one
    want = result_dtype(dtype, True)
    reader = PlaneReader(img, None, robust=robust, result=want)
    out = reader.new_output()
    assert out.dtype == want == (np.float32 if dtype.itemsize <= 2 else np.float64)
    plane = reader.read(0)
    reader.store(out, 0, plane)
    np.testing.assert_allclose(reader.assemble(out), img, atol=1e-3)  # every level, through float32 planes
    # half a level up: kept as such, where the input's dtype would round it
    lo, hi = reader.layout.scale or (reader.layout.lo, reader.layout.hi)
    reader.store(out, 0, plane + np.float32(0.5 / (hi - lo)))
    found = reader.assemble(out).astype(np.float64)
    top = img == img.max()
    np.testing.assert_allclose(found[~top], img[~top] + 0.5, atol=1e-3)
    assert found.max() == img.max()  # still within the input's range


def test_result_dtype_and_check_dtype():
    assert result_dtype(np.uint8, True) == np.float32 and result_dtype(np.int32, True) == np.float64
    assert result_dtype(np.float64, True) == np.float64 and result_dtype(np.uint16, False) == np.uint16
    assert check_dtype(None) is None and check_dtype("float32") == np.float32
    assert check_dtype(">f4") == np.float32  # native byte order
    for bad in ("bogus", bool, complex, object, "U3", 5):
        with pytest.raises(TypeError, match="dtype"):
            check_dtype(bad)
    # A result's dtype: a float type or the image's own.
    assert check_dtype(">u2", np.uint16) == np.uint16 and check_dtype("float16", np.uint16) == np.float16
    with pytest.raises(TypeError, match="the image's"):
        check_dtype("int32", np.uint8)
