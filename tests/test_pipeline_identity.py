"""Run identity: every change to a config redoes exactly the stages downstream of it, and nothing else.

Which stages a run redid is read from the ledger (`stages.json`): a redone stage rewrites its files,
so their recorded mtimes change; a kept stage's record is untouched.
"""

from __future__ import annotations

import json

import pytest
import yaml

from qcsurrogate.cli import main

from test_pipeline import TINY

pytestmark = pytest.mark.usefixtures("toy_registered")

ALL = {"data", "split", "normalization", "train:model", "train:cnn", "evaluate", "plot"}
TRAINED = {"train:model", "train:cnn", "evaluate", "plot"}


def _cfg(tmp_path, change=None):
    cfg = json.loads(json.dumps(TINY))
    cfg["output_dir"] = str(tmp_path / "run")
    cfg["training"]["steps"] = 3
    cfg["training"]["checkpoint_every"] = 2
    if change:
        change(cfg)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _ledger(tmp_path):
    return json.loads((tmp_path / "run" / "stages.json").read_text())["stages"]


def _redone(before, after):
    def stamp(rec):
        return {rel: fp["mtime_ns"] for rel, fp in rec["outputs"].items()}, rec["inputs"]

    return {s for s in after if s not in before or stamp(before[s]) != stamp(after[s])}


def _setitem(path, value):
    def change(cfg):
        node = cfg
        *head, last = path.split(".")
        for k in head:
            node = node[k]
        node[last] = value

    return change


CHANGES = [
    # the bug that started it: only a System parameter changes (the toy's c here; Holstein's g in the plugin's tests)
    ("data.system.params", {"L": 4, "c": 0.3}, ALL),
    ("data.scenario.kwargs", {"seed": 1, "n_traj": 4}, ALL),
    ("split.seed", 1, ALL - {"data"}),
    ("model.width", 12, TRAINED),
    # inference-only settings redo the evaluation of the same trained weights
    ("model.conserve_energy", True, {"evaluate", "plot"}),
    ("model.project_rho", "spectrum", TRAINED),
    ("training.lr", 5e-4, TRAINED),
    ("training.objective", {"unroll": {"max_steps": 2, "start_fraction": 0.5}}, ALL - {"data", "split"}),
    ("training.checkpoint_every", 1, set()),
    ("evaluation.horizon", 6, {"evaluate", "plot"}),
    ("evaluation.figure_snapshots", 4, {"plot"}),
    ("name", "renamed", {"plot"}),
    ("training.log_every", 1, set()),  # how a run is watched never invalidates what it made
    ("training.threads", 1, set()),
    # how the data are computed is not what they are (issue 10): processes, shards, threads, compile auto/false
    ("data.simulation.processes", 2, set()),
    ("data.simulation.compile", False, set()),
    ("description", "same run, new words", set()),
    ("loading", "lazy", set()),  # how the data is read never changes what is made from it
]


@pytest.mark.parametrize(("key", "value", "expected"), CHANGES, ids=[c[0] for c in CHANGES])
def test_each_change_redoes_exactly_its_downstream_stages(tmp_path, key, value, expected, capsys):
    assert main(["run", str(_cfg(tmp_path))]) == 0
    first = _ledger(tmp_path)
    assert set(first) == ALL and all(r["finished"] for r in first.values())
    metrics_before = json.loads((tmp_path / "run" / "metrics.json").read_text())

    capsys.readouterr()
    assert main(["run", str(_cfg(tmp_path, _setitem(key, value)))]) == 0
    log = capsys.readouterr().out
    assert _redone(first, _ledger(tmp_path)) == expected
    for stage in expected - {"data", "split", "normalization"}:
        assert f"{stage} is stale" in log or (stage == "plot" and "evaluate is stale" in log) or \
               (stage.startswith("train:") and "training from scratch" in log)
    if "evaluate" not in expected:
        assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics_before


