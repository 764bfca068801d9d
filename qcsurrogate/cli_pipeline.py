"""`qcsurrogate run | train | evaluate | plot`: the surrogate pipeline's stages as subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli import Command


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (YAML), e.g. examples/holstein_deep.yaml")
    p.add_argument("-o", "--output", type=Path, default=None, help="run directory (overrides output_dir)")
    p.add_argument("--device", default=None, help="override the config's device ('auto', 'cpu', 'cuda:0', ...)")


def _run_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="ignore existing checkpoints and train from scratch")


def _train_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run directory")


def _config(args: argparse.Namespace):
    """The run config with the command line's overrides applied."""
    from .pipeline import load_run_config

    cfg = load_run_config(args.config)
    update = {}
    if args.output is not None:
        update["output_dir"] = args.output
    if args.device is not None:
        update["device"] = args.device
    return cfg.model_copy(update=update)


def _setup(args: argparse.Namespace):
    """Config plus its run directory, with the resolved config written there (single stages)."""
    from .pipeline import RunDir, write_resolved_config

    cfg = _config(args)
    run = RunDir(cfg.output_dir)
    write_resolved_config(cfg, run)
    return cfg, run


def _run(args: argparse.Namespace) -> int:
    from .pipeline import run_pipeline

    run_pipeline(_config(args), resume=args.resume)  # writes the resolved config itself
    return 0


def _train(args: argparse.Namespace) -> int:
    from .pipeline import generate_data, train_stage

    cfg, run = _setup(args)
    train_stage(cfg, run, generate_data(cfg, run), resume=args.resume)
    return 0


def _data_path(cfg, run) -> Path:
    from .pipeline import data_hash

    path = run.root / "data" / f"{data_hash(cfg.data)}.h5"
    if not path.exists():
        raise FileNotFoundError(f"no ground truth for this config in {run.root}; run `qcsurrogate train` or `run` first")
    return path


def _need_model(run) -> None:
    if not (run.root / "model" / "model.safetensors").exists():
        raise FileNotFoundError(f"no trained model in {run.root / 'model'}; run `qcsurrogate train` first")


def _evaluate(args: argparse.Namespace) -> int:
    from .pipeline import evaluate_stage

    cfg, run = _setup(args)
    _need_model(run)
    evaluate_stage(cfg, run, _data_path(cfg, run))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .pipeline import plot_stage

    cfg, run = _setup(args)
    _need_model(run)
    if not (run.root / "metrics.json").exists():
        raise FileNotFoundError(f"no metrics.json in {run.root}; run `qcsurrogate evaluate` first")
    plot_stage(cfg, run, _data_path(cfg, run))
    return 0


PIPELINE_COMMANDS = (
    Command("run", "generate data, train, evaluate and plot, all from one run config", _run_args, _run),
    Command("train", "generate (or reuse) the data and train the surrogate(s)", _train_args, _train),
    Command("evaluate", "evaluate trained surrogate(s) on held-out trajectories -> metrics.json", _common, _evaluate),
    Command("plot", "redraw the figures of an evaluated run", _common, _plot),
)
