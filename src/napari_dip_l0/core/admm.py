"""DIP-ℓ0 by ADMM on one plane.

Model (Tran, Bui & Xin 2026): ``min_θ ||f - g_θ(x)||² + lam ||∇ g_θ(x)||_0``,
split with ``v = g_θ(x)``, scaled multiplier ``u`` and penalty ``beta``:

1. θ-step: one Adam step on ``||f - g||² + beta/2 ||g - v + u||²``;
2. v-step: ``v = l0(g + u, 2 lam / beta)`` (Region Fusion, parallel or
   sequential, or the FFT solver);
3. u-step: ``u += g - v``;
4. output: exponential moving average of ``g``.

With ``preset.patience`` the fit also tracks a stopping signal and
:attr:`AdmmFit.stalled` says when its minimum is ``patience`` steps old: the
point to stop (see :class:`.presets.Preset`). With ``preset.holdout`` the
signal is the misfit of the average on pixels left out of the data term
(self-validation: the noise there is independent of what the network saw,
so that misfit follows the error against the clean image); without, the
spread of ``g`` around the average (its mean squared change from it over
the last ``patience`` steps); with ``preset.rise`` the spread rule also
stops as soon as the spread has risen that many times above its minimum.

Losses are means over pixels, which rescales the whole objective and leaves
the v-step's weight ``2 lam / beta`` unchanged. Planes, tiles, snapshots and
validation live in :mod:`.run`; this module is the iteration itself.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np
import torch

from .l0 import fft_l0, parallel_fusion, region_fusion
from .l0.parallel import set_numba_threads
from .network import SkipNet, make_input, padded_size
from .presets import Preset

__all__ = ["AdmmFit", "v_step", "to_numpy"]

_INIT_LOCK = threading.Lock()  # networks are initialised from torch's global generator: one at a time


def v_step(z: torch.Tensor, lam: float, solver: str, max_loop: int = 50) -> torch.Tensor:
    """ℓ0 smoothing of a (1, C, H, W) tensor with ``solver``, returned on its device and dtype."""
    if solver == "fft":
        # float64 keeps the large splitting weights exact; MPS has no float64.
        dtype = torch.float32 if z.device.type == "mps" else torch.float64
        return fft_l0(z.to(dtype), lam).to(z.dtype)
    if solver == "parallel_fusion":
        # Stays on the device: no host round trip on a GPU. On the CPU numba uses as many threads as torch.
        if z.device.type == "cpu":
            set_numba_threads(torch.get_num_threads())
        return parallel_fusion(z.detach(), lam, max_loop=max_loop)
    v = region_fusion(to_numpy(z), lam, max_loop=max_loop)
    return torch.from_numpy(v).to(device=z.device, dtype=z.dtype).permute(2, 0, 1)[None]


def _held_out(h: int, w: int, fraction: float, seed: int, device) -> torch.Tensor | None:
    """A (H, W) mask of ``fraction`` of the pixels, drawn from ``seed`` alone (``None`` for 0)."""
    if fraction <= 0:
        return None
    gen = torch.Generator().manual_seed((seed + 0x5EED) % 2**64)  # apart from the weights' and input's streams
    return (torch.rand(h, w, generator=gen) < fraction).to(device)


def _fill(f: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
    """``f`` (1, C, H, W) with its ``held`` pixels replaced by the mean of the others in a 5×5 window."""
    keep = (~held).to(f.dtype)[None, None]
    box = torch.ones(f.shape[1], 1, 5, 5, dtype=f.dtype, device=f.device)
    total = torch.nn.functional.conv2d(f * keep, box, padding=2, groups=f.shape[1])
    count = torch.nn.functional.conv2d(keep.expand_as(f), box, padding=2, groups=f.shape[1])
    mean = (f * keep).sum(dim=(2, 3), keepdim=True) / keep.sum()
    return torch.where(held, torch.where(count > 0, total / count.clamp(min=1), mean), f)


def _copy(state):
    """A deep copy of a state dict's tensors (nested dicts and lists of an optimiser's state too)."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _copy(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_copy(v) for v in state]
    return state


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A (1, C, H, W) tensor as a new (H, W, C) array on the host."""
    return t[0].permute(1, 2, 0).detach().cpu().numpy().copy()


class AdmmFit:
    """The state of DIP-ℓ0 on planes of one shape: network, optimiser, input noise and ADMM dual.

    Like deepinv's DIP model, one object holds everything a fit needs; calling
    :meth:`start` again with another plane of the same shape continues from
    the current network, optimiser state and dual (a warm start), or, with
    ``rewind`` and where the stopping rule kept an estimate, from their state
    at that estimate's step: the steps after it were learning that plane's
    noise.

    Parameters
    ----------
    shape : (int, int, int)
        ``(H, W, C)`` of the planes this fit takes.
    preset : Preset
        Settings (λ, β, network size, learning rate, ...).
    seed : int
        Seed of the network weights and of the input noise.
    device : torch.device
    inputs : dict, optional
        Cache of network inputs by padded shape: the input depends only on
        the seed and the shape, so tiles of one run share one (and the
        buffer of the perturbed input, which a step uses only while it runs).
    constraint : callable, optional
        A projection onto the images the data allows (for a JPEG file,
        :meth:`.jpeg.JpegConstraint.project`). The fit itself is unchanged
        (data term to the plane); what it gives out (the warm start it
        returns, :meth:`output`, :meth:`consistent` estimates) is projected.
        On the JPEG tuning pictures this beat fitting to the set (data term
        the distance to it, ``v`` projected too), which left the ℓ0 prior
        free to flatten everything inside the quantisation intervals.
    rewind : bool
        Keep network, optimiser and dual at each estimate the stopping rule
        keeps (a copy, 1.7 ms at each new minimum), for :meth:`start` to go
        back to: for a fit that more planes will follow.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from napari_dip_l0.core.admm import AdmmFit
    >>> from napari_dip_l0.core.presets import get_preset
    >>> plane = np.random.default_rng(0).random((32, 32, 1), dtype=np.float32)
    >>> fit = AdmmFit(plane.shape, get_preset("smooth"), seed=0, device=torch.device("cpu"))
    >>> preview = fit.start(plane)        # the FFT ℓ0 warm start, (32, 32, 1)
    >>> losses = fit.step()               # one ADMM iteration
    >>> fit.iteration, sorted(losses)
    (1, ['coupling', 'data', 'loss'])
    """

    def __init__(self, shape: tuple[int, int, int], preset: Preset, *, seed: int, device: torch.device,
                 inputs: dict | None = None, constraint: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 rewind: bool = False):
        h, w, c = shape
        self.shape = (h, w, c)
        self.preset = preset
        self.device = device
        self.constraint = constraint
        self.rewind = rewind
        hp, wp = padded_size(h, preset.depth), padded_size(w, preset.depth)
        # A private RNG stream: same seed, same result, and the caller's global torch RNG is untouched. The
        # global generator is the process's: runs in threads (dask's threaded scheduler) take turns on it.
        with _INIT_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = SkipNet(preset.input_depth, c, width=preset.width, depth=preset.depth, skip=preset.skip,
                          residual=preset.residual)
        # channels_last: measured 24% faster per step on CPU at 512² (oneDNN prefers NHWC).
        self.net = net.to(device, memory_format=torch.channels_last).train()
        self.gen = torch.Generator(device=device).manual_seed(seed)
        z = make_input(preset.input_depth, hp, wp, generator=self.gen, device=device).contiguous(
            memory_format=torch.channels_last)
        self.inputs = {} if inputs is None else inputs
        self.z = self.inputs.setdefault((hp, wp), z)
        # foreach: the same arithmetic as the per-tensor loop (bit-identical), without its Python overhead.
        self.opt = torch.optim.Adam(self.net.parameters(), lr=preset.lr, foreach=True)
        self.u = torch.zeros((1, c, h, w), device=device)
        self.held = _held_out(h, w, preset.holdout, seed, device)
        self._fitted = None if self.held is None else ~self.held
        self.iteration = 0
        self.estimate: torch.Tensor | None = None
        self._reset_spread()

    def _reset_spread(self) -> None:
        self._changes: deque[float] = deque(maxlen=max(1, self.preset.patience))
        self.spread: float | None = None
        self.best: torch.Tensor | None = None  # the estimate at the spread's minimum
        self._best_state: dict | None = None  # network, optimiser and dual at that minimum
        self.best_iteration = 0
        self._best_spread = float("inf")
        self._rose = False  # the spread rose ``preset.rise`` times above its minimum

    @property
    def stalled(self) -> bool:
        """The stopping rule's verdict: no new minimum of the spread for ``preset.patience`` steps, or a
        spread ``preset.rise`` times its minimum."""
        p = self.preset.patience
        return p > 0 and self.best is not None and (self._rose or self.iteration - self.best_iteration >= p)

    @property
    def ends_by(self) -> int | None:
        """The step by which the stopping rule ends this plane unless a new minimum comes first (``None``
        before the rule has a minimum, or without one)."""
        p = self.preset.patience
        return self.best_iteration + p if p > 0 and self.best is not None else None

    def start(self, plane: np.ndarray) -> np.ndarray:
        """Fit ``plane`` (float32 ``(H, W, C)`` on [0, 1]) from the current state; returns the warm start.

        The warm start ``w0`` is the FFT ℓ0 solution of the plane (smooth ramps
        survive it, unlike Region Fusion's staircases): ``v`` starts there and,
        with ``preset.residual``, the network fits a correction, ``g = w0 + net(x)``.
        The warm start returned is projected onto the constraint set, if any.
        """
        if plane.shape != self.shape:
            raise ValueError(f"this fit takes planes of shape {self.shape}, got {plane.shape}")
        p = self.preset
        if self._best_state is not None:
            self._rewind(self._best_state)
        self.f = torch.from_numpy(np.ascontiguousarray(plane.transpose(2, 0, 1)))[None].to(self.device)
        # Held-out pixels must not reach the fit through its warm start either: there they are filled in
        # from their neighbours.
        w0 = v_step(self.f if self.held is None else _fill(self.f, self.held), p.lam, "fft")
        self.v = w0.clone()
        self.base = w0 if p.residual else 0.0
        self.iteration = 0
        self.estimate = None
        self._reset_spread()
        return to_numpy(self.consistent(w0).clamp(0, 1))

    def step(self) -> dict[str, float]:
        """One ADMM iteration; returns the losses and updates :attr:`estimate`.

        :attr:`estimate` is a new tensor after every step (never modified in
        place), so a caller may keep it as the estimate of that iteration.
        """
        p, h, w = self.preset, self.shape[0], self.shape[1]
        k = self.iteration = self.iteration + 1
        inp = self._buffer()
        # Drawn in the buffer's own memory order (channels last), then shifted by z in place: one pass each,
        # where drawing in NCHW order and adding across layouts took a third more time at 512².
        inp.permute(0, 2, 3, 1).normal_(0.0, p.noise_std, generator=self.gen)
        inp.add_(self.z)
        out = self.base + self.net(inp)[:, :, :h, :w]
        misfit = (out - self.f) ** 2
        data = torch.mean(misfit) if self.held is None else torch.mean(misfit[..., self._fitted])
        coupling = torch.mean((out - self.v + self.u) ** 2)
        loss = data + 0.5 * p.beta * coupling
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        g = out.detach()
        if k % p.v_every == 0:
            self.v = v_step(g + self.u, 2.0 * p.lam / p.beta, p.l0_solver, p.rf_loops)
            self.u = self.u + g - self.v
        prev = self.estimate
        numbers = [loss.detach(), data.detach(), coupling.detach()]
        # Early outputs are poor: the decay ramps up so they are forgotten quickly.
        decay = min(p.ema, (1.0 + k) / (10.0 + k))
        self.estimate = g if prev is None else torch.add(prev * decay, g, alpha=1.0 - decay)
        if p.patience > 0:  # the stopping rule's input, only where it is on
            if self.held is not None:
                numbers.append(torch.mean(((self.estimate - self.f) ** 2)[..., self.held]))
            elif prev is not None:
                numbers.append(torch.mean((g - prev) ** 2))
        # One transfer for all the numbers (one sync on a GPU, not three or four).
        losses = torch.stack(numbers).tolist()
        if len(losses) > 3:
            self._track(losses.pop(), k)
        return dict(zip(("loss", "data", "coupling"), losses))

    def _track(self, signal: float, k: int) -> None:
        """Feed the stopping rule this step's signal: the held-out misfit, or the output's change."""
        p = self.preset
        if self.held is not None:
            self.spread = signal
        else:
            self._changes.append(signal)
            # A full window: at first the output barely moves while the fit gets going.
            if len(self._changes) < p.patience:
                return
            self.spread = sum(self._changes) / p.patience
            # The output moving ever faster away from its calmest point: the fit has turned to the noise, and
            # waiting out the patience would only add steps after the estimate the rule keeps anyway.
            self._rose = p.rise > 0 and self.spread > p.rise * self._best_spread
        if self.spread < (1.0 - p.min_improvement) * self._best_spread:
            self._best_spread, self.best, self.best_iteration = self.spread, self.estimate, k
            if self.rewind:
                self._best_state = {"net": _copy(self.net.state_dict()), "opt": _copy(self.opt.state_dict()),
                                    "u": self.u}

    def _rewind(self, state: dict) -> None:
        """Network, optimiser and dual as they were (``state`` from :meth:`_track`)."""
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.u = state["u"]

    def _buffer(self) -> torch.Tensor:
        """The buffer of the perturbed input, shared with the fits of the same run (one, of the latest
        shape): a step uses it only while it runs."""
        buf = self.inputs.get("buffer")
        if buf is None or buf.shape != self.z.shape:
            buf = self.inputs["buffer"] = torch.empty_like(self.z)
        return buf

    def output(self) -> torch.Tensor:
        """The result of the fit so far as the run reports it: the estimate, or with a stopping rule the
        estimate it chose (projected onto the constraint set, if any)."""
        return self.consistent(self.best if self.best is not None else self.estimate)

    def consistent(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` projected onto the constraint set (unchanged without one)."""
        return x if self.constraint is None else self.constraint(x)

