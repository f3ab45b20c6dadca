"""Camera-noise denoising: the robust intensity scale, the noise estimate, λ='auto' and dip_l0_denoise."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio as psnr

from napari_dip_l0 import DipL0Run, dip_l0_denoise, l0_smooth
from napari_dip_l0.core.admm import AdmmFit
from napari_dip_l0.core.api import l0_preview
from napari_dip_l0.core.defects import fill_defects, robust_range
from napari_dip_l0.core.l0 import fft_l0, parallel_fusion
from napari_dip_l0.core.noise import noise_model, noise_sigma
from napari_dip_l0.core.planes import PlaneReader
from napari_dip_l0.core.presets import PRESETS


def _scene(shape=(48, 48)):
    """Clean intensities on [0, 1]: dim background, two bright blobs, a ramp."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    clean = 0.1 + 0.2 * xx / shape[1]
    clean[(yy - 14) ** 2 + (xx - 14) ** 2 < 64] = 1.0
    clean[(yy - 32) ** 2 + (xx - 30) ** 2 < 49] = 0.7
    return clean


def _camera(clean, peak, seed=0, hot=0):
    """Poisson counts at ``peak`` photons, read noise, gain 2, offset 100, uint16; ``hot`` hot pixels at 4095."""
    rng = np.random.default_rng(seed)
    adu = np.rint(100 + 2 * (rng.poisson(peak * clean) + rng.normal(0, 1.5, clean.shape)))
    if hot:
        adu.flat[rng.choice(adu.size, hot, replace=False)] = 4095
    return np.clip(adu, 0, 65535).astype(np.uint16)


# ----- the robust scale -----------------------------------------------------------------------------------------
def test_robust_range_leaves_out_hot_and_dead_pixels():
    frame = _camera(_scene(), 50)
    hot = frame.copy()
    hot[5, 5], hot[40, 7], hot[20, 44] = 4095, 4095, 0
    assert robust_range(hot) == robust_range(frame)
    lo, hi = robust_range(frame)
    assert frame.min() <= lo < hi <= frame.max()


def test_robust_range_of_stacks_channels_and_constants():
    stack = np.stack([_camera(_scene(), 50, seed=s) for s in range(3)])
    lo, hi = robust_range(stack)
    assert (lo, hi) == (min(robust_range(p)[0] for p in stack), max(robust_range(p)[1] for p in stack))
    rgb = np.stack([_scene(), 0.5 * _scene(), np.zeros((48, 48))], axis=-1)
    assert robust_range(rgb, channel_axis=-1) == (0.0, 1.0)
    assert robust_range(np.full((5, 5), 7, np.uint8)) == (7, 7)


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(["u1", "u2", "i2", "i4", "i8", "u8", "f2", "f4", "f8", ">u2"]),
       seed=st.integers(0, 2**16), hot=st.integers(0, 4))
def test_robust_scale_round_trips_and_keeps_outliers(dtype, seed, hot):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    img = (20 + 60 * rng.random((12, 14))).astype(dtype)
    img.flat[rng.choice(img.size, hot, replace=False)] = 120  # brighter than any structure
    reader = PlaneReader(img, None, robust=True)
    plane = reader.read(0)
    out = reader.new_output()
    reader.store(out, 0, plane)
    back = reader.assemble(out)
    assert back.dtype == img.dtype and back.shape == img.shape
    # Integers come back exactly; floats within the float32 planes' precision (or the dtype's own).
    span = float(img.max()) - float(img.min())
    tol = 0 if dtype.kind in "iu" else max(span * 3e-7, float(np.finfo(dtype).eps) * float(img.max()))
    np.testing.assert_allclose(back.astype(float), img.astype(float), rtol=0, atol=tol)
    if reader.layout.scale is not None:  # the robust range maps to [0, 1]; outliers lie beyond it, unclipped
        lo, hi = reader.layout.scale
        assert np.isclose(plane.max(), (float(img.max()) - lo) / (hi - lo), rtol=1e-5)


