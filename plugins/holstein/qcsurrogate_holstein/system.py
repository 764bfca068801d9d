"""The semiclassical (Ehrenfest) Holstein chain: Einstein phonons coupled to spinless electrons.

The physics lives once, in `rhs_real`: H is real, so with rho = a + i b the von Neumann equation
splits into da/dt = [H, b], db/dt = -[H, a], which compiled solvers fuse into real kernels. `rhs`
is derived from it, and `energy` and `hamiltonian` use the same neighbour kernels, so boundary
conventions cannot drift apart between the flow, its conserved energy and the dense H of the
ground states. Equations and defaults are documented in the repository's docs/physics.md (hbar = 1, energies in t).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field

import qcsurrogate
from qcsurrogate import ConfigError, DependencyGraph, State, System, SystemParams
from qcsurrogate.observables import Observable, wavevectors
from qcsurrogate.system import Boundary

from . import lattice
from .ground_state import DEGENERACY_TOL, ground_state_density, report_degeneracy, self_consistent_cdw
from .observables import charge_structure_factor, densities, lattice_structure_factor, staggered_mean


class HolsteinParams(SystemParams):
    """Parameters of the chain; energies in units where hbar = 1 (t = 1 by default)."""

    L: int = Field(ge=2, description="number of sites")
    hopping: float = Field(1.0, gt=0, allow_inf_nan=False, description="nearest-neighbour hopping t")
    g: float = Field(0.8, ge=0, allow_inf_nan=False, description="electron-phonon coupling (the post-quench g_f)")
    K: float = Field(1.0, gt=0, allow_inf_nan=False, description="spring constant K = m Omega^2")
    omega: float = Field(0.4, gt=0, allow_inf_nan=False, description="phonon frequency Omega (paper: r = Omega/t = 0.4)")
    density_offset: float = Field(
        0.5, ge=0, le=1, allow_inf_nan=False, description="n0 in g (n_i - n0) Q_i; 1/2 is particle-hole symmetric"
    )
    boundary: Boundary = Field("periodic", description="'periodic' (ring) or 'open' chain")

    @property
    def m(self) -> float:
        """Phonon mass, fixed by K and Omega rather than given, so the pair can never disagree."""
        return self.K / self.omega**2


def _check_n_electrons(n_electrons: int | None, L: int) -> int:
    """Half filling by default; the range depends on L, so it is checked here (@scenario checked the type)."""
    if n_electrons is None:
        return L // 2
    if not 0 <= n_electrons <= L:
        raise ConfigError(f"n_electrons must be an integer in 0..{L} (L={L}), got {n_electrons!r}")
    return n_electrons


def _array(name: str, x: Any) -> torch.Tensor:
    """A user's array as a tensor; nested lists of unequal lengths or non-numbers are a ConfigError."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        arr = np.asarray(x)
    except ValueError as err:  # a ragged nested list
        raise ConfigError(f"{name} is not a rectangular array ({err})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ConfigError(f"{name} must hold numbers, got an array of {arr.dtype}")
    return torch.as_tensor(arr)


class HolsteinChain(System):
    """Holstein chain with classical phonons (Q, P) and the one-body density matrix rho of the electrons."""

    name = "holstein"
    Params = HolsteinParams
    field_names = ("Q", "P")
    params: HolsteinParams

    # -- the equation -------------------------------------------------------------------------
    @property
    def m(self) -> float:
        return self.params.m

    @property
    def graph(self) -> DependencyGraph:
        return DependencyGraph({"Q": ["P"], "P": ["Q", ("rho", "diagonal")], "rho": ["Q", "rho"]})

    def rhs_real(
        self, fields: dict[str, torch.Tensor], rho_re: torch.Tensor, rho_im: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The single implementation of the equations of motion; `rhs` and compiled RK4 both call it."""
        p = self.params
        Q, P = fields["Q"], fields["P"]
        n = torch.diagonal(rho_re, dim1=-2, dim2=-1)
        dQ = P / p.m
        dP = p.g * (n - p.density_offset) - p.K * Q
        # One commutator over the stacked (b, a) pair: half the kernel launches of two calls, which is
        # what eager RK4 at small L pays for. Q gains a leading axis to broadcast against the stack.
        c = lattice.commutator(torch.stack((rho_im, rho_re)), Q.unsqueeze(0), p.hopping, p.g, p.boundary)
        return {"Q": dQ, "P": dP}, c[0], -c[1]

    def rhs(self, state: State) -> State:
        """Complex view of `rhs_real`, so the two can never disagree."""
        fields, d_re, d_im = self.rhs_real(state.fields, state.rho.real, state.rho.imag)
        return State._raw(fields, torch.complex(d_re, d_im))

    def energy(self, state: State) -> torch.Tensor:
        """E = Tr(rho H(Q)) + g n0 sum Q + sum(P^2/2m + K Q^2/2), in O(L^2) via the hopping kernel."""
        p = self.params
        Q, P = state["Q"], state["P"]
        a = state.rho.real  # H is real symmetric, so Tr(rho H) = Tr(H Re rho)
        n = torch.diagonal(a, dim1=-2, dim2=-1)
        kinetic = torch.diagonal(lattice.hop_rows(a, p.boundary), dim1=-2, dim2=-1).sum(-1)
        electrons = -p.hopping * kinetic - p.g * (Q * n).sum(-1)
        phonons = (P * P).sum(-1) / (2 * p.m) + 0.5 * p.K * (Q * Q).sum(-1)
        return electrons + p.g * p.density_offset * Q.sum(-1) + phonons

    def hamiltonian(self, Q: Any, g: float | None = None) -> torch.Tensor:
        """Dense H(Q) `(*batch, L, L)` for ground states and reference checks (the flow never forms it).

        `g` overrides the coupling, because the shallow quench prepares its state at g_initial.
        """
        p = self.params
        Q = torch.as_tensor(Q, dtype=torch.float64) if not isinstance(Q, torch.Tensor) else Q
        if Q.shape[-1] != p.L:
            raise ValueError(f"Q has {Q.shape[-1]} sites; this chain has L={p.L}")
        g = p.g if g is None else g
        T = lattice.adjacency(p.L, p.boundary, dtype=Q.dtype, device=Q.device)
        return -p.hopping * T - g * torch.diag_embed(Q)

    # -- observables ----------------------------------------------------------------------------
    def observables(self) -> tuple[Observable, ...]:
        """Lattice and charge structure factors over q = 2 pi k / L (k = 0 .. L // 2) and the staggered orders.

        Which wave vector orders depends on filling and on L (the periodic L = 8 deep quench orders
        at q = 3 pi / 4, not pi), so the spectra are primary; the staggered means are the signed
        q = pi amplitudes, `S(pi) = L * staggered**2` for even L. Definitions: docs/physics.md.
        """
        q = wavevectors(self.params.L)
        return (
            Observable("S_Q", lambda s: lattice_structure_factor(s["Q"], q),
                       doc="lattice structure factor |sum_j Q_j e^(-iqj)|^2 / L", label="S_Q(q)",
                       kind="spectrum", axis=q),
            Observable("S_n", lambda s: charge_structure_factor(s.rho, q),
                       doc="charge structure factor |sum_j (n_j - n_bar) e^(-iqj)|^2 / L, n_bar = N / L",
                       label="S_n(q)", kind="spectrum", axis=q),
            Observable("staggered_Q", lambda s: staggered_mean(s["Q"]),
                       doc="(1/L) sum_j (-1)^j Q_j: the q = pi (period-2 CDW) lattice order parameter",
                       label="staggered mean of Q"),
            Observable("staggered_n", lambda s: staggered_mean(densities(s.rho)),
                       doc="(1/L) sum_j (-1)^j n_j: the q = pi charge order parameter",
                       label="staggered mean of n"),
        )  # fmt: skip

    # -- scenarios ------------------------------------------------------------------------------
    @qcsurrogate.scenario
    def shallow_quench(
        self,
        g_initial: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.5,
        n_electrons: int | None = None,
        tol: Annotated[float, Field(gt=0)] = 1e-12,
        max_iter: Annotated[int, Field(ge=1)] = 5000,
        mixing: Annotated[float, Field(gt=0, le=1)] = 1.0,
        degeneracy_tol: float = DEGENERACY_TOL,
        n_traj: Annotated[int, Field(ge=1)] | None = None,
        sigma_Q: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
        sigma_P: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
        seed: Annotated[int, Field(ge=0)] = 0,
    ) -> State:
        """Self-consistent CDW ground state at g_initial (P = 0), then evolved with the system's g.

        Adiabatic: Q_i = g_initial (n_i - n0) / K with rho the ground state of H(Q) at g_initial,
        iterated from a 2 k_F density wave (staggered at half filling). Without `n_traj` and noise: one
        deterministic, unbatched trajectory. With `n_traj`: an ensemble, batch (n_traj,), whose Q and P
        are perturbed site by site by Normal(0, sigma_Q) and Normal(0, sigma_P) from numpy's
        `default_rng(seed)` (rho stays the ground state), as the published training sets are made.
        Raises SelfConsistencyError if the iteration does not converge to `tol`.
        """
        p = self.params
        N = _check_n_electrons(n_electrons, p.L)
        sol = self_consistent_cdw(
            lambda Q: self.hamiltonian(Q, g=g_initial).numpy(),
            L=p.L, g=g_initial, K=p.K, n0=p.density_offset, n_electrons=N,
            tol=tol, max_iter=max_iter, mixing=mixing, degeneracy_tol=degeneracy_tol,
        )  # fmt: skip
        report_degeneracy(sol.shell, f"shallow_quench (L={p.L}, {p.boundary}, g_initial={g_initial}, N={N})")
        batch = () if n_traj is None else (n_traj,)
        rng = np.random.default_rng(seed)
        Q = sol.Q + rng.normal(0.0, sigma_Q, size=(*batch, p.L)) if sigma_Q else np.broadcast_to(sol.Q, (*batch, p.L)).copy()
        P = rng.normal(0.0, sigma_P, size=(*batch, p.L)) if sigma_P else np.zeros((*batch, p.L))
        return State({"Q": Q, "P": P}, np.broadcast_to(sol.rho, (*batch, p.L, p.L)).copy())

    @qcsurrogate.scenario
    def deep_quench(
        self,
        n_traj: Annotated[int, Field(ge=1)] = 1,
        sigma: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1e-4,
        seed: Annotated[int, Field(ge=0)] = 0,
        n_electrons: int | None = None,
        degeneracy_tol: float = DEGENERACY_TOL,
    ) -> State:
        """Free-electron (g = 0) ground state with P = 0 and Q ~ Normal(0, sigma), batch (n_traj,).

        The noise is the only thing that breaks the symmetry after the quench, so it is drawn from
        numpy's PCG64 `default_rng(seed)`, whose stream is fixed across platforms and versions.
        """
        p = self.params
        N = _check_n_electrons(n_electrons, p.L)
        rho, shell = ground_state_density(self.hamiltonian(np.zeros(p.L), g=0.0).numpy(), N, degeneracy_tol)
        report_degeneracy(shell, f"deep_quench (L={p.L}, {p.boundary}, g=0, N={N})")
        Q = np.random.default_rng(seed).normal(0.0, sigma, size=(n_traj, p.L))
        rho_b = np.broadcast_to(rho, (n_traj, p.L, p.L)).copy()
        return State({"Q": Q, "P": np.zeros_like(Q)}, rho_b)

    @qcsurrogate.scenario
    def from_arrays(self, Q: Any, P: Any, rho: Any, atol: float = 1e-10, check_spectrum: bool = True) -> State:
        """A user-given state (any batch shape), validated and returned as float64/complex128.

        rho must be Hermitian to `atol` (it is then made exactly Hermitian, which the flow preserves
        bit for bit) and, unless `check_spectrum=False`, have eigenvalues in [0, 1] as any fermionic
        one-body density matrix does.
        """
        L = self.params.L
        Q_t, P_t, rho_t = (_array(name, x) for name, x in (("Q", Q), ("P", P), ("rho", rho)))
        for name, x in (("Q", Q_t), ("P", P_t)):
            if x.is_complex():
                raise ConfigError(f"{name} must be real, got dtype {x.dtype}")
            if x.ndim < 1 or x.shape[-1] != L:
                raise ConfigError(f"{name} must be shaped (*batch, {L}), got {tuple(x.shape)}")
        if Q_t.shape != P_t.shape:
            raise ConfigError(f"Q and P must have the same shape, got {tuple(Q_t.shape)} and {tuple(P_t.shape)}")
        if tuple(rho_t.shape) != (*Q_t.shape, L):
            raise ConfigError(f"rho must be shaped {(*Q_t.shape, L)} to match Q, got {tuple(rho_t.shape)}")
        Q_t = Q_t.to(torch.float64).clone()
        P_t = P_t.to(torch.float64).clone()
        rho_t = rho_t.to(torch.complex128)
        for name, x in (("Q", Q_t), ("P", P_t), ("rho", torch.view_as_real(rho_t))):
            if not torch.isfinite(x).all():
                raise ConfigError(f"{name} has non-finite entries")
        herm = float((rho_t - rho_t.mH).abs().amax()) if rho_t.numel() else 0.0
        if herm > atol:
            raise ConfigError(f"rho is not Hermitian: max |rho - rho^H| = {herm:.3e} > atol = {atol:.1e}")
        rho_t = 0.5 * (rho_t + rho_t.mH)
        if check_spectrum and rho_t.numel():
            ev = torch.linalg.eigvalsh(rho_t)
            lo, hi = float(ev.min()), float(ev.max())
            if lo < -atol or hi > 1 + atol:
                raise ConfigError(
                    f"rho has eigenvalues in [{lo:.6g}, {hi:.6g}], outside [0, 1]: not a fermionic one-body "
                    "density matrix (pass check_spectrum=False to allow it)"
                )
        return State({"Q": Q_t, "P": P_t}, rho_t)

    @qcsurrogate.scenario
    def from_state(self, state: State, atol: float = 1e-10, check_spectrum: bool = True) -> State:
        """A State (e.g. a snapshot of a saved trajectory) revalidated for this chain, as a float64 copy."""
        missing = [f for f in self.field_names if f not in state.fields]
        if missing:
            raise ConfigError(f"state lacks field(s) {missing} of system 'holstein'")
        return self.from_arrays(state["Q"], state["P"], state.rho, atol=atol, check_spectrum=check_spectrum)
