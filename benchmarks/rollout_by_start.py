"""Total RMSE of a run's surrogate by rollout start time (the per-start table of docs/results.md).

metrics.json averages the rollout curve over all (test trajectory, start) pairs; this splits it by
start, from what the run directory already holds (config.yaml, data/, split.json, model/):

    .venv/bin/python benchmarks/rollout_by_start.py runs/holstein_deep --steps 50 100 200 300 400
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qcsurrogate.evaluation.metrics import rollout_rmse
from qcsurrogate.pipeline import PRIMARY, Run, load_run_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--steps", type=int, nargs="+", default=[50, 100, 200, 300, 400])
    args = ap.parse_args(argv)
    cfg = load_run_config(args.run_dir / "config.yaml").model_copy(update={"output_dir": args.run_dir})
    run = Run(cfg, echo=False)  # the run's own data, split, model and thread count; refuses stale stages
    test = run.data.trajectories.index(list(run.split.test))
    dt = run.data.dt
    model = run.models([PRIMARY])[PRIMARY]
    horizon = max(args.steps)
    print(f"| start | {' | '.join(str(k) for k in args.steps)} |")
    print(f"|---|{'---|' * len(args.steps)}")
    for s in cfg.evaluation.starts:
        if s + horizon >= test.rho.shape[1]:
            continue
        curve, _ = rollout_rmse(lambda y, n: model.rollout(y, n), test, [s], horizon, args.steps)
        cells = " | ".join(f"{v:.1e}" for v in curve["rmse_total"])
        print(f"| t = {s * dt:g} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