def test_unchanged_rerun_redoes_nothing_and_status_says_current(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    assert main(["status", str(cfg)]) == 0
    assert [ln.split()[1] for ln in capsys.readouterr().out.splitlines()[1:]] == ["missing"] * len(ALL)
    assert not (tmp_path / "run").exists()  # asking never writes
    assert main(["run", str(cfg)]) == 0
    first = _ledger(tmp_path)
    assert main(["run", str(cfg)]) == 0
    assert _redone(first, _ledger(tmp_path)) == set()
    capsys.readouterr()
    assert main(["status", str(tmp_path / "run")]) == 0
    assert [ln.split()[1] for ln in capsys.readouterr().out.splitlines()[1:]] == ["current"] * len(ALL)


def test_status_names_the_changed_input(tmp_path, capsys):
    assert main(["run", str(_cfg(tmp_path))]) == 0
    capsys.readouterr()
    assert main(["status", str(_cfg(tmp_path, _setitem("training.lr", 5e-4)))]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:]}
    assert "current" in lines["data"] and "current" in lines["normalization"]
    assert "stale" in lines["train:model"] and "changed: training" in lines["train:model"]
    assert "stale" in lines["evaluate"] and "upstream train:model is stale" in lines["evaluate"]


def test_a_modified_artifact_is_stale(tmp_path, capsys):
    assert main(["run", str(_cfg(tmp_path))]) == 0
    metrics = tmp_path / "run" / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"horizon": 8', '"horizon": 7'))
    capsys.readouterr()
    assert main(["status", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "metrics.json was modified after it was written" in out
    # a touched but unchanged file stays current (the content hash decides)
    split = tmp_path / "run" / "split.json"
    split.write_text(split.read_text())
    assert main(["status", str(tmp_path / "run")]) == 0
    assert [ln for ln in capsys.readouterr().out.splitlines() if ln.split()[0] == "split"][0].split()[1] == "current"


def _interrupted_training(tmp_path, steps=6, stop_after=2):
    """Train 'model' for `stop_after` of `steps` steps, as a killed run leaves it."""
    from qcsurrogate.pipeline import Run, load_run_config

    run = Run(load_run_config(_cfg(tmp_path, _setitem("training.steps", steps))), echo=False)
    run.ensure_data()
    run.ensure_split()
    run.ensure_trained("model", stop_after=stop_after)
    return tmp_path / "run"


def test_interrupted_training_resumes_when_inputs_match(tmp_path, capsys):
    run = _interrupted_training(tmp_path)
    assert not (run / "model").exists() and (run / "checkpoints" / "latest.json").exists()
    assert main(["train", str(_cfg(tmp_path, _setitem("training.steps", 6))), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "step-00000002" in out
    assert (run / "model" / "model.safetensors").exists()


def test_resume_across_a_changed_input_is_an_error_naming_it(tmp_path, capsys):
    run = _interrupted_training(tmp_path)
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    changed = _cfg(tmp_path, lambda c: (_setitem("training.steps", 6)(c), _setitem("model.width", 12)(c)))
    capsys.readouterr()
    assert main(["train", str(changed), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume train:model" in err and "changed: model_config" in err and "Traceback" not in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ckpts  # the refusal deleted nothing
    # without --resume the same change is redone from scratch, with the reason in the log
    assert main(["train", str(changed)]) == 0
    assert "made from other inputs (changed: model_config); training from scratch" in capsys.readouterr().out


def test_train_on_a_finished_run_keeps_it_and_restart_retrains(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    assert main(["train", str(cfg)]) == 0
    before = _ledger(tmp_path)
    capsys.readouterr()
    assert main(["train", str(cfg), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "train:model is current" in out and "samples/s" not in out
    assert _redone(before, _ledger(tmp_path)) == set()
    assert main(["train", str(cfg), "--restart"]) == 0
    assert _redone(before, _ledger(tmp_path)) == {"train:model", "train:cnn"}


def test_resume_with_nothing_to_resume_is_an_error(tmp_path, capsys):
    assert main(["train", str(_cfg(tmp_path)), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_train_then_evaluate_refuses_a_stale_model(tmp_path, capsys):
    assert main(["train", str(_cfg(tmp_path))]) == 0
    assert main(["evaluate", str(_cfg(tmp_path, _setitem("model.width", 12)))]) == 2
    err = capsys.readouterr().err
    assert "train:model" not in err or "stale" in err
    assert "is stale" in err and "changed: model_config" in err


def test_holstein_coupling_change_is_not_answered_by_the_old_model(tmp_path, capsys):
    """The reported bug: only data.system.params.g changes (2.0 -> 0.3), same output directory."""
    pytest.importorskip("qcsurrogate_holstein")

    def holstein(g):
        def change(cfg):
            cfg["data"] = {"system": {"name": "holstein", "params": {"L": 4, "g": g}},
                           "scenario": {"name": "deep_quench", "kwargs": {"n_traj": 4, "seed": 0, "sigma": 0.1}},
                           "simulation": {"dt": 0.1, "n_steps": 30}}
            cfg["model"] = {"width": 8}
            cfg["baselines"] = []

        return change

    assert main(["run", str(_cfg(tmp_path, holstein(2.0)))]) == 0
    first = _ledger(tmp_path)
    metrics_g2 = json.loads((tmp_path / "run" / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["run", str(_cfg(tmp_path, holstein(0.3)))]) == 0
    out = capsys.readouterr().out
    assert "changed: data" in out and "skipping training" not in out
    assert _redone(first, _ledger(tmp_path)) == {"data", "split", "normalization", "train:model", "evaluate", "plot"}
    metrics_g03 = json.loads((tmp_path / "run" / "metrics.json").read_text())
    model_json = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert model_json["inputs"] == _ledger(tmp_path)["train:model"]["inputs"]  # the model says what made it
    assert metrics_g03["next_step"] != metrics_g2["next_step"]
    assert metrics_g03["inputs"]["data"] != metrics_g2["inputs"]["data"]


def test_every_stage_uses_the_configured_threads_and_records_them(tmp_path, monkeypatch):
    import qcsurrogate.device as device

    calls = []
    monkeypatch.setattr(device.torch, "set_num_threads", lambda n: calls.append(n))
    cfg = _cfg(tmp_path, _setitem("training.threads", 1))
    assert main(["train", str(cfg)]) == 0
    n_train = len(calls)
    assert main(["evaluate", str(cfg)]) == 0
    assert main(["plot", str(cfg), "--force"]) == 0
    assert n_train >= 1 and calls[n_train:] and set(calls) == {1}  # evaluate and plot set them too
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["computed_with"]["threads"] == device.torch.get_num_threads()
    assert metrics["computed_with"]["device"] == "cpu"


def test_interrupted_training_resumes_across_an_operational_change(tmp_path, capsys):
    """Logging and checkpoint cadence are not inputs: changing them must not block a resume."""
    run = _interrupted_training(tmp_path)
    changed = _cfg(tmp_path, lambda c: (_setitem("training.steps", 6)(c), _setitem("training.log_every", 1)(c)))
    assert main(["train", str(changed), "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert (run / "model" / "model.safetensors").exists()


def test_conserve_energy_keeps_the_trained_weights_and_redoes_the_evaluation(tmp_path):
    assert main(["run", str(_cfg(tmp_path))]) == 0
    first = _ledger(tmp_path)
    weights = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    before = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert main(["run", str(_cfg(tmp_path, _setitem("model.conserve_energy", True)))]) == 0
    assert _redone(first, _ledger(tmp_path)) == {"evaluate", "plot"}
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == weights
    after = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert after["inputs"] != before["inputs"]
    assert after["rollout"]["rmse_total"] != before["rollout"]["rmse_total"]  # the loaded model conserved energy
    assert after["physics"]["energy_drift_max_rel"] < 1e-5 < before["physics"]["energy_drift_max_rel"]
