"""`qcsurrogate evaluate CONFIG --data FILE.h5`: a run's models scored on another trajectory file (other L,
other seeds), and the translation equivariance that makes another L meaningful."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
import yaml
from test_pipeline import write_config
from toy_system import ToySystem, ToySystemReal

import qcsurrogate
from qcsurrogate.cli import main
from qcsurrogate.state import State
from qcsurrogate.surrogate.base import PARCConfig, build_surrogate
from qcsurrogate.surrogate.normalization import Normalization

pytestmark = pytest.mark.usefixtures("toy_registered")


def simulate_file(tmp_path, name, system="toy", L=6, dt=0.05, n_steps=30, seed=1, **params):
    cfg = {
        "system": {"name": system, "params": {"L": L, **params}},
        "scenario": {"name": "random_start", "kwargs": {"seed": seed, "n_traj": 2}},
        "simulation": {"dt": dt, "n_steps": n_steps},
        "output": str(tmp_path / f"{name}.h5"),
    }
    path = tmp_path / f"{name}.sim.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["simulate", str(path)]) == 0
    return tmp_path / f"{name}.h5"


@pytest.fixture
def trained(tmp_path):
    """A run trained and evaluated on the toy at L = 4 (the TINY config of test_pipeline)."""
    cfg = write_config(tmp_path, evaluation={"horizon": 5, "starts": [0, 10], "baselines": ["persistence"],
                                             "figure_snapshots": 3})
    assert main(["run", str(cfg)]) == 0
    return cfg, tmp_path / "run"


def _snapshot(run):
    return {p: (run / p).read_bytes() for p in ("metrics.json", "stages.json")}


def test_model_trained_at_L4_scores_an_L6_file(tmp_path, trained, capsys):
    cfg, run = trained
    before = _snapshot(run)
    data = simulate_file(tmp_path, "toy_L6", L=6)
    capsys.readouterr()
    assert main(["evaluate", str(cfg), "--data", str(data)]) == 0
    out = run / "evaluations" / "toy_L6"
    m = json.loads((out / "metrics.json").read_text())
    assert m["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert m["data"]["path"] == str(data.resolve())
    assert m["data"]["L"] == 6 and m["data"]["trained_on"]["L"] == 4
    assert m["split"]["test"] == [0, 1] and m["split"]["train"] == []
    assert set(m["baselines"]) == {"cnn", "persistence"}
    assert len(m["rollout"]["rmse_total"]) == 5 and all(math.isfinite(v) for v in m["rollout"]["rmse_total"])
    assert m["warnings"] == []
    for f in ("snapshots.png", "rmse_vs_window.png", "observables.png"):
        assert (out / "figures" / f).stat().st_size > 1000
    assert _snapshot(run) == before  # the run's own metrics and ledger are untouched
    assert main(["status", str(run)]) == 0 and "stale" not in capsys.readouterr().out

    # unchanged file, models and settings: kept; --force or other settings recompute
    assert main(["evaluate", str(cfg), "--data", str(data)]) == 0
    assert "is current" in capsys.readouterr().out
    assert main(["evaluate", str(cfg), "--data", str(data), "--horizon", "3", "--starts", "0"]) == 0
    m3 = json.loads((out / "metrics.json").read_text())
    assert m3["horizon"] == 3 and m3["starts"] == [0]
    assert _snapshot(run) == before


def test_other_parameters_warn_and_are_recorded(tmp_path, trained, capsys):
    cfg, run = trained
    data = simulate_file(tmp_path, "toy_c", L=4, c=0.5, seed=3)
    capsys.readouterr()
    assert main(["evaluate", str(cfg), "--data", str(data)]) == 0
    assert "warning (UserWarning): parameter c = 0.5 in toy_c.h5" in capsys.readouterr().err
    m = json.loads((run / "evaluations" / "toy_c" / "metrics.json").read_text())
    assert m["warnings"] == ["parameter c = 0.5 in toy_c.h5, but the models were trained at c = 0.7"]


@pytest.mark.parametrize("what", ["system", "dt", "boundary"])
def test_incompatible_file_is_a_clean_error(tmp_path, trained, capsys, what):
    cfg, run = trained
    before = _snapshot(run)
    if what == "system":
        class RealPlugin:
            @staticmethod
            @qcsurrogate.hookimpl
            def register_systems(register):
                register(ToySystemReal)

        qcsurrogate.register_plugin(RealPlugin, name="toy-real-plugin")
        data = simulate_file(tmp_path, "other", system="toy-real", L=4)
        expect = "holds system 'toy-real', the run was trained on 'toy'"
    elif what == "dt":
        data = simulate_file(tmp_path, "other", L=4, dt=0.1)
        expect = "snapshots are 0.1 apart"
    else:
        data = simulate_file(tmp_path, "other", L=4, boundary="open")
        expect = "boundary 'open'"
    capsys.readouterr()
    assert main(["evaluate", str(cfg), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qcsurrogate: error:") and expect in err and "Traceback" not in err
    assert not (run / "evaluations").exists()
    assert _snapshot(run) == before


def test_missing_file_and_misplaced_options_are_clean_errors(tmp_path, trained, capsys):
    cfg, _ = trained
    assert main(["evaluate", str(cfg), "--data", str(tmp_path / "nope.h5")]) == 2
    assert main(["evaluate", str(cfg), "--horizon", "3"]) == 2
    assert "--horizon and --starts go with --data" in capsys.readouterr().err


# -- the convolutions wrap at whatever L they see -------------------------------------------------------
def _tile(s: State, reps: int) -> State:
    return State._raw({k: v.repeat(1, reps) for k, v in s.fields.items()}, s.rho.repeat(1, reps, reps))


@pytest.mark.parametrize("integrator_inputs", ["derivative", "state"])
def test_periodic_padding_wraps_at_the_new_L(integrator_inputs):
    """A periodic model on an L = 8 state made of two copies of an L = 4 state gives two copies of its
    L = 4 prediction (the padding wraps at 8, not at the size it was trained at), and shifting the
    lattice shifts the prediction."""
    toy = ToySystem(L=4)
    torch.manual_seed(0)
    model = build_surrogate("parc", toy, PARCConfig(width=8, dtype="float64", integrator_inputs=integrator_inputs,
                                                   bilinear_inputs=True),
                            Normalization.identity(toy.graph)).eval()
    s4 = toy.initial_state("random_start", seed=0, n_traj=2)
    with torch.no_grad():
        p4 = model(model.prepare(s4))
        p8 = model(model.prepare(_tile(s4, 2)))
        expect = _tile(p4, 2)
        for k in s4.names:
            torch.testing.assert_close(p8[k], expect[k], rtol=1e-10, atol=1e-12)
        s6 = ToySystem(L=6).initial_state("random_start", seed=1, n_traj=2)
        shifted = State._raw({k: v.roll(2, -1) for k, v in s6.fields.items()}, s6.rho.roll((2, 2), (-2, -1)))
        p6, p6s = model(model.prepare(s6)), model(model.prepare(shifted))
        torch.testing.assert_close(p6s["X"], p6["X"].roll(2, -1), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(p6s.rho, p6.rho.roll((2, 2), (-2, -1)), rtol=1e-10, atol=1e-12)


def test_conserved_energy_is_that_of_the_files_system(tmp_path):
    """conserve_energy restores the energy of the System the file was made with (its L, its parameters)."""
    cfg = write_config(tmp_path, evaluation={"horizon": 5, "starts": [0], "figure_snapshots": 3}, baselines=[])
    config = yaml.safe_load(cfg.read_text())
    config["model"]["conserve_energy"] = True
    cfg.write_text(yaml.safe_dump(config))
    assert main(["run", str(cfg)]) == 0
    data = simulate_file(tmp_path, "toy_L6_c03", L=6, c=0.3)
    assert main(["evaluate", str(cfg), "--data", str(data)]) == 0  # warns: trained at c = 0.7
    m = json.loads((tmp_path / "run" / "evaluations" / "toy_L6_c03" / "metrics.json").read_text())
    assert m["physics"]["energy_drift_max_rel"] < 1e-5
