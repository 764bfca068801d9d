"""The study's figures: each metric against each swept number, RMSE against the prediction window for every
point, and accuracy against cost; mean over seeds as a line, min-max over seeds as a band.

Every figure is drawn from the table rows (and the rollout curves) alone, so it can be redrawn from
results.json without the run directories.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from matplotlib import ticker

from ..evaluation.figures import RMSE_LABEL, TIME, TIME_UNIT, _save, plt
from .points import short_labels
from .table import grouped, numeric, summarize

AXIS_LABELS = {
    "data.simulation.model_step": f"model step Δt ({TIME_UNIT})",
    "data.simulation.n_model_steps": "stored model steps per trajectory",
    "data.scenario.kwargs.n_traj": "trajectories simulated (n_traj; train share by the split)",
    "model.width": "width (channels of the widest layer)",
    "training.steps": "optimizer steps",
    "training.batch_size": "batch size",
    "n_parameters": "trainable parameters",
}
MAX_DATA_TICKS = 10
PREDICTOR_LABELS = {"model": "model", "cnn": "single CNN (no PARC split)", "persistence": "persistence u(t+k) = u(t)"}


def axis_label(column: str) -> str:
    return AXIS_LABELS.get(column, column)


def metric_label(column: str) -> str:
    """'rmse_total@k=10' -> 'RMSE total after 10 model steps', and so on."""
    m = re.fullmatch(r"rmse_(\w+)@k=(\d+)", column)
    if m:
        return f"RMSE {m[1]} after {m[2]} model steps"
    m = re.fullmatch(r"rmse_(\w+)@t=(.+)", column)
    if m:
        return f"RMSE {m[1]} at t = {m[2]} {TIME_UNIT}"
    m = re.fullmatch(r"next_step_rmse_(\w+)", column)
    if m:
        return f"next-step RMSE {m[1]}"
    if column == "speedup":
        return "exact solver time / surrogate time (same physical time)"
    return column.replace("_", " ")


def _predictor_label(row: dict[str, Any]) -> str:
    label = row["predictor"]
    if label == "model":
        return f"model ({row.get('surrogate') or '?'})"
    return PREDICTOR_LABELS.get(label, label)


def _line_name(row: dict[str, Any], line_columns: list[str]) -> str:
    others = [f"{c.split('.')[-1]}={row.get(c)}" for c in line_columns if c != "predictor"]
    return ", ".join([_predictor_label(row), *others])


def _log_worthy(values: list[float]) -> bool:
    return bool(values) and min(values) > 0 and max(values) / min(values) > 10


def _series(rows: list[dict[str, Any]], x: str, y: str, line_columns: list[str]):
    """{line name: [(x, mean, min, max)]}: `y` over seeds for each x along each line."""
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    for line_rows in grouped(rows, line_columns).values():
        name = _line_name(line_rows[0], line_columns)
        pts = []
        for at in grouped(line_rows, [x]).values():
            xs = summarize([r.get(x) for r in at])
            ys = summarize([r.get(y) for r in at])
            if xs["mean"] is not None and ys["mean"] is not None:
                pts.append((xs["mean"], ys["mean"], ys["min"], ys["max"]))
        if pts:
            out[name] = sorted(pts)
    return out


def _draw(ax, series, style: str = "-o", colors: dict[str, Any] | None = None) -> None:
    for i, (name, pts) in enumerate(series.items()):
        xs, mean, lo, hi = (list(v) for v in zip(*pts))
        color = (colors or {}).get(name, f"C{i % 10}")
        ax.plot(xs, mean, style, color=color, lw=1.6, ms=4, label=name)
        if any(a != b for a, b in zip(lo, hi)):
            ax.fill_between(xs, lo, hi, color=color, alpha=0.18, lw=0)


def _compact(v: float) -> str:
    """A tick label short enough for a narrow panel: 13010 -> 13k, 696266 -> 696k, 0.02 -> 0.02."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def _scales(ax, series, x_log: bool = False) -> None:
    xs = [p[0] for pts in series.values() for p in pts]
    ys = [v for pts in series.values() for p in pts for v in p[1:] if numeric(v)]
    if x_log or _log_worthy(xs):
        ax.set_xscale("log")
        values: list[float] = []
        for v in sorted(set(xs)):  # lines at nearly the same x (PARC and the CNN of its size) share a tick
            if not values or v > 1.25 * values[-1]:
                values.append(v)
        if len(values) <= MAX_DATA_TICKS:  # ticks at the swept values: log-axis minor labels overlap
            ax.xaxis.set_major_locator(ticker.FixedLocator(values))
            ax.xaxis.set_major_formatter(ticker.FixedFormatter([_compact(v) for v in values]))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    if _log_worthy(ys):
        ax.set_yscale("log")


def _is_line(series) -> bool:
    return any(len(pts) > 1 for pts in series.values())


def sweep_figure(rows: list[dict[str, Any]], x: str, metrics: list[str], line_columns: list[str], path: Path,
                 title: str, x_label: str | None = None, x_log: bool = False) -> Path | None:
    """One panel per metric against `x`; one line per predictor (and value of the other axes)."""
    panels = [(m, s) for m in metrics if (s := _series(rows, x, m, line_columns))]
    if any(_is_line(s) for _, s in panels):  # a panel of lone points (a window most rollouts missed) says nothing
        panels = [(m, s) for m, s in panels if _is_line(s)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.9), squeeze=False, layout="constrained")
    for ax, (metric, series) in zip(axes[0], panels):
        _draw(ax, series)
        _scales(ax, series, x_log)
        ax.set_xlabel(x_label or axis_label(x))
        ax.set_ylabel(metric_label(metric))
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{title}: against {x_label or axis_label(x)} (line: mean over seeds; band: min-max)", fontsize=10)
    return _save(fig, path)


