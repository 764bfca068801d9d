"""Checks of a run config against the data it will make, before anything is written.

The config's own validation cannot see these: how many trajectories the scenario makes (the split needs
some for training), how many snapshots they hold (evaluation starts, unroll windows), and whether the
device exists on this machine. Found after the data was generated or the model trained, they cost hours.
"""

from __future__ import annotations

import warnings

import torch

from ..device import resolve_device
from ..system import ConfigError
from ..training.data import split_trajectories
from .config import RunConfig


def preflight(cfg: RunConfig) -> None:
    """Raise ConfigError listing every problem (by config key) that would stop the run later."""
    problems: list[tuple[str, str]] = []
    try:
        resolve_device(cfg.device)
    except RuntimeError as err:
        problems.append(("device", str(err)))
    sim_device = cfg.data.simulation.compute_device
    try:
        torch.empty(0, device=sim_device)
    except (RuntimeError, AssertionError, ValueError) as err:
        problems.append(("data.simulation.device", f"device '{sim_device}' is not available here ({err})"))
    n_snapshots = cfg.data.simulation.n_snapshots
    unroll = cfg.training.objective.unroll.max_steps
    if unroll >= n_snapshots:
        problems.append(("training.objective.unroll.max_steps",
                         f"windows of {unroll} steps do not fit trajectories of {n_snapshots} snapshots"))
    late = [s for s in cfg.evaluation.starts if s >= n_snapshots - 1]
    if late:
        problems.append(("evaluation.starts", f"{late} leave no step to predict: the data has snapshots 0 to "
                                              f"{n_snapshots - 1}"))
    with warnings.catch_warnings():  # the scenario's own warnings come again when the data is made
        warnings.simplefilter("ignore")
        n_traj = max(1, cfg.data.initial_state().batch_shape.numel())
    s = cfg.split
    try:
        split_trajectories(n_traj, s.val_fraction, s.test_fraction, s.seed)
    except ValueError as err:
        problems.append(("split", str(err).removeprefix("split ")))
    if problems:
        lines = "\n".join(f"  {key}: {msg}" for key, msg in problems)
        raise ConfigError(f"the run config does not fit its data or this machine (nothing was written):\n{lines}")
