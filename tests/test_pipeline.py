"""`qcsurrogate run` end to end on a tiny config, plus the stages on their own."""

from __future__ import annotations

import json

import pytest
import yaml

from qcsurrogate.cli import main

TINY = {
    "name": "tiny",
    "output_dir": "OUT",
    "device": "cpu",
    "data": {
        "system": {"name": "toy", "params": {"L": 4}},
        "scenario": {"name": "random_start", "kwargs": {"seed": 0, "n_traj": 4}},
        "simulation": {"dt": 0.05, "n_steps": 30},
    },
    "split": {"val_fraction": 0.25, "test_fraction": 0.25, "seed": 0},
    "model": {"width": 8, "bilinear_inputs": True, "linear_skip": True, "init": "lstsq", "integrator_inputs": "state"},
    "training": {"steps": 6, "batch_size": 8, "warmup_steps": 1, "log_every": 2, "val_every": 3, "checkpoint_every": 3},
    "baselines": ["cnn"],
    "evaluation": {"horizon": 8, "starts": [0, 10], "baselines": ["persistence"], "figure_snapshots": 3},
}


pytestmark = pytest.mark.usefixtures("toy_registered")  # the toy System (tests/toy_system.py) as "toy"


def write_config(tmp_path, **overrides):
    cfg = json.loads(json.dumps(TINY))
    cfg["output_dir"] = str(tmp_path / "run")
    for k, v in overrides.items():
        cfg[k] = v
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_end_to_end_writes_everything(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert main(["run", str(cfg)]) == 0
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("rmse_X", "rmse_V", "rmse_rho", "rmse_total"):
        assert key in metrics["next_step"]
        assert len(metrics["rollout"][key]) == len(metrics["rollout"]["steps"]) == 8
    assert set(metrics["baselines"]) == {"persistence", "cnn"}
    assert metrics["memorized"] is False
    split = json.loads((run / "split.json").read_text())
    assert not set(split["test"]) & set(split["train"])
    for f in ("snapshots.png", "rmse_vs_window.png", "observables.png"):
        assert (run / "figures" / f).stat().st_size > 1000
    assert (run / "model" / "model.safetensors").exists() and (run / "baseline_cnn" / "model" / "model.json").exists()
    assert yaml.safe_load((run / "config.yaml").read_text())["name"] == "tiny"
    assert "initialised from data, relative residuals: F:X" in (run / "log.txt").read_text()
    assert metrics["rollout_from_t0"]["steps"] == metrics["rollout"]["steps"]

    # a second run reuses the data and the trained model, and reproduces the metrics
    capsys.readouterr()
    assert main(["run", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "reusing ground truth" in out and "train:model is current" in out and "evaluation is current" in out
    assert json.loads((run / "metrics.json").read_text())["next_step"] == metrics["next_step"]


def test_stages_on_their_own_and_output_override(tmp_path):
    cfg = write_config(tmp_path, evaluation={"horizon": 5, "starts": [0], "baselines": ["persistence"]})
    out = tmp_path / "elsewhere"
    assert main(["evaluate", str(cfg), "--output", str(out)]) == 2  # nothing trained yet: clean error
    assert main(["plot", str(cfg), "--output", str(out)]) == 2
    assert not out.exists()  # and nothing written: no run directory, no config.yaml
    assert main(["train", str(cfg), "--output", str(out)]) == 0
    assert main(["evaluate", str(cfg), "--output", str(out)]) == 0
    (out / "figures" / "snapshots.png").unlink()
    assert main(["plot", str(cfg), "--output", str(out)]) == 0
    assert (out / "figures" / "snapshots.png").exists()
    assert not (tmp_path / "run").exists()


def test_config_typo_is_a_clear_error(tmp_path, capsys):
    cfg = write_config(tmp_path, training={"stepz": 3})
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "training.stepz" in err and "Traceback" not in err
