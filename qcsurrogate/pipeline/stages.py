"""The stages of a run as functions of exactly what they need.

Nothing here knows about run directories or ledgers: each function takes the system, the data, the
split and the relevant config section, and returns (or writes to the path it is given) its product.
`runner.Run` decides which stages to run and where their products go.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import torch

from .. import __version__
from ..config import DataConfig
from ..evaluation import figures
from ..evaluation.climate import climate_statistics, observe_chunks, rollout_chunks
from ..evaluation.metrics import next_step_rmse, persistence, physics_diagnostics, rollout_rmse_from_truth
from ..evaluation.predictability import predictability, steps_below
from ..generate import generate_data
from ..io import open_trajectory
from ..state import State
from ..surrogate.base import Surrogate, SurrogateConfig, build_surrogate
from ..surrogate.normalization import Normalization
from ..system import System
from ..training.data import Split, WindowSampler, fit_normalization
from ..training.source import Loading, TrajectorySource, open_source
from ..training.trainer import TrainConfig, Trainer, TrainingFiles
from .config import EvalConfig

Log = Callable[[str], None]


class Dataset:
    """A trajectory file opened once: its trajectories (a `TrajectorySource`, in memory or read lazily),
    the System that made them and the model step.

    `loading` ('auto', 'memory', 'lazy') picks the source; the choice and its reason go to `log`. `dt` is
    the model step (time between snapshots); `integration_dt`, `save_every` and `solver` say how the exact
    solver made them (`dt = integration_dt * save_every`), `t0` is the time of snapshot 0. Close it (or use
    it as a context manager) to release a lazy source's file and reader thread.
    """

    def __init__(self, path: Path, loading: Loading = "auto", log: Log | None = None) -> None:
        self.path = Path(path)
        with open_trajectory(self.path) as tr:
            self.system: System = tr.system()
            self.dt: float = tr.dt * tr.save_every
            self.integration_dt: float = tr.dt
            self.save_every: int = tr.save_every
            self.solver: str = tr.attrs.get("solver") or "rk4"
            self.t0: float = float(tr.attrs.get("t0", 0.0) or 0.0)
        self.source: TrajectorySource = open_source(self.path, loading, log)

    @property
    def trajectories(self) -> State:
        """Every trajectory as one State `(n_traj, n_time, ...)`: the whole file in memory, even from a lazy
        source (for scripts; the stages read through `source`)."""
        return self.source.trajectories(range(self.n_traj))

    @property
    def n_traj(self) -> int:
        return self.source.n_traj

    @property
    def n_time(self) -> int:
        return self.source.n_time

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- ground truth ------------------------------------------------------------------------------------
def simulate_data(data: DataConfig, path: Path, log: Log, system: System | None = None, state0: State | None = None,
                  **options: Any) -> Path:
    """Integrate the configured scenario and write the trajectory file (atomically) at `path`.

    The one place a data config becomes a file (`qcsurrogate run`, `train` and `simulate` all come here);
    `options` go to `generate_data` (compression, overwrite, progress, extra_attrs, and overrides of
    compile, threads, processes, shards), which may write shards and a master file over them; `system`
    and `state0` may be given when the caller built them already.
    """
    system = system if system is not None else data.build_system()
    state0 = state0 if state0 is not None else data.initial_state(system)
    sim = data.simulation
    n_traj = max(1, state0.batch_shape.numel())
    transient = f", after a discarded transient of {sim.discard_steps} steps" if sim.discard_steps else ""
    log(f"simulating {system!r}, scenario {data.scenario.name}: {n_traj} trajectories, {sim.n_steps} {sim.solver} steps "
        f"of dt={sim.dt}{transient}, keeping every {sim.save_every} (model step {sim.step:g} hbar/t)")
    t0 = time.perf_counter()
    report = generate_data(data, path, log, system=system, state0=state0, **options)
    n_files = len(report.files)
    peak = ", ".join(f"{k} {v:.0f} MB" for k, v in report.peak_rss_mb.items())
    log(f"wrote {path}{f' (master over {n_files - 1} shards)' if n_files > 1 else ''} in "
        f"{time.perf_counter() - t0:.1f} s (peak RSS: {peak})")
    return path


def recorded_data_config(path: Path) -> dict[str, Any] | None:
    """The data config a trajectory file says it was made from (None if it records none)."""
    with open_trajectory(path) as tr:
        return tr.attrs.get("extra", {}).get("data_config")


# -- normalisation and models ---------------------------------------------------------------------------
def training_sampler(data: Dataset, split: Split, train_cfg: TrainConfig) -> WindowSampler:
    """Windows of the training trajectories, as long as the longest unroll."""
    return WindowSampler(data.source, split.train, train_cfg.objective.unroll.max_steps, train_cfg.seed)


def train_surrogate(
    data: Dataset, split: Split, norm: Normalization, model_cfg: SurrogateConfig, train_cfg: TrainConfig,
    out: TrainingFiles, device: torch.device, log: Log, resume: bool = False, stop_after: int | None = None,
    inputs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build, initialise and train one surrogate; the Trainer writes the model, checkpoints and logs to `out`."""
    system = data.system
    train = training_sampler(data, split, train_cfg)
    val = WindowSampler(data.source, split.val, 1, train_cfg.seed) if split.val else None
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


