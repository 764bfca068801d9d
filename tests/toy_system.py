"""A toy hybrid System for the core's own tests (deliberately not Holstein).

Free tight-binding electrons on a ring (or open chain) feel a site potential `V_i = -c * X_i` set
by harmonic oscillators `(X_i, V_i)`; the oscillators are pushed by the local occupation:

    h(X)   = -t (nearest-neighbour hopping) - c * diag(X)
    drho/dt = -i [h(X), rho]
    dX/dt   = V
    dV/dt   = -w^2 X + c (n_i - 1/2),        n_i = Re rho_ii

The total energy `Tr(h_hop rho) - c sum_i X_i (n_i - 1/2) + sum_i (V_i^2 + w^2 X_i^2) / 2` is
conserved. The rhs uses dense matrix products: clarity over speed, this is a fixture.

`ToySystemReal` adds a hand-written real-arithmetic `rhs_real` (the path `simulate(compile=True)`
traces); `BrokenToy*` variants each violate one physical property (or the declared graph) so the
conformance kit can be shown to fail on them; `ToyUnusedInput` declares an input it does not use;
`ScalarLinear` is a linear system with a closed-form solution for convergence orders.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from qcsurrogate.graph import DependencyGraph
from qcsurrogate.state import State
from qcsurrogate.system import System, SystemParams, scenario
from qcsurrogate.testing import random_density_matrix


class ToyParams(SystemParams):
    L: int = 6
    t: float = 1.0
    c: float = 0.7
    w: float = 1.3
    boundary: Literal["periodic", "open"] = "periodic"


class ToySystem(System):
    name = "toy"
    Params = ToyParams
    field_names = ("X", "V")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        # Built once per dtype so rhs does no Python loops (and traces cleanly under torch.compile).
        self._hop = {cd: self._build_hopping(cd) for cd in (torch.complex128, torch.complex64)}

    # -- the one-body Hamiltonian ---------------------------------------------------------------
    def hopping(self, dtype: torch.dtype = torch.complex128, device: torch.device | str | None = None) -> torch.Tensor:
        """The hopping matrix `-t` on nearest-neighbour bonds, `(L, L)`."""
        return self._hop[dtype].to(device) if device is not None else self._hop[dtype]

    def _build_hopping(self, dtype: torch.dtype) -> torch.Tensor:
        L, t = self.params.L, self.params.t
        h = torch.zeros(L, L, dtype=dtype)
        n_bonds = L if (self.params.boundary == "periodic" and L > 2) else L - 1
        for i in range(n_bonds):
            j = (i + 1) % L
            h[i, j] = -t
            h[j, i] = -t
        return h

    def hamiltonian(self, X: torch.Tensor, cdtype: torch.dtype = torch.complex128) -> torch.Tensor:
        """The full one-body Hamiltonian h(X), `(*batch, L, L)` (rhs uses the same thing, unrolled)."""
        return self.hopping(cdtype, X.device) - self.params.c * torch.diag_embed(X.to(cdtype))

    def occupations(self, rho: torch.Tensor) -> torch.Tensor:
        return torch.diagonal(rho, dim1=-2, dim2=-1).real

    # -- the equation -------------------------------------------------------------------------
    def rhs(self, state: State) -> State:
        X, V, rho = state["X"], state["V"], state.rho
        p = self.params
        hop = self.hopping(rho.dtype, rho.device)
        # -i[h, rho] with h = hop - c diag(X): the diagonal part is -i * (-c) * (X_i - X_j) rho_ij.
        drho = -1j * (hop @ rho - rho @ hop) + (1j * p.c) * (X.unsqueeze(-1) - X.unsqueeze(-2)) * rho
        dX = V.clone()
        dV = -(p.w**2) * X + p.c * (self.occupations(rho) - 0.5)
        return State._raw({"X": dX, "V": dV}, drho)

    def energy(self, state: State) -> torch.Tensor:
        X, V, rho = state["X"], state["V"], state.rho
        p = self.params
        hop = self.hopping(rho.dtype, rho.device)
        e_el = torch.einsum("ij,...ji->...", hop, rho).real
        e_c = -p.c * (X * (self.occupations(rho) - 0.5)).sum(-1)
        e_ph = 0.5 * (V**2 + p.w**2 * X**2).sum(-1)
        return e_el + e_c + e_ph

    @property
    def graph(self) -> DependencyGraph:
        return DependencyGraph({"X": ["V"], "V": ["X", ("rho", "diagonal")], "rho": ["X", "rho"]})

    # -- scenarios ------------------------------------------------------------------------------
    @scenario
    def random_start(self, seed: int = 0, n_traj: Annotated[int, Field(ge=1)] = 2, sigma: float = 0.5) -> State:
        """Random oscillator displacements and velocities, a random half-filled Slater determinant.

        `sigma` is the spread of the displacements and velocities (a float keyword, so config tests can
        check that scenario kwargs are typed by the signature; `n_traj` carries a constraint).
        """
        gen = torch.Generator().manual_seed(seed)
        L = self.params.L
        X = sigma * torch.randn(n_traj, L, dtype=torch.float64, generator=gen)
        V = sigma * torch.randn(n_traj, L, dtype=torch.float64, generator=gen)
        rho = random_density_matrix(L, L // 2, (n_traj,), gen)
        return State({"X": X, "V": V}, rho)

    @scenario
    def at_rest(self) -> State:
        """Oscillators at rest at the origin, electrons in a random half-filled state (seed 1)."""
        L = self.params.L
        gen = torch.Generator().manual_seed(1)
        rho = random_density_matrix(L, L // 2, (), gen)
        z = torch.zeros(L, dtype=torch.float64)
        return State({"X": z, "V": z.clone()}, rho)


class ToySystemReal(ToySystem):
    """The toy with a hand-written real-arithmetic `rhs_real`, as a fast plugin would provide."""

    name = "toy-real"

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._hop_real = {real: self._hop[cplx].real for real, cplx in
                          ((torch.float64, torch.complex128), (torch.float32, torch.complex64))}

    def rhs_real(
        self, fields: dict[str, torch.Tensor], rho_re: torch.Tensor, rho_im: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The same derivative in real arithmetic (what `simulate(compile=True)` traces)."""
        X, V = fields["X"], fields["V"]
        p = self.params
        hop = self._hop_real[rho_re.dtype].to(rho_re.device)
        dx = X.unsqueeze(-1) - X.unsqueeze(-2)
        d_re = (hop @ rho_im - rho_im @ hop) - p.c * dx * rho_im
        d_im = -(hop @ rho_re - rho_re @ hop) + p.c * dx * rho_re
        dV = -(p.w**2) * X + p.c * (torch.diagonal(rho_re, dim1=-2, dim2=-1) - 0.5)
        return {"X": V.clone(), "V": dV}, d_re, d_im


