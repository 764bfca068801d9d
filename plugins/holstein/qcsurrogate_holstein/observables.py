"""Order parameters, structure factors and diagnostics of the chain, batched over leading axes.

`HolsteinChain.observables()` declares the lattice and charge structure factors S_Q(q), S_n(q)
(q = 2 pi k / L, k = 0 .. L // 2) and the staggered means of Q and n; definitions and normalisation
in the repository's docs/physics.md ("Observables").
"""

from __future__ import annotations

import torch

from qcsurrogate.observables import structure_factor


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


def charge_fluctuation(rho: torch.Tensor) -> torch.Tensor:
    """n_i - n_bar with n_bar = Tr(rho) / L of the same state: the density with its conserved mean removed."""
    n = densities(rho)
    return n - n.mean(-1, keepdim=True)


def lattice_structure_factor(Q: torch.Tensor, q=None) -> torch.Tensor:
    """S_Q(q) = |sum_j Q_j e^{-iqj}|^2 / L (q defaults to 2 pi k / L, k = 0 .. L // 2)."""
    return structure_factor(Q, q)


def charge_structure_factor(rho: torch.Tensor, q=None) -> torch.Tensor:
    """S_n(q) = |sum_j (n_j - n_bar) e^{-iqj}|^2 / L; S_n(0) = 0 by construction (N is conserved)."""
    return structure_factor(charge_fluctuation(rho), q)
