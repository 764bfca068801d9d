"""The s-d (Kondo-lattice) chain with classical spins as a qcsurrogate system plugin (`load_system("sd_chain", L=16)`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .ground_state import DEGENERACY_TOL, DegenerateFermiLevelWarning, fill_levels, ground_state_density
from .observables import (
    charge_density,
    onsite_blocks,
    spin_density,
    spin_density_x,
    spin_density_y,
    spin_density_z,
    spiral_pitch,
    vector_chirality,
    vector_structure_factor,
)
from .system import SDChain, SDChainParams, adjacency, onsite_matrices, tilt

try:
    __version__ = version("qcsurrogate-sd")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEGENERACY_TOL",
    "DegenerateFermiLevelWarning",
    "SDChain",
    "SDChainParams",
    "__version__",
    "adjacency",
    "charge_density",
    "fill_levels",
    "ground_state_density",
    "onsite_blocks",
    "onsite_matrices",
    "spin_density",
    "spin_density_x",
    "spin_density_y",
    "spin_density_z",
    "spiral_pitch",
    "tilt",
    "vector_chirality",
    "vector_structure_factor",
]
