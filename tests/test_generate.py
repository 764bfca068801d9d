"""Data generation: auto choices, shards over processes, the master file, resuming, identities.

The equality tests compare a sharded data set with a single-process run of the same config: the
trajectories do not interact and every shard runs one torch thread, so the numbers are equal bit for bit
(per configuration: compiled and eager results differ at round-off, so both sides use the same choice).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

import qcsurrogate
from qcsurrogate import generate as G
from qcsurrogate.cli import main
from qcsurrogate.config import DataConfig, SimulationConfig
from qcsurrogate.execution import (
    COMPILE_MIN_EAGER_S,
    auto_shards,
    eager_seconds,
    resolve_compile,
    resolve_execution,
    shard_ranges,
)
from qcsurrogate.io import TrajectoryFormatError, open_trajectory
from qcsurrogate.io import shards as SH

ROOT = Path(__file__).resolve().parents[1]

DATA = {
    "system": {"name": "holstein", "params": {"L": 6, "g": 1.0}},
    "scenario": {"name": "deep_quench", "kwargs": {"n_traj": 5, "sigma": 0.1, "seed": 3}},
    "simulation": {"dt": 0.05, "n_steps": 12, "save_every": 3, "discard": 0.1, "compile": False},
}


def data_config(**sim) -> DataConfig:
    d = json.loads(json.dumps(DATA))
    d["simulation"].update(sim)
    return DataConfig.model_validate(d)


def load(path: Path):
    with open_trajectory(path) as tr:
        return tr.load(), tr.attrs


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The reference: the same data config in one process, one file."""
    path = tmp_path_factory.mktemp("single") / "single.h5"
    report = G.generate_data(data_config(), path, quiet, processes=1)
    assert report.execution.shards == 1 and report.files == (path,)
    return path


# -- auto choices ----------------------------------------------------------------------------------------
def test_auto_choices_follow_the_size_of_the_job():
    tiny = resolve_execution(compile="auto", threads="auto", processes="auto", shards="auto", device="cpu",
                             L=6, n_traj=5, n_steps=12, cores=8)
    assert (tiny.compile, tiny.threads, tiny.processes, tiny.shards) == (False, 1, 1, 1)
    assert "too short" in tiny.describe() and "limited by the work" in tiny.describe()
    # the published-scale L = 32 set: compile, one process per core, shards dividing the ensemble evenly
    big = resolve_execution(compile="auto", threads="auto", processes="auto", shards="auto", device="cpu",
                            L=32, n_traj=1200, n_steps=131200, cores=2, step_counts=(128, 3200))
    assert (big.compile, big.threads, big.processes) == (True, 1, 2)
    assert big.shards % 2 == 0 and 1200 % big.shards == 0 and big.shards >= 2
    assert "limited by the cores" in big.describe() and big.steps_per_call == 1
    few = resolve_execution(compile="auto", threads="auto", processes="auto", shards="auto", device="cpu",
                            L=32, n_traj=3, n_steps=10**6, cores=16)
    assert few.processes == 3 and "limited by the trajectories" in few.describe()
    # small L unrolls 4 compiled steps per call when the step counts allow it
    small = dict(compile="auto", threads="auto", processes=1, shards=1, device="cpu", L=8, n_traj=256,
                 n_steps=10**5, cores=2)
    assert resolve_execution(**small, step_counts=(4, 800)).steps_per_call == 4
    assert resolve_execution(**small, step_counts=(3, 800)).steps_per_call == 1


def test_every_auto_choice_can_be_overridden():
    ex = resolve_execution(compile=True, threads=3, processes=4, shards=8, device="cpu", L=6, n_traj=5,
                           n_steps=12, cores=1)
    assert (ex.compile, ex.threads, ex.processes, ex.shards) == (True, 3, 4, 5)  # shards capped by trajectories
    assert "compile: true (given)" in ex.describe() and "threads: 3 (given)" in ex.describe()
    assert resolve_compile("auto", "cuda", 32, 1200, 10**6)[0] is False  # measured on CPU only


