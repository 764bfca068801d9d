"""Trajectory files: HDF5 with one dataset per variable (see docs/trajectory-format.md).

- `TrajectoryWriter`: a `simulate` sink that streams snapshots into a file, written atomically.
- `simulate_to_file`: integrate a System and write the trajectory without holding it in memory.
- `open_trajectory`: a validating, lazy reader returning `State`s.
"""

from __future__ import annotations

from .reader import Trajectory, open_trajectory
from .schema import SCHEMA, SCHEMA_VERSION, TrajectoryFormatError
from .writer import TrajectoryWriter, resolve_scenario_kwargs, simulate_to_file

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "Trajectory",
    "TrajectoryFormatError",
    "TrajectoryWriter",
    "open_trajectory",
    "resolve_scenario_kwargs",
    "simulate_to_file",
]