EVAL_TRAJECTORY_BATCH = 64
"""Test trajectories read per pass when assembling truth windows: the whole test set is never loaded."""


def read_windows(source: TrajectorySource, trajs: Sequence[int], starts: Sequence[int], first: int, length: int,
                 per_read: int = EVAL_TRAJECTORY_BATCH) -> State:
    """Snapshots `start + first .. start + first + length - 1` of every (trajectory, start), batch order
    trajectory-major then start (that of `truth_windows`), as `(length, len(trajs) * len(starts), ...)`;
    read `per_read` trajectories at a time."""
    starts = list(starts)
    parts = []
    for a in range(0, len(trajs), per_read):
        group = list(trajs)[a : a + per_read]
        traj = [j for j in group for _ in starts]
        t0 = [s + first for _ in group for s in starts]
        parts.append(source.window_block(traj, t0, length))
    return parts[0] if len(parts) == 1 else State.cat(parts, dim=1)


def evaluate_models(
    data: Dataset, split: Split, models: dict[str, Surrogate], ev: EvalConfig,
) -> tuple[dict[str, Any], State, dict[str, State]]:
    """Metrics of every model (label 'model' first) and of the untrained baselines on the test split.

    Only the pairs and windows the metrics use are read (by batches of test trajectories), never the
    whole test set. Returns the metrics, the truth windows and each model's rollouts (CPU, float64) in
    the same order.
    """
    system = data.system
    test = list(split.test)
    n_time = data.n_time
    horizon = min(ev.horizon, n_time - 1 - min(ev.starts))
    record = list(range(1, horizon + 1))
    sampler = WindowSampler(data.source, test, 1, 0)
    cur, nxt = sampler.all_pairs(stride=max(1, sampler.size // ev.next_step_max_pairs))
    primary = models["model"]
    results: dict[str, Any] = {
        "qcsurrogate_version": __version__,
        "dt": data.dt,
        "t0": data.t0,
        "split": split.to_json(),
        "memorized": split.memorized,
        "horizon": horizon,
        "starts": [s for s in ev.starts if s + horizon < n_time],
        "n_parameters": primary.n_parameters(),
        "model": primary.name,
    }
    if not results["starts"]:
        raise ValueError(f"no start time leaves room for a {horizon}-step rollout")
    truth = read_windows(data.source, test, results["starts"], 0, horizon + 1)
    truth_t0 = read_windows(data.source, test, [0], 0, horizon + 1) if 0 in ev.starts and len(ev.starts) > 1 else None
    rollouts: dict[str, State] = {}
    for label, m in models.items():
        ns = next_step_rmse(lambda s, m=m: m(m.prepare(s)), cur, nxt)
        curve, pred = rollout_rmse_from_truth(_predictor(m), truth, record)
        physics = physics_diagnostics(system, pred, truth)
        if label == "model":
            results.update({"next_step": ns, "rollout": curve, "physics": physics})
            if truth_t0 is not None:  # the window of the paper's Fig. 2 on its own
                results["rollout_from_t0"], _ = rollout_rmse_from_truth(_predictor(m), truth_t0, record)
        else:
            results.setdefault("baselines", {})[label] = {
                "next_step": ns, "rollout": curve, "n_parameters": m.n_parameters(), "physics": physics}
        rollouts[label] = pred.to(device="cpu", dtype=torch.float64)
    if "persistence" in ev.baselines:
        ns = next_step_rmse(lambda s: s, cur, nxt)
        curve, _ = rollout_rmse_from_truth(persistence, truth, record)
        results.setdefault("baselines", {})["persistence"] = {"next_step": ns, "rollout": curve}
    if ev.predictability is not None:
        results["predictability"] = truth_predictability(data, primary, truth, results["rollout"], ev)
    if ev.climate is not None:
        results["climate"] = climate_evaluation(data, split, primary, ev)
    return results, truth, rollouts


def truth_predictability(
    data: Dataset, model: Surrogate, truth: State, curve: dict[str, Any], ev: EvalConfig,
) -> dict[str, Any]:
    """Growth of perturbations of the truth over the rollout windows `truth` (the `predictability` section).

    The start states are the truth windows' first snapshots; the surrogate's one-step error there is
    `model(x) - x(+1 step)`. The exact solver reruns the data file's integration (method, dt, save_every).
    """
    p = ev.predictability
    assert p is not None
    state0, nxt = truth.index(0), truth.index(1)
    with torch.no_grad():
        one = model(model.prepare(state0)).to(device="cpu", dtype=torch.float64)
    out = predictability(
        data.system, state0, one - nxt, dt=data.integration_dt, save_every=data.save_every,
        n_model_steps=truth.rho.shape[0] - 1, perturbation=p.perturbation, seed=p.seed, threshold=p.threshold,
        solver=data.solver, compile=p.compile,
    )
    below = steps_below(curve["rmse_total"], p.threshold)
    median = out["surrogate_error"]["median_horizon_steps"]
    out["surrogate_steps_below_threshold"] = below  # of the mean rollout curve in `rollout`
    out["surrogate_steps_over_horizon"] = below / median if median else None
    return out


def climate_evaluation(data: Dataset, split: Split, model: Surrogate, ev: EvalConfig) -> dict[str, Any]:
    """Statistics of long surrogate rollouts against the truth on the test trajectories (the `climate` section)."""
    c = ev.climate
    assert c is not None
    n_time = data.n_time
    starts = list(c.starts or ev.starts)
    horizon = min(c.horizon, n_time - 1 - min(starts))
    starts = [s for s in starts if s + horizon < n_time]
    if horizon - c.discard < 2:
        raise ValueError(f"evaluation.climate: the test trajectories hold {n_time} snapshots, so rollouts from "
                         f"{min(starts)} last at most {horizon} steps, which leaves fewer than two after "
                         f"discarding {c.discard}")
    test = list(split.test)
    state0 = read_windows(data.source, test, starts, 0, 1).index(0)
    system = data.system
    chunk = 100  # time chunks of the truth, as `window_chunks` cuts them: one chunk of windows held at a time
    truth = observe_chunks(system, (read_windows(data.source, test, starts, a, min(a + chunk + 1, horizon + 1) - a)
                                    for a in range(0, horizon + 1, chunk + 1)))
    pred = observe_chunks(system, rollout_chunks(_predictor(model), state0, horizon))
    pairs = [(int(j), int(s)) for j in split.test for s in starts]  # the batch order (trajectory-major)
    stats = climate_statistics(system.observables(), truth, pred, discard=c.discard, max_lag=c.max_lag,
                               bins=c.bins, range_factor=c.range_factor, range_orders=c.range_orders,
                               groups=[j for j, _ in pairs])
    for r in stats["diverged"]["rollouts"]:
        r["trajectory"], r["start"] = pairs[r["rollout"]]
    return {"horizon": horizon, "discard": c.discard, "starts": starts, "max_lag": c.max_lag, "bins": c.bins,
            "dt": data.dt, **stats}


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
    """Snapshots and observables of the first test trajectory from the first and the last start; RMSE vs
    window for all predictors (with the truth's predictability when evaluated); the climate figures.

    `truth`/`pred` are `(time, batch, ...)` in the batch order of `rollout_rmse` (trajectory-major, then
    start), holding at least the first test trajectory from every start in `results["starts"]`.
    """
    dt, h = results["dt"], results["horizon"]
    t0 = results.get("t0", 0.0)
    starts = results["starts"]
    idx = sorted({round(i * h / (n_snapshots - 1)) for i in range(n_snapshots)})
    traj = results["split"]["test"][0]
    paths = []
    for b, start, suffix in ((0, starts[0], ""), (len(starts) - 1, starts[-1], "_late_start"))[: 1 + (len(starts) > 1)]:
        t_start = t0 + start * dt
        one_true, one_pred = truth.index((slice(None), b)), pred.index((slice(None), b))
        caption = (f"{title}: test trajectory {traj}, rollout from snapshot {start} (t = {t_start:g} {figures.TIME_UNIT}),"
                   f" step {dt:g} {figures.TIME_UNIT}; lines: truth solid, surrogate dashed")
        paths.append(figures.snapshot_figure(one_true, one_pred, [t_start + i * dt for i in idx], idx,
                                             figures_dir / f"snapshots{suffix}.png", caption,
                                             vector_fields=getattr(system, "vector_fields", None)))
        paths.append(figures.observables_figure(system, one_true, one_pred, dt, figures_dir / f"observables{suffix}.png",
                                                t0=t_start))
    paths.insert(1, figures.rmse_window_figure(
        curve_labels(results), dt, figures_dir / "rmse_vs_window.png",
        f"{title}: RMSE vs prediction window ({len(results['split']['test'])} test trajectories x {len(starts)} starts)",
        predictability=results.get("predictability")))
    climate = results.get("climate")
    if climate:
        if climate["orders"]:
            paths.append(figures.acf_figure(climate, figures_dir / "climate_acf.png", title))
            paths.append(figures.distribution_figure(climate, figures_dir / "climate_distributions.png", title))
        if climate["structure_factor"]:
            paths.append(figures.structure_factor_figure(climate, figures_dir / "climate_structure_factor.png", title))
    return paths


def rollout_for_figures(data: Dataset, split: Split, model: Surrogate, results: dict[str, Any]) -> tuple[State, State]:
    """Truth and prediction of the trajectory the figures show, from every start (re-rolled; metrics.json
    has no states), in the batch order `draw_figures` reads."""
    starts, h = results["starts"], results["horizon"]
    truth = read_windows(data.source, [split.test[0]], starts, 0, h + 1)
    pred = model.rollout(truth.index(0), h).to(device="cpu", dtype=torch.float64)
    return truth, pred