def test_scale_is_the_plain_one_without_outliers():
    ramp = np.tile(np.arange(64, dtype=np.uint16), (8, 1))
    assert PlaneReader(ramp, None, robust=True).layout.scale is None


def test_fill_defects_replaces_isolated_outliers_only():
    rng = np.random.default_rng(0)
    plane = (0.5 + 0.3 * rng.standard_normal((24, 24, 1))).astype(np.float32)  # noisy: some values beyond [0, 1]
    assert fill_defects(plane) is plane
    plane[10:13, 10:13] = 3.0  # a bright 3×3 object: structure, kept
    plane[2, 2], plane[2, 3] = 40.0, 35.0  # two neighbouring hot pixels
    plane[20, 5] = -6.0  # a dead pixel
    before = plane.copy()
    filled = fill_defects(plane)
    np.testing.assert_array_equal(plane, before)  # the input is not modified
    changed = np.argwhere(filled != plane)[:, :2].tolist()
    assert sorted(changed) == [[2, 2], [2, 3], [20, 5]]
    assert np.all(np.abs(filled[[2, 2, 20], [2, 3, 5]]) < 2)


@pytest.mark.slow  # a fit long enough to gain
def test_hot_pixels_neither_disturb_the_fit_nor_survive_it():
    clean = _scene()
    frame = _camera(clean, 20)
    hot = _camera(clean, 20, hot=8)  # the same noise, with 8 hot pixels on top
    where = hot == 4095
    truth = 100 + 2 * 20 * clean
    a = dip_l0_denoise(frame, iterations=150, device="cpu").astype(float)
    b = dip_l0_denoise(hot, iterations=150, device="cpu").astype(float)
    keep = ~where
    score = [psnr(truth[keep], x[keep], data_range=40) for x in (a, b)]
    # The neighbours of hot pixels are about as good as without them. At 150 iterations a fit is not settled:
    # over seeds 0-4 the two scores differed by -2.2 to +0.7 dB, while without the fill the frame with hot
    # pixels lost 7.5-8.8 dB (seeds 0-2).
    assert score[1] > score[0] - 3, score
    assert np.abs(b[where] - truth[where]).max() < 20  # and the hot pixels themselves are denoised


# ----- the noise level and λ ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.1])
def test_noise_sigma_measures_gaussian_noise(sigma):
    noisy = _scene((128, 128)) + sigma * np.random.default_rng(0).standard_normal((128, 128))
    reader = PlaneReader(noisy, None, data_range=(0, 1))
    assert noise_sigma(reader) == pytest.approx(sigma, rel=0.2)


def test_auto_lambda_follows_the_noise_and_ignores_hot_pixels():
    clean = _scene()
    runs = {peak: DipL0Run(_camera(clean, peak), "denoise", device="cpu") for peak in (5, 20, 100)}
    lams = [runs[p].preset.lam for p in (5, 20, 100)]
    assert lams[0] > lams[1] > lams[2]  # fewer photons: more noise, a larger λ
    for run in runs.values():
        assert run.preset.lam == pytest.approx(PRESETS["denoise"].lam_noise * run.noise**2)
    hot = DipL0Run(_camera(clean, 20, hot=6), "denoise", device="cpu")
    assert hot.reader.layout.scale is not None
    assert hot.preset.lam == pytest.approx(runs[20].preset.lam, rel=0.15)


def test_a_blank_plane_of_a_stack_changes_neither_the_noise_model_nor_lambda():
    frames = [_camera(_scene((48, 48)), 20, seed=s) for s in range(2)]
    blank = np.full_like(frames[0], int(np.median(frames[0])))
    plain = DipL0Run(np.stack(frames), "denoise", device="cpu")
    with_blank = DipL0Run(np.stack([frames[0], blank, frames[1]]), "denoise", device="cpu")
    assert plain.noise_model[0] > 0  # shot noise found
    assert with_blank.noise_model == pytest.approx(plain.noise_model) and with_blank.preset.lam == plain.preset.lam
    # Planes that are all blank still give a (zero) noise level, not the mean of nothing.
    reader = PlaneReader(np.stack([blank, blank]), None, data_range=(0, 200))
    assert noise_sigma(reader) == pytest.approx(0, abs=1e-9) and noise_model(reader) == pytest.approx((0, 0), abs=1e-9)


