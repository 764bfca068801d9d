"""`qcsurrogate run | train | evaluate | plot | status`: the surrogate pipeline's stages as subcommands.

Every command asks the same `Run` (qcsurrogate.pipeline.runner) which stages are current, so they
agree on what a run directory already has.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli import Command


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (YAML), e.g. examples/holstein_deep.yaml")
    p.add_argument("-o", "--output", type=Path, default=None, help="run directory (overrides output_dir)")
    p.add_argument("--device", default=None, help="override the config's device ('auto', 'cpu', 'cuda:0', ...)")


def _training_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", dest="policy", action="store_const", const="resume",
                   help="insist on continuing from the latest checkpoint (an error if its inputs changed)")
    g.add_argument("--restart", "--no-resume", dest="policy", action="store_const", const="restart",
                   help="discard earlier training and train from scratch")
    p.set_defaults(policy="auto")


def _redo_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--force", action="store_true", help="redo the stage even if it is current")


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    _redo_args(p)
    p.add_argument("--data", type=Path, default=None, metavar="FILE.h5",
                   help="score the trained models on every trajectory of this file (same system; any L, seed, "
                        "parameters with a warning) -> RUN_DIR/evaluations/<stem>/metrics.json; the run's own "
                        "metrics.json is not touched")
    p.add_argument("--horizon", type=int, default=None, help="with --data: rollout steps (default: the config's)")
    p.add_argument("--starts", type=lambda s: [int(x) for x in s.split(",")], default=None, metavar="I,J,...",
                   help="with --data: start snapshots of the rollouts (default: the config's)")


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", type=Path, help="a run directory (its config.yaml is used) or a run config")
    p.add_argument("-o", "--output", type=Path, default=None, help="run directory, with a config as target")


def _config(args: argparse.Namespace):
    """The run config with the command line's overrides applied."""
    from .pipeline import load_run_config

    cfg = load_run_config(args.config)
    update = {}
    if args.output is not None:
        update["output_dir"] = args.output
    if getattr(args, "device", None) is not None:
        update["device"] = args.device
    return cfg.model_copy(update=update)


def _stage_run(args: argparse.Namespace, write_config: bool = True):
    """The run of `args`; `evaluate` and `plot` (write_config=False) write its config.yaml only once their
    stage has succeeded, so a failing command leaves the run directory (or its absence) as it was."""
    from .pipeline import Run

    run = Run(_config(args))
    if write_config:
        run.write_config()
    return run


def _run(args: argparse.Namespace) -> int:
    from .pipeline import run_pipeline

    run_pipeline(_config(args), policy=args.policy)
    return 0


def _train(args: argparse.Namespace) -> int:
    from . import distributed

    from .pipeline.preflight import preflight

    cfg = _config(args)
    preflight(cfg)
    distributed.init_from_env(cfg.device)
    with _stage_run(args) as run:
        if ranks := distributed.describe():
            run.log(ranks)
        run.ensure_data()
        run.ensure_split()
        run.ensure_all_trained(args.policy)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .system import ConfigError, format_validation_error

    if args.data is None:
        if args.horizon is not None or args.starts is not None:
            raise ConfigError("--horizon and --starts go with --data; the run's own evaluation follows its config")
        with _stage_run(args, write_config=False) as run:
            run.ensure_evaluated(force=args.force)
            run.write_config()
        return 0
    from .pipeline.external import evaluate_file

    with _stage_run(args, write_config=False) as run:
        update = {k: v for k, v in (("horizon", args.horizon), ("starts", args.starts)) if v is not None}
        try:
            ev = run.cfg.evaluation.model_validate({**run.cfg.evaluation.model_dump(), **update}) if update else None
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, "--horizon/--starts")) from None
        evaluate_file(run, args.data, force=args.force, evaluation=ev)
        run.write_config()
    return 0


def _plot(args: argparse.Namespace) -> int:
    with _stage_run(args, write_config=False) as run:
        run.ensure_plotted(force=args.force)
        run.write_config()
    return 0


def _status(args: argparse.Namespace) -> int:
    from .pipeline import Run, load_run_config

    target: Path = args.target
    if target.is_dir():
        cfg_path = target / "config.yaml"
        if not cfg_path.exists():
            raise FileNotFoundError(f"{target} has no config.yaml: not a run directory (or give the run config)")
        cfg = load_run_config(cfg_path).model_copy(update={"output_dir": target})
    else:
        cfg = load_run_config(target)
    if args.output is not None:
        cfg = cfg.model_copy(update={"output_dir": args.output})
    run = Run(cfg, echo=False)
    print(f"run '{cfg.name}' in {run.layout.root}")
    for line in run.status_lines():
        print("  " + line)
    return 0


PIPELINE_COMMANDS = (
    Command("run", "generate data, train, evaluate and plot, all from one run config (keeps what is current)",
            _training_args, _run),
    Command("train", "generate (or reuse) the data and train the surrogate(s)", _training_args, _train),
    Command("evaluate", "evaluate trained surrogate(s) on held-out trajectories -> metrics.json, or with "
            "--data on another trajectory file -> evaluations/<stem>/", _evaluate_args, _evaluate),
    Command("plot", "redraw the figures of an evaluated run", _redo_args, _plot),
    Command("status", "show each stage of a run directory: current, stale or missing, and why", _status_args, _status),
)
