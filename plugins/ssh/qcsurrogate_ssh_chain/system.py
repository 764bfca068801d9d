"""The semiclassical bond-SSH ring: classical bond oscillators (u, p) modulate the electron hopping.

    H_{i,i+1} = H_{i+1,i} = -t_i,     t_i = t - alpha u_i          (bond i joins sites i and i+1, mod L)
    du_i/dt   = p_i / m
    dp_i/dt   = -K u_i - 2 alpha b_i,   b_i = Re rho_{i,i+1}         (the bond order)
    drho/dt   = -i [H(u), rho]

    E = Tr(rho H(u)) + sum_i (p_i^2 / 2m + K u_i^2 / 2)             (conserved)

hbar = 1, energies in units of the bare hopping t, times in hbar / t. The physics lives once, in
`rhs_real`; `rhs`, `energy` and `hamiltonian` use the same bond kernels. Full documentation: the
plugin's README.md and the repository's docs/physics.md.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field

import qcsurrogate
from qcsurrogate import ConfigError, DependencyGraph, State, System, SystemParams, View
from qcsurrogate.observables import Observable, default_observables

from .ground_state import (
    DEGENERACY_TOL,
    Dimerization,
    ground_state_density,
    report_degeneracy,
    ring_bond_order,
    self_consistent_dimerization,
)
from .observables import bond_order, dimerization, dimerization_amplitude, wall_position

# -- kernels ------------------------------------------------------------------------------------------


def ring_bond_matrix(u: torch.Tensor) -> torch.Tensor:
    """`B_{i,i+1} = B_{i+1,i} = u_i` on a ring, zero elsewhere: `(*batch, L) -> (*batch, L, L)`; H = -B(t)."""
    upper = torch.roll(torch.diag_embed(u), shifts=1, dims=-1)  # entry (i, i+1 mod L) = u_i
    return upper + upper.mT


RING_BOND_MATRIX = View("ssh_ring_bond_matrix", "site", "pair", ring_bond_matrix,
                        "a bond field as the symmetric matrix of the ring's bonds (how u enters H)")
"""Named apart from the template's 'bond_matrix' so both plugins can be registered at once."""


