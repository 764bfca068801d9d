"""`qcsurrogate evaluate CONFIG --data FILE.h5`: a run's trained models scored on another trajectory file.

The file may hold other seeds, other initial states or another chain length L of the run's system:
the CNNs are translation-equivariant and pad by the lattice's boundary at whatever L they see, so a
model trained at L = 32 runs unchanged at L = 64. Every trajectory of the file is a test trajectory.

What must match the run's own data, or it is an error: the system name, its dependency graph and
field names, the boundary condition (the convolutions pad by it) and the model step
(`dt * save_every`). Other parameters (a coupling g, ...) may differ with a warning, recorded in the
metrics. The results go to `evaluations/<file stem>/metrics.json` (+ `figures/`) of the run
directory, never to the run's own `metrics.json` or its ledger; they name the file by path and
SHA-256 and record the digests of the models they scored, so an unchanged evaluation is kept and a
file of the same stem with other contents is recomputed.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..atomic import atomic_write_json
from ..evaluation.metrics import json_safe
from ..io import open_trajectory
from ..system import ConfigError
from ..training.data import Split
from . import stages
from .config import EvalConfig
from .layout import PRIMARY
from .ledger import config_digest, file_sha256
from .plan import train_stage
from .runner import Run

NOT_SYSTEM_PARAMS = frozenset({"L"})
"""Parameters that may differ freely between the run's data and an evaluated file."""


def file_facts(path: Path) -> dict[str, Any]:
    """What decides whether a trajectory file can be scored by a run's models (cheap: metadata only)."""
    with open_trajectory(path) as tr:
        return {
            "system": tr.system_name, "params": tr.params, "graph": tr.graph_dict, "fields": list(tr.field_names),
            "model_step": tr.dt * tr.save_every, "L": tr.L, "orbitals": tr.orbitals, "n_trajectories": tr.n_traj, "n_time": tr.n_time,
        }


def compatibility(run_facts: dict[str, Any], facts: dict[str, Any], path: Path) -> list[str]:
    """Warnings for parameters that differ; ConfigError for what makes the models inapplicable."""
    what = f"{path} cannot be scored by this run's models"
    if facts["system"] != run_facts["system"]:
        raise ConfigError(f"{what}: it holds system '{facts['system']}', the run was trained on "
                          f"'{run_facts['system']}'")
    if facts["graph"] != run_facts["graph"] or facts["fields"] != run_facts["fields"]:
        raise ConfigError(f"{what}: its dependency graph {facts['graph']} (fields {facts['fields']}) differs from "
                          f"the run's {run_facts['graph']} (fields {run_facts['fields']})")
    if facts["orbitals"] != run_facts["orbitals"]:
        raise ConfigError(f"{what}: it has {facts['orbitals']} orbital(s) per site, the models were built for "
                          f"{run_facts['orbitals']}")
    if facts["params"].get("boundary") != run_facts["params"].get("boundary"):
        raise ConfigError(f"{what}: boundary '{facts['params'].get('boundary')}', the models pad their "
                          f"convolutions for '{run_facts['params'].get('boundary')}'")
    a, b = facts["model_step"], run_facts["model_step"]
    if not math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0):
        raise ConfigError(f"{what}: its snapshots are {a:g} apart (dt * save_every), the models step by {b:g}")
    out = []
    for k in sorted(set(facts["params"]) | set(run_facts["params"])):
        if k in NOT_SYSTEM_PARAMS or k == "boundary":
            continue
        mine, theirs = run_facts["params"].get(k), facts["params"].get(k)
        if mine != theirs:
            out.append(f"parameter {k} = {theirs!r} in {path.name}, but the models were trained at {k} = {mine!r}")
    return out


