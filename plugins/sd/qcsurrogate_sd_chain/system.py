"""The s-d (Kondo-lattice) chain with classical spins: unit spins S_i exchange-coupled to spin-1/2 electrons.

    H = -t sum_<ij>,a (c_ia^dag c_ja + h.c.) - J sum_i S_i . (c_i^dag sigma c_i) - (B/2) sum_i c_i^dag sigma^z c_i
    E = Tr(rho H(S)) - B sum_i S_i^z
      = -t sum_<ij> 2 Re tr_spin rho_ij - J sum_i S_i . s_i - B sum_i (S_i^z + s_i^z / 2)
    drho/dt = -i [H(S), rho]                          rho_{(ia),(jb)} = <c_jb^dag c_ia>, row 2i + a
    dS_i/dt = -S_i x dE/dS_i = J S_i x s_i + B S_i x z     s_i = tr_spin(sigma rho_ii)

hbar = 1, energies in units of the hopping t, times in hbar / t. B couples to the total spin
M = sum_i (S_i + s_i / 2) with one gyromagnetic ratio: |S_i|, E and M_z are conserved, and M_x, M_y
too when B = 0. Full documentation: the plugin's README.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

import qcsurrogate
from qcsurrogate import ConfigError, DependencyGraph, State, System, SystemParams
from qcsurrogate.observables import Observable, wavevectors

from .ground_state import ground_state_density, report_degeneracy
from .observables import (
    spin_density,
    spin_density_z,
    spiral_pitch,
    vector_chirality,
    vector_structure_factor,
)

SPIN_FIELDS = ("Sx", "Sy", "Sz")



# -- kernels ------------------------------------------------------------------------------------------
def adjacency(L: int, boundary: str, dtype: torch.dtype = torch.float64, device: torch.device | None = None
              ) -> torch.Tensor:
    """Nearest-neighbour adjacency T (L, L): T_{i,i+1} = T_{i+1,i} = 1 (wrapping on a ring).

    On a ring of L = 2 both neighbours of a site are the same site and the bond counts twice (T_01 = 2),
    as in the Holstein plugin.
    """
    eye = torch.eye(L, dtype=dtype, device=device)
    if boundary == "periodic":
        return torch.roll(eye, 1, -1) + torch.roll(eye, -1, -1)
    return torch.diag(torch.ones(L - 1, dtype=dtype, device=device), 1) + torch.diag(
        torch.ones(L - 1, dtype=dtype, device=device), -1)


def onsite_matrices(Sx: torch.Tensor, Sy: torch.Tensor, Sz: torch.Tensor, J: float, B: float) -> torch.Tensor:
    """The on-site blocks `-J S_i . sigma - (B/2) sigma^z`, `(*batch, L, 2, 2)` complex."""
    hz = -J * Sz - 0.5 * B
    off = torch.complex(-J * Sx, J * Sy)  # -J (Sx - i Sy), the (up, down) element
    zero = torch.zeros_like(hz)
    d = torch.complex(hz, zero)
    return torch.stack((torch.stack((d, off), -1), torch.stack((off.conj(), -d), -1)), -2)


def block_diagonal(m: torch.Tensor) -> torch.Tensor:
    """`(*batch, L, 2, 2)` blocks as the block-diagonal `(*batch, 2L, 2L)` matrix (site-major)."""
    L = m.shape[-3]
    eye = torch.eye(L, dtype=m.dtype, device=m.device)
    blocks = eye[:, :, None, None] * m.unsqueeze(-3)  # (*batch, L, L, 2, 2), nonzero for i == j
    return blocks.transpose(-3, -2).reshape(*m.shape[:-3], 2 * L, 2 * L)


# -- parameters ---------------------------------------------------------------------------------------
class SDChainParams(SystemParams):
    """Parameters of the chain (hbar = 1; energies in units of the hopping t, times in hbar / t)."""

    L: int = Field(ge=2, description="number of sites")
    hopping: float = Field(1.0, gt=0, allow_inf_nan=False, description="nearest-neighbour hopping t (the unit)")
    J: float = Field(1.0, allow_inf_nan=False,
                     description="s-d exchange: -J S_i . s_i (J > 0 aligns the electron spin with S_i)")
    B: float = Field(0.0, allow_inf_nan=False,
                     description="Zeeman field along z, -B M_z on the total spin M = sum_i (S_i + s_i/2)")
    boundary: Literal["periodic", "open"] = Field("periodic", description="'periodic' (ring) or 'open' chain")


def _n_electrons(n_electrons: int | None, L: int) -> int:
    """Default: quarter filling, L // 2 electrons in the 2L spin-orbitals (n = 1/2 per site, 2 k_F = pi/2)."""
    if n_electrons is None:
        return L // 2
    if not 0 <= n_electrons <= 2 * L:
        raise ConfigError(f"n_electrons must be an integer in 0..{2 * L} (2L spin-orbitals, L={L}), got {n_electrons!r}")
    return n_electrons


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-2, keepdims=True)


