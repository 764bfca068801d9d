"""Least-squares initialisation of the linear skip paths (beyond the paper).

Derivatives of lattice dynamics are often small differences of large local terms (a commutator
with a hopping matrix nearly cancels near a stationary state), so the linear map from normalised
inputs to the normalised derivative needs coefficients of order 10-100. Gradient descent reaches
such weights only after ~coefficient / learning-rate steps. Solving for the best local linear map
directly (one least-squares problem per block, complex-valued for complex blocks) puts every CNN at
that solution before training; the nonlinear branch, whose last layer starts at zero, then learns
only what a linear stencil cannot express. With `bilinear_inputs` the Holstein derivatives are
exactly linear in the features, so F starts exact to round-off.

The models call `fit_skip` from `Surrogate.initialize_from_data` when their config says `init: lstsq`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .layers import PARCCNN, Conv, lattice_pad


def _patches(conv: Conv, x: torch.Tensor) -> torch.Tensor:
    """Rows of the design matrix: every output position's receptive field, `(N, C * k^dim)` (complex for complex convs)."""
    xp = lattice_pad(x, conv.k, conv.dim, conv.boundary)
    if conv.dim == 1:
        cols = F.unfold(xp[:, :, None, :], (1, conv.k))
    else:
        cols = F.unfold(xp, conv.k)
    rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (B * positions, C_real * k^dim)
    if conv.complex:
        half = rows.shape[1] // 2
        rows = torch.complex(rows[:, :half], rows[:, half:])
    return rows


def _targets(conv: Conv, y: torch.Tensor) -> torch.Tensor:
    """Target channels at every position, `(N, out)`, complex for complex convs."""
    t = y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1])
    if conv.complex:
        half = t.shape[1] // 2
        t = torch.complex(t[:, :half], t[:, half:])
    return t


@torch.no_grad()
def fit_skip(cnn: PARCCNN, x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-10) -> float:
    """Set `cnn.skip` to the least-squares map x -> y, zero the nonlinear head; return the relative residual."""
    conv = cnn.skip
    if conv is None:
        raise ValueError("least-squares initialisation needs `linear_skip: true`")
    A = _patches(conv, x.double())
    b = _targets(conv, y.double())
    A1 = torch.cat([A, torch.ones(A.shape[0], 1, dtype=A.dtype)], 1)
    # normal equations with a tiny ridge: cheap, and robust to the duplicated constant columns
    # that periodic padding of uniform channels produces
    G = A1.mH @ A1
    G = G + ridge * G.diagonal().real.mean() * torch.eye(G.shape[0], dtype=G.dtype)
    sol = torch.linalg.solve(G, A1.mH @ b)
    resid = float((A1 @ sol - b).abs().pow(2).mean() / b.abs().pow(2).mean().clamp_min(1e-300))
    w, bias = sol[:-1].T, sol[-1]
    shape = conv.weight.shape
    conv.weight.copy_(w.real.reshape(shape).to(conv.weight.dtype))
    conv.bias.copy_(bias.real.to(conv.bias.dtype))
    if conv.complex:
        conv.weight_im.copy_(w.imag.reshape(shape).to(conv.weight.dtype))
        conv.bias_im.copy_(bias.imag.to(conv.bias.dtype))
    head = cnn.head
    head.weight.zero_()
    head.bias.zero_()
    if head.complex:
        head.weight_im.zero_()
        head.bias_im.zero_()
    return resid
