"""`qcsurrogate study STUDY.yaml`: a base run config swept over settings and seeds, one run directory per point.

The study's logic lives in `qcsurrogate.study`; this module only parses the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli import Command

EXIT_POINT_FAILED = 1
"""Some points failed (each is named with its log); the table holds the others."""


def _study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", type=Path, help="study file (YAML), e.g. examples/studies/width.yaml")
    p.add_argument("-o", "--output", type=Path, default=None, help="study directory (overrides output_dir)")
    p.add_argument("-j", "--jobs", type=int, default=1,
                   help="points run at the same time, each in its own process with one torch thread unless the "
                        "config sets training.threads (default 1: one after another in this process)")
    p.add_argument("--device", default=None, help="override every point's device ('auto', 'cpu', 'cuda:0', ...)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the points and whether each is current, stale or missing; write nothing")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="with --jobs 1, also print each point's run output (it always goes to the point's output.log)")


def _study(args: argparse.Namespace) -> int:
    from .study import StudyRunner, expand, load_study, pending_reason
    from .system import ConfigError

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    study, base, base_source = load_study(args.study)
    root = args.output if args.output is not None else study.output_dir
    points = expand(study, base, root, study_source=str(args.study), base_source=base_source, device=args.device)
    if args.dry_run:
        print(f"study '{study.name}' in {root}: {len(points)} points")
        width = max(len(p.name) for p in points)
        for p in points:
            why = pending_reason(p)
            print(f"  {p.name:<{width}}  " + ("current (kept)" if why is None else f"to run: {why}"))
        return 0
    runner = StudyRunner(study, points, root, source=str(args.study), jobs=args.jobs, verbose=args.verbose)
    outcomes = runner.run()
    return 0 if all(o.ok for o in outcomes) else EXIT_POINT_FAILED


STUDY_COMMANDS = (
    Command("study", "run a study: a base run config swept over settings and seeds, one run directory per point, "
            "then a table and figures (keeps the points that are current)", _study_args, _study),
)
