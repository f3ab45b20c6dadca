"""The network and the input perturbation of an ADMM step: memory layouts are a speed choice, never a change
of the function computed."""

import numpy as np
import torch

from napari_dip_l0.core.admm import AdmmFit
from napari_dip_l0.core.network import SkipNet
from napari_dip_l0.core.presets import get_preset


def test_skipnet_computes_the_same_function_in_either_layout():
    torch.manual_seed(0)
    net = SkipNet(8, 3, width=16, depth=3, skip=4).train()
    x = torch.rand(1, 8, 32, 48)
    nchw = net(x)
    weights = torch.rand(nchw.shape)
    (nchw * weights).sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    cl = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    (cl * weights).sum().backward()
    torch.testing.assert_close(cl, nchw, rtol=1e-5, atol=1e-5)
    # Gradients are sums over every pixel, in another order: equal up to float32 rounding of those sums.
    a = torch.cat([p.grad.flatten() for p in net.parameters()])
    b = torch.cat([g.flatten() for g in grads])
    assert (a - b).norm() <= 1e-4 * b.norm()


def test_each_step_perturbs_every_input_channel_afresh_with_the_presets_noise():
    preset = get_preset("smooth")
    plane = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    fit = AdmmFit(plane.shape, preset, seed=0, device=torch.device("cpu"))
    fit.start(plane)
    fit.step()
    first = (fit._buffer() - fit.z).clone()
    fit.step()
    second = fit._buffer() - fit.z
    assert not torch.equal(first, second)
    per_channel = first[0].flatten(1)  # (channels, pixels)
    np.testing.assert_allclose(per_channel.std(dim=1).numpy(), preset.noise_std, rtol=0.05)
    np.testing.assert_allclose(per_channel.mean(dim=1).numpy(), 0.0, atol=0.1 * preset.noise_std)
    # Independent channels: the draw in channels-last order does not tie neighbouring channels together.
    corr = torch.corrcoef(per_channel)
    assert corr.fill_diagonal_(0).abs().max() < 0.1
