"""The climate and predictability sections through the pipeline: metrics.json keys, figures, and configs
without the blocks left as they were."""

from __future__ import annotations

import json

import pytest
from test_pipeline import write_config

from qcsurrogate.cli import main

pytestmark = pytest.mark.usefixtures("toy_registered")


def test_run_with_climate_and_predictability_writes_their_sections_and_figures(tmp_path):
    ev = {"horizon": 8, "starts": [0, 10], "baselines": ["persistence"], "figure_snapshots": 3,
          "climate": {"horizon": 25, "discard": 2, "max_lag": 5, "bins": 6, "starts": [0, 5]},
          "predictability": {"perturbation": 1e-6, "seed": 1}}
    cfg = write_config(tmp_path, evaluation=ev, baselines=[])
    assert main(["run", str(cfg)]) == 0
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    c = m["climate"]
    assert (c["horizon"], c["starts"], c["discard"], c["dt"]) == (25, [0, 5], 2, pytest.approx(0.05))
    assert c["n_rollouts"] == 1 * 2 and c["statistics_steps"] == 24  # one test trajectory x 2 starts
    assert set(c["summary"]) == {"diverged_fraction", "max_acf_abs_diff", "max_w1_over_std",
                                 "max_structure_factor_rel_l2", "n_rollouts_in_statistics",
                                 "truth_floor_max_acf_abs_diff", "truth_floor_max_w1_over_std"}
    assert set(c["orders"]) == {"S_X", "S_V"} and len(c["orders"]["S_X"]["acf"]["truth"]) == 6
    p = m["predictability"]
    assert (p["integration_dt"], p["save_every"], p["model_steps"]) == (0.05, 1, 8)
    assert len(p["truth_perturbed"]["rmse_total"]) == len(m["rollout"]["steps"]) == 8
    assert len(p["surrogate_error"]["horizon_steps"]) == 2  # per (trajectory, start)
    names = {f.name for f in (run / "figures").iterdir()}
    assert names == {"snapshots.png", "snapshots_late_start.png", "observables.png", "observables_late_start.png",
                     "rmse_vs_window.png", "climate_acf.png", "climate_distributions.png",
                     "climate_structure_factor.png"}
    # `plot` alone re-rolls the shown trajectory from both starts and redraws the same files
    for f in (run / "figures").iterdir():
        f.unlink()
    assert main(["plot", str(cfg), "--force"]) == 0
    assert {f.name for f in (run / "figures").iterdir()} == names


def test_without_the_blocks_there_is_no_climate_or_predictability(tmp_path):
    cfg = write_config(tmp_path, evaluation={"horizon": 5, "starts": [3], "baselines": []}, baselines=[])
    assert main(["run", str(cfg)]) == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "climate" not in m and "predictability" not in m
    assert {f.name for f in (tmp_path / "run" / "figures").iterdir()} == {
        "snapshots.png", "observables.png", "rmse_vs_window.png"}
