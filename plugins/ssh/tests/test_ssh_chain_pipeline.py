"""The shipped example loads and passes preflight, and `qcsurrogate run` works end to end on a tiny
version of it: metrics, figures and climate statistics report the SSH observables unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from qcsurrogate.cli import main
from qcsurrogate.testing import smoke_run_config
from qcsurrogate.pipeline import load_run_config
from qcsurrogate.pipeline.preflight import preflight

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ssh_soliton.yaml"


def test_example_loads_and_passes_preflight():
    cfg = load_run_config(EXAMPLE)
    preflight(cfg)
    system = cfg.data.build_system()
    assert system.name == "ssh_chain" and system.L % 2 == 1  # one soliton
    assert "soliton_position" in {o.name for o in system.observables()}


def test_tiny_run_reports_the_ssh_observables(tmp_path):
    cfg = smoke_run_config(yaml.safe_load(EXAMPLE.read_text()), tmp_path / "run", L=9, scenario_kwargs={"xi": 1.0})
    path = tmp_path / "ssh_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path)]) == 0
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    names = {"dimerization", "dimerization_amplitude", "bond_order", "staggered_bond_order", "soliton_position",
             "S_u", "S_p"}
    for where in (metrics["physics"], metrics["baselines"]["cnn"]["physics"]):
        assert set(where["observables"]) == names
    soliton = metrics["physics"]["observables"]["soliton_position"]
    assert soliton["kind"] == "scalar" and 3 < soliton["truth_rms"] < 6  # the wall sits near bond 4.5 of 9
    assert set(metrics["climate"]["orders"]) == names
    assert set(metrics["baselines"]) == {"persistence", "cnn"}
    assert (run / "figures" / "observables.png").stat().st_size > 1000
