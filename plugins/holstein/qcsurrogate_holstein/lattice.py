"""Nearest-neighbour kernels in real arithmetic, shared by the right-hand side, the energy and the dense H.

Every quantity that involves hopping goes through `neighbour`, so the boundary convention (and the
L = 2 periodic corner case) can only ever be defined in one place. The kernels are O(L^2) on a
density matrix, never form H, and branch only on Python values, so torch.compile traces them whole.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Boundary = Literal["periodic", "open"]


def neighbour(x: torch.Tensor, step: int, dim: int, boundary: Boundary) -> torch.Tensor:
    """`out[..., i, ...] = x[..., i + step, ...]` along `dim` (step = +1 or -1).

    Periodic chains wrap around (so for L = 2 the two neighbours of a site are the same site and
    its hopping is counted twice: H_01 = -2t, the literal reading of H_ij = -t(d_{j,i+1} + d_{j,i-1}));
    open chains read zero past either end.
    """
    if boundary == "periodic":
        return torch.roll(x, shifts=-step, dims=dim)
    if step not in (1, -1):
        raise ValueError(f"step must be +1 or -1, got {step}")
    dim = dim % x.ndim
    n = x.shape[dim]
    pad = [0, 0] * (x.ndim - 1 - dim)  # F.pad lists (left, right) pairs from the last axis backwards
    if step == 1:
        return F.pad(x.narrow(dim, 1, n - 1), [*pad, 0, 1])
    return F.pad(x.narrow(dim, 0, n - 1), [*pad, 1, 0])


def hop_rows(x: torch.Tensor, boundary: Boundary) -> torch.Tensor:
    """`(T x)_ij = x_{i+1,j} + x_{i-1,j}`, T the hopping adjacency (H = -t T - g diag Q)."""
    return neighbour(x, 1, -2, boundary) + neighbour(x, -1, -2, boundary)


def hop_cols(x: torch.Tensor, boundary: Boundary) -> torch.Tensor:
    """`(x T)_ij = x_{i,j+1} + x_{i,j-1}` (T is symmetric)."""
    return neighbour(x, 1, -1, boundary) + neighbour(x, -1, -1, boundary)


def commutator(x: torch.Tensor, Q: torch.Tensor, t: float, g: float, boundary: Boundary) -> torch.Tensor:
    """`[H(Q), x]` for a real matrix x in O(L^2).

    Grouped as `(T x - x T)` then the diagonal part so that, in floating point, a symmetric x gives an
    exactly antisymmetric result and vice versa: RK4 then keeps rho Hermitian to the last bit, not
    merely to round-off accumulated over thousands of steps.
    """
    dq = Q.unsqueeze(-1) - Q.unsqueeze(-2)
    return -t * (hop_rows(x, boundary) - hop_cols(x, boundary)) - (g * dq) * x


def adjacency(L: int, boundary: Boundary, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Dense T, built by applying the same `neighbour` to the identity (so it cannot disagree with rhs)."""
    eye = torch.eye(L, dtype=dtype, device=device)
    return hop_rows(eye, boundary)
