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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qcsurrogate.onebody import (
    DEGENERACY_TOL,
    DegenerateFermiLevelWarning,
    FermiShell,
    fill_levels,
    ground_state_density,
)
from qcsurrogate.onebody import report_degeneracy as _report

__all__ = ["DEGENERACY_TOL", "DegenerateFermiLevelWarning", "Dimerization", "FermiShell", "SelfConsistencyError",
           "fill_levels", "ground_state_density", "report_degeneracy", "ring_bond_order",
           "self_consistent_dimerization"]


class SelfConsistencyError(RuntimeError):
    """The dimerisation fixed-point iteration did not reach the requested tolerance."""


logger = logging.getLogger("qcsurrogate_ssh_chain")

HINT = "Dimerise the bonds, or change L or n_electrons,"
"""What a degenerate Fermi level's warning suggests for the ring."""


def report_degeneracy(shell: FermiShell | None, context: str) -> None:
    """Warn (DegenerateFermiLevelWarning) when a Fermi shell was shared (see `qcsurrogate.onebody`)."""
    _report(shell, context, HINT, logger)


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