class BrokenToyNonHermitian(ToySystem):
    """An anti-Hermitian (gain/loss) part in h: rho loses Hermiticity and energy is not conserved.

    (Its trace is kept: the commutator with any matrix is traceless.)
    """

    name = "toy-broken-nonhermitian"

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        gamma = 0.05 * torch.linspace(-1.0, 1.0, self.params.L, dtype=state.dtype, device=state.device)
        # h -> h + i diag(gamma) adds -i [i Gamma, rho] = [Gamma, rho], which is anti-Hermitian.
        d.rho = d.rho + (gamma.unsqueeze(-1) - gamma.unsqueeze(-2)) * state.rho
        return d


class BrokenToySlightlyNonHermitian(ToySystem):
    """The gain/loss of `BrokenToyNonHermitian` at 1e-9: rho's Hermiticity error after a short run
    is ~1e-9, far above round-off but invisible to a tolerance a million times too loose."""

    name = "toy-broken-slightly-nonhermitian"
    gamma: float = 1e-9

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        g = self.gamma * torch.linspace(-1.0, 1.0, self.params.L, dtype=state.dtype, device=state.device)
        d.rho = d.rho + (g.unsqueeze(-1) - g.unsqueeze(-2)) * state.rho  # anti-Hermitian [Gamma, rho]
        return d


class BrokenToyTraceLeak(ToySystem):
    """Electrons leak away, `drho/dt += -gamma rho`: rho stays Hermitian but its trace decays."""

    name = "toy-broken-trace-leak"
    gamma: float = 0.01

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        d.rho = d.rho - self.gamma * state.rho
        return d


