"""qcsurrogate: neural surrogates of hybrid quantum-classical dynamics.

The core defines the hybrid `State`, the abstract `System` (the equation), fixed-step solvers
(`simulate`), plugin discovery, trajectory files and surrogates; physical models come as plugins.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .graph import Dependency, DependencyGraph, View, register_view
from .hookspecs import hookimpl
from .registry import list_plugins, list_surrogates, list_systems, load_system, register_plugin
from .solvers import simulate
from .state import State
from .system import ConfigError, System, SystemParams, scenario
from .io import TrajectoryWriter, open_trajectory, simulate_to_file

try:
    __version__ = version("qcsurrogate")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConfigError",
    "Dependency",
    "DependencyGraph",
    "State",
    "System",
    "SystemParams",
    "View",
    "__version__",
    "hookimpl",
    "list_plugins",
    "list_surrogates",
    "list_systems",
    "load_system",
    "register_plugin",
    "register_view",
    "scenario",
    "simulate",
]
