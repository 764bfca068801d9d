"""`qcsurrogate run`: ground truth -> training -> held-out evaluation -> figures, in one run directory.

Data flows one way. Each stage reads only what the previous one wrote (HDF5 trajectories, then
safetensors + JSON models), so `train`, `evaluate` and `plot` also work on their own.

Run directory layout::

    config.yaml            the resolved config
    data/<hash>.h5         ground truth (reused whenever the same data config produced it)
    split.json             trajectory split (train / val / test)
    model/                 trained PARC: model.safetensors + model.json
    baseline_cnn/model/    the single-CNN baseline, if requested
    checkpoints/           resumable training state (safetensors + JSON)
    train_log.jsonl        per-step training metrics
    metrics.json           evaluation results
    figures/*.png          snapshots, RMSE vs window, order parameter
    log.txt                what happened
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import Field, field_validator

from . import __version__, distributed
from .atomic import atomic_write_json, atomic_write_text
from .config import DataConfig, StrictModel, load_yaml
from .evaluation import figures
from .evaluation.metrics import json_safe, next_step_rmse, persistence, physics_diagnostics, rollout_rmse
from .io import open_trajectory, simulate_to_file
from .registry import get_surrogate_class
from .state import State
from .surrogate.base import Surrogate, SurrogateConfig
from .surrogate.linear_init import least_squares_init
from .surrogate.normalization import Normalization
from .training.checkpoint import load_model
from .training.data import Split, WindowSampler, split_trajectories
from .training.trainer import TrainConfig, Trainer


class SplitConfig(StrictModel):
    """Split by whole trajectories (fractions of n_traj); one trajectory is used for all roles."""

    val_fraction: float = Field(0.125, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    seed: int = 0


class EvalConfig(StrictModel):
    """Held-out evaluation: next-step RMSE and RMSE against the number of recurrent steps."""

    horizon: int = Field(400, ge=1, description="recurrent steps per rollout (400 x 0.08 = t 32, Fig. 2)")
    starts: list[int] = Field(default_factory=lambda: [0], description="start snapshots of the rollouts")
    next_step_max_pairs: int = Field(4096, ge=1)
    baselines: list[Literal["persistence", "cnn"]] = Field(default_factory=lambda: ["persistence"])
    figure_snapshots: int = Field(5, ge=2, le=12, description="columns of the snapshot figure")

    @field_validator("starts")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        if not v or any(s < 0 for s in v):
            raise ValueError("starts must be a non-empty list of snapshot indices >= 0")
        return v


class RunConfig(StrictModel):
    """Everything `qcsurrogate run` does, in one validated file."""

    name: str
    output_dir: Path = Field(description="run directory (overridable with --output)")
    description: str = ""
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    data: DataConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: SurrogateConfig = Field(default_factory=SurrogateConfig)
    training: TrainConfig = Field(default_factory=TrainConfig)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)


def load_run_config(path: str | Path) -> RunConfig:
    return load_yaml(path, RunConfig)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available; under torchrun each rank gets its own GPU."""
    if name == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device '{name}' requested but CUDA is not available here")
    return distributed.local_device(dev)


