"""A toy hybrid System with two orbitals per site (spin-1/2 electrons), for the core's d > 1 tests.

Spin-1/2 electrons hop on a ring (or open chain) with a spin-mixing hopping; harmonic oscillators
`(X_i, V_i)` shift the on-site energy of both spins and are pushed by the spin-summed occupation:

    h(X)    = sum_<ij> (c+_i U c_j + h.c.) + (bz / 2) sum_i c+_i sigma_z c_i - c sum_i X_i n_i,
              U = -t 1 + i lam sigma_x  (a bond's 2 x 2 hopping: spin-conserving plus spin-flipping)
    drho/dt = -i [h(X), rho]                       rho (2L x 2L), row 2 i + a: site i, spin a
    dX/dt   = V
    dV/dt   = -w^2 X + c (n_i - 1),                 n_i = sum_a Re rho_{ia,ia}

The total energy `Tr(h_0 rho) - c sum_i X_i (n_i - 1) + sum_i (V_i^2 + w^2 X_i^2) / 2` (h_0: hopping
and Zeeman) is conserved, and so is the spectrum of rho. Translation by one site commutes with the
dynamics on the ring. `ToySpinfulVector` also declares `(X, V)` a vector field (a test fixture of the
vector paths of observables and figures, not physics). Dense matrix products: this is a fixture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field

from qcsurrogate.graph import DependencyGraph
from qcsurrogate.state import State, rho_blocks
from qcsurrogate.system import System, SystemParams, scenario
from qcsurrogate.testing import random_density_matrix

SIGMA_X = torch.tensor([[0, 1], [1, 0]], dtype=torch.complex128)
SIGMA_Z = torch.tensor([[1, 0], [0, -1]], dtype=torch.complex128)


class ToySpinfulParams(SystemParams):
    L: int = 5
    t: float = 1.0
    lam: float = 0.4
    bz: float = 0.3
    c: float = 0.7
    w: float = 1.3
    boundary: Literal["periodic", "open"] = "periodic"


class ToySpinful(System):
    name = "toy-spinful"
    Params = ToySpinfulParams
    field_names = ("X", "V")
    orbitals = 2

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._h0 = self._build_h0()

    def _build_h0(self) -> torch.Tensor:
        """Hopping and Zeeman terms, `(2L, 2L)` complex128, site-major."""
        p = self.params
        L = p.L
        U = -p.t * torch.eye(2, dtype=torch.complex128) + 1j * p.lam * SIGMA_X
        blocks = torch.zeros(L, L, 2, 2, dtype=torch.complex128)
        n_bonds = L if (p.boundary == "periodic" and L > 2) else L - 1
        for i in range(n_bonds):
            j = (i + 1) % L
            blocks[i, j] += U
            blocks[j, i] += U.mH
        for i in range(L):
            blocks[i, i] += 0.5 * p.bz * SIGMA_Z
        return blocks.transpose(1, 2).reshape(2 * L, 2 * L)

    def h0(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return self._h0.to(dtype=dtype, device=device)

    def occupations(self, rho: torch.Tensor) -> torch.Tensor:
        """n_i = sum_a Re rho_{ia,ia}, `(*batch, L)`."""
        return torch.diagonal(rho, dim1=-2, dim2=-1).real.unflatten(-1, (self.params.L, 2)).sum(-1)

    def rhs(self, state: State) -> State:
        X, V, rho = state["X"], state["V"], state.rho
        p = self.params
        h0 = self.h0(rho.dtype, rho.device)
        Xe = X.repeat_interleave(2, dim=-1)  # X of each row's site
        drho = -1j * (h0 @ rho - rho @ h0) + (1j * p.c) * (Xe.unsqueeze(-1) - Xe.unsqueeze(-2)) * rho
        dV = -(p.w**2) * X + p.c * (self.occupations(rho) - 1.0)
        return State._raw({"X": V.clone(), "V": dV}, drho)

    def energy(self, state: State) -> torch.Tensor:
        X, V, rho = state["X"], state["V"], state.rho
        p = self.params
        e_el = torch.einsum("ij,...ji->...", self.h0(rho.dtype, rho.device), rho).real
        e_c = -p.c * (X * (self.occupations(rho) - 1.0)).sum(-1)
        return e_el + e_c + 0.5 * (V**2 + p.w**2 * X**2).sum(-1)

    def invariants(self, state: State) -> dict[str, torch.Tensor]:
        """Tr rho^2 (the spectrum of rho is conserved by a von Neumann flow)."""
        rho = state.rho
        return {"purity": torch.einsum("...ij,...ji->...", rho, rho).real}

    @property
    def graph(self) -> DependencyGraph:
        return DependencyGraph({"X": ["V"], "V": ["X", ("rho", "diagonal")], "rho": ["X", "rho"]})

    @scenario
    def random_start(self, seed: int = 0, n_traj: Annotated[int, Field(ge=1)] = 2, sigma: float = 0.5) -> State:
        """Random displacements and velocities, a random half-filled (L electrons) Slater determinant."""
        gen = torch.Generator().manual_seed(seed)
        L = self.params.L
        X = sigma * torch.randn(n_traj, L, dtype=torch.float64, generator=gen)
        V = sigma * torch.randn(n_traj, L, dtype=torch.float64, generator=gen)
        rho = random_density_matrix(2 * L, L, (n_traj,), gen)
        return State({"X": X, "V": V}, rho)


class ToySpinfulVector(ToySpinful):
    """The same dynamics with `(X, V)` declared a vector field named `XV`."""

    name = "toy-spinful-vector"
    vector_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {"XV": ("X", "V")}


def spin_z(rho: torch.Tensor, L: int) -> torch.Tensor:
    """s^z_i = (rho_{i up, i up} - rho_{i dn, i dn}) / 2 from the blocks, `(*batch, L)` (a test helper)."""
    b = rho_blocks(rho, L)
    d = torch.diagonal(torch.diagonal(b, dim1=-4, dim2=-3), dim1=-3, dim2=-2).real  # (*batch, L, 2)
    return 0.5 * (d[..., 0] - d[..., 1])
