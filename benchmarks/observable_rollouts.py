"""Scalar observables of a run's rollouts against the truth: PARC, its baselines and persistence.

metrics.json scores each declared observable over the whole rollout for the trained surrogates; this
prints its RMSE after k recurrent steps for every predictor, persistence (the state held fixed)
included, and draws the observable against time on one test trajectory (truth and predictions):

    .venv/bin/python benchmarks/observable_rollouts.py runs/ssh_soliton --observables soliton_position \
        dimerization --steps 10 50 100 200 --figure docs/figures/ssh_soliton_position.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from qcsurrogate.evaluation.metrics import rollout_windows
from qcsurrogate.pipeline import Run, load_run_config
from qcsurrogate.state import State


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--observables", nargs="+", required=True, help="scalar observables the System declares")
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 50, 100, 200])
    ap.add_argument("--figure", type=Path, help="PNG: each observable against time on the first test trajectory")
    args = ap.parse_args(argv)
    cfg = load_run_config(args.run_dir / "config.yaml").model_copy(update={"output_dir": args.run_dir})
    run = Run(cfg, echo=False)  # the run's own data, split and models; refuses stale stages
    system = run.data.system
    declared = {o.name: o for o in system.observables()}
    unknown = [n for n in args.observables if n not in declared or declared[n].kind != "scalar"]
    if unknown:
        scalars = sorted(n for n, o in declared.items() if o.kind == "scalar")
        raise SystemExit(f"not scalar observables of '{system.name}': {unknown}; it declares {scalars}")
    test = run.data.trajectories.index(list(run.split.test))
    horizon = max(args.steps)
    starts = [s for s in cfg.evaluation.starts if s + horizon < test.rho.shape[1]]
    truth = rollout_windows(test, starts, horizon)
    models = run.models()
    names = {label: c.name.upper() if c.name in ("parc", "cnn") else c.name for label, c in cfg.model_configs().items()}
    predictions: dict[str, State] = {names[label]: m.rollout(truth.index(0), horizon).to(dtype=torch.float64)
                                     for label, m in models.items()}
    predictions["persistence"] = State.stack([truth.index(0)] * (horizon + 1))
    print(f"{len(starts)} starts {starts} x {test.rho.shape[0]} test trajectories, model step "
          f"{run.data.dt:g}")
    for name in args.observables:
        obs = declared[name]
        true = obs(truth)
        print(f"\n{name}: RMSE after k steps (truth rms {float(true.pow(2).mean().sqrt()):.3g}, truth's own change "
              f"over k steps rms shown as persistence)")
        print(f"| predictor | {' | '.join(f'{k} steps' for k in args.steps)} |")
        print(f"|---|{'---|' * len(args.steps)}")
        for label, pred in predictions.items():
            err = (obs(pred) - true).pow(2)
            cells = " | ".join(f"{float(err[k].mean().sqrt()):.2e}" for k in args.steps)
            print(f"| {label} | {cells} |")
    if args.figure:
        _figure(args.figure, args.observables, declared, truth, predictions, run.data.dt, len(starts))
    return 0


def horizon_label(truth: State, dt: float) -> str:
    return f"{truth.rho.shape[0] - 1}-step (t = {(truth.rho.shape[0] - 1) * dt:g})"


def _figure(path: Path, names, declared, truth: State, predictions: dict[str, State], dt: float, n_starts: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.6 * len(names)), squeeze=False, sharex=True)
    t = torch.arange(truth.rho.shape[0]) * dt
    sample = 0  # the first test trajectory from the first start
    for ax, name in zip(axes[:, 0], names):
        obs = declared[name]
        ax.plot(t, obs(truth)[:, sample], "k-", lw=2, label="truth (RK4)")
        for label, pred in predictions.items():
            if label != "persistence":
                ax.plot(t, obs(pred)[:, sample], "--", lw=1.2, label=label)
        unit = f" [{obs.unit}]" if getattr(obs, "unit", "") else ""
        ax.set_ylabel(f"{obs.label or name}{unit}")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time since the rollout start [hbar/t]")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{horizon_label(truth, dt)} rollouts against the truth: first test trajectory, first start",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
