"""The lazy API: dip_l0_smooth/denoise of a dask array, and the DipL0Run hooks it stands on."""

import dask
import dask.array as da
import numpy as np
import pytest
from dask.callbacks import Callback

from napari_dip_l0 import DipL0Run, dip_l0_deblock, dip_l0_denoise, dip_l0_smooth
from napari_dip_l0.core.lazy import block_chunks
from napari_dip_l0.core.run import Calibration


def _frames(planes=5, shape=(32, 40), seed=0, hot=True):
    """A camera stack: a bright box on a dim background, shot noise, one hot pixel."""
    rng = np.random.default_rng(seed)
    clean = np.zeros((planes, *shape))
    clean[:, 8:24, 10:30] = 1
    stack = (100 + 2 * rng.poisson(20 * clean + 3)).astype(np.uint16)
    if hot:
        stack[planes // 2, 5, 5] = 4000
    return stack


class Reads:
    """The input chunks a computation reads (a map_blocks stage that records each chunk's first plane)."""

    def __init__(self, stack, chunks):
        self.seen = []
        self.array = da.from_array(stack, chunks=chunks).map_blocks(self._record, dtype=stack.dtype,
                                                                    meta=np.empty((0,) * stack.ndim, stack.dtype))

    def _record(self, block, block_info=None):
        self.seen.append(block_info[0]["array-location"][0][0])
        return block


class PeakHeld(Callback):
    """The most bytes of arrays the local scheduler held at once (its results cache)."""

    def __init__(self):
        super().__init__()
        self.peak = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        held = sum(v.nbytes for v in state["cache"].values() if isinstance(v, np.ndarray))
        self.peak = max(self.peak, held)


def test_block_chunks_are_runs_of_whole_planes():
    assert block_chunks((10, 32, 32), None, 4) == (4, 32, 32)
    assert block_chunks((3, 5, 32, 32), None, 8) == (1, 5, 32, 32)
    assert block_chunks((3, 5, 32, 32), None, 10) == (2, 5, 32, 32)
    assert block_chunks((3, 32, 32, 4), 3, 2) == (2, 32, 32, 4)
    assert block_chunks((3, 32, 32), 0, 2) == (3, 32, 32)  # channels first: one plane, whole
    assert block_chunks((32, 32), None, 8) == (32, 32)


def test_nothing_is_read_at_the_call_and_shape_dtype_are_the_eager_ones():
    stack = _frames()
    reads = Reads(stack, (1, 16, 20))
    reads.seen.clear()
    lazy = dip_l0_denoise(reads.array, iterations=3, device="cpu", planes_per_block=2)
    assert reads.seen == []
    assert isinstance(lazy, da.Array) and lazy.shape == stack.shape and lazy.dtype == np.float32
    assert lazy.chunks == ((2, 2, 1), (32,), (40,))
    smooth = dip_l0_smooth(reads.array, 0.03, iterations=3, device="cpu", dtype=np.float64)
    assert smooth.dtype == np.float64 and reads.seen == []
    out = lazy.compute()
    assert out.dtype == np.float32 and out.shape == stack.shape
    # Each chunk read by the range's pass, the sampled planes (all 5 of so short a stack) and the blocks.
    assert sorted(reads.seen) == [p for p in range(5) for _ in range(4 * 3)]


@pytest.mark.parametrize("mode", ["smooth", "denoise"])
def test_one_block_equals_the_eager_run_bit_for_bit(mode):
    stack = _frames()
    run = dip_l0_denoise if mode == "denoise" else dip_l0_smooth
    eager = run(stack, iterations=4, device="cpu")
    lazy = run(da.from_array(stack, chunks=(1, 16, 16)), iterations=4, device="cpu", planes_per_block=5)
    out = lazy.compute()
    assert out.dtype == eager.dtype
    np.testing.assert_array_equal(out, eager)


def test_one_block_equals_eager_with_channels_first_and_a_given_range():
    rng = np.random.default_rng(1)
    stack = rng.random((3, 2, 24, 24)).astype(np.float32)  # Z, C, Y, X
    kwargs = dict(lam=0.02, iterations=3, device="cpu", channel_axis=1, data_range=(-0.5, 1.5))
    eager = dip_l0_smooth(stack, **kwargs)
    lazy = dip_l0_smooth(da.from_array(stack, chunks=(1, 1, 24, 24)), planes_per_block=3, **kwargs)
    np.testing.assert_array_equal(lazy.compute(), eager)


def test_result_does_not_depend_on_the_input_chunks():
    stack = _frames(planes=6)
    outs = [dip_l0_denoise(da.from_array(stack, chunks=chunks), iterations=3, device="cpu",
                           planes_per_block=2).compute() for chunks in [(1, 32, 40), (4, 8, 8), (6, 32, 40)]]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_blocks_share_the_stacks_calibration():
    """Every block maps intensities as the whole stack does: a block of dim planes alone would stretch them."""
    stack = _frames(planes=4, hot=False)
    stack[2:] = stack[2:] // 4 + 100  # the second block is much dimmer than the first
    calibration = DipL0Run(stack, "denoise", iterations=2, device="cpu").calibration
    seen = []

    import napari_dip_l0.core.lazy as lazy_mod

    real = lazy_mod._run_block

    def spy(block, cal, **kwargs):
        seen.append(cal)
        return real(block, cal, **kwargs)

    lazy_mod._run_block = spy
    try:
        dip_l0_denoise(da.from_array(stack), iterations=2, device="cpu", planes_per_block=2).compute(
            scheduler="sync")
    finally:
        lazy_mod._run_block = real
    assert seen == [calibration, calibration]
    assert calibration.lam is not None and calibration.noise_model is not None


def test_blocks_differ_from_eager_only_by_their_fresh_starts():
    """Blocks after the first start afresh: quality as the eager run's (within 1 dB here), not its values."""
    from skimage.metrics import peak_signal_noise_ratio as psnr

    rng = np.random.default_rng(0)
    truth = np.zeros((4, 40, 40))
    truth[:, 10:30, 8:20] = 0.8
    truth[:, 5:15, 25:35] = 0.4
    noisy = np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1).astype(np.float32)
    kwargs = dict(lam=0.02, iterations=40, device="cpu", data_range=(0, 1))
    eager = dip_l0_smooth(noisy, **kwargs)
    lazy = dip_l0_smooth(da.from_array(noisy, chunks=(1, 40, 40)), planes_per_block=2, **kwargs).compute()
    np.testing.assert_array_equal(lazy[:2], eager[:2])  # the first block is the eager run's start
    assert abs(psnr(truth, lazy, data_range=1) - psnr(truth, eager, data_range=1)) < 1.0
    assert psnr(truth, lazy, data_range=1) > psnr(truth, noisy, data_range=1) + 5