def test_auto_lambda_in_other_modes_is_the_preset_and_explicit_lambda_wins():
    frame = _camera(_scene(), 20)
    assert DipL0Run(frame, "smooth", device="cpu").preset.lam == PRESETS["smooth"].lam
    assert DipL0Run(frame, "smooth", device="cpu").noise is None
    run = DipL0Run(frame, "denoise", lam=0.02, device="cpu")
    assert run.preset.lam == 0.02 and run.noise is None
    assert DipL0Run(frame, "denoise", lam=None, device="cpu").preset.lam == \
        DipL0Run(frame, "denoise", device="cpu").preset.lam


@pytest.mark.parametrize("lam, exc", [("Auto", TypeError), ("0.1", TypeError), (-0.1, ValueError)])
def test_bad_lambda_is_refused(lam, exc):
    with pytest.raises(exc, match="lam"):
        DipL0Run(_scene(), "denoise", lam=lam)


def test_l0_preview_uses_the_runs_scale_and_lambda():
    frame = _camera(_scene(), 20, hot=3)
    run = DipL0Run(frame, "denoise", device="cpu")
    flat, lam = l0_preview(frame, "denoise")
    assert lam == run.preset.lam
    # ℓ0 smoothing on the run's scale: robust, then stabilised, and mapped back.
    reader = run.reader
    assert reader.stabiliser is not None
    want = reader.new_output()
    reader.store(want, 0, parallel_fusion(reader.read_filled(0), lam))
    np.testing.assert_array_equal(flat, reader.assemble(want))
    assert not np.array_equal(flat, l0_smooth(frame, lam, robust=True))
    hot = frame == 4095
    assert flat.dtype == np.float32 and flat[hot].max() < 200  # the run's dtype; hot pixels filled, as in a run
    manual, used = l0_preview(frame, "denoise", lam=0.02, method="fft")
    assert used == 0.02
    reader.store(want, 0, fft_l0(reader.read_filled(0), 0.02))
    np.testing.assert_array_equal(manual, reader.assemble(want))
    smooth, _ = l0_preview(frame, "smooth", lam=0.02, method="fft")
    np.testing.assert_array_equal(smooth, l0_smooth(frame, 0.02, method="fft"))
    with pytest.raises(ValueError, match="unknown method"):
        l0_preview(frame, "denoise", method="nope")


# ----- the whole run --------------------------------------------------------------------------------------------
@pytest.mark.slow  # a fit long enough to gain
def test_denoise_beats_the_input_between_its_levels():
    clean = _scene()
    frame = _camera(clean, 10, hot=2)
    before = frame.copy()
    out = dip_l0_denoise(frame, iterations=150, device="cpu")
    # float32 on the frame's own ADU scale, within its range, and not rounded to its levels
    assert out.dtype == np.float32 and out.shape == frame.shape
    assert frame.min() <= out.min() and out.max() <= frame.max()
    assert np.mean(out != np.rint(out)) > 0.5
    np.testing.assert_array_equal(frame, before)
    truth = 100 + 2 * 10 * clean
    keep = frame != 4095

    def gain(result):
        return psnr(truth[keep], result[keep].astype(float), data_range=20) - \
            psnr(truth[keep], frame[keep].astype(float), data_range=20)

    assert gain(out) > 3, gain(out)
    # The frame's dtype on request: the same result rounded to its levels, and worse for it at 10 photons.
    rounded = dip_l0_denoise(frame, iterations=150, device="cpu", dtype=frame.dtype)
    assert rounded.dtype == np.uint16
    np.testing.assert_allclose(rounded, out, atol=0.5 + 1e-3)
    assert gain(out) > gain(rounded)


