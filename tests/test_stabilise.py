"""Variance stabilisation: the Poisson–Gaussian noise fit, the transform and its unbiased inverse, and the run."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_dip_l0 import DipL0Run
from napari_dip_l0.core.noise import noise_model
from napari_dip_l0.core.planes import PlaneReader
from napari_dip_l0.core.presets import PRESETS
from napari_dip_l0.core.stabilise import Stabiliser, fit_noise_model


def _ramp(side=256):
    return np.tile(np.linspace(0.02, 1.0, side), (side, 1))[..., None]


@settings(max_examples=15, deadline=None)
@given(photons=st.sampled_from([5, 20, 100, 500]), read=st.sampled_from([0.0, 0.5, 2.0]), seed=st.integers(0, 2**16))
def test_the_fit_finds_shot_and_read_noise(photons, read, seed):
    # x = (Poisson(photons · clean) + N(0, read²)) / photons: variance x / photons + (read / photons)².
    rng = np.random.default_rng(seed)
    clean = _ramp()
    x = (rng.poisson(photons * clean) + rng.normal(0, read, clean.shape)) / photons
    a, b = fit_noise_model([x])
    # Over 60 seeds a was within 7 % of the truth, except where read noise outweighs the shot noise at mid
    # grey (5 photons, read 2: -18 % to +10 %, the slope barely shows); the variance at mid grey within 4 %.
    assert a == pytest.approx(1 / photons, rel=0.3 if read**2 > 0.5 * photons else 0.12)
    assert a * 0.5 + b == pytest.approx(0.5 / photons + (read / photons) ** 2, rel=0.1)


def test_noise_that_does_not_grow_with_the_signal_gives_no_slope():
    rng = np.random.default_rng(1)
    x = _ramp() + rng.normal(0, 0.05, (256, 256, 1))
    a, b = fit_noise_model([x])
    assert a < 0.1 * b  # at most a tenth more variance at the top than at the bottom
    assert a + b == pytest.approx(0.05**2, rel=0.15)
    # Pure noise: the groups span a sliver of intensities, and a chance slope is not taken for one.
    assert fit_noise_model([rng.random((64, 64, 1)) * 0.1])[0] == 0.0
    # Too few blocks to tell: no slope, never an error.
    assert fit_noise_model([x[:6, :6]])[0] == 0.0
    assert fit_noise_model([np.zeros((0, 0, 1))]) == (0.0, 0.0)


def test_edges_do_not_fake_a_slope():
    # Flat regions of very different brightness with constant noise: the edges between them are in the
    # details, but the trimmed variances and the median-filtered means keep them out.
    rng = np.random.default_rng(2)
    clean = np.zeros((256, 256, 1))
    clean[:, 128:] = 1.0
    clean[64:192, 32:96] = 0.5
    a, b = fit_noise_model([clean + rng.normal(0, 0.02, clean.shape)])
    assert a < 0.1 * b


def test_the_transform_makes_the_noise_level_even_and_inverts_without_bias():
    rng = np.random.default_rng(3)
    photons = 10  # a few photons a pixel: where the algebraic inverse is biased
    s = Stabiliser(1 / photons, 0.0)
    levels = np.array([0.3, 0.6, 1.0])
    counts = rng.poisson(photons * levels[:, None], (3, 200_000)) / photons
    z = s.forward(counts)
    stds = z.std(axis=1)
    assert stds == pytest.approx(s.sigma, rel=0.12)  # the raw std grows 1.8× from 0.3 to 1.0
    # The ideal denoiser's output, the mean of z, maps back to the mean intensity.
    back = s.inverse(z.mean(axis=1))
    np.testing.assert_allclose(back, levels, rtol=0.03)
    algebraic = (((z.mean(axis=1) / s.sigma + s._z0) / 2) ** 2 - 3 / 8) / photons
    assert np.all(np.abs(algebraic - levels) > np.abs(back - levels))
    assert s.forward(np.float32(0)) == 0 and s.forward(np.float32(1)) == pytest.approx(1)
    assert s.forward(np.zeros(3, np.float32)).dtype == np.float32


@pytest.mark.parametrize("a, b", [(0.0, 0.1), (-0.1, 0.0), (0.1, -1e-3), (np.nan, 0.0), (0.1, np.inf)])
def test_a_bad_noise_model_is_refused(a, b):
    with pytest.raises(ValueError, match="noise model"):
        Stabiliser(a, b)


def test_reader_with_a_stabiliser_round_trips():
    rng = np.random.default_rng(4)
    frame = np.rint(100 + 2 * rng.poisson(200 * _ramp(64)[..., 0])).astype(np.uint16)
    reader = PlaneReader(frame, None, robust=True)
    plain = reader.read_filled(0)
    reader.stabiliser = Stabiliser(*noise_model(reader))
    z = reader.read_filled(0)
    assert z.dtype == np.float32 and not np.allclose(z, plain)
    out = reader.new_output()
    reader.store(out, 0, z)
    # The unbiased inverse of a single noisy value is not the value itself, but close at 200 photons.
    assert np.abs(out[0, ..., 0].astype(float) - frame).max() <= 3


def _camera(clean, peak, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(100 + 2 * (rng.poisson(peak * clean) + rng.normal(0, 1.5, clean.shape))),
                   0, 65535).astype(np.uint16)


def test_the_denoise_run_fits_the_stabilised_image():
    yy, xx = np.mgrid[:64, :64]
    clean = 0.05 + 0.95 * ((yy - 32) ** 2 + (xx - 32) ** 2 < 300)
    frame = _camera(clean, 20)
    run = DipL0Run(frame, "denoise", iterations=3, device="cpu")
    assert PRESETS["denoise"].stabilise
    a, b = run.noise_model
    lo, hi = run.reader.layout.scale or (run.reader.layout.lo, run.reader.layout.hi)
    assert a == pytest.approx(2 / (hi - lo), rel=0.25)  # gain 2 ADU per photon, on the [0, 1] scale
    assert b >= 0 and run.reader.stabiliser is not None
    # λ and the noise level are on the transformed scale, where the noise std is the model's.
    assert run.noise == pytest.approx(run.reader.stabiliser.sigma, rel=0.2)
    assert run.preset.lam == pytest.approx(PRESETS["denoise"].lam_noise * run.noise**2)
    out = run.run()
    assert out.dtype == np.float32 and out.shape == frame.shape
    np.testing.assert_array_equal(out, DipL0Run(frame, "denoise", iterations=3, device="cpu").run())
    # Without the field, the same preset fits the plain [0, 1] scale.
    plain = DipL0Run(frame, preset=replace(PRESETS["denoise"], stabilise=False), iterations=3, device="cpu")
    assert plain.noise_model is None and plain.reader.stabiliser is None
    assert DipL0Run(frame, "smooth", device="cpu").noise_model is None


def test_constant_and_tiny_images_run_unstabilised():
    for image in (np.full((16, 16), 7, np.uint16), np.random.default_rng(0).random((6, 6))):
        run = DipL0Run(image, "denoise", iterations=2, device="cpu")
        assert run.reader.stabiliser is None
        assert run.run().shape == image.shape
