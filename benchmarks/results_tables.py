"""The tables of docs/results.md for one evaluated run, printed from its metrics.json (markdown).

    .venv/bin/python benchmarks/results_tables.py runs/holstein_deep --steps 1 10 50 100 200 400

Prints the total RMSE of every predictor against the window, the per-variable RMSE of the run's
model, and the physics of its rollouts (constraints, energy, and every observable the System declares).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qcsurrogate.observables import format_over_pi

LABELS = {"persistence": "persistence u(t+k) = u(t)", "cnn": "single CNN, no PARC split"}


def _cell(curve: dict[str, Any], key: str, k: int) -> str:
    v = curve[key][curve["steps"].index(k)]
    if v is None:
        return "diverged"
    return f"{v:.2e}"


def tables(m: dict[str, Any], steps: list[int]) -> str:
    steps = [k for k in steps if k in m["rollout"]["steps"]]
    out = [f"| predictor | next step | {' | '.join(f'{k} steps' for k in steps)} |",
           f"|---|---|{'---|' * len(steps)}"]
    name = "PARC" if m.get("model", "parc") == "parc" else m["model"]
    rows = [(f"{name} ({m['n_parameters']:,} parameters)", m)]
    for label, entry in m.get("baselines", {}).items():
        params = f" ({entry['n_parameters']:,} parameters)" if "n_parameters" in entry else ""
        rows.append((LABELS.get(label, label) + params, entry))
    for label, entry in rows:
        cells = " | ".join(_cell(entry["rollout"], "rmse_total", k) for k in steps)
        out.append(f"| {label} | {entry['next_step']['rmse_total']:.2e} | {cells} |")
    last = m["rollout"]["steps"][-1]
    out += ["", f"Per variable ({name}, all starts):", "", f"| | next step | {last} steps |", "|---|---|---|"]
    for key in m["next_step"]:
        out.append(f"| {key} | {m['next_step'][key]:.2e} | {_cell(m['rollout'], key, last)} |")
    for label, entry in rows:
        if "physics" in entry:
            out += ["", f"Physics of the {last}-step rollouts of {label}:", "", _physics(entry["physics"])]
    out += ["", f"Diverged at {last} steps: " + ", ".join(
        f"{label} {entry['rollout']['diverged_fraction'][-1]:.0%}" for label, entry in rows)]
    return "\n".join(out)


def _physics(p: dict[str, Any]) -> str:
    lines = [f"- trace error (max) {_g(p['trace_error_max'])}, Hermiticity error (max) {_g(p['hermiticity_error_max'])}, "
             f"relative energy drift max {_g(p['energy_drift_max_rel'])} (at the end, mean {_g(p['energy_drift_final_rel'])}; "
             f"RK4 truth {_g(p['truth_energy_drift_max_rel'])})"]
    for name, o in p.get("observables", {}).items():
        if o["kind"] == "spectrum":
            lines.append(f"- {name}: dominant q = {format_over_pi(o['dominant_q'])} (truth mean there "
                         f"{_g(o['truth_mean_at_dominant_q'])}), RMSE there {_g(o['rmse_at_dominant_q'])}, "
                         f"over all q {_g(o['rmse'])} (truth rms {_g(o['truth_rms'])})")
        else:
            lines.append(f"- {name}: RMSE {_g(o['rmse'])} (truth rms {_g(o['truth_rms'])})")
    return "\n".join(lines)


def _g(v: float | None) -> str:
    """metrics.json stores non-finite values (a diverged rollout) as null."""
    return "non-finite" if v is None else f"{v:.2e}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 10, 50, 100, 200, 400])
    args = ap.parse_args(argv)
    print(tables(json.loads((args.run_dir / "metrics.json").read_text()), args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
