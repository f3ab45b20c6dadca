"""Public API: round trips, determinism, the generator, quality, bad input."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as psnr

from napari_dip_l0 import PRESETS, DipL0Run, Preset, dip_l0_deblock, dip_l0_smooth, iter_dip_l0, l0_smooth
from napari_dip_l0.core.presets import get_preset

FAST = dict(iterations=3)


def _ramp(shape, dtype):
    dtype = np.dtype(dtype)
    base = np.linspace(0, 1, int(np.prod(shape))).reshape(shape)
    base = base + 0.2 * np.sin(np.arange(shape[-1]) * 1.3)
    if dtype.kind == "f":
        return (base * 500 - 120).astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -3000), min(info.max, 3000)
    return np.round(lo + (hi - lo) * (base - base.min()) / np.ptp(base)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, ">f8", ">u2"])
def test_dip_round_trip_dtype_shape_range(dtype):
    img = _ramp((13, 19), dtype)  # odd sides: padded inside, cropped back
    before = img.copy()
    out = dip_l0_smooth(img, 0.02, **FAST, device="cpu")
    assert out.shape == img.shape and out.dtype == img.dtype
    assert out.min() >= img.min() and out.max() <= img.max()
    np.testing.assert_array_equal(img, before)


def test_read_only_non_contiguous_input():
    base = _ramp((30, 40, 3), np.float32)
    img = base[::2, ::2]
    img.setflags(write=False)
    out = dip_l0_smooth(img, 0.02, **FAST, channel_axis=-1)
    assert out.shape == img.shape and out.flags.writeable
    out2 = l0_smooth(img, 0.02, channel_axis=-1)
    assert out2.shape == img.shape


@pytest.mark.parametrize("shape, channel_axis", [((2, 16, 20), None), ((16, 20, 3), -1), ((3, 16, 20), 0), ((2, 16, 20, 4), 3)])
def test_stacks_and_channels(shape, channel_axis):
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    snaps = list(iter_dip_l0(img, lam=0.02, **FAST, channel_axis=channel_axis))
    planes = shape[0] if channel_axis is None else (int(np.prod(shape)) // shape[channel_axis]) // (16 * 20)
    # The first plane gets all iterations, warm-started later planes a third (at least one).
    assert snaps[-1].total == 3 + (planes - 1) * 1 and snaps[-1].done
    assert snaps[-1].planes == planes
    assert [s.iteration for s in snaps] == sorted(s.iteration for s in snaps)
    assert snaps[-1].image.shape == shape


def test_constant_image_unchanged():
    img = np.full((10, 12), 7, np.uint16)
    np.testing.assert_array_equal(dip_l0_smooth(img, **FAST), img)
    np.testing.assert_array_equal(l0_smooth(img, 0.1), img)
    assert dip_l0_smooth(img, **FAST).dtype == np.uint16


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_float_result_on_request_and_in_denoise_mode(dtype):
    img = _ramp((13, 19), dtype)
    smooth = DipL0Run(img, lam=0.02, **FAST, device="cpu", dtype=np.float32)
    snaps = list(smooth)
    assert snaps[0].image.dtype == snaps[-1].image.dtype == np.float32  # every snapshot, the preview too
    out = snaps[-1].image
    assert img.min() <= out.min() and out.max() <= img.max() and np.any(out != np.rint(out))
    # the same run in the input's dtype is this result rounded
    same = dip_l0_smooth(img, 0.02, **FAST, device="cpu", dtype=img.dtype)
    assert same.dtype == img.dtype
    np.testing.assert_allclose(same, out, atol=0.5 + 1e-3 * np.ptp(img))
    want = np.float32 if np.dtype(dtype).itemsize <= 2 else np.float64
    assert DipL0Run(img, "denoise", iterations=2, device="cpu").run().dtype == want
    assert DipL0Run(img, "deblock", iterations=2, device="cpu").run().dtype == dtype
    flat = np.full((10, 12), 7, dtype)
    np.testing.assert_array_equal(DipL0Run(flat, "denoise", iterations=2, device="cpu").run(), flat.astype(want))
    # A float too narrow for the image's values is refused, not filled with inf.
    bright = np.full((10, 12), 65535, np.uint16)
    bright[0, 0] = 0
    with pytest.raises(ValueError, match="float16 cannot hold"):
        DipL0Run(bright, iterations=1, dtype=np.float16)
    assert DipL0Run(bright // 2, iterations=1, dtype=np.float16).run().dtype == np.float16


def test_deterministic_same_seed():
    img = _ramp((24, 24), np.float32)
    a = dip_l0_smooth(img, 0.02, iterations=5, seed=3)
    b = dip_l0_smooth(img, 0.02, iterations=5, seed=3)
    c = dip_l0_smooth(img, 0.02, iterations=5, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_global_torch_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    dip_l0_smooth(_ramp((16, 16), np.float32), 0.02, **FAST)
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_generator_snapshots_and_early_close():
    img = _ramp((20, 20, 3), np.uint8)
    gen = iter_dip_l0(img, lam=0.03, iterations=10, channel_axis=-1)
    first = next(gen)
    assert first.iteration == 0 and first.total == 10 and first.losses == {}
    # The iteration-0 snapshot is the ℓ0-only preview (FFT solver, the warm start).
    preview = l0_smooth(img, 0.03, method="fft", channel_axis=-1)
    assert np.abs(first.image.astype(int) - preview.astype(int)).max() <= 1
    second = next(gen)
    assert second.iteration == 1 and set(second.losses) == {"loss", "data", "coupling"}
    assert second.seconds >= first.seconds
    gen.close()  # stopping early is safe, and the snapshot keeps its estimate
    assert second.image.dtype == np.uint8 and second.image.shape == img.shape


def test_snapshot_image_is_frozen_at_its_iteration():
    img = _ramp((3, 16, 16), np.float32)
    snaps = list(iter_dip_l0(img, lam=0.02, iterations=4, warm_iterations=4))
    mid = [s for s in snaps if s.plane == 1 and s.iteration == 6][0]
    final = snaps[-1]
    # Plane 2 has not started at iteration 6: it still shows the input.
    np.testing.assert_allclose(mid.image[2], img[2], atol=1e-3)
    # Plane 0 is finished by then and equals the final result's plane 0.
    np.testing.assert_array_equal(mid.image[0], final.image[0])


def test_deblock_runs_and_keeps_dtype():
    img = _ramp((24, 32, 3), np.uint8)
    out = dip_l0_deblock(img, **FAST, channel_axis=-1)
    assert out.dtype == np.uint8 and out.shape == img.shape


@pytest.mark.slow  # a fit long enough to gain
@pytest.mark.parametrize("solver", ["parallel_fusion", "region_fusion", "fft"])
def test_dip_l0_improves_on_input_and_its_warm_start(cartoon, solver):
    noisy, truth = cartoon
    lam = 0.03
    run = DipL0Run(noisy, lam=lam, iterations=150, channel_axis=-1, l0_solver=solver)
    warm_start = run.step().image  # iteration 0: the FFT ℓ0 solution the fit starts from
    ours = run.run()
    p_in, p_ours = psnr(truth, noisy), psnr(truth, ours)
    assert p_ours > p_in + 1.0, (p_in, p_ours)
    # Region Fusion's exact ℓ0 step moves the fit well past its FFT warm start; the FFT step holds it.
    margin = -0.1 if solver == "fft" else 0.3
    assert p_ours > psnr(truth, warm_start) + margin, (psnr(truth, warm_start), p_ours)


GOOD = np.random.default_rng(0).random((16, 16)).astype(np.float32)


@pytest.mark.parametrize(
    "image, kwargs, exc, match",
    [
        (np.full((8, 8), np.nan), {}, ValueError, "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), {}, ValueError, "NaN or infinite"),
        (np.zeros((0, 8)), {}, ValueError, "empty"),
        (np.zeros(16), {}, ValueError, "two spatial axes"),
        (np.zeros((8, 8), bool), {}, TypeError, "boolean"),
        (np.zeros((8, 8), complex), {}, TypeError, "complex"),
        (np.zeros((8, 8), object), {}, TypeError, "real numbers"),
        (np.array([["a", "b"], ["c", "d"]]), {}, TypeError, "real numbers"),
        ("image.png", {}, TypeError, "string"),
        (GOOD, {"channel_axis": 2}, ValueError, "channel_axis 2 is out of range"),
        (GOOD, {"channel_axis": 1.5}, TypeError, "channel_axis"),
        (np.zeros((8, 3)), {"channel_axis": 1}, ValueError, "two spatial axes"),
        (GOOD, {"lam": -0.1}, ValueError, "lam"),
        (GOOD, {"lam": float("nan")}, ValueError, "lam"),
        (GOOD, {"lam": "big"}, TypeError, "lam"),
        (GOOD, {"iterations": 0}, ValueError, "iterations"),
        (GOOD, {"iterations": -3}, ValueError, "iterations"),
        (GOOD, {"iterations": 2.5}, TypeError, "iterations"),
        (GOOD, {"device": "tpu"}, ValueError, "device"),
        (GOOD, {"device": 3}, TypeError, "device"),
        (GOOD, {"l0_solver": "magic"}, ValueError, "l0_solver"),
        (GOOD, {"seed": -1}, ValueError, "seed"),
        (GOOD, {"dtype": "bogus"}, TypeError, "dtype"),
        (GOOD, {"dtype": bool}, TypeError, "dtype"),
        (GOOD, {"dtype": np.uint8}, TypeError, "the image's .* or a floating-point type"),
    ],
)
def test_bad_input_raises_before_work(image, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        iter_dip_l0(image, **kwargs)  # raises at the call, not at the first next()
    if set(kwargs) <= {"channel_axis", "lam"}:  # l0_smooth checks the same things the same way
        with pytest.raises(exc, match=match):
            l0_smooth(image, kwargs.get("lam", 0.1), channel_axis=kwargs.get("channel_axis"))


def test_bad_mode_and_method():
    with pytest.raises(ValueError, match="mode"):
        iter_dip_l0(GOOD, "sharpen")
    with pytest.raises(ValueError, match="method"):
        l0_smooth(GOOD, 0.1, method="magic")
    with pytest.raises(TypeError, match="preset"):
        iter_dip_l0(GOOD, preset={"lam": 0.1})


def test_cuda_unavailable_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        dip_l0_smooth(GOOD, device="cuda")


def test_preset_is_a_frozen_dataclass():
    p = get_preset("smooth", lam=0.5)
    assert isinstance(p, Preset) and p.lam == 0.5
    with pytest.raises(Exception):
        p.lam = 1.0


def test_preset_fields_are_checked():
    with pytest.raises(ValueError, match="lam"):
        get_preset("smooth", lam=-1.0)
    with pytest.raises(TypeError, match="iterations"):
        get_preset("smooth", iterations=2.5)
    with pytest.raises(ValueError, match="beta"):
        get_preset("smooth", beta=0.0)
    with pytest.raises(ValueError, match="l0_solver"):
        get_preset("smooth", l0_solver="magic")
    with pytest.raises(TypeError, match="residual"):
        get_preset("smooth", residual="yes")
    with pytest.raises(TypeError, match="mode"):
        get_preset(3)


def test_run_settings_are_one_preset():
    run = DipL0Run(GOOD, "deblock", lam=0.05, iterations=7)
    assert run.preset == replace(PRESETS["deblock"], lam=0.05, iterations=7)
    assert run.preset.l0_solver == PRESETS["deblock"].l0_solver  # None: the preset's solver
    assert DipL0Run(GOOD, l0_solver="fft").preset.l0_solver == "fft"
    custom = replace(PRESETS["smooth"], width=8)
    run = DipL0Run(GOOD, preset=custom, lam=0.01)
    assert run.preset.width == 8 and run.preset.lam == 0.01 and run.preset.iterations == custom.iterations
    first = run.step()
    assert first.preset is run.preset


def test_run_step_stop_and_resume():
    img = _ramp((3, 16, 16), np.uint16)
    run = DipL0Run(img, lam=0.02, iterations=4, warm_iterations=2)
    assert run.last is None and run.total == 4 + 2 * 2
    snaps = [run.step() for _ in range(3)]
    assert [s.iteration for s in snaps] == [0, 1, 2] and run.last is snaps[-1]
    stopped = run.last.image  # stopping is just not stepping: the estimate so far
    assert stopped.shape == img.shape and stopped.dtype == img.dtype
    np.testing.assert_array_equal(stopped[1:], img[1:])  # planes not reached yet are as given
    out = run.run()  # resumes where it stopped
    assert run.last.done and run.step() is None
    np.testing.assert_array_equal(out, DipL0Run(img, lam=0.02, iterations=4, warm_iterations=2).run())


def test_iterating_a_run_equals_iter_dip_l0():
    img = _ramp((16, 16), np.float32)
    a = [s.iteration for s in DipL0Run(img, iterations=3)]
    b = [s.iteration for s in iter_dip_l0(img, iterations=3)]
    assert a == b == [0, 1, 2, 3]


def test_small_tile_size_gets_a_fitting_overlap():
    img = _ramp((100, 90), np.float32)
    run = DipL0Run(img, iterations=1, tile_size=64)  # the default overlap (64) would not fit a 64 tile
    assert run.tile_overlap == 16 and len(run.windows) == 4
    assert run.run().shape == img.shape
