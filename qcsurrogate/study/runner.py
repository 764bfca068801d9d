"""`qcsurrogate study`: bring every point up to date, time it if asked, then tabulate and plot.

Each point is an ordinary run directory brought up to date by the pipeline (`run_pipeline`, policy auto),
so whether a point is finished is the pipeline's own decision: a point whose stages are all current is
kept without being touched; any other is run, and the run redoes only its stale or missing stages (an
interrupted training resumes from its checkpoint). Points run one after another in this process, or
with `jobs > 1` as that many `python -m qcsurrogate run` processes at a time, each writing to its own log.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from ..atomic import atomic_write_json, atomic_write_text
from ..pipeline.layout import RunLayout, RunLog
from ..pipeline.ledger import Ledger
from ..pipeline.plan import Plan
from ..pipeline.runner import run_pipeline
from .config import StudyConfig
from .cost import ensure_cost
from .figures import draw_all, is_numeric_axis
from .points import Point, axes
from .table import default_plot_columns, next_step_column, point_curves, point_rows, time_column, write_tables

POINT_LOG = "output.log"
"""Everything a point's run printed (stdout and stderr), appended run after run, beside the run's own log.txt."""

FINISHED = ("kept", "run")


@dataclass
class Outcome:
    """What became of one point in this invocation: kept (current), run, failed, interrupted or not run."""

    point: Point
    status: str = "not run"
    reason: str = ""
    seconds: float | None = None
    error: str = ""

    @property
    def log(self) -> Path:
        return self.point.directory / POINT_LOG

    @property
    def ok(self) -> bool:
        """Finished (kept or run) and nothing went wrong after it (its cost measurement)."""
        return self.status in FINISHED and not self.error


def pending_reason(point: Point) -> str | None:
    """None when every stage of the point's run directory is current; else the first that is not, and why."""
    plan = Plan(point.config, Ledger(RunLayout(point.directory)))
    for st in plan.statuses():
        if st.state != "current":
            return f"{st.stage} {st.state}: {st.reason}"
    return None


class _Tee(io.TextIOBase):
    """Writes to a log file and, optionally, to the console."""

    def __init__(self, *streams: IO[str] | None) -> None:
        self.streams = [s for s in streams if s is not None]

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()


def worker_env(point: Point) -> dict[str, str]:
    """The environment of a point's process: one torch thread unless the run config sets `training.threads`."""
    threads = str(point.config.training.threads or 1)
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    return env


