"""Training: the loss falls, resume equals an uninterrupted run, checkpoints round-trip, splits are by trajectory."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from qcsurrogate import simulate
from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.training import TrainConfig, Trainer, WindowSampler, load_model, save_model, split_trajectories
from qcsurrogate.training.checkpoint import latest_checkpoint, load_checkpoint
from qcsurrogate.training.data import fit_normalization
from qcsurrogate.training.trainer import learning_rate


@pytest.fixture(scope="module")
def tiny_data():
    from toy_system import ToySystem

    system = ToySystem(L=4)
    y0 = system.initial_state("random_start", seed=0, n_traj=3)
    traj = simulate(system, y0, 0.05, 40)  # (time, traj, ...)
    traj = traj.map(lambda x: x.transpose(0, 1).contiguous())  # -> (traj, time, ...)
    return system, traj


def make_trainer(tiny_data, tmp_path, model_cfg=None, **train):
    system, traj = tiny_data
    train.setdefault("steps", 12)
    train.setdefault("batch_size", 8)
    train.setdefault("warmup_steps", 2)
    train.setdefault("log_every", 2)
    train.setdefault("checkpoint_every", 3)
    train.setdefault("val_every", 6)
    train.setdefault("progress", False)
    cfg = TrainConfig(**train)
    sampler = WindowSampler(traj, [0, 1], cfg.objective.unroll.max_steps, cfg.seed)
    val = WindowSampler(traj, [2], 1, cfg.seed)
    norm = fit_normalization(system, sampler)
    torch.manual_seed(cfg.seed)
    model = build_surrogate("parc", system, model_cfg or PARCConfig(width=8, dropout=0.2), norm)
    return Trainer(model, system, sampler, val, cfg, tmp_path)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_tiny_model_overfits_a_tiny_trajectory(tiny_data, tmp_path):
    system, traj = tiny_data
    short = traj.index((slice(0, 1), slice(0, 6)))
    cfg = TrainConfig(steps=200, batch_size=5, lr=1e-2, warmup_steps=10, log_every=10, val_every=1000,
                      checkpoint_every=1000, progress=False, min_lr_ratio=0.1)
    sampler = WindowSampler(short, [0], 1, 0)
    norm = fit_normalization(system, sampler)
    torch.manual_seed(0)
    model = build_surrogate("parc", system, PARCConfig(width=8), norm)  # random init: gradient descent only
    trainer = Trainer(model, system, sampler, None, cfg, tmp_path)
    trainer.fit()
    losses = [r["loss"] for r in trainer.history]
    assert losses[-1] < losses[0] / 100, f"loss only fell from {losses[0]:.3e} to {losses[-1]:.3e}"


def add_legacy_rng_state(ckpt, seed=4242):
    """Make `ckpt` look like an earlier version's checkpoint: a torch RNG state in optimizer.safetensors."""
    f = ckpt / "optimizer.safetensors"
    tensors = load_file(str(f))
    tensors["rng.torch"] = torch.Generator().manual_seed(seed).get_state()
    save_file(tensors, str(f))


@pytest.mark.parametrize("legacy_rng", [False, True], ids=["current", "legacy-rng-checkpoint"])
def test_resume_equals_uninterrupted_training(tiny_data, tmp_path, legacy_rng):
    extras = {"objective": {"noise_std": 0.05}}
    full = make_trainer(tiny_data, tmp_path / "full", **extras)
    full.fit()
    part = make_trainer(tiny_data, tmp_path / "part", **extras)
    part.fit(stop_after=7)  # "killed" after step 7; the last checkpoint is at step 7 (end of the call)
    ck = latest_checkpoint(tmp_path / "part" / "checkpoints")
    assert ck is not None
    if legacy_rng:  # a stored RNG state (earlier versions) is accepted and cannot change the run
        add_legacy_rng_state(ck)
    resumed = make_trainer(tiny_data, tmp_path / "part", **extras)
    torch.manual_seed(999)  # whatever the process RNG is now, resume must not depend on it
    resumed.fit(resume=True)
    assert resumed.step == full.step == 12
    a, b = weights(full.model), weights(resumed.model)
    for k in a:
        assert torch.equal(a[k], b[k]), f"weights differ after resume: {k}"