def commutator(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`[H, x]` with H = -B(t), in O(L^2) without forming H: `C - R`, R = rows hopped, C = columns hopped.

    Exactly antisymmetric for symmetric x (and vice versa), bit for bit.
    """
    ti, tj = t.unsqueeze(-1), t.unsqueeze(-2)
    rows = ti * torch.roll(x, -1, -2) + torch.roll(ti, 1, -2) * torch.roll(x, 1, -2)
    cols = tj * torch.roll(x, -1, -1) + torch.roll(tj, 1, -1) * torch.roll(x, 1, -1)
    return cols - rows


# -- parameters ---------------------------------------------------------------------------------------


class SSHChainParams(SystemParams):
    """Parameters of the ring (hbar = 1; energies in units of the bare hopping t)."""

    L: int = Field(ge=4, description="number of sites (= number of bonds on the ring)")
    hopping: float = Field(1.0, gt=0, allow_inf_nan=False, description="bare hopping t")
    alpha: float = Field(1.2, ge=0, allow_inf_nan=False, description="bond coupling: t_i = t - alpha u_i (post-quench)")
    K: float = Field(1.0, gt=0, allow_inf_nan=False, description="bond spring constant, K = m omega^2")
    omega: float = Field(0.4, gt=0, allow_inf_nan=False, description="bond oscillator frequency omega")

    @property
    def m(self) -> float:
        """Oscillator mass, derived so K, m and omega can never disagree."""
        return self.K / self.omega**2


def _n_electrons(n_electrons: int | None, L: int) -> int:
    if n_electrons is None:
        return L // 2
    if not 0 <= n_electrons <= L:
        raise ConfigError(f"n_electrons must be an integer in 0..{L} (L={L}), got {n_electrons!r}")
    return n_electrons


def _wrap(x: np.ndarray, L: int) -> np.ndarray:
    """Displacement on the ring, in [-L/2, L/2)."""
    return np.remainder(x + 0.5 * L, L) - 0.5 * L


class SSHChain(System):
    """Semiclassical bond-SSH ring: bond oscillators (u, p) and the one-body density matrix rho of the electrons."""

    name = "ssh_chain"
    Params = SSHChainParams
    field_names = ("u", "p")
    params: SSHChainParams

    # -- the equation -------------------------------------------------------------------------
    @property
    def graph(self) -> DependencyGraph:
        return DependencyGraph(
            {"u": ["p"], "p": ["u", ("rho", "bond_real")], "rho": [("u", "ssh_ring_bond_matrix"), "rho"]}
        )

    def hoppings(self, u: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
        """Bond hoppings `t_i = t - alpha u_i` (`alpha` overrides the coupling, for the pre-quench state)."""
        return self.params.hopping - (self.params.alpha if alpha is None else alpha) * u

    def rhs_real(
        self, fields: dict[str, torch.Tensor], rho_re: torch.Tensor, rho_im: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The one implementation of the flow. H is real, so with rho = a + i b: da/dt = [H, b], db/dt = -[H, a]."""
        p = self.params
        u, mom = fields["u"], fields["p"]
        t = self.hoppings(u)
        du = mom / p.m
        dp = -p.K * u - 2.0 * p.alpha * bond_order(rho_re)
        c = commutator(torch.stack((rho_im, rho_re)), t.unsqueeze(0))
        return {"u": du, "p": dp}, c[0], -c[1]

    def rhs(self, state: State) -> State:
        fields, d_re, d_im = self.rhs_real(state.fields, state.rho.real, state.rho.imag)
        return State._raw(fields, torch.complex(d_re, d_im))

    def energy(self, state: State) -> torch.Tensor:
        """E = -2 sum_i t_i b_i + sum_i (p_i^2 / 2m + K u_i^2 / 2); dE/dp = du/dt and -dE/du = dp/dt."""
        p = self.params
        u, mom = state["u"], state["p"]
        electrons = -2.0 * (self.hoppings(u) * bond_order(state.rho)).sum(-1)
        return electrons + (mom * mom).sum(-1) / (2 * p.m) + 0.5 * p.K * (u * u).sum(-1)

    def hamiltonian(self, u: Any, alpha: float | None = None) -> torch.Tensor:
        """Dense H(u), `(*batch, L, L)`, for ground states and tests (the flow never forms it)."""
        u = u if isinstance(u, torch.Tensor) else torch.as_tensor(np.asarray(u), dtype=torch.float64)
        return -ring_bond_matrix(self.hoppings(u, alpha))

    # -- observables ----------------------------------------------------------------------------
    def observables(self) -> tuple[Observable, ...]:
        """Dimerisation and bond order, the domain-wall positions, and the structure factors S_u(q), S_p(q).

        The ring's parity fixes the parity of the number of walls (an odd ring cannot dimerise without
        one), so an odd ring declares one `soliton_position`, an even ring a `kink_position` (d rising)
        and an `antikink_position` (d falling): a fixed count per System, as the solitons scenario
        makes. In states without walls they are finite but meaningless (see `wall_position`).
        """
        obs = [
            Observable("dimerization", lambda s: dimerization(s["u"]),
                       doc="(1/L) sum_i (-1)^i u_i: the signed q = pi order parameter (u0 in a clean dimerised ring)",
                       label="dimerisation (1/L) Σ (-1)^i u_i"),
            Observable("dimerization_amplitude", lambda s: dimerization_amplitude(s["u"]),
                       doc="(1/L) sum_i |d_i|, d_i = (-1)^i (2u_i - u_{i-1} - u_{i+1}) / 4: dimerisation of any sign",
                       label="dimerisation amplitude <|d|>"),
            Observable("bond_order", lambda s: bond_order(s.rho).mean(-1),
                       doc="(1/L) sum_i Re rho_{i,i+1}: the mean bond order (-E_kin / 2Lt on the uniform ring)",
                       label="bond order <b>"),
            Observable("staggered_bond_order", lambda s: dimerization(bond_order(s.rho)),
                       doc="(1/L) sum_i (-1)^i Re rho_{i,i+1}: the electronic dimerisation",
                       label="staggered bond order"),
        ]
        if self.L % 2:
            obs.append(Observable("soliton_position", lambda s: wall_position(s["u"]),
                                  doc="bond coordinate of the steepest zero crossing of d (the odd ring's soliton)",
                                  label="soliton position", unit="bonds"))
        else:
            obs += [
                Observable("kink_position", lambda s: wall_position(s["u"], +1),
                           doc="bond coordinate of the steepest rising zero crossing of d", label="kink position",
                           unit="bonds"),
                Observable("antikink_position", lambda s: wall_position(s["u"], -1),
                           doc="bond coordinate of the steepest falling zero crossing of d",
                           label="antikink position", unit="bonds"),
            ]
        return (*obs, *default_observables(self))

    # -- ground states --------------------------------------------------------------------------
    def dimerized_ground_state(
        self, alpha: float | None = None, n_electrons: int | None = None, L: int | None = None,
        tol: float = 1e-12, max_iter: int = 5000, degeneracy_tol: float = DEGENERACY_TOL,
    ) -> Dimerization:
        """The self-consistent (p = 0) ground state at coupling `alpha` on a ring of `L` sites (default: this one).

        Raises SelfConsistencyError if it does not converge; warns DegenerateFermiLevelWarning if the
        Fermi level is degenerate (then rho is the equal-shell-occupation mixed state).
        """
        p = self.params
        L = p.L if L is None else L
        a = p.alpha if alpha is None else alpha
        N = _n_electrons(n_electrons, L)

        def ham(u: np.ndarray) -> np.ndarray:
            return -ring_bond_matrix(p.hopping - a * torch.from_numpy(u)).numpy()

        sol = self_consistent_dimerization(ham, L=L, alpha=a, K=p.K, n_electrons=N, tol=tol, max_iter=max_iter,
                                           degeneracy_tol=degeneracy_tol)
        report_degeneracy(sol.shell, f"the dimerised ground state (L={L}, alpha={a}, N={N})")
        return sol

    # -- scenarios ------------------------------------------------------------------------------
    @qcsurrogate.scenario
    def dimerized_quench(
        self,
        alpha_initial: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None,
        n_traj: Annotated[int, Field(ge=1)] | None = None,
        sigma_u: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
        sigma_p: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
        seed: Annotated[int, Field(ge=0)] = 0,
        n_electrons: int | None = None,
        tol: Annotated[float, Field(gt=0)] = 1e-12,
        max_iter: Annotated[int, Field(ge=1)] = 5000,
    ) -> State:
        """Self-consistent dimerised ground state at alpha_initial (default: the system's alpha), p = 0,
        evolved with the system's alpha.

        Without `n_traj`: one deterministic, unbatched trajectory. With it: batch (n_traj,), u and p
        perturbed bond by bond by Normal(0, sigma_u) and Normal(0, sigma_p) from numpy's
        `default_rng(seed)` (rho stays the ground state). Needs an even ring (an odd one holds a soliton).
        """
        p = self.params
        if p.L % 2:
            raise ConfigError(f"dimerized_quench needs an even L (an odd ring cannot dimerise without a "
                              f"domain wall; use the 'solitons' scenario), got L={p.L}")
        sol = self.dimerized_ground_state(alpha_initial, n_electrons, tol=tol, max_iter=max_iter)
        batch = () if n_traj is None else (n_traj,)
        rng = np.random.default_rng(seed)
        u = np.broadcast_to(sol.u, (*batch, p.L)) + (rng.normal(0.0, sigma_u, (*batch, p.L)) if sigma_u else 0.0)
        mom = rng.normal(0.0, sigma_p, (*batch, p.L)) if sigma_p else np.zeros((*batch, p.L))
        return State({"u": np.array(u), "p": mom}, np.broadcast_to(sol.rho, (*batch, p.L, p.L)).copy())

    @qcsurrogate.scenario
    def solitons(
        self,
        n_walls: Literal[1, 2] | None = None,
        positions: list[float] | None = None,
        velocity: Annotated[float, Field(allow_inf_nan=False)] = 0.0,
        xi: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None,
        n_traj: Annotated[int, Field(ge=1)] | None = None,
        jitter: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
        sigma_v: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
        seed: Annotated[int, Field(ge=0)] = 0,
        n_electrons: int | None = None,
        relax_steps: Annotated[int, Field(ge=0, le=10000)] = 0,
    ) -> State:
        """Domain walls of the dimerisation, u_i = u_bar + eta_i u0 s_i(x), kicked with `velocity`; rho of H(u).

        One wall (an odd ring) or a kink-antikink pair (an even ring): the number of walls on a ring has
        the parity of L. Each wall is a tanh profile of width `xi` (default the continuum value
        (t - alpha u_bar) / (alpha u0)); u_bar and u0 are those of the self-consistent dimerised ring
        (of L + 1 sites when L is odd). `positions` (bond units; default L/2, or L/4 and 3L/4) are
        shifted per trajectory by Uniform(-jitter, jitter); every wall moves at `velocity` (bonds per
        hbar/t) plus Normal(0, sigma_v), through p_i = m du_i/dt of the translated profile. The lattice is
        not relaxed around the walls, so they shed some radiation as they settle, unless `relax_steps`
        force-balance iterations u -> -2 alpha b / K (at fixed N) reshape it first (the kick stays that of
        the tanh profile). A wall centred on a bond or a site (mirror-symmetric) relaxes to 1e-12 in about
        50 steps; elsewhere the residual stalls near 1e-7 while the wall creeps slowly towards that pinned
        position (its Peierls-Nabarro minimum). Draws come from numpy's `default_rng(seed)`. Batch
        (n_traj,), or unbatched without `n_traj`.

        Each wall binds a midgap level. A kink-antikink pair far apart (splitting below 1e-8, e.g. 32 bonds
        at alpha = 1.5) at half filling has one electron for two degenerate levels: it is shared
        (DegenerateFermiLevelWarning, mixed rho); `n_electrons = L // 2 - 1` empties both (a pure state).
        """
        p = self.params
        L = p.L
        n = (1 if L % 2 else 2) if n_walls is None else n_walls
        if n % 2 != L % 2:
            raise ConfigError(f"a ring of L={L} sites holds an {'odd' if L % 2 else 'even'} number of domain walls; "
                              f"n_walls={n} is impossible (use an {'even' if n % 2 == 0 else 'odd'} L)")
        x = [L / 2] if n == 1 else [L / 4, 3 * L / 4]
        if positions is not None:
            if len(positions) != n or not all(math.isfinite(v) for v in positions):
                raise ConfigError(f"positions must list {n} finite wall position(s) for n_walls={n}, got {positions!r}")
            x = [float(v) % L for v in positions]
        if n == 2 and abs(_wrap(np.array(x[1] - x[0]), L)) < 1.0:
            raise ConfigError(f"the two walls must be at least one bond apart, got positions {x}")
        sol = self.dimerized_ground_state(n_electrons=None, L=L + L % 2)
        width = (p.hopping - p.alpha * sol.u_bar) / (p.alpha * abs(sol.u0)) if xi is None else xi
        if 2 * width * n > L:
            raise ConfigError(f"walls of width xi={width:.3g} do not fit {n} to a ring of L={L} (need L >= {2 * n}*xi)")
        batch = () if n_traj is None else (n_traj,)
        rng = np.random.default_rng(seed)
        shape = (*batch, n)
        xs = np.array(x) + (rng.uniform(-jitter, jitter, shape) if jitter else np.zeros(shape))
        vs = velocity + (rng.normal(0.0, sigma_v, shape) if sigma_v else np.zeros(shape))
        u, dudt = wall_profile(L, xs, vs, u_bar=sol.u_bar, u0=abs(sol.u0), xi=width)
        N = _n_electrons(n_electrons, L)
        us, rhos = u.reshape(-1, L), []
        for k, uk in enumerate(us):
            rho, shell = ground_state_density(self.hamiltonian(uk).numpy(), N)
            for _ in range(relax_steps):
                uk[:] = -(2.0 * p.alpha / p.K) * ring_bond_order(rho)
                rho, shell = ground_state_density(self.hamiltonian(uk).numpy(), N)
            report_degeneracy(shell, f"solitons (L={L}, trajectory {k}, N={N})")
            rhos.append(rho)
        return State({"u": us.reshape(u.shape), "p": p.m * dudt}, np.stack(rhos).reshape(*batch, L, L))

    @qcsurrogate.scenario
    def random_bonds(
        self,
        n_traj: Annotated[int, Field(ge=1)] = 1,
        sigma: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.05,
        seed: Annotated[int, Field(ge=0)] = 0,
        n_electrons: int | None = None,
    ) -> State:
        """Ground state of random clamped bonds u_i ~ Normal(0, sigma), p = 0; batch shape (n_traj,).

        Draws from numpy's `default_rng(seed)`. A degenerate Fermi level (sigma = 0 on a ring with L
        divisible by 4) gives the shell equal occupations, with a DegenerateFermiLevelWarning.
        """
        L = self.params.L
        N = _n_electrons(n_electrons, L)
        u = np.random.default_rng(seed).normal(0.0, sigma, size=(n_traj, L))
        rhos = []
        for k, h in enumerate(self.hamiltonian(u).numpy()):
            rho, shell = ground_state_density(h, N)
            report_degeneracy(shell, f"random_bonds (L={L}, trajectory {k}, N={N})")
            rhos.append(rho)
        return State({"u": u, "p": np.zeros_like(u)}, np.stack(rhos))


def wall_profile(L: int, x: np.ndarray, v: np.ndarray, *, u_bar: float, u0: float, xi: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Bond field of domain walls at `x` (`(*batch, n)`, n = 1 or 2) and its time derivative for velocities `v`.

    u_i = u_bar + eta_i u0 sigma_i tanh(D_i / xi), with D_i the distance of bond i to its nearest wall
    and sigma_i = +-1 flipping at every wall (+1 just after the first wall). eta_i = (-1)^i, except that
    for one wall (odd L) the staggering's defect is moved to the point opposite the wall, where sigma
    jumps as well, so the two cancel and the ring carries exactly one smooth wall. du_i/dt is that of
    the profile translated rigidly, each bond following its nearest wall.
    """
    x = np.asarray(x, dtype=np.float64)
    v = np.broadcast_to(np.asarray(v, dtype=np.float64), x.shape)
    i = np.arange(L, dtype=np.float64)
    disp = _wrap(i[..., None] - x[..., None, :], L)  # (*batch, L, n): bond i minus wall k
    nearest = np.abs(disp).argmin(-1)
    D = np.take_along_axis(disp, nearest[..., None], -1)[..., 0]  # signed distance to the nearest wall
    if x.shape[-1] == 1:
        sigma = np.sign(D)  # + after the wall, - before; jumps at the opposite point
        c = np.ceil(x[..., 0] + 0.5 * L) % L  # first bond after the opposite point
        eta = (-1.0) ** np.remainder(i - c[..., None], L)
        wall_sign = np.ones_like(D)  # d(sigma tanh(D/xi))/dx_k = -(1/xi) sech^2 for the rising wall
    else:
        ahead = np.remainder(i - x[..., 0:1], L) < np.remainder(x[..., 1:2] - x[..., 0:1], L)
        sigma = np.where(ahead, 1.0, -1.0)
        eta = np.broadcast_to((-1.0) ** i, D.shape)
        wall_sign = np.where(nearest == 0, 1.0, -1.0)  # wall 0 rises (- to +), wall 1 falls
    s = sigma * np.tanh(np.abs(D) / xi)
    u = u_bar + eta * u0 * s
    vk = np.take_along_axis(np.broadcast_to(v[..., None, :], disp.shape), nearest[..., None], -1)[..., 0]
    dudt = -eta * u0 * wall_sign * vk / (xi * np.cosh(D / xi) ** 2)
    return u, dudt
