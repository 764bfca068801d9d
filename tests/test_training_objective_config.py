"""The `training.objective` block: the keys that moved there are a clear error at their old place, a
checkpoint recorded in the old layout still resumes (bit for bit), the trainer checks its sampler
against the objective; the console log shows validation loss; resuming a finished run reports that
nothing ran instead of a throughput."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from qcsurrogate import simulate
from qcsurrogate.config import ConfigError, parse_config
from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.surrogate.normalization import Normalization
from qcsurrogate.training import TrainConfig, Trainer, WindowSampler
from qcsurrogate.training.checkpoint import latest_checkpoint
from qcsurrogate.training.objective import ObjectiveConfig, UnrollCurriculum, upgrade_legacy_objective
from qcsurrogate.training.trainer import same_train_config


@pytest.fixture(scope="module")
def data():
    from toy_system import ToySystem

    system = ToySystem(L=4)
    traj = simulate(system, system.initial_state("random_start", seed=0, n_traj=2), 0.05, 12)
    return system, traj.map(lambda x: x.transpose(0, 1).contiguous())


def trainer(data, run_dir, log=None, **train):
    system, traj = data
    cfg = TrainConfig(**{"steps": 6, "batch_size": 4, "warmup_steps": 1, "log_every": 1, "val_every": 3,
                         "checkpoint_every": 2, "progress": False,
                         "objective": {"unroll": {"max_steps": 2, "start_fraction": 0.5, "step_weight": 0.5},
                                       "noise_std": 0.01, "derivative_weight": 0.7}, **train})
    torch.manual_seed(0)
    model = build_surrogate("parc", system, PARCConfig(width=4), Normalization.identity(system.graph))
    sampler = WindowSampler(traj, [0], cfg.objective.unroll.max_steps, cfg.seed)
    return Trainer(model, system, sampler, WindowSampler(traj, [1], 1, cfg.seed), cfg, run_dir,
                   log=log if log is not None else (lambda s: None))


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


LEGACY = {"steps": 10, "warmup_steps": 0, "derivative_weight": 0.5, "noise_std": 0.01,
          "rollout": {"max_steps": 3, "start_fraction": 0.25, "weight_decay_per_step": 0.9}}


def test_moved_keys_are_errors_naming_their_new_place():
    with pytest.raises(ConfigError) as info:
        parse_config(LEGACY, TrainConfig, source="run.yaml")
    msg = str(info.value)
    assert "derivative_weight: moved to training.objective.derivative_weight" in msg
    assert "noise_std: moved to training.objective.noise_std" in msg
    assert "rollout: moved to training.objective.unroll (its weight_decay_per_step is now step_weight)" in msg
    assert "objective.unrol: unknown key" in str(pytest.raises(ConfigError, parse_config,
                                                              {"objective": {"unrol": {}}}, TrainConfig).value)


def test_the_old_layout_is_read_in_the_new_one():
    new = upgrade_legacy_objective(dict(LEGACY))
    assert new == {"steps": 10, "warmup_steps": 0, "objective": {
        "derivative_weight": 0.5, "noise_std": 0.01, "unroll": {"max_steps": 3, "start_fraction": 0.25, "step_weight": 0.9}}}
    cfg = TrainConfig.model_validate(new)
    assert cfg.objective == ObjectiveConfig(derivative_weight=0.5, noise_std=0.01,
                                            unroll=UnrollCurriculum(max_steps=3, start_fraction=0.25, step_weight=0.9))
    today = cfg.model_dump(mode="json")
    assert upgrade_legacy_objective(today) == today  # the current layout is left alone
    assert same_train_config(today, cfg) and not same_train_config(None, cfg)


def test_a_checkpoint_recorded_before_the_objective_block_resumes_bit_for_bit(data, tmp_path):
    full = trainer(data, tmp_path / "full")
    full.fit()
    part = trainer(data, tmp_path / "part")
    part.fit(stop_after=4)
    meta_path = latest_checkpoint(tmp_path / "part" / "checkpoints") / "meta.json"
    meta = json.loads(meta_path.read_text())
    tc = meta["train_config"]
    obj = tc.pop("objective")  # rewrite as an earlier version recorded it
    tc.update(derivative_weight=obj["derivative_weight"], noise_std=obj["noise_std"],
              rollout={**{k: v for k, v in obj["unroll"].items() if k != "step_weight"},
                       "weight_decay_per_step": obj["unroll"]["step_weight"]})
    meta_path.write_text(json.dumps(meta))
    resumed = trainer(data, tmp_path / "part")
    resumed.fit(resume=True)
    assert resumed.step == full.step == 6
    a, b = weights(full.model), weights(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    changed = trainer(data, tmp_path / "part", objective={"noise_std": 0.02})
    shutil.rmtree(tmp_path / "part" / "model")
    with pytest.raises(ConfigError, match="different training config"):
        changed.resume()


def test_the_sampler_must_provide_the_objectives_longest_window(data, tmp_path):
    system, traj = data
    cfg = TrainConfig(steps=4, warmup_steps=0, objective={"unroll": {"max_steps": 3}})
    model = build_surrogate("parc", system, PARCConfig(width=4), Normalization.identity(system.graph))
    with pytest.raises(ValueError, match=r"windows \(1 steps\) are shorter than the objective's longest unroll \(3\)"):
        Trainer(model, system, WindowSampler(traj, [0], 1, 0), None, cfg, tmp_path)


def test_validation_loss_is_the_one_step_objective_with_its_derivative_weight(data, tmp_path):
    tr = trainer(data, tmp_path)
    got = tr.validate()
    cur, nxt = tr.val_data.all_pairs()
    m = tr.model
    with torch.no_grad():
        want, _ = m.loss(m.prepare(cur), m.prepare(tr.system.rhs(cur)), m.prepare(nxt), derivative_weight=0.7)
    assert got == float(want)


def test_console_log_shows_validation_loss(data, tmp_path):
    lines: list[str] = []
    tr = trainer(data, tmp_path, log=lines.append)
    tr.fit()
    with_val = [ln for ln in lines if "val_loss=" in ln]
    assert [ln.split()[1] for ln in with_val] == ["3/6", "6/6"]
    recs = {r["step"]: r for r in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines())}
    assert with_val[-1].endswith(f"val_loss={recs[6]['val_loss']:.3e}")


def test_resuming_a_finished_run_says_nothing_ran_and_keeps_its_outputs(data, tmp_path):
    first = trainer(data, tmp_path).fit()
    assert first["steps_run"] == 6 and first["already_complete"] is False and first["samples_per_s"] > 0
    summary_file = (tmp_path / "train_summary.json").read_text()
    model_json = (tmp_path / "model" / "model.json").read_text()
    again = trainer(data, tmp_path).fit(resume=True)
    assert again["already_complete"] is True and again["steps_run"] == 0 and again["steps"] == 6
    assert again["samples_per_s"] is None and again["outside_model_fraction"] is None
    assert again["final"]["step"] == 6 and again["final"]["loss"] == first["final"]["loss"]
    assert (tmp_path / "train_summary.json").read_text() == summary_file
    assert (tmp_path / "model" / "model.json").read_text() == model_json
    shutil.rmtree(tmp_path / "model")  # killed between the last checkpoint and writing the model
    trainer(data, tmp_path).fit(resume=True)
    assert (tmp_path / "model" / "model.safetensors").exists()
