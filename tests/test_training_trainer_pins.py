"""Trainer details users rely on: biases are not weight-decayed, every step sets the scheduled lr, the
logged grad_norm is the pre-clip global norm, data time accumulates, validation runs every `val_every`
logged step, an interrupted run writes no final model, `threads` is applied, the bar counts steps."""

from __future__ import annotations

import json

import pytest
import torch

from qcsurrogate import simulate
from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.training import TrainConfig, Trainer, WindowSampler
from qcsurrogate.training.data import fit_normalization
from qcsurrogate.training.trainer import learning_rate


@pytest.fixture(scope="module")
def data():
    from toy_system import ToySystem

    system = ToySystem(L=4)
    y0 = system.initial_state("random_start", seed=0, n_traj=3)
    traj = simulate(system, y0, 0.05, 30).map(lambda x: x.transpose(0, 1).contiguous())
    return system, traj


def make(data, tmp_path, **train):
    system, traj = data
    for k, v in dict(steps=12, batch_size=8, warmup_steps=2, log_every=2, checkpoint_every=100,
                     val_every=6, progress=False).items():
        train.setdefault(k, v)
    cfg = TrainConfig(**train)
    sampler = WindowSampler(traj, [0, 1], cfg.objective.unroll.max_steps, cfg.seed)
    val = WindowSampler(traj, [2], 1, cfg.seed)
    norm = fit_normalization(system, sampler)
    torch.manual_seed(0)
    model = build_surrogate("parc", system, PARCConfig(width=4), norm)
    return Trainer(model, system, sampler, val, cfg, tmp_path)


def test_weights_decay_and_biases_including_imaginary_ones_do_not(data, tmp_path):
    tr = make(data, tmp_path, weight_decay=0.05)
    names = {id(p): n for n, p in tr.model.named_parameters()}
    groups = tr.opt.param_groups
    assert len(groups) == 2
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    decayed = {names[id(p)] for p in groups[0]["params"]}
    plain = {names[id(p)] for p in groups[1]["params"]}
    assert decayed | plain == set(names.values()) and not decayed & plain
    assert any(n.endswith(".bias_im") for n in plain)  # the model has complex layers
    assert plain == {n for n in names.values() if n.endswith((".bias", ".bias_im"))}
    assert all(n.endswith((".weight", ".weight_im")) for n in decayed)


def test_each_step_sets_the_scheduled_learning_rate_on_every_group(data, tmp_path):
    tr = make(data, tmp_path, lr=1e-2, warmup_steps=4)
    for s in range(3):
        rec = tr.train_step()
        expected = learning_rate(s, tr.cfg)
        assert expected != tr.cfg.lr  # still warming up: differs from the optimizer's constructor lr
        assert rec["lr"] == expected
        assert [g["lr"] for g in tr.opt.param_groups] == [expected, expected]


def test_grad_norm_is_the_global_norm_of_the_unclipped_gradients(data, tmp_path):
    tr = make(data, tmp_path, grad_clip=1e9)  # no clipping: the gradients left behind are the raw ones
    rec = tr.train_step()
    norm = torch.sqrt(sum(p.grad.double().pow(2).sum() for p in tr.model.parameters() if p.grad is not None))
    assert rec["grad_norm"] == pytest.approx(float(norm), rel=1e-5)
    assert rec["grad_norm"] > 0
    assert set(rec) >= {"step", "loss", "lr", "grad_norm", "unroll"}


def test_data_time_accumulates_over_the_unrolled_steps(data, tmp_path):
    tr = make(data, tmp_path)
    window = tr.train_data.batch(0, 8, 1)
    assert tr.objective.window_loss(tr.model, window).target_seconds > 0
    tr.time_data = 1000.0
    tr.train_step()
    assert tr.time_data > 1000.0  # added to, never overwritten


def test_validation_runs_every_val_every_steps_and_at_the_end(data, tmp_path):
    tr = make(data, tmp_path, steps=12, log_every=2, val_every=4)
    tr.fit()
    recs = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2, 4, 6, 8, 10, 12]
    with_val = [r["step"] for r in recs if "val_loss" in r]
    assert with_val == [4, 8, 12]


def test_an_interrupted_run_writes_no_final_model_or_summary(data, tmp_path):
    tr = make(data, tmp_path, steps=12, checkpoint_every=3)
    summary = tr.fit(stop_after=5)
    assert summary["steps"] == 5
    assert not (tmp_path / "model").exists() and not (tmp_path / "train_summary.json").exists()
    assert (tmp_path / "checkpoints" / "latest.json").exists()
    tr2 = make(data, tmp_path, steps=12, checkpoint_every=3)
    tr2.fit(resume=True)
    assert (tmp_path / "model" / "model.json").exists() and (tmp_path / "train_summary.json").exists()


@pytest.mark.parametrize("threads", [None, 3])
def test_threads_setting_is_applied(data, tmp_path, monkeypatch, threads):
    """`training.threads` reaches torch.set_num_threads (recorded, not applied: a real multi-threaded
    region in a forked process, as in the mutation run, deadlocks in OpenMP)."""
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    make(data, tmp_path, steps=3, warmup_steps=1, threads=threads).fit()
    assert calls == ([] if threads is None else [threads])


def test_progress_bar_counts_steps(data, tmp_path, capsys):
    make(data, tmp_path, steps=3, warmup_steps=1, progress=True).fit()
    err = capsys.readouterr().err
    assert "train" in err and "3/3" in err
    assert "step/s" in err or "s/step" in err


def test_fit_does_not_resume_unless_asked(data, tmp_path):
    """`fit()` starts from step 0 even when an earlier run left a checkpoint; `fit(resume=True)` continues."""
    make(data, tmp_path, checkpoint_every=2).fit(stop_after=6)
    fresh = make(data, tmp_path, checkpoint_every=2)
    fresh.fit(stop_after=2)
    first = json.loads((tmp_path / "train_log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 2 and fresh.step == 2
    resumed = make(data, tmp_path, checkpoint_every=2)
    resumed.fit(resume=True, stop_after=4)
    assert resumed.step == 4 and [r["step"] for r in resumed.history][:2] == [2, 4]


def test_summary_reports_the_last_logged_record_and_positive_rates(data, tmp_path):
    tr = make(data, tmp_path)
    summary = tr.fit()
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert summary["final"] == lines[-1] and summary["final"]["step"] == tr.cfg.steps
    assert summary["steps"] == tr.cfg.steps
    assert all(r["samples_per_s"] > 0 for r in lines) and summary["samples_per_s"] > 0
    # samples are batch_size per step (k = 1 throughout), so the rate is steps * batch / wall
    assert summary["samples_per_s"] == pytest.approx(tr.cfg.steps * tr.cfg.batch_size / summary["wall_s"], rel=1e-6)
    assert 0 <= tr.time_data <= summary["wall_s"]


def test_each_step_reseeds_from_the_seed_and_the_step(data, tmp_path, monkeypatch):
    """Step s draws dropout and noise from `manual_seed(seed * 7919 + s)`: distinct per seed and step,
    and independent of what ran before (which is what makes resume exact)."""
    seeds = []
    real = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda s: (seeds.append(s), real(s))[1])
    tr = make(data, tmp_path, seed=3)
    seeds.clear()
    for _ in range(3):
        tr.train_step()
    assert seeds == [3 * 7919 + s for s in range(3)]
