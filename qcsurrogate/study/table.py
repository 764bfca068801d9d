"""The study's tidy table: one row per point, seed and predictor, read from each run directory's own files.

Nothing is recomputed: the metrics come from the run's `metrics.json`, the training time and throughput
from its `train_summary.json` (one per trained model), the cost from its `cost.json`. The same rows are
written as CSV and JSON, and averaged over seeds into a markdown table.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json, atomic_write_text
from ..evaluation.metrics import json_safe
from ..pipeline.layout import PRIMARY, RunLayout
from .config import MetricsConfig
from .points import Point

IDENTITY_COLUMNS = ("point", "seed", "predictor", "surrogate", "n_parameters", "dt", "horizon_steps", "n_train_traj",
                    "n_test_traj")
CLIMATE_PREFIX = "climate_"


def _fmt_number(x: float) -> str:
    return f"{x:g}"


def step_column(var: str, k: int) -> str:
    return f"rmse_{var}@k={k}"


def time_column(var: str, t: float) -> str:
    return f"rmse_{var}@t={_fmt_number(t)}"


def next_step_column(var: str) -> str:
    return f"next_step_rmse_{var}"


def default_plot_columns(metrics: MetricsConfig) -> list[str]:
    var = metrics.variables[0]
    return [next_step_column(var), *(step_column(var, k) for k in metrics.rollout_steps),
            *(time_column(var, t) for t in metrics.rollout_times)]


def _at(curve: dict[str, Any], key: str, k: int | None) -> float | None:
    """The curve's `key` after k steps (None when k was not recorded, e.g. beyond the window)."""
    if k is None or key not in curve:
        return None
    try:
        return curve[key][curve["steps"].index(k)]
    except ValueError:
        return None


def _steps_for_time(t: float, dt: float) -> int | None:
    k = round(t / dt)
    return k if k >= 1 and abs(k * dt - t) <= 1e-9 * max(t, dt) else None


def predictor_metrics(entry: dict[str, Any], dt: float, metrics: MetricsConfig) -> dict[str, Any]:
    """The columns of one predictor's `next_step` and `rollout` entries of metrics.json."""
    ns, curve = entry.get("next_step", {}), entry.get("rollout", {})
    row: dict[str, Any] = {}
    for var in metrics.variables:
        row[next_step_column(var)] = ns.get(f"rmse_{var}")
    for var in metrics.variables:
        for k in metrics.rollout_steps:
            row[step_column(var, k)] = _at(curve, f"rmse_{var}", k)
        for t in metrics.rollout_times:
            row[time_column(var, t)] = _at(curve, f"rmse_{var}", _steps_for_time(t, dt))
        values = curve.get(f"rmse_{var}") or [None]
        row[f"rmse_{var}@end"] = values[-1]
    row["diverged_fraction"] = (curve.get("diverged_fraction") or [None])[-1]
    return row


def _model_only(m: dict[str, Any]) -> dict[str, Any]:
    """Climate and predictability (evaluated for the run's own model only), when the run has them."""
    row: dict[str, Any] = {}
    climate = m.get("climate")
    if climate:
        row.update({f"{CLIMATE_PREFIX}{k}": v for k, v in climate.get("summary", {}).items()})
    pred = m.get("predictability")
    if pred:
        row["predictability_median_horizon_steps"] = pred.get("surrogate_error", {}).get("median_horizon_steps")
        row["surrogate_steps_below_threshold"] = pred.get("surrogate_steps_below_threshold")
        row["predictability_ratio"] = pred.get("surrogate_steps_over_horizon")
    return row


def _training(layout: RunLayout, label: str) -> dict[str, Any]:
    path = layout.training(label).summary
    if not path.exists():
        return {}
    s = json.loads(path.read_text())
    return {"train_steps": s.get("steps"), "train_steps_run": s.get("steps_run"), "train_wall_s": s.get("wall_s"),
            "train_samples_per_s": s.get("samples_per_s")}


def _cost(cost: dict[str, Any] | None, label: str) -> dict[str, Any]:
    if not cost:
        return {}
    entry = cost["predictors"].get(label)
    return {"cost_batch": cost["batch"],
            "cost_surrogate_s": entry["seconds_per_state"] if entry else None,
            "cost_exact_s": cost["exact"]["seconds_per_state"],
            "speedup": entry["speedup"] if entry else None}


