"""The electrons' instantaneous ground state: the core's Fermi filling with this chain's advice.

A degenerate Fermi level has no unique Slater determinant: as in every shipped plugin, each level of
the degenerate shell gets the same fractional occupation (`qcsurrogate.onebody`), deterministic and
symmetric under every symmetry of H, at the price of a mixed rho, which is warned.
"""

from __future__ import annotations

import logging

from qcsurrogate.onebody import (
    DEGENERACY_TOL,
    DegenerateFermiLevelWarning,
    FermiShell,
    fill_levels,
    ground_state_density,
)
from qcsurrogate.onebody import report_degeneracy as _report

__all__ = ["DEGENERACY_TOL", "DegenerateFermiLevelWarning", "FermiShell", "fill_levels", "ground_state_density",
           "report_degeneracy"]

logger = logging.getLogger("qcsurrogate_sd_chain")

HINT = "Tilt the spins (noise), or change L or n_electrons,"
"""What a degenerate Fermi level's warning suggests for the spin chain."""


def report_degeneracy(shell: FermiShell | None, context: str) -> None:
    """Warn (DegenerateFermiLevelWarning) when a Fermi shell was shared (see `qcsurrogate.onebody`)."""
    _report(shell, context, HINT, logger)
