"""Resuming: nothing to resume means a fresh start (stale logs cleared); a refusal names what the checkpoint holds."""

from __future__ import annotations

import json
import re

import pytest
import torch

from qcsurrogate import simulate
from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.surrogate.normalization import Normalization
from qcsurrogate.system import ConfigError
from qcsurrogate.training import TrainConfig, Trainer, WindowSampler


@pytest.fixture(scope="module")
def data():
    from toy_system import ToySystem

    system = ToySystem(L=4)
    traj = simulate(system, system.initial_state("random_start", seed=0, n_traj=1), 0.05, 8)
    return system, traj.map(lambda x: x.transpose(0, 1).contiguous())


def trainer(data, run_dir, name="parc", width=4, **train):
    system, traj = data
    cfg = TrainConfig(**{"steps": 4, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "val_every": 100,
                         "checkpoint_every": 2, "progress": False, **train})
    torch.manual_seed(0)
    model = build_surrogate(name, system, PARCConfig(width=width), Normalization.identity(system.graph))
    return Trainer(model, system, WindowSampler(traj, [0], 1, cfg.seed), None, cfg, run_dir)


def test_nothing_to_resume_is_a_fresh_start(data, tmp_path):
    tr = trainer(data, tmp_path)
    assert tr.resume() is False and tr.step == 0 and tr.history == []
    (tmp_path / "train_log.jsonl").write_text('{"step": 99, "loss": 1.0}\n')  # a stale log, no checkpoint
    summary = tr.fit(resume=True)
    assert summary["steps"] == 4
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]


def test_resume_continues_from_the_latest_checkpoint(data, tmp_path):
    trainer(data, tmp_path).fit(stop_after=2)
    tr = trainer(data, tmp_path)
    assert tr.resume() is True and tr.step == 2 and [r["step"] for r in tr.history] == [1, 2]


@pytest.mark.parametrize("name, width", [("cnn", 4), ("parc", 8)], ids=["other-surrogate", "other-config"])
def test_refusal_names_the_checkpoints_model(data, tmp_path, name, width):
    trainer(data, tmp_path).fit(stop_after=2)
    saved = json.loads((tmp_path / "checkpoints" / "step-00000002" / "model.json").read_text())
    assert saved["surrogate"] == "parc" and saved["config"]["width"] == 4
    other = trainer(data, tmp_path, name=name, width=width)
    with pytest.raises(ConfigError, match=re.escape(f"holds a different model (parc, {saved['config']})")):
        other.resume()
    assert other.step == 0


def test_resume_logs_where_it_resumed(data, tmp_path):
    trainer(data, tmp_path).fit(stop_after=2)
    tr = trainer(data, tmp_path)
    lines = []
    tr.log = lines.append
    tr.fit(resume=True)
    assert lines[0] == f"resumed from {tmp_path / 'checkpoints' / 'step-00000002'} at step 2"


def test_refusal_of_another_training_config_says_how_to_start_over(data, tmp_path):
    trainer(data, tmp_path).fit(stop_after=2)
    with pytest.raises(ConfigError, match=re.escape(
        "was written with a different training config; refusing to resume. Train from scratch with "
        "`--no-resume` (run) / without `--resume` (train), or use another --output"
    )):
        trainer(data, tmp_path, lr=5e-4).resume()


def test_a_checkpoint_without_history_resumes_with_an_empty_one(data, tmp_path):
    from qcsurrogate.training.checkpoint import save_checkpoint

    first = trainer(data, tmp_path)
    first.fit(stop_after=2)
    save_checkpoint(first.ckpt_dir, 2, first.model, first.opt, {"train_config": first.cfg.model_dump(mode="json")})
    tr = trainer(data, tmp_path)
    assert tr.resume() and tr.step == 2 and tr.history == []
    tr.fit(resume=True)
    assert [r["step"] for r in tr.history] == [3, 4]
