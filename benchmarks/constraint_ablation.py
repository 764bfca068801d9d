"""A run's trained surrogate scored under other inference-time constraints (the ablations of docs/results.md).

Loads the run's own data, split and model (refusing stale stages), sets the model's `project_rho` and
`conserve_energy` for inference (the weights are the run's), and prints the total RMSE of the rollouts
from the configured starts at `--steps`, the diverged fraction and, when the run config has an
`evaluation.climate` block, the climate summary `qcsurrogate evaluate` would write:

    .venv/bin/python benchmarks/constraint_ablation.py runs/holstein_deep_L32 --project-rho spectrum --conserve-energy

`--project-rho` other than the run's own changes only inference: 'spectrum' on a model trained with
'hermitian' projects its rollouts, not its training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from qcsurrogate.evaluation.metrics import rollout_rmse
from qcsurrogate.pipeline import PRIMARY, Run, load_run_config
from qcsurrogate.pipeline.stages import climate_evaluation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--project-rho", choices=["none", "hermitian", "spectrum"], required=True)
    ap.add_argument("--conserve-energy", action="store_true")
    ap.add_argument("--steps", type=int, nargs="+", default=None, help="rollout steps to report (default: none)")
    ap.add_argument("--starts", type=int, nargs="+", default=None, help="rollout start snapshots (default: the config's)")
    args = ap.parse_args(argv)
    cfg = load_run_config(args.run_dir / "config.yaml").model_copy(update={"output_dir": args.run_dir})
    run = Run(cfg, echo=False)
    model = run.models([PRIMARY])[PRIMARY]
    model.config = model.config.model_copy(update={"project_rho": args.project_rho,
                                                   "conserve_energy": args.conserve_energy})
    model.attach_system(run.data.system)
    out: dict = {"run": str(args.run_dir),
                 "trained_with": {"project_rho": run.cfg.model.project_rho},
                 "inference": {"project_rho": args.project_rho, "conserve_energy": args.conserve_energy}}
    t0 = time.perf_counter()
    if args.steps:
        test = run.data.trajectories.index(list(run.split.test))
        horizon = max(args.steps)
        starts = args.starts or cfg.evaluation.starts
        curve, _ = rollout_rmse(lambda y, n: model.rollout(y, n), test, starts, horizon, args.steps)
        out["rollout"] = {"starts": starts, "steps": args.steps, "rmse_total": curve["rmse_total"],
                          "diverged_fraction": curve["diverged_fraction"][-1]}
    if cfg.evaluation.climate is not None:
        climate = climate_evaluation(run.data, run.split, model, cfg.evaluation)
        out["climate"] = climate["summary"]
        out["energy_drift_max_rel"] = climate["energy"]["surrogate"]["max_abs_rel"]
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
