"""Model steps in time units, discarded transients, and initial states read from trajectory files."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import qcsurrogate as qcs
from qcsurrogate.cli import main
from qcsurrogate.config import SimulationConfig
from qcsurrogate.system import ConfigError

from toy_system import ToySystem

pytestmark = pytest.mark.usefixtures("toy_registered")


def test_model_step_and_length_in_model_steps_resolve_to_integration_steps():
    s = SimulationConfig(dt=0.01, model_step=0.64, n_model_steps=1200, discard=64)
    assert (s.save_every, s.n_steps, s.discard_steps, s.n_snapshots) == (64, 76800, 6400, 1201)
    assert s.step == pytest.approx(0.64) and s.duration == pytest.approx(768.0)
    again = SimulationConfig.model_validate(s.model_dump())  # a resolved config reloads unchanged
    assert again == s


@pytest.mark.parametrize(
    ("kwargs", "where", "message"),
    [
        ({"dt": 0.01, "model_step": 0.645, "n_steps": 10}, "model_step", "integer multiple of dt"),
        ({"dt": 0.01, "model_step": 0.64, "save_every": 3, "n_steps": 640}, "save_every", "contradicts model_step"),
        ({"dt": 0.01, "save_every": 2, "n_model_steps": 5, "n_steps": 11}, "n_steps", "contradicts n_model_steps"),
        ({"dt": 0.03, "n_steps": 3, "discard": 0.1}, "discard", "integer multiple of dt"),
    ],
)
def test_inconsistent_steps_are_errors_naming_the_key(kwargs, where, message):
    with pytest.raises(Exception, match=message) as err:
        SimulationConfig(**kwargs)
    assert err.value.errors()[0]["loc"] == (where,)


def test_discarded_transient_starts_the_file_later_with_the_same_states(tmp_path):
    toy = ToySystem(L=4)
    y0 = toy.initial_state("random_start", seed=2, n_traj=3)
    path = qcs.simulate_to_file(toy, y0, tmp_path / "a.h5", 0.05, 20, 4, discard_steps=8)
    full = qcs.simulate(toy, y0, 0.05, 28)
    with qcs.open_trajectory(path) as tr:
        assert tr.times[0] == pytest.approx(0.4) and tr.n_time == 6
        stored = tr.state(slice(None), slice(None))
    for k in range(6):  # bit for bit: the same RK4 steps, only not stored during the transient
        want = full.index(8 + 4 * k)
        assert torch.equal(stored.rho[:, k], want.rho) and torch.equal(stored["X"][:, k], want["X"])


def test_from_file_takes_any_snapshot_of_any_trajectory(tmp_path):
    toy = ToySystem(L=4)
    y0 = toy.initial_state("random_start", seed=2, n_traj=3)
    path = qcs.simulate_to_file(toy, y0, tmp_path / "a.h5", 0.05, 20, 5)
    full = qcs.simulate(toy, y0, 0.05, 20)
    s = toy.initial_state("from_file", path=str(path), time=0.5, trajectories=[2, 0])
    assert s.batch_shape == (2,)
    assert torch.equal(s.rho[0], full.index(10).rho[2]) and torch.equal(s["V"][1], full.index(10)["V"][0])
    last = toy.initial_state("from_file", path=str(path))
    assert torch.equal(last.rho, full.index(20).rho)
    with pytest.raises(ConfigError, match="no snapshot at t=0.52"):
        toy.initial_state("from_file", path=str(path), time=0.52)
    with pytest.raises(ConfigError, match="index 9 is out of range"):
        toy.initial_state("from_file", path=str(path), index=9)
    with pytest.raises(ConfigError, match=r"cannot take \[3\]"):
        toy.initial_state("from_file", path=str(path), trajectories=[3])
    with pytest.raises(ConfigError, match="L=4"):
        ToySystem(L=6).initial_state("from_file", path=str(path))

    class SpinfulNamesake(ToySystem):  # same name, L and fields: only the orbitals differ
        orbitals = 2

    with pytest.raises(ConfigError, match=r"holds system 'toy' with L=4, 1 orbital\(s\) per site.*2 orbital\(s\) per site"):
        SpinfulNamesake(L=4).initial_state("from_file", path=str(path))


def test_a_run_from_file_states_is_stale_when_the_file_changes(tmp_path, capsys):
    from test_pipeline_identity import _cfg

    toy = ToySystem(L=4)
    src = tmp_path / "source.h5"
    qcs.simulate_to_file(toy, toy.initial_state("random_start", seed=2, n_traj=4), src, 0.05, 10, 10)

    def from_file(cfg):
        cfg["data"]["scenario"] = {"name": "from_file", "kwargs": {"path": str(src)}}
        cfg["data"]["simulation"] = {"dt": 0.05, "model_step": 0.1, "n_model_steps": 15}

    cfg = _cfg(tmp_path, from_file)
    assert main(["run", str(cfg)]) == 0
    capsys.readouterr()
    qcs.simulate_to_file(toy, toy.initial_state("random_start", seed=3, n_traj=4), src, 0.05, 10, 10)
    assert main(["status", str(cfg)]) == 0
    assert "data             stale    changed: initial_states_file" in capsys.readouterr().out
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["data"]["simulation"]["save_every"] == 2  # the config records the resolved steps
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["dt"] == pytest.approx(0.1)
