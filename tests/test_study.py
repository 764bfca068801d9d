"""`qcsurrogate study`: points are ordinary run directories, kept when current and redone when stale; the table
holds each run's own numbers; a bad study fails before anything is written; `--jobs` gives the same table.

Which stages a study redid is read from each point's ledger (`stages.json`), as in test_pipeline_identity.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from test_pipeline import TINY

import qcsurrogate
from qcsurrogate.cli import main
from qcsurrogate.study.config import MetricsConfig
from qcsurrogate.study.points import dir_value, short_labels
from qcsurrogate.study.table import predictor_metrics

pytestmark = pytest.mark.usefixtures("toy_registered")

TIMING_COLUMNS = {"train_wall_s", "train_samples_per_s", "cost_surrogate_s", "cost_exact_s", "speedup"}


def base_config(**changes) -> dict:
    """TINY with 3 training steps and one torch thread (so in-process and subprocess runs agree to the bit)."""
    cfg = json.loads(json.dumps(TINY))
    cfg["training"].update({"steps": 3, "checkpoint_every": 2, "threads": 1})
    cfg.update(changes)
    return cfg


def write_study(tmp_path: Path, base: dict | None = None, **study) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base or base_config()))
    spec = {"name": "tiny", "output_dir": str(tmp_path / "study"), "base": "base.yaml", "seeds": [0], **study}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def ledger(point: Path) -> dict:
    return json.loads((point / "stages.json").read_text())["stages"]


def stamps(point: Path) -> dict[str, dict]:
    """Per stage: the recorded mtime of each file it wrote and its inputs (a redone stage changes them)."""
    return {s: ({rel: fp["mtime_ns"] for rel, fp in rec["outputs"].items()}, rec["inputs"])
            for s, rec in ledger(point).items()}


def manifest(study_dir: Path) -> dict[str, dict]:
    return {f"{p['point']}/seed={p['seed']}": p for p in json.loads((study_dir / "study.json").read_text())["points"]}


# -- end to end ----------------------------------------------------------------------------------------
def test_tiny_study_end_to_end_table_holds_each_runs_metrics(tmp_path, capsys):
    path = write_study(tmp_path, sweep={"model.width": [8, 12]},
                       set={"model.conserve_energy": True},  # a model that steps only with its System attached
                       metrics={"rollout_steps": [1, 4], "rollout_times": [0.1, 0.12]},
                       cost={"measure": True, "batch": 4, "repeats": 2, "min_time": 0.005})
    assert main(["study", str(path)]) == 0
    out = tmp_path / "study"
    rows = read_csv(out / "results.csv")
    assert [(r["point"], r["seed"], r["predictor"]) for r in rows] == [
        (w, "0", p) for w in ("width=8", "width=12") for p in ("model", "cnn", "persistence")]
    as_json = json.loads((out / "results.json").read_text())
    assert len(as_json["rows"]) == len(rows)
    for row, jrow in zip(rows, as_json["rows"]):
        point = out / "points" / row["point"] / "seed=0"
        metrics = json.loads((point / "metrics.json").read_text())
        entry = metrics if row["predictor"] == "model" else metrics["baselines"][row["predictor"]]
        curve = entry["rollout"]
        assert float(row["next_step_rmse_total"]) == jrow["next_step_rmse_total"] == entry["next_step"]["rmse_total"]
        assert float(row["rmse_total@k=4"]) == curve["rmse_total"][curve["steps"].index(4)]
        assert float(row["rmse_total@t=0.1"]) == curve["rmse_total"][curve["steps"].index(2)]  # dt = 0.05
        assert row["rmse_total@t=0.12"] == ""  # not a whole number of model steps
        assert float(row["rmse_total@end"]) == curve["rmse_total"][-1]
        assert float(row["diverged_fraction"]) == curve["diverged_fraction"][-1]
        assert int(row["n_train_traj"]) == len(metrics["split"]["train"]) and int(row["n_test_traj"]) == 1
        assert jrow["model.width"] == int(row["model.width"]) == int(row["point"].split("=")[1])
        if row["predictor"] == "persistence":
            assert row["n_parameters"] == row["train_wall_s"] == row["speedup"] == ""
        else:
            assert int(row["n_parameters"]) == entry["n_parameters"]
            sub = point if row["predictor"] == "model" else point / "baseline_cnn"
            summary = json.loads((sub / "train_summary.json").read_text())
            assert float(row["train_wall_s"]) == summary["wall_s"]
            cost = json.loads((point / "cost.json").read_text())
            assert float(row["speedup"]) == cost["predictors"][row["predictor"]]["speedup"] > 0
    # each point is an ordinary run directory: `status` judges it, and every stage is current
    capsys.readouterr()
    assert main(["status", str(out / "points" / "width=12" / "seed=0")]) == 0
    status = capsys.readouterr().out
    assert "train:cnn" in status and "stale" not in status and "missing" not in status
    point_cfg = yaml.safe_load((out / "points" / "width=12" / "seed=0" / "config.yaml").read_text())
    assert point_cfg["model"]["width"] == 12 and point_cfg["model"]["conserve_energy"] is True
    assert {p["status"] for p in manifest(out).values()} == {"run"}
    md = (out / "results.md").read_text()
    assert md.count("\n| 8 |") == 3 and md.count("\n| 12 |") == 3
    for fig in ("rmse_vs_window.png", "vs_width.png", "vs_n_parameters_by_width.png", "cost_vs_width.png"):
        assert (out / "figures" / fig).stat().st_size > 5000


def test_rerun_keeps_finished_points_and_a_changed_base_redoes_exactly_the_affected_ones(tmp_path, capsys):
    """Case a pins model.width, case b takes it from the base: changing the base's width redoes b's training
    (and what follows it) and nothing of a; an unchanged rerun touches nothing at all."""
    cases = {"a": {"model.width": 8}, "b": {"training.lr": 5.0e-4}}
    cost = {"measure": True, "batch": 2, "repeats": 1, "min_time": 0.001}
    path = write_study(tmp_path, cases=cases, cost=cost)
    assert main(["study", str(path)]) == 0
    out = tmp_path / "study"
    a, b = out / "points" / "case=a" / "seed=0", out / "points" / "case=b" / "seed=0"
    first = {p: stamps(p) for p in (a, b)}
    files = {p: {f: (p / f).stat().st_mtime_ns for f in ("stages.json", "log.txt", "config.yaml", "cost.json")}
             for p in (a, b)}
    table = read_csv(out / "results.csv")

    capsys.readouterr()
    assert main(["study", str(path)]) == 0  # nothing changed: every point kept, not even opened for writing
    assert "2 points current (kept), 0 to run" in capsys.readouterr().out
    for p in (a, b):
        assert {f: (p / f).stat().st_mtime_ns for f in files[p]} == files[p]
    assert {m["status"] for m in manifest(out).values()} == {"kept"}
    assert read_csv(out / "results.csv") == table

    path = write_study(tmp_path, base=base_config(model={**TINY["model"], "width": 12}), cases=cases, cost=cost)
    assert main(["study", str(path)]) == 0
    assert stamps(a) == first[a] and (a / "stages.json").stat().st_mtime_ns == files[a]["stages.json"]
    after = stamps(b)
    redone = {s for s in after if after[s] != first[b][s]}
    assert redone == {"train:model", "train:cnn", "evaluate", "plot"}
    status = manifest(out)
    assert status["case=a/seed=0"]["status"] == "kept"
    assert status["case=b/seed=0"]["status"] == "run"
    assert "train:model stale" in status["case=b/seed=0"]["reason"] and "model_config" in status["case=b/seed=0"]["reason"]
    assert json.loads((b / "cost.json").read_text())["inputs"] != json.loads((a / "cost.json").read_text())["inputs"]
    assert (a / "cost.json").stat().st_mtime_ns == files[a]["cost.json"]  # a's cost kept, b's re-measured
    assert (b / "cost.json").stat().st_mtime_ns != files[b]["cost.json"]
    new = {(r["point"], r["predictor"]): r for r in read_csv(out / "results.csv")}
    old = {(r["point"], r["predictor"]): r for r in table}
    assert new["case=a", "model"] == old["case=a", "model"]
    assert int(new["case=b", "model"]["n_parameters"]) > int(old["case=b", "model"]["n_parameters"])


# -- errors before anything is written -------------------------------------------------------------------
@pytest.mark.parametrize(("study", "expected"), [
    ({"sweep": {"model.widht": [8, 12]}}, ["model.widht: unknown key (did you mean 'width'?)", "sweep: 'model.widht'",
                                           "study.yaml", "the same in all 2 points"]),
    ({"sweep": {"model.width": [8, -1]}}, ["point 'width=-1/seed=0'", "model.width"]),
    ({"set": {"training.steps.total": 3}}, ["cannot set 'training.steps.total'", "training.steps"]),
    ({"seed_fields": ["training.sed"]}, ["training.sed: unknown key (did you mean 'seed'?)", "seed_fields"]),
    ({"zip": {"model.width": [8, 12], "training.lr": [1.0e-3]}}, ["zip: every list must have the same length"]),
    ({"sweep": {"model.width": [8, 8]}}, ["lists 8 twice"]),
    ({"sweep": {"model": [{"width": 8}]}, "zip": {"model.width": [8]}}, ["vary the same setting"]),
    ({"sweep": {"model.width": []}}, ["has no values"]),
    ({"seeds": []}, ["at least one seed"]),
    ({"sweeps": {"model.width": [8]}}, ["sweeps: unknown key (did you mean 'sweep'?)"]),
])
def test_a_bad_study_fails_before_anything_is_written(tmp_path, capsys, study, expected):
    path = write_study(tmp_path, **study)
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for text in expected:
        assert text in err
    assert not (tmp_path / "study").exists()


def test_missing_base_file_is_a_clean_error(tmp_path, capsys):
    path = write_study(tmp_path)
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "base": "nowhere.yaml"}))
    assert main(["study", str(path)]) == 2
    assert "base run config not found" in capsys.readouterr().err


def test_dry_run_names_points_and_writes_nothing(tmp_path, capsys):
    path = write_study(tmp_path, seeds=[0, 1], seed_fields=["training.seed", "split.seed"],
                       zip={"data.simulation.dt": [0.05, 0.025], "data.simulation.n_steps": [30, 60]})
    assert main(["study", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for name in ("dt=0.05/seed=0", "dt=0.05/seed=1", "dt=0.025/seed=0", "dt=0.025/seed=1"):
        assert f"  {name}" in out
    assert "to run: data missing" in out and "4 points" in out
    assert not (tmp_path / "study").exists()


# -- --jobs and failures ----------------------------------------------------------------------------------
TOYPLUG = '''
import qcsurrogate
from toy_system import ToySystem


@qcsurrogate.hookimpl
def register_systems(register):
    register(ToySystem)
'''


def installed_toy(tmp_path: Path) -> str:
    """A PYTHONPATH under which a fresh process finds the toy System through an entry point (as if installed)."""
    site = tmp_path / "site"
    info = site / "toyplug-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "toyplug.py").write_text(TOYPLUG)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[qcsurrogate]\ntoyplug = toyplug\n")
    tests = Path(__file__).resolve().parent
    repo = Path(qcsurrogate.__file__).resolve().parents[1]
    return os.pathsep.join([str(site), str(tests), str(repo), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.mark.slow
def test_jobs_give_the_sequential_table_and_a_failed_point_stops_nothing(tmp_path, monkeypatch, capsys):
    cases = {"a": {"model.width": 8}, "b": {"model.width": 12},
             "broken": {"data.scenario": {"name": "from_file", "kwargs": {"path": str(tmp_path / "missing.h5")}}}}
    path = write_study(tmp_path, cases=cases)
    assert main(["study", str(path)]) == 1  # in this process, one after another
    err_seq = capsys.readouterr().out
    seq = tmp_path / "study"
    seq.rename(tmp_path / "sequential")

    monkeypatch.setenv("PYTHONPATH", installed_toy(tmp_path))
    assert main(["study", str(path), "--jobs", "2"]) == 1  # two `python -m qcsurrogate run` processes at a time
    out = capsys.readouterr().out
    par = tmp_path / "study"
    broken = Path("points") / "case=broken" / "seed=0" / "output.log"
    for text, where in ((err_seq, tmp_path / "sequential"), (out, par)):
        assert "FAILED case=broken/seed=0" in text and str(par / broken) in text  # (sequential: before the rename)
        assert "FileNotFoundError" in (where / broken).read_text() and "missing.h5" in (where / broken).read_text()
    status = manifest(par)
    assert [status[f"case={c}/seed=0"]["status"] for c in ("a", "b", "broken")] == ["run", "run", "failed"]

    def numbers(rows):
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]

    rows = read_csv(par / "results.csv")
    assert numbers(rows) == numbers(read_csv(tmp_path / "sequential" / "results.csv"))
    assert {r["point"] for r in rows} == {"case=a", "case=b"}
    assert json.loads((par / "results.json").read_text())["missing_points"] == ["case=broken/seed=0"]
    # the points' processes wrote their own logs, and their run directories are complete
    assert "training surrogate 'parc'" in (par / "points" / "case=a" / "seed=0" / "output.log").read_text()
    assert main(["study", str(path), "--jobs", "2", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("current (kept)") == 2


# -- the pieces -------------------------------------------------------------------------------------------
def test_point_names_are_short_readable_and_unique():
    assert short_labels(["model.width", "data.scenario.kwargs.seed", "training.seed", "data.simulation.model_step"]) == {
        "model.width": "width", "data.scenario.kwargs.seed": "kwargs.seed", "training.seed": "training.seed",
        "data.simulation.model_step": "model_step"}
    assert short_labels(["evaluation.case"]) == {"evaluation.case": "evaluation.case"}  # 'case' is taken
    assert [dir_value(v) for v in (0.64, 1e-5, 16, True, None, [0, 250], [], "deep quench")] == [
        "0.64", "1e-05", "16", "true", "null", "0+250", "none", "deep_quench"]
    assert dir_value({"name": "x"}).startswith("cfg-")


def test_rollout_columns_pick_the_step_or_the_time():
    entry = {"next_step": {"rmse_total": 1e-3, "rmse_X": 2e-4},
             "rollout": {"steps": [1, 2, 3, 4], "rmse_total": [1.0, 2.0, None, 4.0], "rmse_X": [0.1, 0.2, 0.3, 0.4],
                         "diverged_fraction": [0.0, 0.0, 0.5, 0.5]}}
    m = MetricsConfig(rollout_steps=[2, 3, 9], rollout_times=[0.16, 0.1], variables=["total", "X"])
    row = predictor_metrics(entry, 0.04, m)
    assert row["next_step_rmse_total"] == 1e-3 and row["next_step_rmse_X"] == 2e-4
    assert row["rmse_total@k=2"] == 2.0 and row["rmse_total@k=3"] is None and row["rmse_total@k=9"] is None
    assert row["rmse_X@t=0.16"] == 0.4 and row["rmse_total@t=0.1"] is None  # 0.1 / 0.04 is not whole
    assert row["rmse_X@end"] == 0.4 and row["diverged_fraction"] == 0.5


def test_study_command_is_listed():
    assert main(["study", "--help"]) == 0
    assert "study" in sys.modules["qcsurrogate.cli"].COMMANDS


def test_sweep_figure_ticks_the_swept_values_and_drops_panels_of_lone_points(tmp_path, monkeypatch):
    from qcsurrogate.study import figures as F

    rows = []
    for predictor, counts in (("model", (13010, 46874, 178346)), ("cnn", (13034, 49862, 179464))):
        for n, err in zip(counts, (5e-6, 4e-6, 3e-6)):
            rows.append({"predictor": predictor, "n_parameters": n, "seed": 0, "next": err * (20 if predictor == "cnn" else 1),
                         "late": 5.9e3 if (predictor, n) == ("model", 178346) else None})
    captured = {}
    monkeypatch.setattr(F, "_save", lambda fig, path: captured.setdefault("fig", fig) and path)
    F.sweep_figure(rows, "n_parameters", ["next", "late"], ["predictor"], tmp_path / "f.png", "t", x_log=True)
    (ax,) = captured["fig"].axes  # the 'late' panel has a single point and is left out
    assert [t.get_text() for t in ax.get_xticklabels()] == ["13k", "46.9k", "178k"]  # 49.9k is within 25% of 46.9k
    assert F._compact(696266) == "696k" and F._compact(2.5e6) == "2.5M" and F._compact(0.02) == "0.02"