def test_compile_threshold_is_the_eager_estimate():
    n = int(COMPILE_MIN_EAGER_S / eager_seconds(32, 64, 1)) + 1
    assert resolve_compile("auto", "cpu", 32, 64, n)[0] is True
    assert resolve_compile("auto", "cpu", 32, 64, n // 2)[0] is False


def test_shard_ranges_cover_the_ensemble_contiguously():
    r = shard_ranges(10, 4)
    assert r == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert auto_shards(1200, 2, 9800.0) == 20 and auto_shards(7, 2, 1e6) == 7
    with pytest.raises(ValueError):
        shard_ranges(3, 4)


@pytest.mark.filterwarnings("ignore::qcsurrogate.onebody.DegenerateFermiLevelWarning")  # L = 4 at half filling
def test_simulate_logs_its_auto_choices_and_restores_threads(caplog):
    system = qcsurrogate.load_system("holstein", L=4, g=1.0)
    state0 = system.initial_state("deep_quench", n_traj=2, sigma=0.1, seed=0)
    torch.set_num_threads(2)
    try:
        with caplog.at_level(logging.INFO, logger="qcsurrogate.simulate"):
            out = qcsurrogate.simulate(system, state0, 0.05, 4)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert "compile: false (auto" in caplog.text and "threads: 1 (auto" in caplog.text
    eager = qcsurrogate.simulate(system, state0, 0.05, 4, compile=False, threads=None)
    assert torch.equal(out.rho, eager.rho)


# -- identity ------------------------------------------------------------------------------------------
def test_execution_options_do_not_change_the_data_identity():
    from qcsurrogate.pipeline.plan import data_hash

    base = data_config()
    legacy = json.loads(json.dumps(DATA))  # a config written before auto existed: compile false recorded
    for changed in (data_config(compile="auto"), data_config(processes=2, shards=3, threads=1)):
        assert changed.identity() == base.identity()
        assert data_hash(changed) == data_hash(base)
    assert data_config(compile=True).identity() != base.identity()  # an explicit true keeps its old identity
    # the identity is the dump configs had before: a missing compile key meant false
    legacy["simulation"].pop("compile")
    old_dump = {**legacy, "simulation": SimulationConfig.model_validate(legacy["simulation"]).model_dump(mode="json")}
    for key in ("threads", "processes", "shards"):
        old_dump["simulation"].pop(key)
    old_dump["simulation"]["compile"] = False
    assert DataConfig.model_validate(legacy).identity() == old_dump


def test_compile_accepts_auto_and_bools_only():
    assert SimulationConfig(dt=0.1, n_steps=2).compile == "auto"
    assert SimulationConfig(dt=0.1, n_steps=2, compile=True).compile is True
    with pytest.raises(ValueError):
        SimulationConfig(dt=0.1, n_steps=2, compile="sometimes")
    with pytest.raises(ValueError):
        SimulationConfig(dt=0.1, n_steps=2, processes=0)


# -- shards --------------------------------------------------------------------------------------------
def test_sharded_in_process_equals_single_and_opens_as_one_dataset(tmp_path, single):
    out = tmp_path / "sharded.h5"
    report = G.generate_data(data_config(), out, quiet, processes=1, shards=3)
    assert report.execution.shards == 3 and len(report.files) == 4
    ref, ref_attrs = load(single)
    got, attrs = load(out)
    assert torch.equal(got.rho, ref.rho) and all(torch.equal(got[k], ref[k]) for k in ("Q", "P"))
    for key in ("n_trajectories", "n_time", "batch_shape", "t0", "dt", "save_every", "scenario_kwargs", "params"):
        assert attrs[key] == ref_attrs[key]
    assert attrs["extra"]["shards"]["ranges"] == [[0, 2], [2, 4], [4, 5]]
    assert sorted(p.name for p in SH.shard_dir(out).iterdir()) == [
        "plan.json", "shard-00000-of-00003.h5", "shard-00001-of-00003.h5", "shard-00002-of-00003.h5"]
    with open_trajectory(SH.shard_path(out, 1, 3)) as tr:  # a shard is a trajectory file of its own
        assert tr.n_traj == 2 and torch.equal(tr.load().rho, ref.rho[2:4])
    assert G.output_files(out) == [out, *(SH.shard_path(out, i, 3) for i in range(3))]


def test_master_reads_from_any_working_directory_and_refuses_missing_shards(tmp_path, single, monkeypatch):
    out = tmp_path / "d" / "m.h5"
    G.generate_data(data_config(), out, quiet, processes=1, shards=2)
    moved = tmp_path / "moved"
    moved.mkdir()
    out.rename(moved / "m.h5")
    SH.shard_dir(out).rename(SH.shard_dir(moved / "m.h5"))
    monkeypatch.chdir("/")
    got, _ = load(moved / "m.h5")
    assert torch.equal(got.rho, load(single)[0].rho)
    SH.shard_path(moved / "m.h5", 1, 2).unlink()
    with pytest.raises(TrajectoryFormatError, match="missing"):
        open_trajectory(moved / "m.h5")


def test_two_process_generation_equals_single_process(tmp_path, single):
    """What CI runs: 2 spawned worker processes, each writing its shards."""
    out = tmp_path / "two.h5"
    lines: list[str] = []
    report = G.generate_data(data_config(), out, lines.append, processes=2, shards=2)
    assert report.execution.processes == 2
    assert len([k for k in report.peak_rss_mb if k.startswith("worker")]) >= 1
    assert sum("done in" in ln for ln in lines) == 2
    ref, _ = load(single)
    got, _ = load(out)
    assert torch.equal(got.rho, ref.rho) and torch.equal(got["Q"], ref["Q"]) and torch.equal(got["P"], ref["P"])


def test_resume_keeps_finished_shards_and_cleans_temp_files(tmp_path, single, monkeypatch):
    out = tmp_path / "r.h5"
    real = G._run_shard
    calls: list[int] = []

    def crash_after_first(task, progress=False):
        if calls:
            raise RuntimeError("simulated crash")
        calls.append(task["index"])
        return real(task, progress)

    monkeypatch.setattr(G, "_run_shard", crash_after_first)
    with pytest.raises(RuntimeError, match="simulated crash"):
        G.generate_data(data_config(), out, quiet, processes=1, shards=3)
    assert not out.exists()
    first = SH.shard_path(out, 0, 3)
    assert first.exists() and not SH.shard_path(out, 1, 3).exists()
    stamp = first.stat().st_mtime_ns
    litter = SH.shard_dir(out) / ".shard-00001-of-00003.h5.abc123.tmp"  # what a killed worker leaves
    litter.write_bytes(b"partial")
    monkeypatch.setattr(G, "_run_shard", real)
    lines: list[str] = []
    G.generate_data(data_config(), out, lines.append, processes=1)  # auto shards: the plan decides (3)
    assert any("resuming: 1 of 3 shards" in ln for ln in lines)
    assert any("removed 1 temporary file" in ln for ln in lines)
    assert first.stat().st_mtime_ns == stamp and not litter.exists()
    assert torch.equal(load(out)[0].rho, load(single)[0].rho)
    assert not [p for p in out.parent.rglob("*.tmp")]


def test_a_corrupt_finished_shard_is_redone(tmp_path, single):
    out = tmp_path / "c.h5"
    G.generate_data(data_config(), out, quiet, processes=1, shards=2)
    out.unlink()  # as if the master had not been written yet
    SH.shard_path(out, 1, 2).write_bytes(b"not hdf5")
    lines: list[str] = []
    G.generate_data(data_config(), out, lines.append, processes=1)
    assert any("resuming: 1 of 2" in ln for ln in lines)
    assert torch.equal(load(out)[0].rho, load(single)[0].rho)


def test_shards_of_another_generation_are_refused_without_overwrite(tmp_path):
    out = tmp_path / "o.h5"
    G.generate_data(data_config(), out, quiet, processes=1, shards=2)
    out.unlink()
    other = json.loads(json.dumps(DATA))
    other["scenario"]["kwargs"]["seed"] = 4
    with pytest.raises(FileExistsError, match="another generation"):
        G.generate_data(DataConfig.model_validate(other), out, quiet, processes=1, shards=2, overwrite=False)
    G.generate_data(DataConfig.model_validate(other), out, quiet, processes=1, shards=2, overwrite=True)
    with open_trajectory(out) as tr:
        assert tr.scenario_kwargs["seed"] == 4


def test_a_single_file_replaces_an_earlier_sharded_output(tmp_path):
    out = tmp_path / "s.h5"
    G.generate_data(data_config(), out, quiet, processes=1, shards=2)
    G.generate_data(data_config(), out, quiet, processes=1, shards=1, overwrite=True)
    assert not SH.shard_dir(out).exists() and G.output_files(out) == [out]


# -- the command line and the run's data stage ------------------------------------------------------------
def _simulate_config(tmp_path: Path, **sim) -> Path:
    cfg = json.loads(json.dumps(DATA))
    cfg["simulation"].update(sim)
    cfg["output"] = str(tmp_path / "cli.h5")
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_simulate_shards_logs_its_choices_and_resumes(tmp_path, single, capsys):
    cfg = _simulate_config(tmp_path)
    assert main(["simulate", str(cfg), "-j", "1", "--shards", "2", "--compile", "false"]) == 0
    err = capsys.readouterr().err
    assert "execution: compile: false (given); threads: 1 (auto" in err and "shards: 2 (given)" in err
    assert torch.equal(load(tmp_path / "cli.h5")[0].rho, load(single)[0].rho)
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "cli.h5")]) == 0  # a master file inspects like any trajectory file
    assert "trajectories  5 (batch shape (5,))" in capsys.readouterr().out
    assert main(["simulate", str(cfg)]) == 2  # exists: refused without --force
    assert main(["simulate", str(cfg), "-f", "-j", "1", "--shards", "1"]) == 0
    assert not SH.shard_dir(tmp_path / "cli.h5").exists()