@pytest.mark.parametrize("planes", [8, 48])
def test_memory_is_a_few_planes_whatever_the_stacks_length(planes, tmp_path):
    zarr = pytest.importorskip("zarr")
    stack = _frames(planes=planes)
    da.from_array(stack, chunks=(1, 32, 40)).to_zarr(str(tmp_path / "in.zarr"))
    out = dip_l0_denoise(da.from_zarr(str(tmp_path / "in.zarr")), iterations=2, device="cpu", planes_per_block=2)
    plane_bytes = 32 * 40 * 4  # a float32 result plane; input planes are half that
    with PeakHeld() as peak, dask.config.set(scheduler="sync"):
        out.to_zarr(str(tmp_path / "out.zarr"))
    # One block in and out and the sampled planes at most (measured: 4 planes' worth at 8 planes, 5 at 32 and 64;
    # 21 at 32 and 37 at 64 when the range's pass shared its reads with the blocks).
    assert peak.peak <= 8 * plane_bytes, peak.peak / plane_bytes
    stored = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert stored.shape == stack.shape and stored.dtype == np.float32


def test_nan_is_reported_when_computed():
    stack = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    stack[1, 3, 3] = np.nan
    lazy = dip_l0_smooth(da.from_array(stack, chunks=(1, 16, 16)), 0.02, iterations=2, device="cpu")
    with pytest.raises(ValueError, match="NaN or infinite"):
        lazy.compute()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(lam=-1), ValueError, "lam"),
    (dict(planes_per_block=0), ValueError, "planes_per_block"),
    (dict(iterations=0), ValueError, "iterations"),
    (dict(dtype=np.int8), TypeError, "dtype"),
    (dict(channel_axis=5), ValueError, "channel_axis"),
    (dict(data_range=(1, 0)), ValueError, "data_range"),
    (dict(device="cuda:99" if False else "nonsense"), ValueError, "device"),
])
def test_bad_settings_raise_at_the_call_before_any_read(kwargs, exc, match):
    stack = _frames(planes=3)
    reads = Reads(stack, (1, 32, 40))
    reads.seen.clear()
    with pytest.raises(exc, match=match):
        dip_l0_smooth(reads.array, **{"iterations": 2, "device": "cpu", **kwargs})
    assert reads.seen == []


