import subprocess
import sys

import numpy as np
import pytest

from napari_dip_l0 import l0_smooth
from napari_dip_l0.core.l0 import fft_l0, gradient_count, l0_energy, region_fusion


def _regions_image(rng, noise=0.01):
    truth = np.zeros((50, 60))
    truth[5:30, 5:25] = 0.8
    truth[20:45, 30:55] = 0.4
    truth[35:48, 2:20] = 0.6
    return truth, truth + rng.normal(0, noise, truth.shape)


def test_region_fusion_recovers_regions():
    truth, noisy = _regions_image(np.random.default_rng(0))
    out = region_fusion(noisy, 0.05)
    assert len(np.unique(out)) == len(np.unique(truth))
    assert np.abs(out - truth).max() < 0.01
    # Same partition as the truth: pixels equal in one iff equal in the other.
    _, inv_out = np.unique(out, return_inverse=True)
    _, inv_truth = np.unique(truth, return_inverse=True)
    pairs = set(zip(inv_out.ravel().tolist(), inv_truth.ravel().tolist()))
    assert len(pairs) == len(np.unique(truth))


def test_region_fusion_lam_zero_is_identity():
    _, noisy = _regions_image(np.random.default_rng(1), noise=0.05)
    assert np.array_equal(region_fusion(noisy, 0.0), noisy)


def test_region_fusion_regions_fall_as_lam_grows():
    rng = np.random.default_rng(2)
    img = rng.random((40, 40, 3))
    counts = [len(np.unique(region_fusion(img, lam).reshape(-1, 3), axis=0)) for lam in (0.001, 0.01, 0.05, 0.2, 1.0)]
    assert all(a > b for a, b in zip(counts, counts[1:])), counts


def test_region_fusion_output_is_group_means():
    rng = np.random.default_rng(3)
    img = rng.random((30, 30))
    out = region_fusion(img, 0.1)
    for value in np.unique(out)[:20]:
        mask = out == value
        assert np.isclose(img[mask].mean(), value)


@pytest.mark.parametrize("lam", [0.005, 0.02, 0.08])
def test_region_fusion_energy_below_input_and_fft(lam):
    rng = np.random.default_rng(4)
    truth = np.zeros((48, 48, 3))
    truth[8:40, 8:24] = (0.9, 0.1, 0.2)
    truth[16:44, 20:44] = (0.1, 0.5, 0.8)
    img = np.clip(truth + rng.normal(0, 0.08, truth.shape), 0, 1)
    rf = region_fusion(img, lam)
    fft = fft_l0(img, lam)
    e_rf = l0_energy(img, rf, lam)
    assert e_rf < l0_energy(img, img, lam)
    assert e_rf < l0_energy(img, fft, lam)


def test_region_fusion_colour_merges_jointly():
    img = np.zeros((10, 20, 3))
    img[:, 10:, 0] = 1.0  # edge in red only
    out = region_fusion(img, 0.01)
    # A red-only edge is one edge of the colour image: kept, and counted once per pixel pair.
    assert gradient_count(out) == 10
    assert np.array_equal(out, img)


def test_fft_l0_properties():
    truth, noisy = _regions_image(np.random.default_rng(5), noise=0.05)
    out = fft_l0(noisy, 0.02)
    assert out.shape == noisy.shape and out.dtype == np.float64
    # Smoother than the input, closer to the truth.
    assert np.mean((out - truth) ** 2) < np.mean((noisy - truth) ** 2) / 4
    assert np.array_equal(fft_l0(noisy, 0.0), noisy)
    colour = np.stack([noisy, noisy, 1 - noisy], axis=-1)
    out_c = fft_l0(colour, 0.02)
    assert out_c.shape == colour.shape
    np.testing.assert_allclose(out_c[..., 0], out_c[..., 1])  # one support for all channels
    np.testing.assert_allclose(out_c[..., 2], 1 - out_c[..., 0], atol=1e-9)
    assert np.mean((out_c[..., 0] - truth) ** 2) < np.mean((noisy - truth) ** 2) / 4


def test_gradient_count():
    img = np.zeros((4, 5))
    assert gradient_count(img) == 0
    img[:, 3:] = 1
    assert gradient_count(img) == 4


@pytest.mark.parametrize("method", ["parallel_fusion", "region_fusion", "fft"])
def test_l0_smooth_api(method):
    truth, noisy = _regions_image(np.random.default_rng(6), noise=0.03)
    u16 = np.round(np.clip(noisy, 0, 1) * 4095).astype(np.uint16)  # 12-bit data in 16 bits
    out = l0_smooth(u16, 0.02, method=method)
    assert out.dtype == np.uint16 and out.shape == u16.shape
    assert out.min() >= u16.min() and out.max() <= u16.max()
    assert np.abs(out.astype(float) / 4095 - truth).mean() < np.abs(u16.astype(float) / 4095 - truth).mean()


def test_l0_smooth_stack_and_channels():
    rng = np.random.default_rng(7)
    stack = rng.random((3, 20, 24, 2)).astype(np.float32)
    stack[:, 0, 0] = 0.0  # every plane spans [0, 1], so stack and plane normalise alike
    stack[:, 0, 1] = 1.0
    out = l0_smooth(stack, 0.05, channel_axis=-1)
    assert out.shape == stack.shape and out.dtype == np.float32
    for z in range(3):  # plane by plane, channels jointly
        single = l0_smooth(stack[z], 0.05, channel_axis=-1)
        np.testing.assert_allclose(out[z], single, atol=1e-6)
        assert not np.array_equal(out[z], stack[z])


def test_numba_starting_its_threads_leaves_torch_and_results_alone():
    """numba's OpenMP layer, started by the first parallel v-step, used to reset torch's thread count: the
    same seed then gave another result later in the same process. Run in a fresh process, where it starts."""
    script = """
import numpy as np, torch
torch.set_num_threads(1)
from napari_dip_l0 import DipL0Run
a = (np.random.default_rng(0).random((40, 40)) * 500).astype(np.uint16)
run = lambda solver: DipL0Run(a, iterations=2, device="cpu", l0_solver=solver).run()
first = run("fft")
run("parallel_fusion")
print(torch.get_num_threads(), np.array_equal(first, run("fft")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
    assert done.stdout.split() == ["1", "True"]
