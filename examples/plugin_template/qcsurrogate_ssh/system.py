"""A semiclassical bond-SSH ring: classical bond oscillators that modulate the electron hopping.

    H_{i,i+1} = H_{i+1,i} = -t_i,     t_i = t - alpha u_i          (bond i joins sites i and i+1, mod L)
    du_i/dt   = p_i / m
    dp_i/dt   = -K u_i - 2 alpha b_i,   b_i = Re rho_{i,i+1}         (the bond order)
    drho/dt   = -i [H(u), rho]

    E = Tr(rho H(u)) + sum_i (p_i^2 / 2m + K u_i^2 / 2) = sum_i (-2 t_i b_i + p_i^2 / 2m + K u_i^2 / 2)

hbar = 1, energies in units of t. Each bond carries its own Einstein oscillator (the "optical" or
bond-phonon variant of Su-Schrieffer-Heeger); in the original acoustic SSH model u_i would be the
difference of two site displacements. The field `u` lives on bonds, which the core treats like any
site field: entry i belongs to bond (i, i+1).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import Field

import qcsurrogate
from qcsurrogate import ConfigError, DependencyGraph, State, System, SystemParams, View

# -- the bond order, and a custom view: the bond field as a matrix -----------------------------------


def bond_order(rho: torch.Tensor) -> torch.Tensor:
    """`b_i = Re rho_{i,i+1}` on a ring, `(*batch, L, L) -> (*batch, L)` (the core's 'bond_real' view)."""
    return torch.diagonal(torch.roll(rho, shifts=-1, dims=-1), dim1=-2, dim2=-1).real


def bond_matrix(u: torch.Tensor) -> torch.Tensor:
    """`B_{i,i+1} = B_{i+1,i} = u_i` on a ring, zero elsewhere: `(*batch, L) -> (*batch, L, L)`.

    `H(u) = -bond_matrix(t - alpha u)`: this is exactly how the bond field enters the electrons.
    """
    upper = torch.roll(torch.diag_embed(u), shifts=1, dims=-1)  # entry (i, i+1 mod L) = u_i
    return upper + upper.mT


BOND_MATRIX = View("bond_matrix", "site", "pair", bond_matrix, "a bond field as the symmetric matrix of its bonds")
"""Registered by the plugin's `register_views` hook (plugin.py), so graphs naming it resolve wherever the plugin is."""


# -- [H, x] in O(L^2), never forming H ----------------------------------------------------------------


def _hop_rows(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`R_ij = t_i x_{i+1,j} + t_{i-1} x_{i-1,j}`, so `(H x) = -R` for a real x."""
    ti = t.unsqueeze(-1)
    return ti * torch.roll(x, -1, -2) + torch.roll(ti, 1, -2) * torch.roll(x, 1, -2)


def _hop_cols(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`C_ij = t_j x_{i,j+1} + t_{j-1} x_{i,j-1}`, so `(x H) = -C`; equals `R^T` bit for bit if x = x^T."""
    tj = t.unsqueeze(-2)
    return tj * torch.roll(x, -1, -1) + torch.roll(tj, 1, -1) * torch.roll(x, 1, -1)


def commutator(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`[H, x] = C - R` in O(L^2): exactly antisymmetric for symmetric x and vice versa."""
    return _hop_cols(x, t) - _hop_rows(x, t)


# -- the system ---------------------------------------------------------------------------------------


class SSHParams(SystemParams):
    """Parameters of the ring (hbar = 1; energies in units of the bare hopping t)."""

    L: int = Field(ge=2, description="number of sites (= number of bonds on the ring)")
    hopping: float = Field(1.0, gt=0, allow_inf_nan=False, description="bare hopping t")
    alpha: float = Field(0.5, ge=0, allow_inf_nan=False, description="bond coupling: t_i = t - alpha u_i")
    K: float = Field(1.0, gt=0, allow_inf_nan=False, description="bond spring constant, K = m omega^2")
    omega: float = Field(0.4, gt=0, allow_inf_nan=False, description="bond oscillator frequency")

    @property
    def m(self) -> float:
        """Oscillator mass, derived so K, m and omega can never disagree."""
        return self.K / self.omega**2


class SSHChain(System):
    """Semiclassical bond-SSH ring: bond oscillators (u, p) modulate the hopping of spinless electrons rho."""

    name = "ssh"
    Params = SSHParams
    field_names = ("u", "p")
    params: SSHParams

    @property
    def graph(self) -> DependencyGraph:
        # Read off the equations of motion: du/dt needs p; dp/dt needs u and the bond order
        # Re rho_{i,i+1} (the core's 'bond_real' view); drho/dt needs H(u), i.e. u on the bonds
        # (our 'bond_matrix' view), and rho.
        return DependencyGraph(
            {"u": ["p"], "p": ["u", ("rho", "bond_real")], "rho": [("u", "bond_matrix"), "rho"]}
        )

    def hoppings(self, u: torch.Tensor) -> torch.Tensor:
        """Bond hoppings `t_i = t - alpha u_i`."""
        return self.params.hopping - self.params.alpha * u

    def rhs_real(
        self, fields: dict[str, torch.Tensor], rho_re: torch.Tensor, rho_im: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The one implementation of the flow. H is real, so with rho = a + i b:
        da/dt = [H, b] and db/dt = -[H, a]."""
        p = self.params
        u, mom = fields["u"], fields["p"]
        t = self.hoppings(u)
        du = mom / p.m
        dp = -p.K * u - 2.0 * p.alpha * bond_order(rho_re)
        return {"u": du, "p": dp}, commutator(rho_im, t), -commutator(rho_re, t)

    def rhs(self, state: State) -> State:
        fields, d_re, d_im = self.rhs_real(state.fields, state.rho.real, state.rho.imag)
        return State._raw(fields, torch.complex(d_re, d_im))

    def energy(self, state: State) -> torch.Tensor:
        p = self.params
        u, mom = state["u"], state["p"]
        electrons = -2.0 * (self.hoppings(u) * bond_order(state.rho)).sum(-1)
        return electrons + (mom * mom).sum(-1) / (2 * p.m) + 0.5 * p.K * (u * u).sum(-1)

    def hamiltonian(self, u: torch.Tensor) -> torch.Tensor:
        """Dense H(u), `(*batch, L, L)`, for ground states and tests (the flow never forms it)."""
        return -bond_matrix(self.hoppings(torch.as_tensor(u, dtype=torch.float64)))

    # -- scenarios ------------------------------------------------------------------------------
    def ground_state(self, u: torch.Tensor, n_electrons: int | None = None) -> torch.Tensor:
        """rho of the lowest `n_electrons` levels of H(u) (half filling by default), batched over u.

        A degenerate Fermi level has no unique Slater determinant; this template refuses it rather
        than pick an arbitrary basis (e.g. a uniform ring with L divisible by 4 at half filling).
        """
        L = self.params.L
        N = L // 2 if n_electrons is None else n_electrons
        if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or not 0 <= N <= L:
            raise ConfigError(f"n_electrons must be an integer in 0..{L}, got {n_electrons!r}")
        eps, V = torch.linalg.eigh(self.hamiltonian(u))
        if 0 < N < L:
            gap = float((eps[..., N] - eps[..., N - 1]).min())
            if gap < 1e-8 * max(1.0, float(eps.abs().max())):
                raise ConfigError(
                    f"degenerate Fermi level (gap {gap:.2e} between levels {N - 1} and {N}): the ground "
                    "state is not a unique Slater determinant; distort the bonds or change L or n_electrons"
                )
        occ = V[..., :N]
        rho = (occ @ occ.mT).to(torch.complex128)
        return 0.5 * (rho + rho.mH)

    @qcsurrogate.scenario
    def dimerized(
        self, delta: Annotated[float, Field(allow_inf_nan=False)] = 0.1, n_electrons: int | None = None
    ) -> State:
        """Electrons in the ground state of clamped bonds u_i = (-1)^i delta, p = 0, released at t = 0.

        The clamped pattern is not the lattice's equilibrium, so the bonds start to oscillate and drive
        the electrons. One deterministic trajectory, shape (L,).
        """
        L = self.params.L
        u = delta * torch.tensor([(-1.0) ** i for i in range(L)], dtype=torch.float64)
        return State({"u": u, "p": torch.zeros(L)}, self.ground_state(u, n_electrons))

    @qcsurrogate.scenario
    def random_bonds(
        self,
        n_traj: Annotated[int, Field(ge=1)] = 1,
        sigma: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.05,
        seed: Annotated[int, Field(ge=0)] = 0,
        n_electrons: int | None = None,
    ) -> State:
        """Ground state of random clamped bonds u_i ~ Normal(0, sigma), p = 0; batch shape (n_traj,).

        The bonds come from numpy's `default_rng(seed)` (PCG64), whose stream is fixed across platforms.
        `@qcsurrogate.scenario` has already checked the arguments against their annotations.
        """
        u = torch.from_numpy(np.random.default_rng(seed).normal(0.0, sigma, size=(n_traj, self.params.L)))
        return State({"u": u, "p": torch.zeros_like(u)}, self.ground_state(u, n_electrons))
