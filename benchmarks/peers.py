"""Deep-prior peers of DIP-ℓ0 for the benchmarks: plain DIP and DIP-TV (not part of the package).

They share DIP-ℓ0's network, input, optimiser and output average (the
package's :class:`~napari_dip_l0.core.admm.AdmmFit`) and differ only in the
loss: the data term alone (plain DIP, Ulyanov et al. 2018), or the data term
plus an anisotropic total variation of the output (DIP-TV, as in Cascarano
et al. 2020, here without their ADMM split). Images are float (H, W, C) on
[0, 1], as the benchmark sets are.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch

from napari_dip_l0.core.admm import AdmmFit, to_numpy
from napari_dip_l0.core.presets import Preset


class PlainDip(AdmmFit):
    """DIP without the ℓ0 coupling: no v-step, no dual; ``tv`` > 0 adds a TV term."""

    def __init__(self, shape, preset: Preset, *, tv: float = 0.0, **kwargs):
        super().__init__(shape, replace(preset, residual=False), **kwargs)
        self.tv = tv

    def step(self) -> dict[str, float]:
        p, h, w = self.preset, self.shape[0], self.shape[1]
        k = self.iteration = self.iteration + 1
        inp = self.z + p.noise_std * torch.randn(self.z.shape, generator=self.gen, device=self.device)
        out = self.net(inp)[:, :, :h, :w]
        loss = data = torch.mean((out - self.f) ** 2)
        if self.tv:
            loss = loss + self.tv * (out.diff(dim=-1).abs().mean() + out.diff(dim=-2).abs().mean())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        g = out.detach()
        decay = min(p.ema, (1.0 + k) / (10.0 + k))
        self.estimate = g if self.estimate is None else torch.add(self.estimate * decay, g, alpha=1.0 - decay)
        return {"loss": loss.item(), "data": data.item()}


def plain_dip(observed: np.ndarray, preset: Preset, iterations: int, *, tv: float = 0.0, seed: int = 0,
              device: str = "cpu") -> Iterator[tuple[int, np.ndarray, float]]:
    """Yield (iteration, estimate, seconds) of plain DIP (``tv=0``) or DIP-TV on a float (H, W, C) image."""
    t0 = time.perf_counter()
    plane = np.ascontiguousarray(observed, dtype=np.float32)
    fit = PlainDip(plane.shape, preset, tv=tv, seed=seed, device=torch.device(device))
    fit.start(plane)
    for k in range(1, iterations + 1):
        fit.step()
        yield k, np.clip(to_numpy(fit.estimate), 0, 1), time.perf_counter() - t0
