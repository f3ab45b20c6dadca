import numpy as np
import pytest
import torch

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # property tests need the 'testing' extra
    given = None

from napari_dip_l0.core.l0 import gradient_count, l0_energy, parallel_fusion, region_fusion

BACKENDS = ["torch", "numba"]  # CI has no GPU: the tensor code path is tested on the CPU


def _smooth_texture(rng, h=64, w=80, channels=None):
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    base = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + 0.1 * np.sin(60 * xx + 40 * yy)
    img = base if channels is None else np.stack([base, base[::-1], 1 - base], axis=-1)
    return np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)


def _noisy_regions(rng, size=72, channels=3, noise=0.08):
    truth = np.zeros((size, size, channels))
    truth[size // 6:size // 2, size // 6:size * 3 // 4] = 0.8
    truth[size // 3:size - 4, size // 2:, 0] = 0.2
    truth[size // 3:size - 4, size // 2:, -1] = 0.9
    img = np.clip(truth + rng.normal(0, noise, truth.shape), 0, 1)
    return img if channels > 1 else img[..., 0]


def _images():
    rng = np.random.default_rng(0)
    return {
        "smooth+texture grey": _smooth_texture(rng),
        "smooth+texture RGB": _smooth_texture(rng, 56, 64, channels=3),
        "noisy regions RGB": _noisy_regions(rng),
        "noisy regions grey": _noisy_regions(rng, 64, channels=1, noise=0.05),
        "uniform noise RGB": rng.random((48, 48, 3)),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_groups_are_means_of_their_pixels(backend):
    img = _smooth_texture(np.random.default_rng(1), 40, 52, channels=3)
    out = parallel_fusion(img, 0.05, backend=backend)
    colours, groups = np.unique(out.reshape(-1, 3), axis=0, return_inverse=True)
    assert 1 < len(colours) < out.shape[0] * out.shape[1] // 4  # merged, but not to one colour
    sums = np.zeros_like(colours)
    np.add.at(sums, groups.ravel(), img.reshape(-1, 3))
    means = sums / np.bincount(groups.ravel())[:, None]
    np.testing.assert_allclose(colours, means, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_result_is_piecewise_constant_on_connected_groups(backend):
    from scipy import ndimage

    img = _noisy_regions(np.random.default_rng(2), 48, channels=1)
    out = parallel_fusion(img, 0.03, backend=backend)
    # Each value is one connected region: groups grow by merging neighbours only (a rare
    # exact coincidence of two separate means aside, which these noisy floats do not have).
    for value in np.unique(out):
        _, n_parts = ndimage.label(out == value)
        assert n_parts == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_lam_zero_returns_input(backend):
    img = np.random.default_rng(3).random((9, 11, 3))
    assert np.array_equal(parallel_fusion(img, 0.0, backend=backend), img)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    assert torch.equal(parallel_fusion(t, 0.0, backend=backend), t)


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_lam_gives_the_mean(backend):
    img = np.random.default_rng(4).random((23, 17, 3))
    out = parallel_fusion(img, 1e6, backend=backend)
    np.testing.assert_allclose(out, np.broadcast_to(img.mean(axis=(0, 1)), img.shape), rtol=0, atol=1e-12)
    assert gradient_count(out) == 0


@pytest.mark.parametrize("name", list(_images()))
def test_energy_within_2_percent_of_region_fusion(name):
    img = _images()[name]
    for lam in (0.01, 0.06):
        e_seq = l0_energy(img, region_fusion(img, lam, max_loop=50), lam)
        for backend in BACKENDS:
            e_par = l0_energy(img, parallel_fusion(img, lam, backend=backend), lam)
            assert e_par <= 1.02 * e_seq, (name, lam, backend, e_par / e_seq)
            assert e_par < l0_energy(img, img, lam)


def test_backends_agree():
    # Same keys, same decisions: the two implementations can differ only where rounding
    # (a prefix sum, a reduction order) flips a near-tie, so allow a little.
    for name, img in _images().items():
        a = parallel_fusion(img, 0.06, backend="torch")
        b = parallel_fusion(img, 0.06, backend="numba")
        assert abs(l0_energy(img, a, 0.06) / l0_energy(img, b, 0.06) - 1) < 0.005, name
        same = np.isclose(a, b, rtol=0, atol=1e-9)
        assert (same.all(axis=-1) if a.ndim == 3 else same).mean() > 0.98, name


@pytest.mark.parametrize("channels", [1, 3])
def test_row_strips(channels):
    # Images of 256 rows or more start on independent row strips (all cores on the CPU);
    # both implementations do, so they still agree, and the energy stays close.
    rng = np.random.default_rng(10)
    img = _smooth_texture(rng, 260, 24, channels=3 if channels == 3 else None)
    t = torch.from_numpy(np.atleast_3d(img)).permute(2, 0, 1)[None]
    e_seq = l0_energy(img, region_fusion(img, 0.06, max_loop=50), 0.06)
    out = {b: parallel_fusion(t, 0.06, backend=b) for b in BACKENDS}
    torch.testing.assert_close(out["torch"], out["numba"], rtol=0, atol=1e-9)
    res = out["numba"][0].permute(1, 2, 0).numpy()
    assert l0_energy(img, res if channels == 3 else res[..., 0], 0.06) <= 1.02 * e_seq
    batch = parallel_fusion(torch.cat([t, t.flip(-1)]), 0.06)
    assert torch.equal(batch[:1], out["numba"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_larger_lam_fewer_gradients(backend):
    rng = np.random.default_rng(5)
    lams = (0.001, 0.005, 0.02, 0.08, 0.3)
    counts = np.zeros(len(lams))
    for _ in range(3):
        img = rng.random((32, 32, 3))
        counts += [gradient_count(parallel_fusion(img, lam, backend=backend)) for lam in lams]
    assert all(a >= b for a, b in zip(counts, counts[1:])), counts
    assert counts[0] > counts[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic(backend):
    img = _smooth_texture(np.random.default_rng(6), 48, 48, channels=3)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    first = parallel_fusion(t, 0.06, backend=backend)
    old = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert torch.equal(parallel_fusion(t, 0.06, backend=backend), first)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 3, 2, 2), (1, 1, 3, 7), (3, 20, 9), (2, 2, 2, 13, 6), (1, 3, 97, 131)])
def test_tensor_in_tensor_out(backend, dtype, shape):
    t = torch.rand(shape, generator=torch.Generator().manual_seed(7), dtype=dtype)
    out = parallel_fusion(t, 0.04, backend=backend)
    assert isinstance(out, torch.Tensor)
    assert out.shape == t.shape and out.dtype == dtype and out.device == t.device
    assert not torch.equal(out, t) or t.shape[-1] * t.shape[-2] <= 4
    # Leading dimensions are independent images: solving one alone gives the same result.
    flat = t.reshape(-1, *t.shape[-3:])
    alone = parallel_fusion(flat[-1:], 0.04, backend=backend)
    torch.testing.assert_close(out.reshape(-1, *t.shape[-3:])[-1:], alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 2), (3, 7), (97, 131), (5, 4, 3), (2, 9, 1)])
def test_numpy_in_numpy_out(shape):
    img = np.random.default_rng(8).random(shape).astype(np.float32)
    out = parallel_fusion(img, 0.05)
    assert isinstance(out, np.ndarray) and out.shape == shape and out.dtype == np.float64
    assert np.isfinite(out).all()
    assert l0_energy(img, out, 0.05) <= l0_energy(img, img, 0.05)


def test_input_is_not_modified_and_grad_is_dropped():
    t = torch.rand(1, 3, 16, 16, requires_grad=True)
    before = t.detach().clone()
    out = parallel_fusion(t, 0.05, backend="torch")
    assert torch.equal(t.detach(), before)
    assert not out.requires_grad


def test_bad_arguments():
    with pytest.raises(ValueError):
        parallel_fusion(torch.rand(8, 8), 0.1)
    with pytest.raises(ValueError):
        parallel_fusion(np.random.rand(8), 0.1)
    with pytest.raises(ValueError):
        parallel_fusion(np.random.rand(8, 8), 0.1, backend="cuda")


if given is not None:

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(h=st.integers(2, 12), w=st.integers(2, 12), c=st.sampled_from([1, 3]),
           lam=st.floats(1e-4, 1.0), seed=st.integers(0, 2**16), levels=st.sampled_from([0, 2, 5]))
    def test_properties(h, w, c, lam, seed, levels):
        rng = np.random.default_rng(seed)
        img = rng.random((h, w, c))
        if levels:  # few grey levels: exact ties between equal neighbours
            img = np.round(img * (levels - 1)) / (levels - 1)
        out = {backend: parallel_fusion(img, lam, backend=backend) for backend in BACKENDS}
        for res in out.values():
            # Never worse than the input, each group's value the mean of its pixels.
            assert l0_energy(img, res, lam) <= l0_energy(img, img, lam) + 1e-9
            colours, groups = np.unique(res.reshape(-1, c), axis=0, return_inverse=True)
            sums = np.zeros_like(colours)
            np.add.at(sums, groups.ravel(), img.reshape(-1, c))
            np.testing.assert_allclose(colours, sums / np.bincount(groups.ravel())[:, None], atol=1e-12)
        e_torch, e_numba = (l0_energy(img, out[b], lam) for b in BACKENDS)
        assert abs(e_torch - e_numba) <= 0.02 * e_numba + 1e-12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_stays_on_device():
    img = _smooth_texture(np.random.default_rng(9), 64, 64, channels=3)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float().cuda()
    out = parallel_fusion(t, 0.06)
    assert out.device == t.device and out.dtype == t.dtype
    cpu = parallel_fusion(t.cpu(), 0.06)
    e_gpu = l0_energy(img, out[0].permute(1, 2, 0).cpu().double().numpy(), 0.06)
    e_cpu = l0_energy(img, cpu[0].permute(1, 2, 0).double().numpy(), 0.06)
    assert abs(e_gpu / e_cpu - 1) < 0.01


def test_admm_iterations_stay_on_the_tensor_path(monkeypatch):
    # What a GPU run does, on the CPU: the v-step on the torch path; no estimate goes through NumPy.
    from napari_dip_l0.core import admm
    from napari_dip_l0.core.presets import get_preset

    plane = _smooth_texture(np.random.default_rng(3), 32, 32, channels=3).astype(np.float32)
    fit = admm.AdmmFit(plane.shape, get_preset("smooth"), seed=0, device=torch.device("cpu"))
    fit.start(plane)
    seen = []

    def torch_fusion(z, lam, **kw):
        seen.append(z.device)
        return parallel_fusion(z, lam, backend="torch", **kw)

    def no_numpy(*args):
        raise AssertionError("a host round trip through NumPy")

    monkeypatch.setattr(admm, "parallel_fusion", torch_fusion)
    monkeypatch.setattr(torch.Tensor, "numpy", no_numpy)
    for _ in range(4):
        losses = fit.step()
    assert seen == [torch.device("cpu")] * 2 and isinstance(fit.estimate, torch.Tensor)
    assert sorted(losses) == ["coupling", "data", "loss"] and all(isinstance(v, float) for v in losses.values())
