"""The ``qcsurrogate`` command line.

Each subcommand is a pair of functions, one adding its arguments to a parser and one running it
(returning an exit code), registered in `COMMANDS`. To add one (run, train, evaluate, plot...)::

    def _train_args(p): p.add_argument("config")
    def _train(args) -> int: ...
    COMMANDS["train"] = Command("train", "train a surrogate from a YAML config", _train_args, _train)

Expected user errors (bad config, unknown system, missing or invalid file) print one clean
paragraph to stderr and exit with status 2; ``--traceback`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
"""User errors (usage, configuration, input files) exit with 2, as argparse does."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


def _user_errors() -> tuple[type[BaseException], ...]:
    from .artifacts import ArtifactError
    from .io import TrajectoryFormatError
    from .registry import RegistryError
    from .state import NonFiniteError
    from .system import ConfigError

    return (ConfigError, TrajectoryFormatError, ArtifactError, NonFiniteError, RegistryError, FileNotFoundError, FileExistsError,
            IsADirectoryError, PermissionError)


def _err(msg: str) -> None:
    print(f"qcsurrogate: error: {msg}", file=sys.stderr)


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings as one readable line each, without the source line of the console script."""
    print(f"qcsurrogate: warning ({category.__name__}): {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# plugins
# ------------------------------------------------------------------------------------------------
def _param_info(params_cls: Any) -> dict[str, Any]:
    from .io.schema import to_jsonable

    out = {}
    for name, f in params_cls.model_fields.items():
        if f.is_required():
            out[name] = {"required": True}
        else:
            out[name] = {"required": False, "default": to_jsonable(f.get_default(call_default_factory=True),
                                                                   lenient=True)}
    return out


def plugins_info() -> dict[str, Any]:
    """Installed plugins, their versions, and the systems (with scenarios), surrogates and views they register."""
    import inspect

    from .registry import get_registry

    reg = get_registry()
    out: dict[str, Any] = {}
    for pname, entry in reg.plugins.items():
        systems = {}
        for sname in entry.get("systems", []):
            cls = reg.systems[sname].obj
            systems[sname] = {
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "description": (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " "),
                "fields": list(getattr(cls, "field_names", ())),
                "params": _param_info(cls.Params),
                "scenarios": cls.scenarios(),
            }
        surrogates = {}
        for gname in entry.get("surrogates", []):
            cls = reg.surrogates[gname].obj
            surrogates[gname] = {
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "description": (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " "),
            }
        views = {}
        for vname in entry.get("views", []):
            view = reg.views[vname].obj
            views[vname] = {"kinds": f"{view.input_kind} -> {view.output_kind}", "description": view.doc}
        out[pname] = {"version": entry.get("version"), "systems": systems, "surrogates": surrogates, "views": views}
    return out


def _plugins_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _plugins(args: argparse.Namespace) -> int:
    from .registry import ALLOW_ENV, get_registry

    info = plugins_info()
    unavailable = get_registry().unavailable
    if args.json:
        print(json.dumps({"plugins": info, "unavailable": unavailable}, indent=2))
        return EXIT_OK
    for pname, entry in info.items():
        print(f"{pname} {entry['version'] or '(version unknown)'}")
        if not entry["systems"] and not entry["surrogates"] and not entry["views"]:
            print("  (registers nothing)")
        for sname, s in entry["systems"].items():
            print(f"  system {sname}: {s['description']}")
            params = ", ".join(k if v["required"] else f"{k}={v['default']!r}" for k, v in s["params"].items())
            print(f"    params: {params}")
            print(f"    fields: {', '.join(s['fields'])}, rho")
            for scen, doc in s["scenarios"].items():
                print(f"    scenario {scen}" + (f": {doc}" if doc else ""))
        for gname, g in entry["surrogates"].items():
            print(f"  surrogate {gname}" + (f": {g['description']}" if g["description"] else ""))
        for vname, v in entry["views"].items():
            print(f"  view {vname} ({v['kinds']})" + (f": {v['description']}" if v["description"] else ""))
    for pname, why in unavailable.items():
        print(f"{pname}: not loaded ({why})")
    if any("failed" in why for why in unavailable.values()):
        print(f"(a plugin that fails is left out and the others work; {ALLOW_ENV}=a,b loads only plugins a and b)")
    if not any(e["systems"] for e in info.values()):
        print("no systems installed; install a plugin, e.g. `pip install qcsurrogate[holstein]`")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# simulate
# ------------------------------------------------------------------------------------------------
def _simulate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="YAML config (system, scenario, simulation, output)")
    p.add_argument("-o", "--output", type=Path, default=None, help="output file (overrides `output.path`)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only for long runs on a terminal)")
    p.add_argument("-f", "--force", action="store_true",
                   help="overwrite an existing output file (and start over: discard shards of an interrupted run)")
    p.add_argument("-j", "--processes", type=_auto_or_int, default=None, metavar="N|auto",
                   help="worker processes, one shard at a time each (default: simulation.processes, auto = one "
                        "per core, capped by trajectories and work)")
    p.add_argument("--shards", type=_auto_or_int, default=None, metavar="N|auto",
                   help="shard files to split the trajectories into (default: simulation.shards)")
    p.add_argument("--threads", type=_auto_or_int, default=None, metavar="N|auto",
                   help="torch threads per process (default: simulation.threads, auto = 1 on CPU)")
    p.add_argument("--compile", type=_auto_or_bool, default=None, metavar="auto|true|false",
                   help="torch.compile the step (default: simulation.compile, auto = when the run repays tracing)")


def _auto_or_int(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {text!r}")
    return value


def _auto_or_bool(text: str) -> bool | str:
    choices = {"auto": "auto", "true": True, "false": False}
    if text.lower() not in choices:
        raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")
    return choices[text.lower()]


def _check_device(device: str) -> None:
    import torch

    from .system import ConfigError

    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as err:
        raise ConfigError(f"simulation.device: device '{device}' is not available here ({err})") from None


def _simulate(args: argparse.Namespace) -> int:
    from .config import load_simulate_config
    from .system import ConfigError

    cfg = load_simulate_config(args.config)
    out = args.output if args.output is not None else cfg.output.path
    if out.is_dir():  # checked first: '' and '.' are the working directory, which always exists
        where = "--output" if args.output is not None else "output.path"
        raise ConfigError(f"{where}: {str(out)!r} is a directory ({out.resolve()}); give a file name, e.g. data/run.h5")
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it")
    sim = cfg.simulation
    _check_device(sim.compute_device)
    system = cfg.system.build()
    try:
        state0 = cfg.scenario.initial_state(system)
    except (TypeError, ValueError) as err:  # bad scenario arguments are configuration errors
        from .system import ConfigError

        raise ConfigError(
            f"scenario.kwargs: scenario '{cfg.scenario.name}' of system '{system.name}' rejected "
            f"{cfg.scenario.kwargs}: {err}"
        ) from err
    from .generate import output_files, ranks_from_env
    from .io.shards import remove_shards
    from .pipeline.stages import simulate_data

    rank, world = ranks_from_env()
    if args.force and rank == 0:
        remove_shards(out)  # start over; without --force a matching interrupted generation is resumed
    t_start = time.perf_counter()
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    simulate_data(
        cfg, out, log, system=system, state0=state0,
        compression=cfg.output.compression, compression_opts=cfg.output.compression_level,
        overwrite=args.force, extra_attrs={"config": cfg.model_dump(mode="json"), "config_file": str(args.config)},
        progress=args.progress, compile=args.compile, threads=args.threads, processes=args.processes,
        shards=args.shards, ranks=(rank, world),
    )
    elapsed = time.perf_counter() - t_start
    if rank != 0:
        print(f"rank {rank} of {world}: wrote its shards of {out} in {elapsed:.1f} s")
        return EXIT_OK
    files = output_files(out)
    size = sum(f.stat().st_size for f in files)
    layout = f", master over {len(files) - 1} shards in {files[1].parent}" if len(files) > 1 else ""
    print(f"wrote {out} ({sim.n_snapshots} snapshots, {size / 1e6:.2f} MB{layout}) in {elapsed:.1f} s")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# inspect
# ------------------------------------------------------------------------------------------------
def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="trajectory file (.h5)")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")


def _fmt_kwargs(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in d.items())


def format_summary(s: dict[str, Any]) -> str:
    from .io.schema import graph_label

    plugin = f" (plugin {s['plugin']} {s['plugin_version']})".rstrip() if s["plugin"] else ""
    vs = s["versions"]
    lines = [
        f"{s['path']}  ({s['size_bytes'] / 1e6:.2f} MB, {s['schema']})",
        f"  system        {s['system']}{plugin}",
        f"  params        {_fmt_kwargs(s['params'])}",
        f"  graph         {graph_label(s['graph'])}",
        f"  scenario      {s['scenario'] or '(none)'}({_fmt_kwargs(s['scenario_kwargs'])})",
        f"  trajectories  {s['n_trajectories']} (batch shape {tuple(s['batch_shape'])})",
        f"  snapshots     {s['n_time']}, t = {s['t_start']:g} .. {s['t_end']:g} {s['time_units']}",
        f"  stepping      dt={s['dt']:g}, save_every={s['save_every']}, n_steps={s['n_steps']}, "
        f"solver={s['solver'] or '?'}",
        f"  precision     stored {s['precision']}, computed {s['compute_precision']}",
    ]
    for name, v in s["variables"].items():
        comp = v["compression"] or "none"
        lines.append(f"  {name:<13} {tuple(v['shape'])} {v['dtype']}, chunks {tuple(v['chunks'] or ())}, "
                     f"compression {comp}")
    lines.append(f"  created       {s['created']} with qcsurrogate {vs.get('qcsurrogate', '?')}, "
                 f"torch {vs.get('torch', '?')}, h5py {vs.get('h5py', '?')}")
    return "\n".join(lines)


def _inspect(args: argparse.Namespace) -> int:
    from .io import open_trajectory

    with open_trajectory(args.file) as traj:
        summary = traj.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# new-plugin
# ------------------------------------------------------------------------------------------------
def _new_plugin_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="plugin name: lowercase letters, digits, '-' or '_' (e.g. kondo-chain); the "
                                "distribution is qcsurrogate-NAME, the package qcsurrogate_NAME")
    p.add_argument("--path", type=Path, default=None, metavar="DIR",
                   help="directory to create (default ./qcsurrogate-NAME); it must not exist or be empty")


def _new_plugin(args: argparse.Namespace) -> int:
    from .scaffold import DESCRIPTIONS, new_plugin

    names, target, files = new_plugin(args.name, args.path)
    print(f"created {target}: distribution {names.dist}, package {names.package}, plugin and system {names.name}")
    descriptions = {k.format(package=names.package): v for k, v in DESCRIPTIONS.items()}
    width = max(map(len, files))
    for rel in files:
        print(f"  {rel:<{width}}  {descriptions.get(rel, '')}".rstrip())
    print("next:")
    print(f"  cd {target}")
    print('  pip install -e ".[test]"        # into the environment that has qcsurrogate')
    print("  python -m pytest                # the conformance kit and the physics checks")
    print("  qcsurrogate run example.yaml    # data, training, evaluation, figures")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("plugins", "list installed plugins, their systems, scenarios, surrogates and views", _plugins_args,
                _plugins),
        Command("simulate", "simulate a system from a YAML config into an HDF5 trajectory file",
                _simulate_args, _simulate),
        Command("inspect", "print the metadata of a trajectory file", _inspect_args, _inspect),
        Command("new-plugin", "create a new system plugin (package, tests, example config) to start from",
                _new_plugin_args, _new_plugin,
                description="Create a new system plugin: an installable distribution qcsurrogate-NAME with a small "
                            "working System, its register hook, tests that run the conformance kit, a README and "
                            "an example run config. Nothing is written if anything is wrong."),
    )
}


def _register_pipeline_commands() -> None:
    from .cli_pipeline import PIPELINE_COMMANDS
    from .cli_study import STUDY_COMMANDS

    for cmd in (*PIPELINE_COMMANDS, *STUDY_COMMANDS):
        COMMANDS[cmd.name] = cmd


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    _register_pipeline_commands()
    parser = argparse.ArgumentParser(
        prog="qcsurrogate", description="Neural surrogates of hybrid quantum-classical dynamics."
    )
    parser.add_argument("--version", action="version", version=f"qcsurrogate {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured by a test)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 user error, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args._run(args))
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:  # `qcsurrogate inspect FILE | head -1`: the reader left, which is fine
        _silence_stdout()
        return 0
    except _user_errors() as exc:
        if args.traceback:
            raise
        msg = str(exc)
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            msg = f"{exc.strerror}: {exc.filename}"
        _err(msg)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
