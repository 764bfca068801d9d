"""Filling one-body levels and the self-consistent dimerised (Peierls) ground state of the ring.

At half filling the uniform ring is unstable: the bonds dimerise, u_i = u_bar + (-1)^i u0, and open a
gap 4 alpha u0 at the Fermi level. The adiabatic ground state is the fixed point of the force balance
dE/du_i = 0, i.e. K u_i = -2 alpha b_i with b_i = Re rho_{i,i+1} of the filled levels of H(u).

A degenerate Fermi level (e.g. the undimerised ring with L divisible by 4 at half filling, where the
two k = +-pi/2 levels hold one electron) has no unique Slater determinant. As in the Holstein plugin,
every level of the degenerate shell gets the same fractional occupation: it depends only on the
shell's projector, so it is deterministic and symmetric; the price is a mixed rho, so it is warned.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("qcsurrogate_ssh_chain")

DEGENERACY_TOL = 1e-8
"""Levels closer than this (relative to the spectrum's scale, at least 1) form one shell."""


class DegenerateFermiLevelWarning(UserWarning):
    """The Fermi level falls inside a degenerate shell; its levels got equal fractional occupation."""


class SelfConsistencyError(RuntimeError):
    """The dimerisation fixed-point iteration did not reach the requested tolerance."""


@dataclass(frozen=True)
class FermiShell:
    """A degenerate shell straddling the Fermi level: levels `first..last` (0-based, ascending)."""

    first: int
    last: int
    electrons: int
    occupation: float

    def message(self, context: str) -> str:
        return (f"degenerate Fermi level in {context}: levels {self.first}..{self.last} share {self.electrons} "
                f"electron(s), occupation {self.occupation:.6g} each; rho is mixed (rho^2 != rho). Dimerise the "
                f"bonds, or change L or n_electrons, for a pure Slater determinant.")


def fill_levels(eps: np.ndarray, n_electrons: int, tol: float = DEGENERACY_TOL) -> tuple[np.ndarray, FermiShell | None]:
    """Occupations of ascending levels: the lowest N full, a degenerate Fermi shell shared equally."""
    L = eps.shape[-1]
    occ = np.zeros(L)
    occ[:n_electrons] = 1.0
    if n_electrons in (0, L):
        return occ, None
    atol = tol * max(1.0, float(np.abs(eps).max()))
    if eps[n_electrons] - eps[n_electrons - 1] > atol:
        return occ, None
    first, last = n_electrons - 1, n_electrons
    while first > 0 and eps[first] - eps[first - 1] <= atol:
        first -= 1
    while last < L - 1 and eps[last + 1] - eps[last] <= atol:
        last += 1
    f = (n_electrons - first) / (last - first + 1)
    occ[first : last + 1] = f
    return occ, FermiShell(first, last, n_electrons - first, f)


def ground_state_density(
    H: np.ndarray, n_electrons: int, tol: float = DEGENERACY_TOL
) -> tuple[np.ndarray, FermiShell | None]:
    """rho_ij = <c_j^dag c_i> of the filled levels of one real symmetric H (L, L), exactly symmetric."""
    eps, V = np.linalg.eigh(H)
    occ, shell = fill_levels(eps, n_electrons, tol)
    rho = (V * occ) @ V.T
    return 0.5 * (rho + rho.T), shell


def report_degeneracy(shell: FermiShell | None, context: str) -> None:
    """Warn (DegenerateFermiLevelWarning) and log when a Fermi shell was shared; silent otherwise."""
    if shell is None:
        return
    msg = shell.message(context)
    logger.info(msg)
    frame, level = sys._getframe(1), 2  # warn at the first frame outside qcsurrogate packages
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0].startswith("qcsurrogate"):
        frame, level = frame.f_back, level + 1
    warnings.warn(msg, DegenerateFermiLevelWarning, stacklevel=level)


def ring_bond_order(rho: np.ndarray) -> np.ndarray:
    """b_i = Re rho_{i,i+1 mod L} of one (L, L) matrix."""
    return np.diagonal(np.roll(rho, -1, axis=-1)).real.copy()


@dataclass(frozen=True)
class Dimerization:
    """The self-consistent state: bonds `u`, density matrix `rho`, and how the iteration ended."""

    u: np.ndarray
    rho: np.ndarray
    shell: FermiShell | None
    iterations: int
    residual: float

    @property
    def u_bar(self) -> float:
        """Uniform part of u: the compression of the ring by its bond order."""
        return float(self.u.mean())

    @property
    def u0(self) -> float:
        """Staggered amplitude (1/L) sum_i (-1)^i u_i (positive for the seed this module uses)."""
        return float(((-1.0) ** np.arange(self.u.shape[-1]) * self.u).mean())


def self_consistent_dimerization(
    hamiltonian: Callable[[np.ndarray], np.ndarray],
    *,
    L: int,
    alpha: float,
    K: float,
    n_electrons: int,
    tol: float = 1e-12,
    max_iter: int = 5000,
    degeneracy_tol: float = DEGENERACY_TOL,
) -> Dimerization:
    """Iterate u -> -2 alpha b[rho(H(u))] / K to a fixed point (the adiabatic, p = 0 ground state).

    The seed u_i = -(2 alpha / K)(1/pi - 0.1 (-1)^i) (the uniform half-filled bond order 1/pi, plus a
    staggered part with the even bonds long, t_0 < t_1) picks one of the two degenerate dimerisation
    patterns deterministically, so u0 > 0. Plain iteration converges in tens of steps at the couplings
    used here; it slows down near the weak-coupling limit, where the gap is exponentially small.
    The returned u is recomputed from the returned rho, so K u = -2 alpha b holds to rounding.
    """
    sign = (-1.0) ** np.arange(L)
    u = -(2.0 * alpha / K) * (1.0 / np.pi - 0.1 * sign)
    residual = np.inf
    for it in range(1, max_iter + 1):
        rho, shell = ground_state_density(hamiltonian(u), n_electrons, degeneracy_tol)
        u_new = -(2.0 * alpha / K) * ring_bond_order(rho)
        residual = float(np.abs(u_new - u).max())
        if residual <= tol:
            return Dimerization(u_new, rho, shell, it, residual)
        u = u_new
    raise SelfConsistencyError(
        f"dimerisation self-consistency did not converge in {max_iter} iterations: max |-2 alpha b / K - u| = "
        f"{residual:.3e} > tol = {tol:.1e} (L={L}, alpha={alpha}, K={K}, n_electrons={n_electrons}). "
        "Raise max_iter or loosen tol (weak coupling converges slowly)."
    )
