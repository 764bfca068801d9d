"""Filling one-body levels and the self-consistent (adiabatic) CDW ground state.

Both scenarios build rho through `fill_levels`, so there is exactly one rule for who gets which
electron, including the one case where the rule is a choice rather than physics: a degenerate Fermi
level (e.g. the periodic L = 8 chain at half filling, where the two k = +-pi/2 levels at energy 0
hold one electron). A Slater determinant would have to pick an arbitrary basis of that shell,
breaking translation symmetry in a LAPACK-dependent way; giving every level of the shell the same
fractional occupation depends only on the shell's projector, so it is deterministic and symmetric.
The price is a mixed (non-idempotent) rho, which is why it is reported, never silent.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("qcsurrogate_holstein")

DEGENERACY_TOL = 1e-8
"""Levels closer than this (in units of the spectrum's scale, at least t) form one shell. eigh
resolves eigenvalues to ~1e-15 relative, while physical splittings of the chains we simulate are
many orders larger, so 1e-8 separates 'degenerate up to rounding' from 'nearly degenerate'."""


class DegenerateFermiLevelWarning(UserWarning):
    """The Fermi level falls inside a degenerate shell; its levels got equal fractional occupation."""


class SelfConsistencyError(RuntimeError):
    """The adiabatic CDW iteration did not reach the requested tolerance."""


@dataclass(frozen=True)
class FermiShell:
    """A degenerate shell straddling the Fermi level: levels `first..last` (0-based, ascending)."""

    first: int
    last: int
    energies: tuple[float, ...]
    electrons: int
    occupation: float
    n_electrons: int
    tol: float

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def message(self, context: str = "") -> str:
        where = f" in {context}" if context else ""
        energies = ", ".join(f"{e:.12g}" for e in self.energies)
        return (
            f"degenerate Fermi level{where}: levels {self.first}..{self.last} (energies {energies}; "
            f"equal within tol={self.tol:.1e}) share {self.electrons} of the {self.n_electrons} electrons, "
            f"so each gets occupation {self.occupation:.12g}; rho is a mixed, non-idempotent one-body "
            f"density matrix (rho^2 != rho). Use an open chain, another L or another n_electrons for a "
            f"pure Slater determinant."
        )


def fill_levels(energies: np.ndarray, n_electrons: int, tol: float = DEGENERACY_TOL) -> tuple[np.ndarray, FermiShell | None]:
    """Occupations of ascending levels: the lowest N full, a degenerate Fermi shell shared equally.

    The shell is grown transitively (neighbours closer than the tolerance join it), so every level
    outside it is separated by more than the tolerance and its projector is numerically well defined.
    """
    eps = np.asarray(energies, dtype=np.float64)
    L = eps.shape[-1]
    if eps.ndim != 1:
        raise ValueError(f"fill_levels takes one spectrum (L,), got shape {eps.shape}")
    if np.any(np.diff(eps) < 0):
        raise ValueError("energies must be sorted ascending (as eigh returns them)")
    if not 0 <= n_electrons <= L:
        raise ValueError(f"n_electrons must be in 0..{L}, got {n_electrons}")
    occ = np.zeros(L)
    occ[:n_electrons] = 1.0
    if n_electrons in (0, L):
        return occ, None
    scale = max(1.0, float(np.abs(eps).max()))
    atol = tol * scale
    if eps[n_electrons] - eps[n_electrons - 1] > atol:
        return occ, None
    first, last = n_electrons - 1, n_electrons
    while first > 0 and eps[first] - eps[first - 1] <= atol:
        first -= 1
    while last < L - 1 and eps[last + 1] - eps[last] <= atol:
        last += 1
    in_shell = n_electrons - first
    f = in_shell / (last - first + 1)
    occ[first : last + 1] = f
    shell = FermiShell(first, last, tuple(float(e) for e in eps[first : last + 1]), in_shell, f, n_electrons, tol)
    return occ, shell


def ground_state_density(H: np.ndarray, n_electrons: int, tol: float = DEGENERACY_TOL) -> tuple[np.ndarray, FermiShell | None]:
    """rho_ij = <c_j^dag c_i> of the filled levels of a real symmetric H, exactly symmetric."""
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
    warnings.warn(msg, DegenerateFermiLevelWarning, stacklevel=_caller_stacklevel())


def _caller_stacklevel() -> int:
    """Stack level of the first frame outside qcsurrogate packages, so the warning names user code
    whether the scenario was called directly or through `System.initial_state`."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("qcsurrogate", "qcsurrogate_holstein"):
        frame, level = frame.f_back, level + 1
    return level


MIN_MIXING = 1e-3
MIXING_GROWTH = 1.5
"""After a step without oscillation the mixing grows by this factor, up to the requested mixing."""


def peierls_pattern(L: int, n_electrons: int) -> np.ndarray:
    """cos(2 k_F i) with 2 k_F = 2 pi N / L, from integer phases so half filling gives exactly +-1."""
    phase = (n_electrons * np.arange(L)) % L
    return np.cos(2.0 * np.pi * phase / L)


@dataclass(frozen=True)
class CDWSolution:
    Q: np.ndarray
    rho: np.ndarray
    shell: FermiShell | None
    iterations: int
    residual: float


def self_consistent_cdw(
    hamiltonian: Callable[[np.ndarray], np.ndarray],
    *,
    L: int,
    g: float,
    K: float,
    n0: float,
    n_electrons: int,
    tol: float = 1e-12,
    max_iter: int = 5000,
    mixing: float = 1.0,
    degeneracy_tol: float = DEGENERACY_TOL,
) -> CDWSolution:
    """Iterate Q -> g (n[rho(H(Q))] - n0) / K to a fixed point (the adiabatic, P = 0 ground state).

    The seed is a density wave at the Peierls wave vector 2 k_F = 2 pi N / L, (Q_i ~ cos(2 k_F i),
    site 0 high), which selects one of the symmetry-broken CDW states deterministically; at half
    filling it is the fully staggered pattern. A seed of the wrong period (a staggered one at quarter
    filling) is an unstable fixed point that the iteration leaves only through round-off.

    Plain iteration (mixing 1) converges fast; the mixing is halved only when the update reverses
    direction (successive increments with a negative overlap: the iteration oscillates) and is grown
    back towards `mixing` after every step that does not, so a residual that rises while the iterate
    leaves an unstable pattern is not mistaken for an oscillation, and one early oscillation cannot
    leave the mixing tiny for good.
    The returned Q is recomputed from the returned rho, so `Q = g (n - n0) / K` holds to rounding and
    rho is the ground state of H(Q') with |Q' - Q| <= tol.
    """
    filling = n_electrons / L
    delta = min(filling, 1.0 - filling)
    Q = (g / K) * (filling - n0 + delta * peierls_pattern(L, n_electrons))
    alpha = float(mixing)
    previous_step: np.ndarray | None = None
    residual = np.inf
    for it in range(1, max_iter + 1):
        rho, shell = ground_state_density(hamiltonian(Q), n_electrons, degeneracy_tol)
        Q_new = (g / K) * (np.diag(rho) - n0)
        step = Q_new - Q
        residual = float(np.abs(step).max())
        if residual <= tol:
            return CDWSolution(Q_new, rho, shell, it, residual)
        if previous_step is not None and float(step @ previous_step) < 0:
            alpha = max(alpha * 0.5, MIN_MIXING)
        else:
            alpha = min(alpha * MIXING_GROWTH, float(mixing))
        previous_step = step
        Q = Q + alpha * step
    raise SelfConsistencyError(
        f"CDW self-consistency did not converge in {max_iter} iterations: max |g(n - n0)/K - Q| = "
        f"{residual:.3e} > tol = {tol:.1e} (L={L}, g={g}, K={K}, n0={n0}, n_electrons={n_electrons}, "
        f"final mixing {alpha:.3g}). Raise max_iter, loosen tol, or lower the initial mixing."
    )
