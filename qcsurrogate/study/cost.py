"""What one surrogate step costs against the exact solver for the same physical time (study 2's second axis).

The surrogate advances a batch of states by one model step T in one network call (float32, eager, no
autograd); the exact solver needs T / dt steps of its integrator (the data file's method, dt and
`compile` setting, float64). Both are timed on the same batch of states taken from the point's own
trajectory file; the median of a few short timings is reported, with the load average around them
(on a shared machine compare ratios, not absolute seconds). Cost is measured after the point's run, in
the study's process, one point at a time, and kept in the point's `cost.json` while its inputs hold.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_json
from ..device import use_threads
from ..io import open_trajectory
from ..pipeline.config import RunConfig
from ..pipeline.layout import RunLayout
from ..pipeline.ledger import Ledger, config_digest
from ..pipeline.plan import data_hash, train_stage
from ..solvers import simulate
from ..state import State
from ..surrogate.base import Surrogate
from ..system import System
from ..training.checkpoint import load_model
from .config import CostConfig

COST_FILE = "cost.json"


def median_seconds(fn: Callable[[], Any], repeats: int = 5, min_time: float = 0.05) -> float:
    """Median seconds per call of `fn`: one warm-up call, then `repeats` timings of at least `min_time` each."""
    fn()
    times = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        times.append(elapsed / n)
    return statistics.median(times)


def batch_of(state: State, batch: int) -> State:
    """`batch` states made by repeating the states of a batch `(n, ...)` in order."""
    n = state.rho.shape[0]
    reps = math.ceil(batch / n)
    return state.map(lambda x: x.repeat(reps, *([1] * (x.ndim - 1)))[:batch].contiguous())


def surrogate_step_seconds(model: Surrogate, state: State, repeats: int = 5, min_time: float = 0.05) -> float:
    """Seconds of one batched inference step of `model` on `state` (the whole batch)."""
    step = model.inference_step()
    x = model.prepare(state)
    model.eval()
    with torch.no_grad():
        return median_seconds(lambda: step(x), repeats, min_time)


def exact_step_seconds(system: System, state: State, dt: float, substeps: int, solver: str = "rk4",
                       compile: bool = False, repeats: int = 5, min_time: float = 0.05) -> float:
    """Seconds of `substeps` integrator steps of size `dt` on the whole batch `state` (float64)."""
    y = state.to(dtype=torch.float64)
    return median_seconds(lambda: simulate(system, y, dt, substeps, save_every=substeps, solver=solver, compile=compile),
                          repeats, min_time)


def _load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cost_inputs(cfg: RunConfig, ledger: Ledger, labels: list[str], cost: CostConfig) -> dict[str, str]:
    """What a cost measurement depends on: the data and each trained model (their ledger digests) and the
    timing settings."""
    settings = cost.model_dump(mode="json", exclude={"measure", "metric"})
    settings["threads"] = cfg.training.threads
    out = {"cost": config_digest(settings), "data": ledger.digest("data")}
    out.update({train_stage(x): ledger.digest(train_stage(x)) for x in labels})
    return out


def measure_run_cost(cfg: RunConfig, cost: CostConfig) -> dict[str, Any]:
    """Per-state seconds of one model step of every trained model of the run, and of the exact solver."""
    layout = RunLayout(cfg.output_dir)
    labels = list(cfg.model_configs())
    threads = use_threads(cfg.training.threads)
    with open_trajectory(layout.data_file(data_hash(cfg.data))) as tr:
        system = tr.system()
        dt, save_every = tr.dt, tr.save_every
        solver = tr.attrs.get("solver") or "rk4"
        state = batch_of(tr.state(slice(None), tr.n_time // 2), cost.batch)
    load_before = _load_average()
    exact = exact_step_seconds(system, state, dt, save_every, solver, cfg.data.simulation.compile,
                               cost.repeats, cost.min_time) / cost.batch
    predictors = {}
    for label in labels:
        model = load_model(layout.model_dir(label), system=system)  # constraints that need the System (energy)
        s = surrogate_step_seconds(model, state, cost.repeats, cost.min_time) / cost.batch
        predictors[label] = {"surrogate": model.name, "dtype": str(model.dtype).replace("torch.", ""),
                             "seconds_per_state": s, "speedup": exact / s}
    return {
        "model_step": dt * save_every, "L": state.L, "orbitals": state.orbitals, "batch": cost.batch, "repeats": cost.repeats,
        "threads": threads, "load_average": [load_before, _load_average()],
        "exact": {"solver": solver, "integration_dt": dt, "substeps": save_every,
                  "compile": cfg.data.simulation.compile, "seconds_per_state": exact},
        "predictors": predictors,
    }


def ensure_cost(cfg: RunConfig, cost: CostConfig) -> tuple[dict[str, Any], bool]:
    """The run's cost.json, measured unless one made from the same inputs is there; (result, measured)."""
    layout = RunLayout(cfg.output_dir)
    path = layout.root / COST_FILE
    inputs = cost_inputs(cfg, Ledger(layout), list(cfg.model_configs()), cost)
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("inputs") == inputs:
            return old, False
    result = {**measure_run_cost(cfg, cost), "inputs": inputs}
    atomic_write_json(path, result)
    return result, True
