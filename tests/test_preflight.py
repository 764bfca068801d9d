"""What a run config cannot know alone is checked against its data and the machine before anything is
written: `run` and `train` stop with exit code 2, one line per problem, and no run directory."""

from __future__ import annotations

import pytest
import torch
from test_pipeline import write_config

from qcsurrogate.cli import main
from qcsurrogate.pipeline import load_run_config
from qcsurrogate.pipeline.preflight import preflight
from qcsurrogate.system import ConfigError

pytestmark = pytest.mark.usefixtures("toy_registered")

PROBLEMS = {  # TINY: 4 trajectories of 31 snapshots
    "split": ({"split": {"val_fraction": 0.5, "test_fraction": 0.5, "seed": 0}},
              "  split: leaves no training trajectories: n_traj=4, val=2, test=2"),
    "starts": ({"evaluation": {"horizon": 8, "starts": [0, 29, 30, 40], "baselines": []}},
               "  evaluation.starts: [30, 40] leave no step to predict: the data has snapshots 0 to 30"),
    "unroll": ({"training": {"steps": 6, "batch_size": 8, "warmup_steps": 1, "objective": {"unroll": {"max_steps": 31}}}},
               "  training.objective.unroll.max_steps: windows of 31 steps do not fit trajectories of 31 snapshots"),
}
if not torch.cuda.is_available():
    PROBLEMS["device"] = ({"device": "cuda"}, "  device: device 'cuda' requested but CUDA is not available here")


@pytest.mark.parametrize("command", ["run", "train"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_a_config_that_does_not_fit_its_data_writes_nothing(tmp_path, capsys, command, problem):
    overrides, line = PROBLEMS[problem]
    cfg = write_config(tmp_path, **overrides)
    assert main([command, str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "qcsurrogate: error: the run config does not fit its data or this machine (nothing was written):" in err
    assert line in err.splitlines()
    assert not (tmp_path / "run").exists()


def test_every_problem_is_listed_at_once(tmp_path):
    overrides = {k: v for key in ("split", "starts") for k, v in PROBLEMS[key][0].items()}
    cfg = load_run_config(write_config(tmp_path, **overrides))
    with pytest.raises(ConfigError) as info:
        preflight(cfg)
    assert str(info.value).count("\n  ") == 2


def test_a_config_that_fits_passes(tmp_path):
    preflight(load_run_config(write_config(tmp_path)))
    assert not (tmp_path / "run").exists()
