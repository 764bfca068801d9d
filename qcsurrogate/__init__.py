"""qcsurrogate: neural surrogates of hybrid quantum-classical dynamics.

The core defines the hybrid `State`, the abstract `System` (the equation), fixed-step solvers
(`simulate`), plugin discovery, trajectory files and surrogates; physical models come as plugins.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .graph import Dependency, DependencyGraph, View, available_views, get_view
from .hookspecs import hookimpl
from .observables import Observable
from .registry import (
    get_surrogate_class,
    list_plugins,
    list_surrogates,
    list_systems,
    list_views,
    load_system,
    register_plugin,
    register_view,
    unregister_plugin,
)
from .solvers import simulate
from .state import State
from .system import ConfigError, ScenarioArgumentError, System, SystemParams, scenario, validate_scenario_kwargs
from .io import TrajectoryWriter, open_trajectory, simulate_to_file

try:
    __version__ = version("qcsurrogate")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConfigError",
    "Observable",
    "ScenarioArgumentError",
    "Dependency",
    "DependencyGraph",
    "State",
    "System",
    "SystemParams",
    "View",
    "TrajectoryWriter",
    "__version__",
    "available_views",
    "get_surrogate_class",
    "get_view",
    "hookimpl",
    "list_plugins",
    "list_surrogates",
    "list_systems",
    "list_views",
    "load_system",
    "register_plugin",
    "register_view",
    "scenario",
    "open_trajectory",
    "simulate",
    "simulate_to_file",
    "unregister_plugin",
    "validate_scenario_kwargs",
]