def test_resume_refuses_a_different_training_config(tiny_data, tmp_path):
    make_trainer(tiny_data, tmp_path).fit(stop_after=3)
    other = make_trainer(tiny_data, tmp_path, lr=5e-4)
    with pytest.raises(ValueError, match="different training config"):  # a ConfigError, a clean CLI error
        other.fit(resume=True)


def test_resume_refuses_a_different_model(tiny_data, tmp_path):
    make_trainer(tiny_data, tmp_path).fit(stop_after=3)
    other = make_trainer(tiny_data, tmp_path, model_cfg=PARCConfig(width=12))
    with pytest.raises(ValueError, match="different model"):
        other.fit(resume=True)


def test_fresh_start_clears_stale_checkpoints_and_log(tiny_data, tmp_path):
    long = make_trainer(tiny_data, tmp_path, steps=12)
    long.fit()
    fresh = make_trainer(tiny_data, tmp_path, steps=6)
    fresh.fit(resume=False)
    steps = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert steps and all(int(n.split("-")[1]) <= 6 for n in steps)
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-00000006"
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in log) == 6


def test_checkpoint_files_are_safetensors_and_json(tiny_data, tmp_path):
    tr = make_trainer(tiny_data, tmp_path)
    tr.fit()
    ck = latest_checkpoint(tmp_path / "checkpoints")
    assert sorted(p.name for p in ck.iterdir()) == ["meta.json", "model.json", "model.safetensors", "optimizer.safetensors"]
    meta = json.loads((ck / "meta.json").read_text())
    assert meta["step"] == 12 and meta["train_config"]["steps"] == 12
    opt = load_file(str(ck / "optimizer.safetensors"))
    assert "rng.torch" not in opt and any(k.endswith("exp_avg") for k in opt)
    assert len(list((tmp_path / "checkpoints").glob("step-*"))) <= tr.cfg.keep_checkpoints
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert not p.read_bytes().startswith(b"\x80"), f"{p} looks like a pickle"


@pytest.mark.parametrize("legacy_rng", [False, True], ids=["current", "legacy-rng-checkpoint"])
def test_load_checkpoint_restores_training_state_and_leaves_the_process_rng_alone(tiny_data, tmp_path, legacy_rng):
    """Weights and Adam moments come back; torch's global RNG is the caller's before and after the load
    (train_step reseeds from (seed, step), so a stored RNG state could never matter)."""
    tr = make_trainer(tiny_data, tmp_path)
    tr.fit(stop_after=4)
    ck = latest_checkpoint(tmp_path / "checkpoints")
    if legacy_rng:
        add_legacy_rng_state(ck)
    fresh = make_trainer(tiny_data, tmp_path)
    assert any(not torch.equal(a, b) for a, b in zip(weights(tr.model).values(), weights(fresh.model).values()))
    torch.manual_seed(31337)
    before = torch.get_rng_state()
    meta = load_checkpoint(ck, fresh.model, fresh.opt)
    assert torch.equal(torch.get_rng_state(), before)
    assert meta["step"] == 4
    for k, v in weights(tr.model).items():
        assert torch.equal(v, fresh.model.state_dict()[k]), k
    saved, loaded = tr.opt.state_dict()["state"], fresh.opt.state_dict()["state"]
    assert saved and set(saved) == set(loaded)
    for pid, st_ in saved.items():
        assert set(st_) == set(loaded[pid])
        assert all(torch.equal(torch.as_tensor(st_[n]), torch.as_tensor(loaded[pid][n])) for n in st_), pid


