"""Interruptions: Ctrl-C and SIGTERM stop training after the step in flight and save a checkpoint there;
resuming gives the uninterrupted weights bit for bit; a run killed between checkpoints leaves no duplicate
steps in the training log once resumed."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from qcsurrogate import simulate
from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.surrogate.normalization import Normalization
from qcsurrogate.training import TrainConfig, Trainer, WindowSampler
from qcsurrogate.training.checkpoint import latest_checkpoint

STEPS = 12


@pytest.fixture(scope="module")
def data():
    from toy_system import ToySystem

    system = ToySystem(L=4)
    traj = simulate(system, system.initial_state("random_start", seed=0, n_traj=2), 0.05, 10)
    return system, traj.map(lambda x: x.transpose(0, 1).contiguous())


def trainer(data, run_dir):
    system, traj = data
    cfg = TrainConfig(steps=STEPS, batch_size=4, warmup_steps=1, log_every=2, val_every=100, checkpoint_every=5,
                      progress=False)
    torch.manual_seed(0)
    model = build_surrogate("parc", system, PARCConfig(width=4, dtype="float64"), Normalization.identity(system.graph))
    return Trainer(model, system, WindowSampler(traj, [0, 1], 1, cfg.seed), None, cfg, run_dir)


def _weights(tr):
    return {k: v.clone() for k, v in tr.model.state_dict().items()}


def _log_steps(run_dir):
    return [json.loads(x)["step"] for x in (run_dir / "train_log.jsonl").read_text().splitlines()]


def _fail_at(tr, step: int, action) -> None:
    """Run `action` inside the optimizer step that brings the trainer to `step` (as a signal arrives mid-step)."""
    real = tr.train_step

    def step_then_act():
        rec = real()
        if tr.step == step:
            action()
        return rec

    tr.train_step = step_then_act


@pytest.fixture(autouse=True)
def default_handlers():
    """As in an interactive shell: a background test run (nohup) starts with SIGINT ignored."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    tr = trainer(data, tmp_path_factory.mktemp("full"))
    tr.fit()
    return _weights(tr)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_after_the_step_in_flight_and_resume_is_exact(data, tmp_path, uninterrupted, signum):
    messages: list[str] = []
    tr = trainer(data, tmp_path)
    tr.log = messages.append
    _fail_at(tr, 7, lambda: os.kill(os.getpid(), signum))
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-00000007"  # between two regular ones (5, 10)
    assert messages[-1] == (f"{signal.Signals(signum).name} received: stopped after step 7 of {STEPS} and saved a "
                            "checkpoint there; run the same command again to resume")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are restored
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    resumed = trainer(data, tmp_path)
    assert resumed.fit(resume=True)["steps"] == STEPS
    assert all(torch.equal(uninterrupted[k], v) for k, v in resumed.model.state_dict().items())
    assert _log_steps(tmp_path) == [2, 4, 6, 8, 10, 12]


def test_an_ignored_signal_stays_ignored(data, tmp_path):
    """Under nohup SIGINT is ignored on purpose; training must not start catching it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tr = trainer(data, tmp_path)
    _fail_at(tr, 3, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert tr.fit()["steps"] == STEPS
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_second_ctrl_c_interrupts_at_once(data, tmp_path):
    tr = trainer(data, tmp_path)

    def twice():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    _fail_at(tr, 3, twice)
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    assert latest_checkpoint(tmp_path / "checkpoints") is None  # no step finished after the first Ctrl-C


def test_a_run_killed_between_checkpoints_logs_no_step_twice_after_resuming(data, tmp_path, uninterrupted):
    tr = trainer(data, tmp_path)

    def killed():
        raise SystemExit("killed")  # the process dies: no checkpoint beyond step 5

    _fail_at(tr, 9, killed)
    with pytest.raises(SystemExit):
        tr.fit()
    assert _log_steps(tmp_path) == [2, 4, 6, 8] and latest_checkpoint(tmp_path / "checkpoints").name == "step-00000005"
    resumed = trainer(data, tmp_path)
    resumed.fit(resume=True)
    assert _log_steps(tmp_path) == [2, 4, 6, 8, 10, 12]
    assert all(torch.equal(uninterrupted[k], v) for k, v in resumed.model.state_dict().items())


# -- non-finite numbers ---------------------------------------------------------------------------------
def test_non_finite_training_data_stops_at_once_naming_the_variable(data, tmp_path):
    from qcsurrogate.state import NonFiniteError

    system, traj = data
    bad = traj.map(lambda x: x.clone())
    bad["X"][:, 3:] = float("nan")
    tr = trainer((system, bad), tmp_path)
    before = _weights(tr)
    with pytest.raises(NonFiniteError, match=r"^training stopped at optimizer step 1: the loss is not finite \(.*nan.*\); "
                                             r"the training data holds non-finite values in X \(check the trajectory "
                                             r"file\); no checkpoint was written yet$"):
        tr.fit()
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())


def test_a_model_that_diverges_keeps_its_last_checkpoint_and_weights(data, tmp_path):
    from qcsurrogate.state import NonFiniteError

    tr = trainer(data, tmp_path)
    param = next(p for n, p in tr.model.named_parameters() if p.ndim > 1)
    _fail_at(tr, 6, lambda: param.register_hook(lambda g: g * float("inf")))
    with pytest.raises(NonFiniteError) as info:
        tr.fit()
    msg = str(info.value)
    assert msg.startswith("training stopped at optimizer step 7: the gradient of ")
    assert msg.endswith("the data of this batch is finite, so the model diverged (a lower learning rate, gradient "
                        "clipping or float64 may help); the last checkpoint, step-00000005, is kept")
    assert tr.step == 6 and all(torch.isfinite(p).all() for p in tr.model.parameters())