def test_denoise_is_deterministic_and_handles_stacks_and_channels():
    frame = _camera(_scene((32, 32)), 20)
    a = dip_l0_denoise(frame, iterations=4, device="cpu")
    np.testing.assert_array_equal(a, dip_l0_denoise(frame, iterations=4, device="cpu"))
    stack = np.stack([frame, frame[::-1]])
    assert dip_l0_denoise(stack, iterations=3, device="cpu").shape == stack.shape
    two = np.stack([frame, frame.T], axis=-1)
    assert dip_l0_denoise(two, iterations=3, channel_axis=-1, device="cpu").shape == two.shape


# ----- the stopping rule ----------------------------------------------------------------------------------------
def _stopping(patience=25, iterations=600, rise=0.0):
    return replace(PRESETS["denoise"], patience=patience, iterations=iterations, rise=rise)


def _rule(patience, rise):
    """A fit whose stopping rule is fed spreads by hand (``_track``), as its steps would feed it."""
    plane = np.zeros((16, 16, 1), np.float32)
    fit = AdmmFit(plane.shape, _stopping(patience=patience, rise=rise), seed=0, device=torch.device("cpu"))
    fit.estimate = torch.zeros(1)

    def feed(*changes):
        for c in changes:
            fit.iteration += 1
            fit._track(c, fit.iteration)
        return fit.stalled

    return fit, feed


def test_a_rising_spread_ends_the_plane_at_once():
    fit, feed = _rule(patience=3, rise=1.5)
    assert not feed(4.0, 4.0, 4.0)  # the first full window: spread 4, the minimum
    assert not feed(1.0, 1.0)  # spread 3, then 2: new minima
    assert fit.best_iteration == 5 and fit.ends_by == 8
    assert not feed(5.0)  # spread (1 + 1 + 5) / 3 = 2.33: above the minimum, below 1.5 times it
    assert feed(5.0) and fit.best_iteration == 5  # 3.67 > 1.5 × 2: stopped now, keeping the minimum's estimate
    # Without `rise` only the patience ends it: three steps after the minimum.
    fit, feed = _rule(patience=3, rise=0.0)
    assert not feed(4.0, 4.0, 4.0, 1.0, 1.0, 5.0, 5.0)
    assert feed(5.0) and fit.best_iteration == 5


@pytest.mark.parametrize("bad", [0.5, 1.0, -1.0, float("inf")])
def test_rise_is_off_or_above_one(bad):
    with pytest.raises(ValueError, match="rise"):
        _stopping(rise=bad)


@pytest.mark.slow  # runs until the stopping rule ends the fit
def test_stopping_rule_keeps_the_estimate_at_the_spread_minimum():
    frame = _camera(_scene((32, 32)), 5)
    run = DipL0Run(frame, "denoise", preset=_stopping(), device="cpu")
    snaps = list(run)
    kept = run.stopped_at[0]
    assert kept is not None and 25 <= kept < 600 - 25  # it stopped, `patience` steps after the minimum
    assert len(snaps) == 1 + kept + 25  # the preview, then one per step until the stop
    assert snaps[-1].done and snaps[-1].iteration == run.total == 600 and snaps[-1].kept == kept
    assert all(s.kept is None for s in snaps[:-1])
    # What the rule would do next, step by step: nothing before its first full window (25 changes, from step 2
    # on), then end `patience` steps after the minimum so far; on the step before the end, at that end.
    assert all(s.ends_by is None for s in snaps[:26]) and snaps[26].ends_by is not None
    assert snaps[-2].ends_by == kept + 25
    # The rule only chooses: the estimate it keeps is that of an uninterrupted run of `kept` steps.
    plain = DipL0Run(frame, "denoise", preset=_stopping(patience=0, iterations=kept), device="cpu").run()
    np.testing.assert_array_equal(snaps[-1].image, plain)
    # Capped before the rule would stop, the run still keeps the estimate of the spread's minimum.
    capped = DipL0Run(frame, "denoise", preset=_stopping(iterations=kept + 10), device="cpu")
    np.testing.assert_array_equal(capped.run(), plain)
    assert capped.stopped_at == [kept] and capped.last.kept == kept
    # Given five times the steps it stops at the same point with the same result.
    longer = DipL0Run(frame, "denoise", preset=_stopping(iterations=3000), device="cpu")
    np.testing.assert_array_equal(longer.run(), snaps[-1].image)
    assert longer.stopped_at == [kept]


