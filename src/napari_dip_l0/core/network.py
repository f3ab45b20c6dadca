"""The deep image prior network: a skip encoder-decoder (Ulyanov et al. 2018)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SkipNet", "padded_size", "make_input"]


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    pad = (kernel - 1) // 2
    layers: list[nn.Module] = [nn.ReflectionPad2d(pad)] if pad else []
    layers.append(nn.Conv2d(cin, cout, kernel, stride=stride))
    return layers


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.LeakyReLU(0.2, inplace=True)]


def _block(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [*_conv(cin, cout, kernel, stride), *_norm_act(cout)]


class _Contiguous(nn.Module):
    """The default (NCHW) memory layout for the layers after it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous()


class _Level(nn.Module):
    """One scale: a skip branch beside a down-deeper-up branch, fused."""

    def __init__(self, cin: int, down: int, up: int, skip: int, deeper: nn.Module | None, deeper_out: int):
        super().__init__()
        # The net runs channels last (oneDNN's convolutions are 1.6-4.5x faster so), but torch's channels-last
        # batch norm is 7x slower than NCHW on a skip's few channels (4 at 512²): that branch switches.
        self.skip = nn.Sequential(*_conv(cin, skip, 1), _Contiguous(), *_norm_act(skip)) if skip else None
        self.down = nn.Sequential(*_block(cin, down, 3, stride=2), *_block(down, down, 3))
        self.deeper = deeper
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        fused = skip + deeper_out
        self.fuse = nn.Sequential(nn.BatchNorm2d(fused), *_block(fused, up, 3), *_block(up, up, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.down(x)
        if self.deeper is not None:
            d = self.deeper(d)
        d = self.up(d)
        if self.skip is not None:
            d = torch.cat([self.skip(x), d], dim=1)
        return self.fuse(d)


class SkipNet(nn.Module):
    """Skip encoder-decoder with a sigmoid output.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the fixed noise input and of the image.
    width : int
        Channels of every down and up level (the reference uses 128).
    depth : int
        Number of scales; input sides must be multiples of ``2 ** depth``.
    skip : int
        Channels of each skip connection (0 disables them).
    residual : bool
        Output an unbounded correction that starts at exactly zero (for a
        warm start ``g = v0 + net(x)``) instead of a sigmoid image.
    """

    def __init__(self, in_channels: int, out_channels: int, *, width: int = 32, depth: int = 4, skip: int = 4,
                 residual: bool = False):
        super().__init__()
        self.depth = depth
        level: nn.Module | None = None
        for i in reversed(range(depth)):
            cin = in_channels if i == 0 else width
            level = _Level(cin, width, width, skip, level, width)
        self.body = level
        if residual:
            last = nn.Conv2d(width, out_channels, 1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.head = last
        else:
            self.head = nn.Sequential(nn.Conv2d(width, out_channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def padded_size(side: int, depth: int) -> int:
    """Smallest size >= ``side`` the network takes: a multiple of ``2 ** depth``,
    and at least 2 pixels at the coarsest scale so reflection padding works."""
    m = 2**depth
    return max(-(-side // m) * m, 2 * m)


def make_input(channels: int, height: int, width: int, *, generator: torch.Generator, device) -> torch.Tensor:
    """The fixed network input: uniform noise in [0, 0.1), as in the reference."""
    return torch.rand(1, channels, height, width, generator=generator, device=device) * 0.1