def test_model_round_trip(tiny_data, tmp_path):
    system, traj = tiny_data
    tr = make_trainer(tiny_data, tmp_path)
    tr.fit()
    save_model(tr.model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    s = traj.index((slice(None), 5))
    tr.model.eval()
    assert tr.model(tr.model.prepare(s)).allclose(loaded(loaded.prepare(s)), rtol=0, atol=0)


def test_multistep_training_and_noise_run_and_log_unroll(tiny_data, tmp_path):
    tr = make_trainer(tiny_data, tmp_path, objective={"unroll": {"max_steps": 3, "start_fraction": 0.25}, "noise_std": 0.01})
    tr.fit()
    unrolls = [r["unroll"] for r in tr.history]
    assert unrolls[0] == 1 and max(unrolls) == 3


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(0, cfg) == pytest.approx(1e-3)
    assert learning_rate(9, cfg) == pytest.approx(1e-2)
    assert learning_rate(10, cfg) == pytest.approx(1e-2)
    assert learning_rate(55, cfg) == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert learning_rate(100, cfg) == pytest.approx(1e-3)
    lrs = [learning_rate(s, cfg) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


@settings(max_examples=300, deadline=None)
@given(steps=st.integers(1, 400), start=st.floats(0.0, 1.0), max_steps=st.integers(1, 12))
@example(steps=100, start=0.5, max_steps=4)  # the shipped holstein_deep curriculum's shape
@example(steps=5, start=0.5, max_steps=8)  # fewer ramp steps than unroll lengths
def test_unroll_curriculum(steps, start, max_steps):
    """k = 1 for the first `start_fraction` of the steps (to within one step), then k = 2..max_steps in
    consecutive shares equal to within one step, ending at max_steps; k never decreases."""
    cfg = TrainConfig(steps=steps, warmup_steps=0, objective={"unroll": {"max_steps": max_steps, "start_fraction": start}})
    ks = [cfg.objective.unroll.length(s, steps) for s in range(steps)]
    assert ks == sorted(ks) and 1 <= min(ks) and max(ks) <= max_steps
    n_one = ks.count(1)
    if max_steps == 1:
        assert n_one == steps
        return
    assert abs(n_one - start * steps) <= 1, f"k = 1 for {n_one} of {steps} steps, start_fraction {start}"
    ramp = ks[n_one:]
    if ramp:
        assert ramp[-1] == max_steps
        share = len(ramp) / (max_steps - 1)
        for k in range(2, max_steps + 1):
            assert abs(ramp.count(k) - share) < 1, f"k = {k}: {ramp.count(k)} steps, equal share {share:.2f}"


@pytest.mark.parametrize("steps, max_steps", [(1, 2), (7, 3), (100, 4), (333, 12)])
def test_unroll_curriculum_ends(steps, max_steps):
    def ks(start, m=max_steps):
        cfg = TrainConfig(steps=steps, warmup_steps=0, objective={"unroll": {"max_steps": m, "start_fraction": start}})
        return [cfg.objective.unroll.length(s, steps) for s in range(steps)]

    assert ks(1.0) == [1] * steps  # start_fraction 1: no unrolling
    assert ks(0.0)[0] == 2 and 1 not in ks(0.0)  # start_fraction 0: the ramp begins at once
    assert ks(0.0)[-1] == max_steps
    assert ks(0.5, m=1) == ks(0.0, m=1) == [1] * steps  # max_steps 1: one-step training


def test_split_is_by_trajectory():
    sp = split_trajectories(20, 0.1, 0.2, seed=3)
    sets = [set(sp.train), set(sp.val), set(sp.test)]
    assert sum(map(len, sets)) == 20 and set().union(*sets) == set(range(20))
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(sp.test) == 4 and len(sp.val) == 2
    assert split_trajectories(20, 0.1, 0.2, seed=3) == sp
    one = split_trajectories(1, 0.1, 0.2, seed=0)
    assert one.memorized and one.train == one.test == (0,)
    with pytest.raises(ValueError):
        split_trajectories(3, 0.5, 0.5, seed=0)


def test_window_sampler_is_deterministic_and_covers_windows(tiny_data):
    _, traj = tiny_data
    s = WindowSampler(traj, [0, 2], 2, seed=5)
    a = s.batch(3, 4, 2)
    b = s.batch(3, 4, 2)
    assert len(a) == 3 and all(x.allclose(y, rtol=0, atol=0) for x, y in zip(a, b))
    assert not s.batch(4, 4, 2)[0].allclose(a[0])
    with pytest.raises(ValueError):
        WindowSampler(traj, [0], traj.rho.shape[1], 0)


def test_train_config_rejects_typos_and_bad_values():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="lerning_rate"):
        TrainConfig(lerning_rate=1e-3)
    with pytest.raises(ValidationError, match="warmup_steps"):
        TrainConfig(steps=10, warmup_steps=10)