def test_cli_rejects_bad_execution_options(tmp_path, capsys):
    cfg = _simulate_config(tmp_path)
    assert main(["simulate", str(cfg), "-j", "0"]) == 2
    assert main(["simulate", str(cfg), "--compile", "maybe"]) == 2
    assert "expected" in capsys.readouterr().err


def test_two_ranks_share_the_shards_like_torchrun(tmp_path, single):
    """Two `qcsurrogate simulate` processes with torchrun's RANK/WORLD_SIZE: each writes its shards,
    rank 0 waits for the other's and writes the master."""
    cfg = _simulate_config(tmp_path, shards=2)
    env = {**os.environ, "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "qcsurrogate", "simulate", str(cfg)],
                              env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (1, 0)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "rank 1 of 2" in outs[0][0]
    assert torch.equal(load(tmp_path / "cli.h5")[0].rho, load(single)[0].rho)


def test_master_file_virtual_datasets_map_every_trajectory(tmp_path):
    out = tmp_path / "v.h5"
    G.generate_data(data_config(), out, quiet, processes=1, shards=2)
    with h5py.File(out, "r") as f:
        ds = f["rho"]
        assert ds.is_virtual and [s.file_name for s in ds.virtual_sources()] == [
            "v.shards/shard-00000-of-00002.h5", "v.shards/shard-00001-of-00002.h5"]
        assert f["fields/Q"].is_virtual and not f["time"].is_virtual
    assert json.loads((SH.shard_dir(out) / "plan.json").read_text())["ranges"] == [[0, 3], [3, 5]]
    assert np.isfinite(load(out)[0]["Q"].numpy()).all()


@pytest.mark.usefixtures("toy_registered")
def test_run_data_stage_writes_shards_and_the_ledger_fingerprints_them(tmp_path, capsys):
    from test_pipeline import TINY

    cfg = json.loads(json.dumps(TINY))
    cfg["output_dir"] = str(tmp_path / "run")
    cfg["data"]["simulation"].update({"processes": 1, "shards": 2})
    cfg["training"]["steps"] = 3
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path)]) == 0
    assert "execution: compile: false (auto" in capsys.readouterr().out
    outputs = json.loads((tmp_path / "run" / "stages.json").read_text())["stages"]["data"]["outputs"]
    assert len(outputs) == 3 and sum(".shards/shard-" in k for k in outputs) == 2
    shard = next(tmp_path.glob("run/data/*.shards/shard-00001-of-00002.h5"))
    shard.unlink()
    capsys.readouterr()
    assert main(["status", str(path)]) == 0
    assert "is gone" in capsys.readouterr().out  # a lost shard makes the data stage missing