class BrokenToyMirror(ToySystem):
    """`drho/dt = +i [h, rho]`, the mirror of the von Neumann equation. Hermiticity, trace, energy
    (`Tr(h [h, rho]) = 0` either way) and RK4 order all hold: only the generator check sees it."""

    name = "toy-broken-mirror"

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        d.rho = -d.rho
        return d


class BrokenToyFriction(ToySystem):
    """Friction on the oscillators: rho stays Hermitian with fixed trace, but energy leaks away."""

    name = "toy-broken-friction"

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        d.fields["V"] = d.fields["V"] - 0.05 * state["V"]
        return d


class BrokenToyRhsReal(ToySystem):
    """An `rhs_real` override that disagrees with `rhs` (drops the coupling force)."""

    name = "toy-broken-rhs-real"

    def rhs_real(self, fields, rho_re, rho_im):
        df, dre, dim = super().rhs_real(fields, rho_re, rho_im)
        return {**df, "V": -(self.params.w**2) * fields["X"]}, dre, dim


class BrokenToyHiddenInput(ToySystem):
    """`dX/dt` also reads the occupations, which the graph (`X <- V`) does not declare: a surrogate
    wired from the graph could never learn it. Only the `graph_matches_rhs` check sees it."""

    name = "toy-broken-hidden-input"

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        d.fields["X"] = d.fields["X"] + 0.3 * (self.occupations(state.rho) - 0.5)
        return d


class BrokenToyHiddenView(ToySystem):
    """`dV/dt` also reads the bond order Re rho_{i,i+1}, while the graph declares only `diagonal(rho)`:
    the dependency on rho is declared, but through a view that does not see what the rhs uses."""

    name = "toy-broken-hidden-view"

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        bond = torch.diagonal(torch.roll(state.rho, -1, dims=-1), dim1=-2, dim2=-1).real
        d.fields["V"] = d.fields["V"] + 0.3 * bond
        return d


class ToyUnusedInput(ToySystem):
    """Declares `X <- V, bond_imag(rho)` although `dX/dt = V`: wasteful, not wrong (the kit warns)."""

    name = "toy-unused-input"

    @property
    def graph(self) -> DependencyGraph:
        return DependencyGraph({"X": ["V", ("rho", "bond_imag")], "V": ["X", ("rho", "diagonal")], "rho": ["X", "rho"]})


class LinearParams(SystemParams):
    L: int = 3
    lam: float = -0.8


class ScalarLinear(System):
    """`dX_i/dt = lam * X_i` and `drho/dt = -i [diag(eps), rho]`: linear, with a closed-form solution.

    Used to measure solver convergence orders against the exact answer.
    """

    name = "scalar-linear"
    Params = LinearParams
    field_names = ("X",)

    def eps(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.linspace(-1.0, 1.0, self.params.L, dtype=dtype)

    def rhs(self, state: State) -> State:
        e = self.eps(state.dtype)
        de = e.unsqueeze(-1) - e.unsqueeze(-2)  # (eps_i - eps_j)
        return State._raw({"X": self.params.lam * state["X"]}, -1j * de * state.rho)

    def energy(self, state: State) -> torch.Tensor:
        return (self.eps(state.dtype) * torch.diagonal(state.rho, dim1=-2, dim2=-1).real).sum(-1)

    @property
    def graph(self) -> DependencyGraph:
        return DependencyGraph({"X": ["X"], "rho": ["rho"]})

    def exact(self, state0: State, t: float) -> State:
        e = self.eps(state0.dtype)
        de = e.unsqueeze(-1) - e.unsqueeze(-2)
        phase = torch.exp(-1j * de * t)
        return State._raw({"X": state0["X"] * math.exp(self.params.lam * t)}, state0.rho * phase)


class BrokenToyBatchMixingObservable(ToySystem):
    """Declares an observable that averages over the batch: right shape, wrong meaning."""

    def observables(self):
        from qcsurrogate.observables import Observable

        return (Observable("mean_X", lambda s: s["X"].mean(-1).mean().expand(s.batch_shape).clone()),)
