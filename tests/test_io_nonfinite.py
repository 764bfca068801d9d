"""A trajectory file holding a NaN or an Inf is refused where it is read, in memory or lazily, naming the file,
the variable and where the value sits; `qcsurrogate train` on it stops with exit code 2 before training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from h5_edit import copy_and_edit

from qcsurrogate.io import TrajectoryFormatError, open_trajectory, simulate_to_file
from qcsurrogate.training.source import LazySource


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    from toy_system import ToySystem

    system = ToySystem(L=4)
    path = tmp_path_factory.mktemp("nf") / "good.h5"
    return simulate_to_file(system, system.initial_state("random_start", seed=0, n_traj=3), path, 0.1, 20)


def _poison(h, name="fields/X", where=(2, 13, 1), value=np.nan):
    ds = h[name]
    data = ds[()]
    data[where] = value
    ds[...] = data


@pytest.mark.parametrize(("name", "value"), [("fields/X", np.nan), ("rho", complex(0, np.inf))])
def test_reading_a_non_finite_value_names_the_file_variable_and_place(good, tmp_path, name, value):
    bad = copy_and_edit(good, tmp_path, lambda h: _poison(h, name, (2, 13, 1) if name != "rho" else (2, 13, 1, 0), value))
    var = name.split("/")[-1]
    expected = rf"bad\.h5: '{var}' holds non-finite values \(first in what was read: trajectory 2, snapshot 13, t = 1\.3\)"
    with open_trajectory(bad) as tr:
        with pytest.raises(TrajectoryFormatError, match=expected):
            tr.load()
        with pytest.raises(TrajectoryFormatError, match=expected):
            tr.state(2)
        with pytest.raises(TrajectoryFormatError, match=expected):
            tr.state([0, 2], slice(10, 15))
        assert torch.isfinite(tr.state([0, 1]).rho.abs()).all()  # the clean trajectories still read
        assert tr.state(2, slice(0, 13)).rho.shape[0] == 13  # and the clean part of the bad one
    with LazySource(bad) as src:
        with pytest.raises(TrajectoryFormatError, match=rf"'{var}' holds non-finite values .*trajectory 2, snapshot 1[0-9]"):
            src.windows(torch.tensor([2]), torch.tensor([12]), 3)
        assert len(src.windows(torch.tensor([0]), torch.tensor([12]), 3)) == 3


@pytest.mark.usefixtures("toy_registered")
def test_evaluating_on_a_file_with_nan_is_a_clean_error(tmp_path, capsys):
    """`evaluate --data` reads a file the run did not make: where a damaged file comes in from outside."""
    from test_pipeline import write_config

    from qcsurrogate.cli import main

    cfg = write_config(tmp_path, baselines=[])
    assert main(["train", str(cfg)]) == 0
    made = next((tmp_path / "run" / "data").glob("*.h5"))
    bad = copy_and_edit(made, tmp_path, lambda h: _poison(h, "fields/V", (1, 5, 0)))
    capsys.readouterr()
    assert main(["evaluate", str(cfg), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"qcsurrogate: error: {bad}: 'V' holds non-finite values (first in what was read: trajectory 1, snapshot 5" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "evaluations").exists()
