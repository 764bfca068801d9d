"""Filling one-body levels: the ground-state density matrix of a Hermitian one-body Hamiltonian.

Every system plugin that starts electrons in the ground state of H needs the same rule for who gets
which electron, including the one case where the rule is a choice rather than physics: a degenerate
Fermi level (e.g. a periodic chain of L = 8 at half filling, where the two k = +-pi/2 levels hold one
electron). A Slater determinant would have to pick an arbitrary basis of that shell, breaking the
lattice symmetry in a LAPACK-dependent way; giving every level of the shell the same fractional
occupation depends only on the shell's projector, so it is deterministic and symmetric. The price is
a mixed (non-idempotent) rho, which is why it is reported (`report_degeneracy`), never silent.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("qcsurrogate.onebody")

DEGENERACY_TOL = 1e-8
"""Levels closer than this (in units of the spectrum's scale, at least 1) form one shell. eigh
resolves eigenvalues to ~1e-15 relative, while physical splittings of lattice models are many orders
larger, so 1e-8 separates 'degenerate up to rounding' from 'nearly degenerate'."""


class DegenerateFermiLevelWarning(UserWarning):
    """The Fermi level falls inside a degenerate shell; its levels got equal fractional occupation."""


@dataclass(frozen=True)
class FermiShell:
    """A degenerate shell straddling the Fermi level: levels `first..last` (0-based, ascending)."""

    first: int
    last: int
    energies: tuple[float, ...]
    electrons: int
    """Electrons the shell holds."""
    occupation: float
    """Each of its levels' occupation, `electrons / size`."""
    n_electrons: int
    tol: float

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def message(self, context: str = "", hint: str = "Change L or the number of electrons") -> str:
        where = f" in {context}" if context else ""
        energies = ", ".join(f"{e:.12g}" for e in self.energies)
        return (
            f"degenerate Fermi level{where}: levels {self.first}..{self.last} (energies {energies}; "
            f"equal within tol={self.tol:.1e}) share {self.electrons} of the {self.n_electrons} electrons, "
            f"so each gets occupation {self.occupation:.12g}; rho is a mixed, non-idempotent one-body "
            f"density matrix (rho^2 != rho). {hint} for a pure Slater determinant."
        )


def fill_levels(energies: np.ndarray, n_electrons: int, tol: float = DEGENERACY_TOL) -> tuple[np.ndarray, FermiShell | None]:
    """Occupations of ascending levels: the lowest N full, a degenerate Fermi shell shared equally.

    The shell is grown transitively (neighbours closer than the tolerance join it), so every level
    outside it is separated by more than the tolerance and its projector is numerically well defined.
    """
    eps = np.asarray(energies, dtype=np.float64)
    if eps.ndim != 1:
        raise ValueError(f"fill_levels takes one spectrum (N,), got shape {eps.shape}")
    N = eps.shape[-1]
    if np.any(np.diff(eps) < 0):
        raise ValueError("energies must be sorted ascending (as eigh returns them)")
    if not 0 <= n_electrons <= N:
        raise ValueError(f"n_electrons must be in 0..{N}, got {n_electrons}")
    occ = np.zeros(N)
    occ[:n_electrons] = 1.0
    if n_electrons in (0, N):
        return occ, None
    atol = tol * max(1.0, float(np.abs(eps).max()))
    if eps[n_electrons] - eps[n_electrons - 1] > atol:
        return occ, None
    first, last = n_electrons - 1, n_electrons
    while first > 0 and eps[first] - eps[first - 1] <= atol:
        first -= 1
    while last < N - 1 and eps[last + 1] - eps[last] <= atol:
        last += 1
    in_shell = n_electrons - first
    f = in_shell / (last - first + 1)
    occ[first : last + 1] = f
    shell = FermiShell(first, last, tuple(float(e) for e in eps[first : last + 1]), in_shell, f, n_electrons, tol)
    return occ, shell


def ground_state_density(H: np.ndarray, n_electrons: int, tol: float = DEGENERACY_TOL) -> tuple[np.ndarray, FermiShell | None]:
    """rho_ij = <c_j^dag c_i> of the filled levels of one Hermitian H (N, N), exactly Hermitian.

    Real symmetric H gives a real rho; a complex Hermitian H (e.g. spin-orbit or a transverse
    exchange field) a complex one."""
    H = np.asarray(H)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be one square matrix (N, N), got shape {H.shape}")
    eps, V = np.linalg.eigh(H)
    occ, shell = fill_levels(eps, n_electrons, tol)
    rho = (V * occ) @ V.conj().T
    return 0.5 * (rho + rho.conj().T), shell


def report_degeneracy(
    shell: FermiShell | None, context: str, hint: str | None = None, log: logging.Logger | None = None
) -> None:
    """Warn (DegenerateFermiLevelWarning) and log (to `log`, e.g. the plugin's logger; default this
    module's) when a Fermi shell was shared; silent otherwise.

    The warning is attributed to the first frame outside qcsurrogate packages (a plugin's package is
    named `qcsurrogate_<name>`), so it names user code whether a scenario was called directly or
    through `System.initial_state`."""
    if shell is None:
        return
    msg = shell.message(context) if hint is None else shell.message(context, hint)
    (log or logger).info(msg)
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0].startswith("qcsurrogate"):
        frame, level = frame.f_back, level + 1
    warnings.warn(msg, DegenerateFermiLevelWarning, stacklevel=level)
