"""The semiclassical Holstein chain as a qcsurrogate system plugin (`load_system("holstein", L=8)`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .ground_state import (
    DEGENERACY_TOL,
    DegenerateFermiLevelWarning,
    FermiShell,
    SelfConsistencyError,
    fill_levels,
    ground_state_density,
)
from .observables import (
    charge_fluctuation,
    charge_structure_factor,
    densities,
    idempotency_error,
    lattice_structure_factor,
    purity,
    staggered_mean,
)
from .system import HolsteinChain, HolsteinParams

try:
    __version__ = version("qcsurrogate-holstein")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEGENERACY_TOL",
    "DegenerateFermiLevelWarning",
    "FermiShell",
    "HolsteinChain",
    "HolsteinParams",
    "SelfConsistencyError",
    "__version__",
    "charge_fluctuation",
    "charge_structure_factor",
    "densities",
    "fill_levels",
    "ground_state_density",
    "idempotency_error",
    "lattice_structure_factor",
    "purity",
    "staggered_mean",
]
