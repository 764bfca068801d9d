"""The semiclassical bond-SSH ring as a qcsurrogate system plugin (`load_system("ssh_chain", L=32)`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .ground_state import (
    DEGENERACY_TOL,
    DegenerateFermiLevelWarning,
    Dimerization,
    SelfConsistencyError,
    fill_levels,
    ground_state_density,
    self_consistent_dimerization,
)
from .observables import (
    bond_order,
    dimerization,
    dimerization_amplitude,
    local_dimerization,
    wall_crossings,
    wall_position,
)
from .system import RING_BOND_MATRIX, SSHChain, SSHChainParams, commutator, ring_bond_matrix, wall_profile

try:
    __version__ = version("qcsurrogate-ssh")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEGENERACY_TOL",
    "RING_BOND_MATRIX",
    "DegenerateFermiLevelWarning",
    "Dimerization",
    "SSHChain",
    "SSHChainParams",
    "SelfConsistencyError",
    "__version__",
    "bond_order",
    "commutator",
    "dimerization",
    "dimerization_amplitude",
    "fill_levels",
    "ground_state_density",
    "local_dimerization",
    "ring_bond_matrix",
    "self_consistent_dimerization",
    "wall_crossings",
    "wall_position",
    "wall_profile",
]
