"""The shipped example loads, passes preflight and generates the data it describes; a tiny `qcsurrogate run`
of it (needs surrogates that handle d = 2 orbitals per site)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import qcsurrogate
from qcsurrogate.cli import main
from qcsurrogate.testing import smoke_run_config
from qcsurrogate.observables import dominant_index
from qcsurrogate.pipeline import load_run_config
from qcsurrogate.pipeline.preflight import preflight

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sd_spiral.yaml"
NAMES = {"magnetization", "total_spin_z", "spiral_pitch", "vector_chirality", "exchange_alignment", "S_spin",
         "S_electron_spin"}


def test_example_loads_passes_preflight_and_makes_its_data():
    cfg = load_run_config(EXAMPLE)
    preflight(cfg)
    system = cfg.data.build_system()
    assert system.name == "sd_chain" and system.L == 16 and system.orbitals == 2
    assert {o.name for o in system.observables()} == NAMES
    kwargs = {**cfg.data.scenario.kwargs, "n_traj": 2}
    state = system.initial_state(cfg.data.scenario.name, **kwargs)
    traj = qcsurrogate.simulate(system, state, 0.05, 200, save_every=4, progress=False)  # t = 0 .. 10
    obs = {o.name: o(traj) for o in system.observables()}
    assert dominant_index(obs["S_spin"]) == 4  # q = pi/2
    E = system.energy(traj)
    assert float((E - E[0]).abs().max()) < 1e-5


def test_tiny_run_reports_the_sd_observables(tmp_path):
    cfg = smoke_run_config(yaml.safe_load(EXAMPLE.read_text()), tmp_path / "run", L=8)
    path = tmp_path / "sd_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path)]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for where in (metrics["physics"], metrics["baselines"]["cnn"]["physics"]):
        assert set(where["observables"]) == NAMES