def tilt(S: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors `(*batch, 3, L)` each turned by `angle` (radians) about a random axis perpendicular to it.

    Every spin is tilted by exactly `angle`, in a uniformly random direction (seeded), so |S_i| = 1 stays exact.
    """
    if angle == 0:
        return S.copy()
    g = rng.normal(size=S.shape)
    g -= (g * S).sum(-2, keepdims=True) * S  # perpendicular to S
    return math.cos(angle) * S + math.sin(angle) * _unit(g)


class SDChain(System):
    """s-d chain: classical unit spins S_i (fields Sx, Sy, Sz) and the spin-1/2 electrons' one-body rho (2L x 2L)."""

    name = "sd_chain"
    Params = SDChainParams
    field_names = SPIN_FIELDS
    orbitals = 2
    vector_fields: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType({"S": SPIN_FIELDS})
    params: SDChainParams

    # -- the equation -------------------------------------------------------------------------
    @property
    def graph(self) -> DependencyGraph:
        sd = {"Sx": ("rho", "spin_density_x"), "Sy": ("rho", "spin_density_y"), "Sz": ("rho", "spin_density_z")}
        # dS/dt = J S x s + B S x z: component a needs the other two components of S and of s.
        return DependencyGraph({
            "Sx": ["Sy", "Sz", sd["Sy"], sd["Sz"]],
            "Sy": ["Sx", "Sz", sd["Sx"], sd["Sz"]],
            "Sz": ["Sx", "Sy", sd["Sx"], sd["Sy"]],
            "rho": ["Sx", "Sy", "Sz", "rho"],
        })

    def hamiltonian(self, Sx: torch.Tensor, Sy: torch.Tensor, Sz: torch.Tensor, J: float | None = None
                    ) -> torch.Tensor:
        """The one-body H(S), `(*batch, 2L, 2L)` complex (`J` overrides the coupling, for pre-quench states)."""
        p = self.params
        J = p.J if J is None else J
        T = adjacency(p.L, p.boundary, Sx.dtype, Sx.device)
        kinetic = -p.hopping * torch.kron(T, torch.eye(2, dtype=Sx.dtype, device=Sx.device))
        return kinetic.to(torch.complex128 if Sx.dtype == torch.float64 else torch.complex64) + block_diagonal(
            onsite_matrices(Sx, Sy, Sz, J, p.B))

    def rhs(self, state: State) -> State:
        p = self.params
        Sx, Sy, Sz = state["Sx"], state["Sy"], state["Sz"]
        rho = state.rho
        H = self.hamiltonian(Sx, Sy, Sz).to(rho.dtype)
        A = H @ rho
        drho = -1j * (A - A.mH)  # -i[H, rho]; rho H = (H rho)^H for Hermitian rho: exactly Hermitian, bit for bit
        s = spin_density(rho)
        sx, sy, sz = s[..., 0, :], s[..., 1, :], s[..., 2, :]
        J, B = p.J, p.B
        fields = {
            "Sx": J * (Sy * sz - Sz * sy) + B * Sy,
            "Sy": J * (Sz * sx - Sx * sz) - B * Sx,
            "Sz": J * (Sx * sy - Sy * sx),
        }
        return State._raw(fields, drho)

    def energy(self, state: State) -> torch.Tensor:
        """E = Tr(rho H(S)) - B sum_i S_i^z, differentiable in rho and the spins (dE/drho = H, -S x dE/dS = dS/dt)."""
        p = self.params
        Sx, Sy, Sz = state["Sx"], state["Sy"], state["Sz"]
        rho = state.rho
        L = p.L
        T = adjacency(L, p.boundary, Sx.dtype, Sx.device)
        n = rho[..., 0::2, 0::2] + rho[..., 1::2, 1::2]  # tr_spin rho_ij, (*batch, L, L)
        kinetic = -p.hopping * (T * n.real).sum((-2, -1))
        s = spin_density(rho)
        exchange = -p.J * (Sx * s[..., 0, :] + Sy * s[..., 1, :] + Sz * s[..., 2, :]).sum(-1)
        zeeman = -p.B * (Sz + 0.5 * s[..., 2, :]).sum(-1)
        return kinetic + exchange + zeeman

    def invariants(self, state: State) -> dict[str, torch.Tensor]:
        """|S_i| (*batch, L); the total spin M = sum_i (S_i + s_i/2): M_z always, M_x and M_y when B = 0."""
        S = torch.stack([state[c] for c in SPIN_FIELDS], -2)
        M = (S + 0.5 * spin_density(state.rho)).sum(-1)  # (*batch, 3)
        out = {"spin_length": S.norm(dim=-2), "total_spin_z": M[..., 2]}
        if self.params.B == 0:
            out.update(total_spin_x=M[..., 0], total_spin_y=M[..., 1])
        return out

    # -- observables ----------------------------------------------------------------------------
    def observables(self) -> tuple[Observable, ...]:
        """Magnetisations, spiral pitch and chirality, the exchange alignment and the spin structure factors."""
        L, bc = self.L, self.boundary
        q = wavevectors(L)

        def S(s: State) -> torch.Tensor:
            return torch.stack([s[c] for c in SPIN_FIELDS], -2)

        return (
            Observable("magnetization", lambda s: S(s).sum(-1).norm(dim=-1) / L,
                       doc="|sum_i S_i| / L: 1 for a ferromagnet, ~0 for a spiral or random spins",
                       label="magnetisation |Σ S| / L"),
            Observable("total_spin_z", lambda s: (s["Sz"] + 0.5 * spin_density_z(s.rho)).mean(-1),
                       doc="(1/L) sum_i (S_i^z + s_i^z / 2): the conserved total spin along z, per site",
                       label="total spin M_z / L"),
            Observable("spiral_pitch", lambda s: spiral_pitch(S(s), bc),
                       doc="mean angle atan2(|S_i x S_i+1|, S_i . S_i+1) between neighbours: q of a planar spiral",
                       label="spiral pitch", unit="rad/site"),
            Observable("vector_chirality", lambda s: vector_chirality(S(s), bc),
                       doc="|mean over bonds of S_i x S_i+1|: sin q of a planar spiral (any plane), 0 if collinear",
                       label="vector chirality |κ|"),
            Observable("exchange_alignment", lambda s: (S(s) * spin_density(s.rho)).sum(-2).mean(-1),
                       doc="(1/L) sum_i S_i . s_i: the local spin alignment (exchange energy -J L times it)",
                       label="<S · s>"),
            Observable("S_spin", lambda s: vector_structure_factor(S(s), q),
                       doc="sum_a |sum_j S^a_j e^(-iqj)|^2 / L: the classical spins' structure factor",
                       label="S_S(q)", kind="spectrum", axis=q),
            Observable("S_electron_spin", lambda s: vector_structure_factor(spin_density(s.rho), q),
                       doc="sum_a |sum_j s^a_j e^(-iqj)|^2 / L: the electron spin density's structure factor",
                       label="S_s(q)", kind="spectrum", axis=q),
        )

    # -- ground states --------------------------------------------------------------------------
    def electron_ground_state(self, S: np.ndarray, n_electrons: int, J: float | None = None, context: str = ""
                              ) -> np.ndarray:
        """rho of the lowest `n_electrons` levels of H(S) for spins `(*batch, 3, L)`, `(*batch, 2L, 2L)` complex."""
        L = self.L
        flat = S.reshape(-1, 3, L)
        H = self.hamiltonian(*torch.from_numpy(np.ascontiguousarray(flat)).unbind(-2), J=J).numpy()
        rhos = []
        for k, h in enumerate(H):
            rho, shell = ground_state_density(h, n_electrons)
            report_degeneracy(shell, f"{context} (L={L}, {self.boundary}, trajectory {k}, N={n_electrons})")
            rhos.append(rho)
        return np.stack(rhos).reshape(*S.shape[:-2], 2 * L, 2 * L)

    def _state(self, S: np.ndarray, rho: np.ndarray) -> State:
        return State({c: S[..., k, :] for k, c in enumerate(SPIN_FIELDS)}, rho)

    # -- scenarios ------------------------------------------------------------------------------
    @qcsurrogate.scenario
    def spiral_quench(
        self,
        q: Annotated[float, Field(allow_inf_nan=False)] | None = None,
        n_electrons: int | None = None,
        J_initial: Annotated[float, Field(allow_inf_nan=False)] | None = None,
        tilt_angle: Annotated[float, Field(ge=0, le=math.pi, allow_inf_nan=False)] = 0.0,
        random_phase: bool = False,
        n_traj: Annotated[int, Field(ge=1)] | None = None,
        seed: Annotated[int, Field(ge=0)] = 0,
    ) -> State:
        """A planar spiral S_j = (cos(q j + phi), sin(q j + phi), 0), each spin tilted by tilt_angle in a random
        direction; electrons in the ground state of H(S) at J_initial (default: the system's J), evolved at J.

        `q` (radians per site) defaults to 2 k_F = pi N / L rounded to the nearest 2 pi k / L (periodic
        rings need a commensurate q, which is enforced there). `phi` is 0, or Uniform(0, 2 pi) per trajectory
        with `random_phase`. Draws from numpy's `default_rng(seed)`. Batch (n_traj,), or unbatched without.
        """
        p = self.params
        L = p.L
        N = _n_electrons(n_electrons, L)
        if q is None:
            q = 2 * math.pi * round(N / 2) / L  # pi N / L on the grid 2 pi k / L
        k = q * L / (2 * math.pi)
        if p.boundary == "periodic" and abs(k - round(k)) > 1e-9:
            raise ConfigError(f"a ring of L={L} sites needs a commensurate spiral q = 2 pi k / L; q={q} gives k={k:.6g}")
        batch = () if n_traj is None else (n_traj,)
        rng = np.random.default_rng(seed)
        phi = rng.uniform(0, 2 * math.pi, (*batch, 1)) if random_phase else np.zeros((*batch, 1))
        angle = q * np.arange(L) + phi  # (*batch, L)
        S = np.stack((np.cos(angle), np.sin(angle), np.zeros_like(angle)), -2)
        S = tilt(S, tilt_angle, rng)
        rho = self.electron_ground_state(S, N, J_initial, "spiral_quench")
        return self._state(S, rho)

    @qcsurrogate.scenario
    def random_spins(
        self,
        n_traj: Annotated[int, Field(ge=1)] = 1,
        n_electrons: int | None = None,
        seed: Annotated[int, Field(ge=0)] = 0,
    ) -> State:
        """Spins uniformly random on the unit sphere, electrons in the ground state of H(S); batch (n_traj,).

        Draws from numpy's `default_rng(seed)` (normalised Gaussian vectors).
        """
        L = self.L
        N = _n_electrons(n_electrons, L)
        S = _unit(np.random.default_rng(seed).normal(size=(n_traj, 3, L)))
        return self._state(S, self.electron_ground_state(S, N, None, "random_spins"))

    @qcsurrogate.scenario
    def ferro_tilt(
        self,
        theta: Annotated[float, Field(ge=0, le=math.pi, allow_inf_nan=False)] = 0.5,
        n_electrons: int | None = None,
        tilt_angle: Annotated[float, Field(ge=0, le=math.pi, allow_inf_nan=False)] = 0.0,
        n_traj: Annotated[int, Field(ge=1)] | None = None,
        seed: Annotated[int, Field(ge=0)] = 0,
    ) -> State:
        """Electrons in the ground state of the ferromagnet S_i = z; then every spin is turned by `theta` about x.

        Without `tilt_angle` the state is uniform: on a ring S and the electron spin then precess rigidly about
        the conserved total spin (an exact solution, see the README); `tilt_angle` tilts each spin further by
        that angle in a random direction (seeded), which launches spin waves. Batch (n_traj,), or unbatched.
        """
        L = self.L
        N = _n_electrons(n_electrons, L)
        batch = () if n_traj is None else (n_traj,)
        up = np.zeros((*batch, 3, L))
        up[..., 2, :] = 1.0
        rho = self.electron_ground_state(up, N, None, "ferro_tilt")
        S = np.zeros((*batch, 3, L))
        S[..., 1, :], S[..., 2, :] = -math.sin(theta), math.cos(theta)  # z turned by theta about x
        S = tilt(S, tilt_angle, np.random.default_rng(seed))
        return self._state(S, rho)
