"""The stages of a run as functions of exactly what they need.

Nothing here knows about run directories or ledgers: each function takes the system, the data, the
split and the relevant config section, and returns (or writes to the path it is given) its product.
`runner.Run` decides which stages to run and where their products go.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..config import DataConfig
from ..evaluation import figures
from ..evaluation.metrics import next_step_rmse, persistence, physics_diagnostics, rollout_rmse
from ..io import open_trajectory, simulate_to_file
from ..state import State
from ..surrogate.base import Surrogate, SurrogateConfig, build_surrogate
from ..surrogate.normalization import Normalization
from ..system import System
from ..training.data import Split, WindowSampler, fit_normalization
from ..training.trainer import TrainConfig, Trainer, TrainingFiles
from .config import EvalConfig

Log = Callable[[str], None]


class Dataset:
    """A trajectory file loaded once: the trajectories, the System that made them and the model step."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open_trajectory(self.path) as tr:
            self.trajectories: State = tr.load()
            self.system: System = tr.system()
            self.dt: float = tr.dt * tr.save_every

    @property
    def n_traj(self) -> int:
        return self.trajectories.rho.shape[0]

    @property
    def n_time(self) -> int:
        return self.trajectories.rho.shape[1]


# -- ground truth ------------------------------------------------------------------------------------
def simulate_data(data: DataConfig, path: Path, log: Log, system: System | None = None, state0: State | None = None,
                  **options: Any) -> Path:
    """Integrate the configured scenario and write the trajectory file (atomically) at `path`.

    The one place a data config becomes a file (`qcsurrogate run`, `train` and `simulate` all come here);
    `options` go to `simulate_to_file` (compression, overwrite, progress, extra_attrs); `system` and
    `state0` may be given when the caller built them already.
    """
    system = system if system is not None else data.build_system()
    state0 = state0 if state0 is not None else data.initial_state(system)
    sim = data.simulation
    n_traj = max(1, state0.batch_shape.numel())
    transient = f", after a discarded transient of {sim.discard_steps} steps" if sim.discard_steps else ""
    log(f"simulating {system!r}, scenario {data.scenario.name}: {n_traj} trajectories, {sim.n_steps} {sim.solver} steps "
        f"of dt={sim.dt}{transient}, keeping every {sim.save_every} (model step {sim.step:g} hbar/t)")
    t0 = time.perf_counter()
    extra = {"data_config": data.model_dump(mode="json", include={"system", "scenario", "simulation"}),
             **options.pop("extra_attrs", {})}
    simulate_to_file(
        system, state0, path, sim.dt, sim.n_steps, sim.save_every,
        scenario=data.scenario.name, scenario_kwargs=data.scenario.kwargs, precision=sim.precision,
        solver=sim.solver, device=sim.device, compile=sim.compile, discard_steps=sim.discard_steps,
        extra_attrs=extra, **options,
    )
    log(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
    return path


def recorded_data_config(path: Path) -> dict[str, Any] | None:
    """The data config a trajectory file says it was made from (None if it records none)."""
    with open_trajectory(path) as tr:
        return tr.attrs.get("extra", {}).get("data_config")


# -- normalisation and models ---------------------------------------------------------------------------
def training_sampler(data: Dataset, split: Split, train_cfg: TrainConfig) -> WindowSampler:
    """Windows of the training trajectories, as long as the longest unroll."""
    return WindowSampler(data.trajectories, split.train, train_cfg.objective.unroll.max_steps, train_cfg.seed)


def train_surrogate(
    data: Dataset, split: Split, norm: Normalization, model_cfg: SurrogateConfig, train_cfg: TrainConfig,
    out: TrainingFiles, device: torch.device, log: Log, resume: bool = False, stop_after: int | None = None,
    inputs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build, initialise and train one surrogate; the Trainer writes the model, checkpoints and logs to `out`."""
    system = data.system
    train = training_sampler(data, split, train_cfg)
    val = WindowSampler(data.trajectories, split.val, 1, train_cfg.seed) if split.val else None
    torch.manual_seed(train_cfg.seed)
    model = build_surrogate(model_cfg.name, system, model_cfg, norm)
    cur, nxt = train.all_pairs(stride=max(1, train.size // 512))
    report = model.initialize_from_data(cur, system.rhs(cur), nxt)  # draws no random numbers
    if report:
        log("initialised from data, relative residuals: " + ", ".join(f"{k} {v:.1e}" for k, v in report.items()))
    model = model.to(device)
    log(f"training surrogate '{model_cfg.name}' ({model.n_parameters():,} parameters) on {len(split.train)} "
        f"trajectories, device {device}")
    trainer = Trainer(model, system, train, val, train_cfg, out, log=log, inputs=inputs)
    summary = trainer.fit(resume=resume, stop_after=stop_after)
    if summary["already_complete"]:
        log(f"'{model_cfg.name}': already trained to step {summary['steps']}; nothing to run")
    else:
        log(f"'{model_cfg.name}': {summary['steps_run']} steps (to step {summary['steps']}) in {summary['wall_s']:.0f} s, "
            f"{summary['samples_per_s']:.0f} samples/s, outside-model share {summary['outside_model_fraction']:.1%}")
    return summary


# -- evaluation ----------------------------------------------------------------------------------------
def _predictor(model: Surrogate) -> Callable[[State, int], State]:
    return lambda state0, n: model.rollout(state0, n)


def truth_windows(test: State, starts: list[int], horizon: int) -> State:
    """Truth `(horizon + 1, n_traj * n_starts, ...)` in the batch order `rollout_rmse` uses."""
    idx = torch.tensor(starts)[None, :] + torch.arange(horizon + 1)[:, None]  # (time, starts)
    return test.map(lambda x: x[:, idx].permute(1, 0, 2, *range(3, x.ndim + 1)).reshape(horizon + 1, -1, *x.shape[2:]))


def evaluate_models(
    data: Dataset, split: Split, models: dict[str, Surrogate], ev: EvalConfig,
) -> tuple[dict[str, Any], State, dict[str, State]]:
    """Metrics of every model (label 'model' first) and of the untrained baselines on the test split.

    Returns the metrics, the truth windows and each model's rollouts (CPU, float64) in the same order.
    """
    system = data.system
    test = data.trajectories.index(list(split.test))
    n_time = test.rho.shape[1]
    horizon = min(ev.horizon, n_time - 1 - min(ev.starts))
    record = list(range(1, horizon + 1))
    sampler = WindowSampler(test, range(test.rho.shape[0]), 1, 0)
    cur, nxt = sampler.all_pairs(stride=max(1, sampler.size // ev.next_step_max_pairs))
    primary = models["model"]
    results: dict[str, Any] = {
        "qcsurrogate_version": __version__,
        "dt": data.dt,
        "split": split.to_json(),
        "memorized": split.memorized,
        "horizon": horizon,
        "starts": [s for s in ev.starts if s + horizon < n_time],
        "n_parameters": primary.n_parameters(),
        "model": primary.name,
    }
    truth = truth_windows(test, results["starts"], horizon)
    rollouts: dict[str, State] = {}
    for label, m in models.items():
        ns = next_step_rmse(lambda s, m=m: m(m.prepare(s)), cur, nxt)
        curve, pred = rollout_rmse(_predictor(m), test, ev.starts, horizon, record)
        physics = physics_diagnostics(system, pred, truth)
        if label == "model":
            results.update({"next_step": ns, "rollout": curve, "physics": physics})
            if 0 in ev.starts and len(ev.starts) > 1:  # the window of the paper's Fig. 2 on its own
                results["rollout_from_t0"], _ = rollout_rmse(_predictor(m), test, [0], horizon, record)
        else:
            results.setdefault("baselines", {})[label] = {
                "next_step": ns, "rollout": curve, "n_parameters": m.n_parameters(), "physics": physics}
        rollouts[label] = pred.to(device="cpu", dtype=torch.float64)
    if "persistence" in ev.baselines:
        ns = next_step_rmse(lambda s: s, cur, nxt)
        curve, _ = rollout_rmse(persistence, test, ev.starts, horizon, record)
        results.setdefault("baselines", {})["persistence"] = {"next_step": ns, "rollout": curve}
    return results, truth, rollouts


# -- figures -------------------------------------------------------------------------------------------
def curve_labels(results: dict[str, Any]) -> dict[str, Any]:
    """RMSE curves by the label a reader sees in the figure legend."""
    name = results.get("model", "parc")
    curves = {"PARC" if name == "parc" else name: results["rollout"]}
    for label, entry in results.get("baselines", {}).items():
        curves["single CNN (no PARC split)" if label == "cnn" else label] = entry["rollout"]
    return curves


def draw_figures(
    system: System, results: dict[str, Any], truth: State, pred: State, figures_dir: Path, title: str, n_snapshots: int,
) -> list[Path]:
    """Snapshot rows and observables for the first test rollout; RMSE vs window for all predictors."""
    dt, h = results["dt"], results["horizon"]
    idx = sorted({round(i * h / (n_snapshots - 1)) for i in range(n_snapshots)})
    t_start = results["starts"][0] * dt
    one_true, one_pred = truth.index((slice(None), 0)), pred.index((slice(None), 0))
    caption = (f"{title}: test trajectory {results['split']['test'][0]}; lines: truth solid, surrogate dashed; "
               "heat maps: truth above surrogate")
    return [
        figures.snapshot_figure(one_true, one_pred, [t_start + i * dt for i in idx], idx,
                                figures_dir / "snapshots.png", caption),
        figures.rmse_window_figure(curve_labels(results), dt, figures_dir / "rmse_vs_window.png",
                                   f"{title}: RMSE vs prediction window"),
        figures.observables_figure(system, one_true, one_pred, dt, figures_dir / "observables.png", t0=t_start),
    ]


def rollout_for_figures(data: Dataset, split: Split, model: Surrogate, results: dict[str, Any]) -> tuple[State, State]:
    """Truth and prediction of the one trajectory the figures show (re-rolled; metrics.json has no states)."""
    test = data.trajectories.index([split.test[0]])
    start, h = results["starts"][0], results["horizon"]
    pred = model.rollout(test.index((slice(None), start)), h).to(device="cpu", dtype=torch.float64)
    return truth_windows(test, [start], h), pred
