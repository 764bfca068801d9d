"""Filling the levels of a Hermitian one-body Hamiltonian (the electrons' instantaneous ground state).

TODO(onebody): a private stand-in for the core's `qcsurrogate.onebody` (`ground_state_density`,
`report_degeneracy`), which the lead is moving into the core; same signatures, so at merge this module
is replaced by `from qcsurrogate.onebody import ground_state_density, report_degeneracy`.

A degenerate Fermi level has no unique Slater determinant: as in the Holstein and SSH plugins every
level of the degenerate shell gets the same fractional occupation (deterministic, and symmetric under
every symmetry of H), at the price of a mixed rho, which is warned.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("qcsurrogate_sd_chain")

DEGENERACY_TOL = 1e-8
"""Levels closer than this (relative to the spectrum's scale, at least 1) form one shell."""


class DegenerateFermiLevelWarning(UserWarning):
    """The Fermi level falls inside a degenerate shell; its levels got equal fractional occupation."""


@dataclass(frozen=True)
class FermiShell:
    """A degenerate shell straddling the Fermi level: levels `first..last` (0-based, ascending)."""

    first: int
    last: int
    electrons: int
    occupation: float

    def message(self, context: str) -> str:
        return (f"degenerate Fermi level in {context}: levels {self.first}..{self.last} share {self.electrons} "
                f"electron(s), occupation {self.occupation:.6g} each; rho is mixed (rho^2 != rho). Tilt the spins "
                f"(noise), or change L or n_electrons, for a pure Slater determinant.")


def fill_levels(eps: np.ndarray, n_electrons: int, tol: float = DEGENERACY_TOL) -> tuple[np.ndarray, FermiShell | None]:
    """Occupations of ascending levels: the lowest N full, a degenerate Fermi shell shared equally."""
    n = eps.shape[-1]
    occ = np.zeros(n)
    occ[:n_electrons] = 1.0
    if n_electrons in (0, n):
        return occ, None
    atol = tol * max(1.0, float(np.abs(eps).max()))
    if eps[n_electrons] - eps[n_electrons - 1] > atol:
        return occ, None
    first, last = n_electrons - 1, n_electrons
    while first > 0 and eps[first] - eps[first - 1] <= atol:
        first -= 1
    while last < n - 1 and eps[last + 1] - eps[last] <= atol:
        last += 1
    f = (n_electrons - first) / (last - first + 1)
    occ[first : last + 1] = f
    return occ, FermiShell(first, last, n_electrons - first, f)


def ground_state_density(H: np.ndarray, n_electrons: int, tol: float = DEGENERACY_TOL
                         ) -> tuple[np.ndarray, FermiShell | None]:
    """rho_ab = <c_b^dag c_a> of the lowest `n_electrons` levels of one Hermitian H (N, N), exactly Hermitian.

    The shell of levels degenerate with the Fermi level (if any) is shared equally and returned.
    """
    H = np.asarray(H)
    if not 0 <= n_electrons <= H.shape[-1]:
        raise ValueError(f"n_electrons must be in 0..{H.shape[-1]}, got {n_electrons}")
    eps, V = np.linalg.eigh(H)
    occ, shell = fill_levels(eps, n_electrons, tol)
    rho = (V * occ) @ V.conj().T
    return 0.5 * (rho + rho.conj().T), shell


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
