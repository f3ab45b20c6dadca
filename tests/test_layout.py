import numpy as np
import pytest

from napari_dip_l0.core.layout import check_image, from_planes, to_planes

DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.float16, np.float32, np.float64, ">f4", ">u2"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_identity(dtype):
    rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        img = (rng.normal(100, 50, (5, 6))).astype(dtype)
    else:
        info = np.iinfo(dtype)
        img = rng.integers(info.min, info.max, (5, 6), endpoint=True).astype(dtype)
    planes, layout = to_planes(img, None)
    assert planes.dtype == np.float32 and planes.shape == (1, 5, 6, 1)
    assert planes.min() == 0 and planes.max() == 1
    back = from_planes(planes, layout)
    assert back.dtype == dtype and back.shape == img.shape
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        np.testing.assert_array_equal(back, img)
    else:
        np.testing.assert_allclose(back.astype(float), img.astype(float), rtol=1e-3, atol=1e-2 * np.ptp(img.astype(float)) / 100)


@pytest.mark.parametrize(
    "shape, channel_axis, planes_shape",
    [
        ((7, 9), None, (1, 7, 9, 1)),
        ((7, 9, 3), -1, (1, 7, 9, 3)),
        ((4, 7, 9), None, (4, 7, 9, 1)),
        ((2, 7, 9), 0, (1, 7, 9, 2)),
        ((3, 4, 7, 9, 2), 4, (12, 7, 9, 2)),
        ((3, 2, 7, 9), 1, (3, 7, 9, 2)),
    ],
)
def test_axes_round_trip(shape, channel_axis, planes_shape):
    img = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    arr, axis = check_image(img, channel_axis)
    planes, layout = to_planes(arr, axis)
    assert planes.shape == planes_shape
    np.testing.assert_allclose(from_planes(planes, layout), img, atol=1e-3 * img.max())


def test_integer_results_rounded_and_clipped():
    img = np.array([[10, 20], [30, 40]], np.uint8)
    planes, layout = to_planes(img, None)
    planes = planes + np.float32(0.3)  # pushes values above the range
    back = from_planes(planes, layout)
    assert back.dtype == np.uint8 and back.max() == 40 and back.min() >= 10


def test_input_is_not_modified():
    img = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    img.setflags(write=False)
    before = img.copy()
    planes, layout = to_planes(img, None)
    planes[:] = 0
    np.testing.assert_array_equal(img, before)