@pytest.mark.slow  # runs until the stopping rule ends the fit
def test_a_new_minimum_must_be_lower_by_min_improvement():
    frame = _camera(_scene((32, 32)), 5)
    kept = {}
    for m in (0.0, 0.03, 0.99):
        run = DipL0Run(frame, "denoise", preset=replace(_stopping(), min_improvement=m), device="cpu")
        run.run()
        kept[m] = run.stopped_at[0]
    # The first full window (25 changes, from step 2 on) sets the minimum; nothing falls 99% below it.
    assert kept[0.99] == 26
    # A larger margin counts fewer minima, so it never keeps a later one.
    assert kept[0.99] <= kept[0.03] <= kept[0.0]
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_improvement"):
            replace(_stopping(), min_improvement=bad)


@pytest.mark.slow  # runs until the stopping rule ends the fit
def test_rise_ends_sooner_with_the_estimate_of_the_steps_it_kept():
    frame = _camera(_scene((32, 32)), 5)
    waited = DipL0Run(frame, "denoise", preset=_stopping(), device="cpu")
    waited.run()
    run = DipL0Run(frame, "denoise", preset=_stopping(rise=1.05), device="cpu")
    snaps = list(run)
    kept = run.stopped_at[0]
    assert kept <= waited.stopped_at[0] and len(snaps) < 1 + waited.stopped_at[0] + 25
    plain = DipL0Run(frame, "denoise", preset=_stopping(patience=0, iterations=kept), device="cpu").run()
    np.testing.assert_array_equal(snaps[-1].image, plain)


def test_without_a_stopping_rule_every_iteration_runs():
    frame = _camera(_scene((32, 32)), 5)
    run = DipL0Run(frame, "denoise", preset=_stopping(patience=0, iterations=40), device="cpu")
    assert len(list(run)) == 41 and run.stopped_at == [None] and run.last.kept is None
    with pytest.raises(ValueError, match="patience"):
        _stopping(patience=-1)
    with pytest.raises(TypeError, match="patience"):
        _stopping(patience=2.5)


@pytest.mark.slow  # runs until the stopping rule ends the fit
def test_stopping_rule_ends_each_plane_of_a_stack():
    stack = np.stack([_camera(_scene((32, 32)), 5, seed=s) for s in range(2)])
    run = DipL0Run(stack, "denoise", preset=_stopping(), device="cpu")
    ends = [s for s in run if s.kept is not None]
    out = run.last.image
    assert out.shape == stack.shape and len(run.stopped_at) == 2 and len(ends) == 2
    assert run.last.iteration == run.total
    # The end of plane 0, looked at only now (after the warm-started plane 1 reused its fit), shows plane 0's result.
    np.testing.assert_array_equal(ends[0].image[0], out[0])


def _fitted(preset, plane, steps=None, rewind=True):
    """A fit of ``plane`` run ``steps`` steps, or until its stopping rule ends it."""
    fit = AdmmFit(plane.shape, preset, seed=0, device=torch.device("cpu"), rewind=rewind)
    fit.start(plane)
    while fit.iteration < (preset.iterations if steps is None else steps) and not (steps is None and fit.stalled):
        fit.step()
    return fit


def _same_state(a: AdmmFit, b: AdmmFit) -> bool:
    nets = all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))
    moments = [[v for s in f.opt.state.values() for v in s.values()] for f in (a, b)]
    return nets and all(torch.equal(x, y) for x, y in zip(*moments)) and torch.equal(a.u, b.u)


