"""Climate of a run's trained surrogate under other inference-time constraints (the ablation of docs/results.md).

Loads the run's own data, split and model (refusing stale stages), replaces the model's `project_rho` and
`conserve_energy` for inference only (the weights are the run's), and prints the climate summary that
`qcsurrogate evaluate` would write for those settings, plus the energy drift:

    .venv/bin/python benchmarks/climate_with_constraints.py runs/holstein_deep_L32 --project-rho spectrum --conserve-energy
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from qcsurrogate.pipeline import PRIMARY, Run, load_run_config
from qcsurrogate.pipeline.stages import climate_evaluation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--project-rho", choices=["none", "hermitian", "spectrum"], required=True)
    ap.add_argument("--conserve-energy", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_run_config(args.run_dir / "config.yaml").model_copy(update={"output_dir": args.run_dir})
    if cfg.evaluation.climate is None:
        ap.error(f"{args.run_dir}/config.yaml has no evaluation.climate block")
    run = Run(cfg, echo=False)
    model = run.models([PRIMARY])[PRIMARY]
    model.config = model.config.model_copy(update={"project_rho": args.project_rho,
                                                   "conserve_energy": args.conserve_energy})
    model.attach_system(run.data.system)
    t0 = time.perf_counter()
    climate = climate_evaluation(run.data, run.split, model, cfg.evaluation)
    out = {"run": str(args.run_dir), "trained_with": {"project_rho": run.cfg.model.project_rho,
                                                      "conserve_energy": run.cfg.model.conserve_energy},
           "inference": {"project_rho": args.project_rho, "conserve_energy": args.conserve_energy},
           "summary": climate["summary"], "energy_drift": climate["energy"]["surrogate"]["max_abs_rel"],
           "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