class StudyRunner:
    """The points of one study in one study directory."""

    def __init__(self, study: StudyConfig, points: list[Point], root: Path, *, source: str = "", jobs: int = 1,
                 verbose: bool = False, echo: bool = True) -> None:
        self.study = study
        self.points = points
        self.root = Path(root)
        self.source = source
        self.jobs = jobs
        self.verbose = verbose
        self.log = RunLog(RunLayout(self.root), echo=echo)
        self.outcomes = [Outcome(p) for p in points]
        self.cost: dict[str, dict[str, Any]] = {}
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.results: list[Path] = []

    # -- the points ---------------------------------------------------------------------------------
    def run(self) -> list[Outcome]:
        """Every point, then the cost, the table and the figures; the manifest study.json throughout."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.log(f"study '{self.study.name}' in {self.root}: {len(self.points)} points, jobs {self.jobs}")
        todo = []
        for o in self.outcomes:
            why = pending_reason(o.point)
            if why is None:
                o.status, o.reason = "kept", "every stage current"
            else:
                o.reason = why
                todo.append(o)
        self.log(f"{len(self.points) - len(todo)} points current (kept), {len(todo)} to run")
        try:
            if self.jobs == 1:
                for i, o in enumerate(todo, 1):
                    self._run_here(o, f"[{i}/{len(todo)}]")
            else:
                self._run_parallel(todo)
            if self.study.cost.measure:
                self._measure_cost()
        finally:
            self.write_manifest()
        self.write_results()
        self.write_manifest()
        failed = [o for o in self.outcomes if not o.ok]
        counts = {s: sum(o.status == s for o in self.outcomes) for s in ("kept", "run")}
        self.log(f"done: {counts['kept']} kept, {counts['run']} run, {len(failed)} failed; "
                 f"results in {self.root / 'results.csv'}")
        for o in failed:
            self.log(f"FAILED {o.point.name}: {o.error}; log: {o.log}")
        return self.outcomes

    def _started(self, o: Outcome, tag: str) -> None:
        o.point.directory.mkdir(parents=True, exist_ok=True)
        self.log(f"{tag} {o.point.name}: running ({o.reason}); log {o.log}")

    def _finished(self, o: Outcome, t0: float, error: str = "") -> None:
        o.seconds = time.perf_counter() - t0
        if not error:
            left = pending_reason(o.point)
            error = f"not complete after its run ({left})" if left else ""
        o.status, o.error = ("failed", error) if error else ("run", "")
        self.log(f"{o.point.name}: " + (f"FAILED after {o.seconds:.0f} s: {error}; log {o.log}" if error
                                         else f"done in {o.seconds:.0f} s"))
        self.write_manifest()

    def _header(self) -> str:
        return f"\n=== qcsurrogate study '{self.study.name}' {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n"

    def _run_here(self, o: Outcome, tag: str) -> None:
        """Run one point in this process; its output goes to its log (and the console with --verbose)."""
        self._started(o, tag)
        t0 = time.perf_counter()
        error = ""
        with open(o.log, "a") as f:
            f.write(self._header())
            out = _Tee(f, sys.stdout if self.verbose else None)
            err = _Tee(f, sys.stderr if self.verbose else None)
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    run_pipeline(o.point.config, policy="auto", echo=True)
            except KeyboardInterrupt:
                f.write("interrupted\n")
                o.status, o.seconds = "interrupted", time.perf_counter() - t0
                raise
            except Exception as exc:  # noqa: BLE001 - a failed point is reported, the others go on
                traceback.print_exc(file=f)
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self._finished(o, t0, error)

    def _launch(self, o: Outcome) -> tuple[subprocess.Popen, IO[str]]:
        cfg_path = o.point.directory / "config.yaml"
        atomic_write_text(cfg_path, yaml.safe_dump(o.point.config.model_dump(mode="json"), sort_keys=False))
        f = open(o.log, "a")  # noqa: SIM115 - closed when the process ends
        f.write(self._header())
        f.flush()
        cmd = [sys.executable, "-m", "qcsurrogate", "--traceback", "run", str(cfg_path), "-o", str(o.point.directory)]
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=worker_env(o.point))
        return proc, f

    def _run_parallel(self, todo: list[Outcome]) -> None:
        """Up to `jobs` point processes at a time; a failed one is reported and the others go on."""
        queue = deque(todo)
        running: dict[subprocess.Popen, tuple[Outcome, float, IO[str]]] = {}
        n = 0
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    o = queue.popleft()
                    n += 1
                    self._started(o, f"[{n}/{len(todo)}]")
                    proc, f = self._launch(o)
                    running[proc] = (o, time.perf_counter(), f)
                for proc in [p for p in running if p.poll() is not None]:
                    o, t0, f = running.pop(proc)
                    f.close()
                    rc = proc.returncode
                    self._finished(o, t0, "" if rc == 0 else f"exit status {rc}: {_last_line(o.log)}")
                time.sleep(0.1)
        except KeyboardInterrupt:
            self._stop(running)
            raise

    def _stop(self, running: dict[subprocess.Popen, tuple[Outcome, float, IO[str]]]) -> None:
        """Ctrl-C: interrupt every point process, give it a few seconds to exit, then kill it."""
        self.log(f"interrupted: stopping {len(running)} point processes (their run directories resume later)")
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        for proc, (o, t0, f) in running.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            f.close()
            o.status, o.seconds = "interrupted", time.perf_counter() - t0

    # -- cost, table, figures, manifest -----------------------------------------------------------
    def _measure_cost(self) -> None:
        """Cost of every finished point, one at a time after all runs (so no training of this study competes)."""
        for o in self.outcomes:
            if o.status not in FINISHED:
                continue
            try:
                result, measured = ensure_cost(o.point.config, self.study.cost)
            except Exception as exc:  # noqa: BLE001 - reported like a failed point; its run is still tabulated
                o.error = f"cost measurement: {type(exc).__name__}: {exc}"
                self.log(f"{o.point.name}: {o.error}")
                continue
            self.cost[o.point.name] = result
            if measured:
                sp = ", ".join(f"{k} {v['speedup']:.3g}x" for k, v in result["predictors"].items())
                self.log(f"{o.point.name}: cost measured (speedup over the exact solver: {sp})")

    def value_columns(self) -> list[str]:
        """The table columns of the point's values: `case`, every swept and every zipped path."""
        s = self.study
        return [*(["case"] if s.cases else []), *s.sweep, *s.zip]

    def naming_columns(self) -> list[str]:
        """The value columns that name the points (a zip group by its first key), for the markdown table."""
        s = self.study
        return [*(["case"] if s.cases else []), *s.sweep, *list(s.zip)[:1]]

    def plot_metrics(self) -> list[str]:
        return list(self.study.metrics.plot or default_plot_columns(self.study.metrics))

    def cost_metric(self) -> str | None:
        m = self.study.metrics
        if not self.study.cost.measure:
            return None
        if self.study.cost.metric:
            return self.study.cost.metric
        var = m.variables[0]
        return time_column(var, m.rollout_times[0]) if m.rollout_times else next_step_column(var)

    def write_results(self) -> list[Path]:
        """results.csv/.json/.md and figures/ from every finished point (failed ones are listed, not tabulated)."""
        done = [o for o in self.outcomes if o.status in FINISHED]
        rows, curves = [], []
        for o in done:
            rows += point_rows(o.point, self.study.metrics, self.cost.get(o.point.name))
            curves += point_curves(o.point, self.study.metrics)
        columns = {c for r in rows for c in r}
        for c in [*self.plot_metrics(), *([self.cost_metric()] if self.cost_metric() else [])]:
            if rows and c not in columns:
                self.log(f"warning: no table column '{c}' to plot (columns: {', '.join(sorted(columns))})")
        md_metrics = [*self.plot_metrics(), "diverged_fraction", "predictability_ratio",
                      "climate_diverged_fraction", "train_wall_s", "train_samples_per_s",
                      "cost_surrogate_s", "cost_exact_s", "speedup"]
        missing = [o.point.name for o in self.outcomes if o.status not in FINISHED]
        meta = {"study": self.study.name, "title": f"Study '{self.study.name}'", "description": self.study.description,
                "value_columns": self.value_columns(), "missing_points": missing}
        paths = write_tables(self.root, rows, curves, self.naming_columns(), list(dict.fromkeys(md_metrics)), meta)
        numeric_axes: dict[str, list[str]] = {}
        for a in axes(self.study):
            cols = list(a.entries[0][1])  # the axis's table columns; the first names the point
            if a.label != "case" and is_numeric_axis([shown[cols[0]] for _, shown, _ in a.entries]):
                numeric_axes[cols[0]] = cols
        figures = draw_all(rows, curves, numeric_axes, self.value_columns(), self.plot_metrics(), self.cost_metric(),
                           self.study.metrics.variables[0], self.root / "figures", self.study.name)
        self.log(f"wrote {', '.join(p.name for p in paths)} and {len(figures)} figures in {self.root / 'figures'}")
        self.results = paths + figures
        return self.results

    def write_manifest(self) -> Path:
        """study.json: every point with what became of it in the last invocation, and where its log is."""
        path = self.root / "study.json"
        atomic_write_json(path, {
            "study": self.study.name, "description": self.study.description, "study_file": self.source,
            "started": self.started, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "jobs": self.jobs,
            "points": [{"point": o.point.group, "seed": o.point.seed, "directory": str(o.point.directory),
                        "values": o.point.values, "status": o.status, "reason": o.reason,
                        "seconds": o.seconds, "error": o.error or None,
                        "log": str(o.log) if o.log.exists() else None} for o in self.outcomes],
        })
        return path


def _last_line(path: Path) -> str:
    """The last non-empty line of a log (usually the error), for the console."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""