def point_rows(point: Point, metrics: MetricsConfig, cost: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per predictor of a finished point: 'model', each trained baseline, each untrained one."""
    layout = RunLayout(point.directory)
    m = json.loads(layout.metrics.read_text())
    dt = m["dt"]
    trained = list(point.config.model_configs())
    entries = [(PRIMARY, m, m.get("model"), m.get("n_parameters"))]
    for label, entry in m.get("baselines", {}).items():
        entries.append((label, entry, label, entry.get("n_parameters")))
    rows = []
    for label, entry, surrogate, n_params in entries:
        split = m.get("split", {})
        row = {"point": point.group, **point.values, "seed": point.seed, "predictor": label, "surrogate": surrogate,
               "n_parameters": n_params, "dt": dt, "horizon_steps": m.get("horizon"),
               "n_train_traj": len(split.get("train", [])), "n_test_traj": len(split.get("test", []))}
        row.update(predictor_metrics(entry, dt, metrics))
        if label == PRIMARY:
            row.update(_model_only(m))
        if label in trained:
            row.update(_training(layout, label))
            row.update(_cost(cost, label))
        rows.append(row)
    return rows


def point_curves(point: Point, metrics: MetricsConfig) -> list[dict[str, Any]]:
    """The full RMSE-vs-window curve of every predictor of a point (for the window figure and results.json)."""
    m = json.loads(RunLayout(point.directory).metrics.read_text())
    entries = [(PRIMARY, m), *m.get("baselines", {}).items()]
    out = []
    for label, entry in entries:
        curve = entry["rollout"]
        out.append({"point": point.group, "seed": point.seed, "predictor": label,
                    "surrogate": m.get("model") if label == PRIMARY else label, "dt": m["dt"],
                    "steps": curve["steps"], "diverged_fraction": curve.get("diverged_fraction"),
                    **{f"rmse_{v}": curve.get(f"rmse_{v}") for v in metrics.variables}})
    return out


def columns_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every key of the rows, in order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r))


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else _csv_cell(r[c]) for c in columns])
    return buf.getvalue()


def _csv_cell(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return v


def numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summarize(values: list[Any]) -> dict[str, Any]:
    """Mean, min and max of the finite numbers among `values`; `missing` counts the others."""
    xs = [float(v) for v in values if numeric(v)]
    if not xs:
        return {"mean": None, "min": None, "max": None, "n": 0, "missing": len(values)}
    return {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs), "n": len(xs), "missing": len(values) - len(xs)}


def grouped(rows: list[dict[str, Any]], keys: list[str]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Rows grouped by the JSON form of their `keys` values, in order of first appearance."""
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(json.dumps(r.get(k), default=str) for k in keys), []).append(r)
    return out


def _cell(s: dict[str, Any], n_rows: int) -> str:
    if s["mean"] is None:
        return "-"
    text = f"{s['mean']:.3g}"
    if s["n"] > 1 and s["min"] != s["max"]:
        text += f" [{s['min']:.3g}, {s['max']:.3g}]"
    if s["missing"]:
        text += f" ({s['missing']}/{n_rows} none)"
    return text


def to_markdown(rows: list[dict[str, Any]], value_columns: list[str], metric_columns: list[str], title: str) -> str:
    """Per point and predictor: each metric's mean over seeds, [min, max] when there are several."""
    keys = ["point", "predictor"]
    head = [*value_columns, "predictor", "parameters", "seeds", *metric_columns]
    lines = [f"# {title}", "",
             ("Mean over seeds, [min, max] when there are several; '(k/n none)': k of n seeds have no value "
              "(a diverged rollout, or a step beyond the evaluated window)."), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in grouped(rows, keys).values():
        first = group[0]
        cells = [str(first.get(c, "")) for c in value_columns]
        n_params = summarize([r.get("n_parameters") for r in group])
        cells += [str(first["predictor"]), f"{n_params['mean']:,.0f}" if n_params["mean"] is not None else "-",
                  str(len(group))]
        cells += [_cell(summarize([r.get(c) for r in group]), len(group)) for c in metric_columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(out_dir: Path, rows: list[dict[str, Any]], curves: list[dict[str, Any]], value_columns: list[str],
                 metric_columns: list[str], meta: dict[str, Any]) -> list[Path]:
    """results.csv, results.json and results.md in `out_dir`, each written atomically."""
    columns = columns_of(rows) if rows else list(IDENTITY_COLUMNS)
    paths = [out_dir / "results.csv", out_dir / "results.json", out_dir / "results.md"]
    atomic_write_text(paths[0], to_csv(rows, columns))
    atomic_write_json(paths[1], json_safe({**meta, "columns": columns, "rows": rows, "curves": curves}))
    present = [c for c in metric_columns if any(r.get(c) is not None for r in rows)]
    atomic_write_text(paths[2], to_markdown(rows, value_columns, present, meta.get("title", "results")))
    return paths