def test_deblock_refuses_a_dask_array():
    lazy = da.zeros((2, 16, 16), dtype=np.uint8)
    with pytest.raises(TypeError, match="dip_l0_deblock does not take a dask array.*np.asarray"):
        dip_l0_deblock(lazy)


def test_planes_per_block_is_for_dask_arrays_only():
    with pytest.raises(TypeError, match="planes_per_block is for dask arrays"):
        dip_l0_smooth(_frames(planes=2), planes_per_block=2, iterations=2, device="cpu")


# ----- the DipL0Run hooks the lazy API stands on -------------------------------------------------------
def test_a_runs_own_calibration_given_back_is_bit_identical():
    stack = _frames(planes=3)
    measured = DipL0Run(stack, "denoise", iterations=3, device="cpu")
    cal = measured.calibration
    assert isinstance(cal, Calibration) and cal.scale is not None  # the hot pixel: a robust scale
    assert cal.noise_model == measured.noise_model and cal.lam == measured.preset.lam
    again = DipL0Run(stack, "denoise", iterations=3, device="cpu", calibration=cal)
    assert again.preset == measured.preset and again.calibration == cal
    np.testing.assert_array_equal(again.run(), measured.run())
    with pytest.raises(ValueError, match="without data_range"):
        DipL0Run(stack, "denoise", calibration=cal, data_range=(0, 10))
    with pytest.raises(TypeError, match="calibration must be a Calibration"):
        DipL0Run(stack, calibration=(0, 1))


def test_collect_false_hands_planes_over_and_keeps_none():
    stack = _frames(planes=3)
    ref = DipL0Run(stack, lam=0.03, iterations=3, device="cpu").run()
    got = {}
    run = DipL0Run(stack, lam=0.03, iterations=3, device="cpu", collect=False,
                   on_plane=lambda index, plane: got.__setitem__(index, plane.copy()))
    first = run.step()
    assert first.plane_image.shape == (32, 40) and first.plane_image.dtype == np.uint16
    with pytest.raises(RuntimeError, match="collect=False"):
        first.image
    assert run.run() is None
    assert sorted(got) == [(0,), (1,), (2,)]
    np.testing.assert_array_equal(np.stack([got[(p,)] for p in range(3)]), ref)
    assert run.last.plane_image.shape == (32, 40)
    with pytest.raises(ValueError, match="give on_plane"):
        DipL0Run(stack, collect=False)


def test_plane_image_is_the_current_plane_of_the_whole_image():
    stack = np.random.default_rng(0).random((2, 24, 24, 3)).astype(np.float32)
    for snap in DipL0Run(stack, lam=0.03, iterations=3, device="cpu", channel_axis=-1):
        np.testing.assert_array_equal(snap.plane_image, snap.image[snap.plane])
