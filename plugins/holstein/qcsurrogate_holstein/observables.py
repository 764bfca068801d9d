"""Order parameters and diagnostics of the chain, batched over leading axes."""

from __future__ import annotations

import torch


def staggered_mean(x: torch.Tensor) -> torch.Tensor:
    """`mean_i (-1)^i x_i`: the CDW amplitude of Q or of the densities (even sites counted positive)."""
    L = x.shape[-1]
    sign = torch.ones(L, dtype=x.dtype, device=x.device)
    sign[1::2] = -1
    return (x * sign).mean(-1)


def densities(rho: torch.Tensor) -> torch.Tensor:
    """Site occupations n_i = rho_ii (real)."""
    return torch.diagonal(rho, dim1=-2, dim2=-1).real


def purity(rho: torch.Tensor) -> torch.Tensor:
    """Tr(rho^2) (= N for a Slater determinant); its drift measures the integrator's non-unitarity."""
    return (rho * rho.mT).sum((-2, -1)).real


def idempotency_error(rho: torch.Tensor) -> torch.Tensor:
    """max |rho^2 - rho|: zero for a pure Slater determinant, not for a shared Fermi shell."""
    return (rho @ rho - rho).abs().amax((-2, -1))
