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

__all__ = ["DEGENERACY_TOL", "DegenerateFermiLevelWarning", "FermiShell", "SelfConsistencyError", "fill_levels",
           "ground_state_density", "report_degeneracy", "self_consistent_cdw"]


class SelfConsistencyError(RuntimeError):
    """The adiabatic CDW iteration did not reach the requested tolerance."""


logger = logging.getLogger("qcsurrogate_holstein")

HINT = "Use an open chain, another L or another n_electrons"
"""What a degenerate Fermi level's warning suggests for a chain."""


def report_degeneracy(shell: FermiShell | None, context: str) -> None:
    """Warn (DegenerateFermiLevelWarning) when a Fermi shell was shared (see `qcsurrogate.onebody`)."""
    _report(shell, context, HINT, logger)


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