def window_figure(curves: list[dict[str, Any]], variable: str, path: Path, title: str) -> Path | None:
    """RMSE against the prediction window t = k dt, one line per point, one panel per predictor."""
    key = f"rmse_{variable}"
    by_predictor = grouped(curves, ["predictor"])
    if not by_predictor:
        return None
    fig, axes = plt.subplots(1, len(by_predictor), figsize=(5.2 * len(by_predictor), 4.2), squeeze=False,
                             layout="constrained", sharey=True)
    for ax, group in zip(axes[0], by_predictor.values()):
        for i, point_curves in enumerate(grouped(group, ["point"]).values()):
            c0 = point_curves[0]
            t = [k * c0["dt"] for k in c0["steps"]]
            stats = [summarize([c[key][j] if c.get(key) and j < len(c[key]) else None for c in point_curves])
                     for j in range(len(t))]
            keep = [j for j, s in enumerate(stats) if s["mean"] is not None and s["mean"] > 0]
            if not keep:
                continue
            color = f"C{i % 10}"
            ax.plot([t[j] for j in keep], [stats[j]["mean"] for j in keep], color=color, lw=1.5, label=c0["point"])
            if len(point_curves) > 1:
                ax.fill_between([t[j] for j in keep], [stats[j]["min"] for j in keep], [stats[j]["max"] for j in keep],
                                color=color, alpha=0.18, lw=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"prediction window {TIME}")
        ax.set_title(_predictor_label(group[0]), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{RMSE_LABEL}, {variable}")
    fig.suptitle(f"{title}: RMSE against the prediction window (line: mean over seeds; band: min-max)", fontsize=10)
    return _save(fig, path)


def cost_figure(rows: list[dict[str, Any]], x: str, metric: str, line_columns: list[str], path: Path,
                title: str) -> Path | None:
    """Error (left axis, solid) and speedup over the exact solver (right axis, dashed) against `x`."""
    costed = [r for r in rows if r.get("speedup") is not None]
    err = _series(costed, x, metric, line_columns)
    speed = _series(costed, x, "speedup", line_columns)
    if not err and not speed:
        return None
    fig, ax = plt.subplots(figsize=(6.8, 4.6), layout="constrained")
    colors = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys([*err, *speed]))}
    _draw(ax, err, "-o", colors)
    _scales(ax, err)
    ax2 = ax.twinx()
    _draw(ax2, speed, "--s", colors)
    ys = [v for pts in speed.values() for p in pts for v in p[1:] if numeric(v)]
    if ys and min(ys) > 0:
        ax2.set_yscale("log")  # a ratio: 1 in the middle of the axis
    ax2.axhline(1.0, color="0.4", lw=0.8, ls=":")
    ax2.set_ylabel("speedup: exact solver / surrogate time per state\n(dashed; > 1: surrogate cheaper)")
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(metric_label(metric) + " (solid)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{title}: accuracy and cost (mean over seeds; band: min-max)", fontsize=10)
    return _save(fig, path)


def file_labels(columns: list[str]) -> dict[str, str]:
    """File-name labels of the swept columns: the same short, unique labels as the point directories."""
    return {c: re.sub(r"[^A-Za-z0-9_.-]", "_", label) for c, label in short_labels(columns).items()}


def draw_all(rows: list[dict[str, Any]], curves: list[dict[str, Any]], numeric_axes: dict[str, list[str]],
             all_axis_columns: list[str], plot_metrics: list[str], cost_metric: str | None, variable: str,
             out: Path, title: str) -> list[Path]:
    """Every figure of a study. `numeric_axes`: x column -> the columns of its axis (left out of the lines)."""
    paths: list[Path | None] = [window_figure(curves, variable, out / "rmse_vs_window.png", title)]
    names = file_labels(list(numeric_axes))
    for x, own in numeric_axes.items():
        lines = ["predictor", *(c for c in all_axis_columns if c not in own)]
        name = names[x]
        paths.append(sweep_figure(rows, x, plot_metrics, lines, out / f"vs_{name}.png", title))
        per_point = grouped([r for r in rows if r.get("n_parameters") is not None], ["predictor", *lines[1:]])
        varies = any(len({r["n_parameters"] for r in g}) > 1 for g in per_point.values())
        if varies:
            paths.append(sweep_figure(rows, "n_parameters", plot_metrics, lines, out / f"vs_n_parameters_by_{name}.png",
                                      f"{title} ({x} varied)", x_label=f"{axis_label('n_parameters')} (log)", x_log=True))
        if cost_metric is not None:
            paths.append(cost_figure(rows, x, cost_metric, lines, out / f"cost_vs_{name}.png", title))
    return [p for p in paths if p is not None]


def is_numeric_axis(values: list[Any]) -> bool:
    return len(values) > 1 and all(numeric(v) for v in values) and not any(math.isnan(float(v)) for v in values)
