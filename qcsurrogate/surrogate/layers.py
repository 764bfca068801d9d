"""Convolution building blocks for PARC: real or truly complex, 1D over sites or 2D over site pairs.

Padding follows the lattice boundary: circular for periodic chains (the network is then exactly
translation-equivariant and runs unchanged on any L), zeros for open chains.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Boundary = Literal["periodic", "open"]

_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "tanh": torch.tanh}


def activation(name: str):
    """Elementwise activation. Complex feature maps are stored as real [Re; Im] channel blocks,
    so this acts on real and imaginary parts separately (the 'split' complex activation)."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation '{name}'; choose from {sorted(_ACTIVATIONS)}") from None


def lattice_pad(x: torch.Tensor, k: int, dim: int, boundary: Boundary) -> torch.Tensor:
    p = k // 2
    if p == 0:
        return x
    mode = "circular" if boundary == "periodic" else "constant"
    if mode == "circular" and any(s < p for s in x.shape[-dim:]):
        # circular padding wider than the lattice: tile first so every neighbour exists
        reps = [1] * (x.ndim - dim) + [math.ceil(p / s) * 2 + 1 for s in x.shape[-dim:]]
        sizes = x.shape[-dim:]
        big = x.repeat(*reps)
        slices = [slice(None)] * (x.ndim - dim)
        for s, r in zip(sizes, reps[-dim:]):
            c = (r // 2) * s
            slices.append(slice(c - p, c + s + p))
        return big[tuple(slices)]
    return F.pad(x, [p, p] * dim, mode=mode)


class Conv(nn.Module):
    """A 'same'-size convolution over the last `dim` axes, real or complex.

    Complex feature maps with C channels travel as real tensors with 2C channels laid out
    [Re_1..Re_C, Im_1..Im_C]. A complex kernel A + iB then acts as one real convolution with the
    block kernel [[A, -B], [B, A]]: exact complex arithmetic at the cost of a single conv call, and
    no complex tensors inside the network (which keeps every backend and code generator happy).
    """

    def __init__(self, in_ch: int, out_ch: int, k: int, dim: int, boundary: Boundary, complex_: bool) -> None:
        super().__init__()
        if dim not in (1, 2):
            raise ValueError("only 1D (sites) and 2D (site pairs) convolutions are supported")
        self.k, self.dim, self.boundary, self.complex = k, dim, boundary, complex_
        shape = (out_ch, in_ch) + (k,) * dim
        fan_in = in_ch * k**dim * (2 if complex_ else 1)
        std = 1 / math.sqrt(fan_in)
        self.weight = nn.Parameter(torch.randn(shape) * std)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        if complex_:
            self.weight_im = nn.Parameter(torch.randn(shape) * std)
            self.bias_im = nn.Parameter(torch.zeros(out_ch))
        self._conv = F.conv1d if dim == 1 else F.conv2d

    def kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The real kernel and bias actually applied."""
        if not self.complex:
            return self.weight, self.bias
        A, B = self.weight, self.weight_im
        w = torch.cat([torch.cat([A, -B], 1), torch.cat([B, A], 1)], 0)
        return w, torch.cat([self.bias, self.bias_im])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.kernel()
        return self._conv(lattice_pad(x, self.k, self.dim, self.boundary), w, b)


class ChannelDropout(nn.Module):
    """Drops whole channels (Tompson et al.), so locality inside the kept channels survives.

    For complex maps ([Re; Im] blocks) a complex channel's real and imaginary parts drop together.
    """

    def __init__(self, p: float, complex_: bool = False) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.complex = p, complex_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        c = x.shape[1] // 2 if self.complex else x.shape[1]
        shape = (x.shape[0], c) + (1,) * (x.ndim - 2)
        mask = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(1 - self.p) / (1 - self.p)
        if self.complex:
            mask = torch.cat([mask, mask], 1)
        return x * mask


class ResBlock(nn.Module):
    def __init__(self, ch: int, dim: int, boundary: Boundary, complex_: bool, act: str) -> None:
        super().__init__()
        self.c1 = Conv(ch, ch, 3, dim, boundary, complex_)
        self.c2 = Conv(ch, ch, 3, dim, boundary, complex_)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.c2(self.act(self.c1(x))))


class PARCCNN(nn.Module):
    """The paper's CNN: stem, two ResNet blocks, a 7-wide conv, two 1x1 convs, a final 3-wide conv.

    `width` is the channel count of the widest layer (the 7-wide conv's output); the ResNet blocks
    run at width/2, so scaling `width` scales every layer proportionally.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        *,
        width: int,
        dim: int,
        boundary: Boundary,
        complex_: bool,
        act: str = "gelu",
        dropout: float = 0.0,
        linear_skip: bool = False,
    ) -> None:
        super().__init__()
        half = max(1, width // 2)
        kw = {"dim": dim, "boundary": boundary, "complex_": complex_}
        # an optional linear 3-wide path from input to output: the network then learns a nonlinear
        # correction to the best local linear map, which it can reach at once (beyond the paper)
        self.skip = Conv(in_ch, out_ch, 3, **kw) if linear_skip else None
        self.stem = Conv(in_ch, half, 3, **kw)
        self.res = nn.ModuleList([ResBlock(half, dim, boundary, complex_, act) for _ in range(2)])
        self.wide = Conv(half, width, 7, **kw)
        self.point1 = Conv(width, half, 1, **kw)
        self.point2 = Conv(half, half, 1, **kw)
        self.head = Conv(half, out_ch, 3, **kw)
        self.drop = ChannelDropout(dropout, complex_)
        self.act = activation(act)

    @staticmethod
    def count_parameters(in_ch: int, out_ch: int, width: int, dim: int, complex_: bool, linear_skip: bool = False) -> int:
        """Parameter count without building the module (used to size baselines)."""
        half = max(1, width // 2)
        layers = [(in_ch, half, 3)] + [(half, half, 3)] * 4 + [(half, width, 7), (width, half, 1), (half, half, 1), (half, out_ch, 3)]
        layers += [(in_ch, out_ch, 3)] if linear_skip else []
        n = sum(o * i * k**dim + o for i, o, k in layers)
        return 2 * n if complex_ else n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.stem(x))
        for block in self.res:
            h = block(h)
        h = self.drop(self.act(self.wide(h)))
        h = self.act(self.point1(h))
        y = self.head(self.drop(self.act(self.point2(h))))
        return y if self.skip is None else y + self.skip(x)