def test_a_warm_plane_starts_from_the_fit_at_the_estimate_the_rule_kept():
    rng = np.random.default_rng(0)
    first, second = (np.clip(0.5 + 0.2 * rng.standard_normal((24, 24, 1)), 0, 1).astype(np.float32) for _ in "ab")
    fit = _fitted(_stopping(patience=5, iterations=400), first)
    kept = fit.best_iteration
    assert 0 < kept < fit.iteration  # the rule ran past the estimate it kept
    fit.start(second)
    # Network, Adam's moments and the dual are those of an uninterrupted fit of `kept` steps, not of the last step.
    assert _same_state(fit, _fitted(_stopping(patience=0, iterations=400), first, steps=kept))
    # Without a rule nothing was kept: a warm plane goes on from the last step.
    plain = _fitted(_stopping(patience=0, iterations=400), first, steps=kept + 7)
    before = _fitted(_stopping(patience=0, iterations=400), first, steps=kept + 7)
    plain.start(second)
    assert _same_state(plain, before)
    # Nor without `rewind` (a fit no plane follows keeps no copies).
    last = _fitted(_stopping(patience=5, iterations=400), first, rewind=False)
    ended = _fitted(_stopping(patience=5, iterations=400), first, rewind=False)
    assert last.best_iteration == kept and last.iteration > kept  # the same fit, the same rule
    last.start(second)
    assert _same_state(last, ended)


def test_warm_planes_take_the_presets_count():
    stack = np.stack([_camera(_scene((32, 32)), 20, seed=s) for s in range(3)])
    preset = PRESETS["denoise"]
    assert preset.warm_iterations > 0
    assert DipL0Run(stack, "denoise", device="cpu").total == preset.iterations + 2 * preset.warm_iterations
    assert DipL0Run(stack, "denoise", device="cpu", warm_iterations=9).total == preset.iterations + 18
    assert DipL0Run(stack, "denoise", device="cpu", iterations=7).total == 3 * 7  # never more than the first
    fraction = replace(preset, warm_iterations=0, iterations=300)
    assert DipL0Run(stack, preset=fraction, device="cpu").total == 300 + 2 * round(300 * preset.warm_fraction)
    with pytest.raises(ValueError, match="warm_iterations"):
        replace(preset, warm_iterations=-1)


# ----- self-validation: pixels held out of the data term ---------------------------------------------------------
def _fit(plane, **overrides):
    preset = replace(PRESETS["denoise"], holdout=0.2, **overrides)
    return AdmmFit(plane.shape, preset, seed=3, device=torch.device("cpu"))


def test_held_out_pixels_never_enter_the_fit():
    plane = np.random.default_rng(0).random((32, 32, 1), dtype=np.float32)
    a, b = _fit(plane), _fit(plane)
    held = a.held.numpy()
    assert held.dtype == bool and 0.1 < held.mean() < 0.3  # about the fraction asked for, drawn from the seed
    np.testing.assert_array_equal(held, b.held.numpy())
    other = plane.copy()
    other[held] = 1 - other[held]  # change only what is held out
    a.start(plane)
    b.start(other)
    for _ in range(3):
        la, lb = a.step(), b.step()
        assert la["data"] == lb["data"]  # the data term sees the same pixels
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    # ... but the stopping signal does: it is the misfit on exactly those pixels.
    assert a.spread != b.spread


def test_held_out_rule_keeps_the_estimate_at_the_misfit_minimum():
    frame = _camera(_scene((32, 32)), 5)
    preset = replace(_stopping(patience=15, iterations=400), holdout=0.2, min_improvement=0.0)
    run = DipL0Run(frame, "denoise", preset=preset, device="cpu")
    snaps = list(run)
    kept = run.stopped_at[0]
    assert kept is not None and len(snaps) == 1 + kept + 15 and snaps[-1].kept == kept
    # Only the choice differs from a run without the rule: the kept estimate is that of a run of `kept` steps.
    plain = DipL0Run(frame, "denoise", preset=replace(preset, patience=0, iterations=kept), device="cpu").run()
    np.testing.assert_array_equal(snaps[-1].image, plain)
    np.testing.assert_array_equal(DipL0Run(frame, "denoise", preset=preset, device="cpu").run(), snaps[-1].image)


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, float("nan")])
def test_holdout_must_leave_pixels_to_fit(bad):
    with pytest.raises(ValueError, match="holdout"):
        replace(PRESETS["denoise"], holdout=bad)