def evaluate_file(run: Run, path: Path, force: bool = False, evaluation: EvalConfig | None = None) -> dict[str, Any]:
    """Score every trained model of `run` on all trajectories of `path`; returns the metrics written."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trajectory file {path}")
    ev = evaluation or run.cfg.evaluation
    run_data = run.require_data()
    run_facts, facts = file_facts(run_data), file_facts(path)
    notes = compatibility(run_facts, facts, path)
    sha = file_sha256(path)
    if sha == (run.ledger.stages.get("data", {}).get("outputs", {}).get(run.layout.relative(run_data), {}).get("sha256")):
        notes.append(f"{path.name} is the run's own data file: its trajectories include the training set")
    min_start = min(ev.starts)
    if min_start >= facts["n_time"] - 1:
        raise ConfigError(f"{path} has {facts['n_time']} snapshots; no rollout start in {ev.starts} leaves room "
                          "for a single step (use --starts)")
    models = run.models()  # the trained models must be current
    inputs = {
        "data_sha256": sha,
        "evaluation": config_digest({k: v for k, v in ev.model_dump(mode="json").items() if k != "figure_snapshots"}),
        **{train_stage(x): run.ledger.digest(train_stage(x)) for x in models},
    }
    out_dir = run.layout.external_evaluation(path.stem)
    metrics_path = out_dir / "metrics.json"
    if metrics_path.exists():
        old = json.loads(metrics_path.read_text())
        if not force and old.get("inputs") == inputs:
            run.log(f"evaluation of {path} is current; keeping {metrics_path}")
            return old
        if old.get("data", {}).get("sha256") != sha:
            run.log(f"{metrics_path} scored {old.get('data', {}).get('path')} (other contents); replacing it")
    for note in notes:
        warnings.warn(note, stacklevel=2)
        run.log(f"warning: {note}")

    with stages.Dataset(path, loading=run.cfg.loading, log=run.log) as data:
        return _evaluate_data(run, data, path, models, ev, facts, run_facts, run_data, sha, notes, inputs, out_dir,
                              metrics_path)


def _evaluate_data(run: Run, data: stages.Dataset, path: Path, models: dict, ev: EvalConfig, facts: dict,
                   run_facts: dict, run_data: Path, sha: str, notes: list[str], inputs: dict[str, str],
                   out_dir: Path, metrics_path: Path) -> dict[str, Any]:
    for model in models.values():  # constraints (conserve_energy) use this file's System: its L, its parameters
        model.attach_system(data.system)
    run.log(f"evaluating {', '.join(models)} on {data.n_traj} trajectories x {data.n_time} snapshots of {path} "
            f"(L = {facts['L']}; trained at L = {run_facts['L']})")
    split = Split((), (), tuple(range(data.n_traj)))
    results, truth, rollouts = stages.evaluate_models(data, split, models, ev)
    results["data"] = {
        "path": str(path.resolve()), "sha256": sha, "system": facts["system"], "params": facts["params"],
        "L": facts["L"], "n_trajectories": facts["n_trajectories"], "n_time": facts["n_time"],
        "model_step": facts["model_step"], "trained_on": {"path": str(run_data.resolve()), "L": run_facts["L"],
                                                          "params": run_facts["params"]},
    }
    results["warnings"] = notes
    results["computed_with"] = {"device": str(run.device), "threads": run.threads,
                                "torch": torch.__version__, "qcsurrogate": __version__}
    results["inputs"] = inputs
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(metrics_path, json_safe(results))
    ns, ro = results["next_step"], results["rollout"]
    run.log(f"{path.name}: next-step RMSE total {ns['rmse_total']:.3e}; after {ro['steps'][-1]} steps "
            f"{ro['rmse_total'][-1]:.3e} ({ro['diverged_fraction'][-1]:.0%} of rollouts diverged); wrote {metrics_path}")
    paths = stages.draw_figures(data.system, results, truth, rollouts[PRIMARY], out_dir / "figures",
                                f"{run.cfg.name} on {path.name}", ev.figure_snapshots)
    run.log("figures: " + ", ".join(str(p) for p in paths))
    return results