class RunDir:
    """Paths and logging of one run directory."""

    def __init__(self, root: Path, echo: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.echo = echo

    def log(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        with open(self.root / "log.txt", "a") as f:
            f.write(line + "\n")
        if self.echo:
            print(line, flush=True)

    @property
    def figures(self) -> Path:
        return self.root / "figures"


# -- stage 1: ground truth --------------------------------------------------------------------------
def data_hash(data: DataConfig) -> str:
    blob = json.dumps(data.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def generate_data(cfg: RunConfig, run: RunDir) -> Path:
    """Simulate the ground truth, or reuse the file the same data config already produced."""
    path = run.root / "data" / f"{data_hash(cfg.data)}.h5"
    if path.exists():
        with open_trajectory(path) as tr:
            run.log(f"reusing ground truth {path} ({tr.n_traj} trajectories x {tr.n_time} snapshots)")
        return path
    system = cfg.data.build_system()
    state0 = cfg.data.initial_state(system)
    sim = cfg.data.simulation
    run.log(f"simulating {system!r}, scenario {cfg.data.scenario.name}: {sim.n_steps} RK4 steps of dt={sim.dt}")
    t0 = time.perf_counter()
    simulate_to_file(
        system, state0, path, sim.dt, sim.n_steps, sim.save_every,
        scenario=cfg.data.scenario.name, scenario_kwargs=cfg.data.scenario.kwargs, precision=sim.precision,
        device=sim.device, compile=sim.compile, extra_attrs={"data_config": cfg.data.model_dump(mode="json")},
    )
    run.log(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
    return path


# -- stage 2: training -----------------------------------------------------------------------------
def _load_split(data_path: Path, cfg: RunConfig, run: RunDir) -> tuple[State, Split, Any, float]:
    with open_trajectory(data_path) as tr:
        traj = tr.load()
        system = tr.system()
        dt = tr.dt * tr.save_every
    split = split_trajectories(traj.rho.shape[0], cfg.split.val_fraction, cfg.split.test_fraction, cfg.split.seed)
    if distributed.is_main():
        atomic_write_json(run.root / "split.json", split.to_json())
    return traj, split, system, dt


def fit_normalization(system, sampler: WindowSampler, graph, max_pairs: int = 20000) -> Normalization:
    cur, nxt = sampler.all_pairs(stride=max(1, sampler.size // max_pairs))
    return Normalization.fit(graph, cur, system.rhs(cur), nxt - cur)


def build_surrogate(name: str, system, model_cfg: SurrogateConfig, norm: Normalization) -> Surrogate:
    cls = get_surrogate_class(name)
    cfg = model_cfg.model_copy(update={"name": name})
    return cls(system.graph, system.boundary, cfg, norm)


def train_stage(cfg: RunConfig, run: RunDir, data_path: Path, resume: bool = False, which: str | None = None,
                stop_after: int | None = None) -> dict[str, Any]:
    """Train the configured model (and the single-CNN baseline if requested); returns summaries."""
    traj, split, system, _ = _load_split(data_path, cfg, run)
    device = resolve_device(cfg.device)
    window = cfg.training.rollout.max_steps
    train = WindowSampler(traj, split.train, window, cfg.training.seed)
    val = WindowSampler(traj, split.val, 1, cfg.training.seed) if split.val else None
    norm = fit_normalization(system, train, system.graph)
    torch.manual_seed(cfg.training.seed)
    jobs = [(cfg.model.name, run.root)]
    if "cnn" in cfg.evaluation.baselines:
        jobs.append(("cnn", run.root / "baseline_cnn"))
    out = {}
    for name, root in jobs:
        if which is not None and name != which:
            continue
        torch.manual_seed(cfg.training.seed)
        model = build_surrogate(name, system, cfg.model, norm)
        if cfg.model.init == "lstsq":
            cur, nxt = train.all_pairs(stride=max(1, train.size // 512))
            resid = least_squares_init(model, cur, system.rhs(cur), nxt)
            run.log("least-squares init, relative residuals: " + ", ".join(f"{k} {v:.1e}" for k, v in resid.items()))
        model = model.to(device)
        run.log(f"training surrogate '{name}' ({model.n_parameters():,} parameters) on {len(split.train)} "
                f"trajectories, device {device}")
        trainer = Trainer(model, system, train, val, cfg.training, root, log=run.log)
        summary = trainer.fit(resume=resume, stop_after=stop_after)
        run.log(f"'{name}': {summary['steps']} steps in {summary['wall_s']:.0f} s, "
                f"{summary['samples_per_s']:.0f} samples/s, outside-model share {summary['outside_model_fraction']:.1%}")
        out[name] = summary
    return out


# -- stage 3: evaluation ---------------------------------------------------------------------------
def _surrogate_predictor(model: Surrogate):
    def predict(state0: State, n: int) -> State:
        return model.rollout(state0, n)

    return predict


def evaluate_stage(cfg: RunConfig, run: RunDir, data_path: Path) -> dict[str, Any]:
    traj, split, system, dt = _load_split(data_path, cfg, run)
    device = resolve_device(cfg.device)
    test = traj.index(list(split.test))
    ev = cfg.evaluation
    n_time = test.rho.shape[1]
    horizon = min(ev.horizon, n_time - 1 - min(ev.starts))
    record = list(range(1, horizon + 1))
    sampler = WindowSampler(test, range(test.rho.shape[0]), 1, 0)
    cur, nxt = sampler.all_pairs(stride=max(1, sampler.size // ev.next_step_max_pairs))

    model = load_model(run.root / "model", device=device)
    predictors = {"surrogate": model}
    if "cnn" in ev.baselines:
        predictors["cnn"] = load_model(run.root / "baseline_cnn" / "model", device=device)
    results: dict[str, Any] = {
        "run": cfg.name,
        "qcsurrogate_version": __version__,
        "dt": dt,
        "split": split.to_json(),
        "memorized": split.memorized,
        "horizon": horizon,
        "starts": [s for s in ev.starts if s + horizon < n_time],
        "n_parameters": model.n_parameters(),
    }
    rollouts: dict[str, State] = {}
    for label, m in predictors.items():
        ns = next_step_rmse(lambda s, m=m: m(m.prepare(s)), cur, nxt)
        curve, pred = rollout_rmse(_surrogate_predictor(m), test, ev.starts, horizon, record)
        entry = {"next_step": ns, "rollout": curve, "n_parameters": m.n_parameters()}
        if label == "surrogate":
            results.update({"next_step": ns, "rollout": curve})
            if 0 in ev.starts and len(ev.starts) > 1:  # the window of the paper's Fig. 2 on its own
                results["rollout_from_t0"], _ = rollout_rmse(_surrogate_predictor(m), test, [0], horizon, record)
        else:
            results.setdefault("baselines", {})[label] = entry
        rollouts[label] = pred
    if "persistence" in ev.baselines:
        ns = next_step_rmse(lambda s: s, cur, nxt)
        curve, _ = rollout_rmse(persistence, test, ev.starts, horizon, record)
        results.setdefault("baselines", {})["persistence"] = {"next_step": ns, "rollout": curve}

    # physics diagnostics of the surrogate's rollouts against the truth, same (trajectory, start) pairs
    starts = results["starts"]
    truth = _truth_windows(test, starts, horizon)
    results["physics"] = physics_diagnostics(system, rollouts["surrogate"], truth)
    if "cnn" in rollouts:
        results["baselines"]["cnn"]["physics"] = physics_diagnostics(system, rollouts["cnn"], truth)
    for key in ("surrogate", "cnn"):
        if key in rollouts:
            rollouts[key] = rollouts[key].to(device="cpu", dtype=torch.float64)
    atomic_write_json(run.root / "metrics.json", json_safe(results))
    make_figures(cfg, run, results, truth, rollouts["surrogate"], dt)
    return results


def _truth_windows(test: State, starts: list[int], horizon: int) -> State:
    """Truth `(horizon + 1, n_traj * n_starts, ...)` in the batch order `rollout_rmse` uses."""
    idx = torch.tensor(starts)[None, :] + torch.arange(horizon + 1)[:, None]  # (time, starts)
    return test.map(lambda x: x[:, idx].permute(1, 0, 2, *range(3, x.ndim + 1)).reshape(horizon + 1, -1, *x.shape[2:]))


def curves_of(results: dict[str, Any], model_name: str) -> dict[str, Any]:
    label = "PARC" if model_name == "parc" else model_name
    curves = {label: results["rollout"]}
    for name, entry in results.get("baselines", {}).items():
        curves["single CNN (no PARC split)" if name == "cnn" else name] = entry["rollout"]
    return curves


def plot_stage(cfg: RunConfig, run: RunDir, data_path: Path) -> list[Path]:
    """Redraw the figures from metrics.json, re-rolling only the one trajectory the snapshots show."""
    results = json.loads((run.root / "metrics.json").read_text())
    traj, split, _, dt = _load_split(data_path, cfg, run)
    test = traj.index([split.test[0]])
    start, h = results["starts"][0], results["horizon"]
    model = load_model(run.root / "model", device=resolve_device(cfg.device))
    pred = model.rollout(test.index((slice(None), start)), h).to(device="cpu", dtype=torch.float64)
    return make_figures(cfg, run, results, _truth_windows(test, [start], h), pred, dt)


def make_figures(cfg: RunConfig, run: RunDir, results: dict[str, Any], truth: State, pred: State, dt: float) -> list[Path]:
    """Snapshot rows and order parameter for the first test rollout; RMSE vs window for all predictors."""
    curves = curves_of(results, cfg.model.name)
    h = results["horizon"]
    k = cfg.evaluation.figure_snapshots
    idx = sorted({round(i * h / (k - 1)) for i in range(k)})
    t_start = results["starts"][0] * dt
    one_true, one_pred = truth.index((slice(None), 0)), pred.index((slice(None), 0))
    title = (f"{cfg.name}: test trajectory {results['split']['test'][0]}; lines: truth solid, surrogate dashed; "
             "heat maps: truth above surrogate")
    paths = [
        figures.snapshot_figure(one_true, one_pred, [t_start + i * dt for i in idx], idx, run.figures / "snapshots.png", title),
        figures.rmse_window_figure(curves, dt, run.figures / "rmse_vs_window.png", f"{cfg.name}: RMSE vs prediction window"),
        figures.order_parameter_figure(one_true, one_pred, dt, run.figures / "order_parameter.png"),
    ]
    run.log("figures: " + ", ".join(str(p) for p in paths))
    return paths


# -- the whole pipeline ----------------------------------------------------------------------------
def write_resolved_config(cfg: RunConfig, run: RunDir) -> None:
    atomic_write_text(run.root / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def run_pipeline(cfg: RunConfig, output: Path | None = None, resume: bool = True, echo: bool = True) -> dict[str, Any]:
    if output is not None:
        cfg = cfg.model_copy(update={"output_dir": Path(output)})
    distributed.init_from_env(cfg.device)
    run = RunDir(cfg.output_dir, echo=echo and distributed.is_main())
    if distributed.is_main():
        write_resolved_config(cfg, run)
        run.log(f"qcsurrogate {__version__}: run '{cfg.name}' in {run.root}")
        generate_data(cfg, run)
    distributed.barrier()
    data_path = run.root / "data" / f"{data_hash(cfg.data)}.h5"
    if (run.root / "model" / "model.safetensors").exists() and _model_matches(cfg, run):
        run.log("trained model found with the same config; skipping training")
    else:
        train_stage(cfg, run, data_path, resume=resume)
    distributed.barrier()
    if not distributed.is_main():
        return {}
    results = evaluate_stage(cfg, run, data_path)
    ns, ro = results["next_step"], results["rollout"]
    run.log(f"next-step RMSE total {ns['rmse_total']:.3e}; after {ro['steps'][-1]} steps {ro['rmse_total'][-1]:.3e} "
            f"({ro['diverged_fraction'][-1]:.0%} of rollouts diverged)")
    return results


def _model_matches(cfg: RunConfig, run: RunDir) -> bool:
    spec = json.loads((run.root / "model" / "model.json").read_text())
    wanted = cfg.model.model_dump(mode="json")
    needed = [run.root / "model"] + ([run.root / "baseline_cnn" / "model"] if "cnn" in cfg.evaluation.baselines else [])
    same_training = (run.root / "train_summary.json").exists()
    ckpt_cfg = None
    latest = run.root / "checkpoints" / "latest.json"
    if latest.exists():
        meta = json.loads((run.root / "checkpoints" / json.loads(latest.read_text())["path"] / "meta.json").read_text())
        ckpt_cfg = meta.get("train_config")
    return (
        spec.get("config") == wanted
        and all((p / "model.safetensors").exists() for p in needed)
        and same_training
        and ckpt_cfg == cfg.training.model_dump(mode="json")
    )
