"""The `qcsurrogate` command line, run in-process through `main([...])`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import qcsurrogate
from qcsurrogate.cli import COMMANDS, main
from qcsurrogate.io import open_trajectory

# The toy System (tests/toy_system.py), registered as "toy" by plugin "toy-plugin", is what the CLI runs.
pytestmark = pytest.mark.usefixtures("toy_registered")


CONFIG = """
system:
  name: toy
  params: {L: 4, c: 0.7}
scenario:
  name: random_start
  kwargs: {n_traj: 3, seed: 5}
simulation:
  dt: 0.05
  n_steps: 40
  save_every: 2
  precision: float64
output: {path: OUT}
"""


@pytest.fixture
def config(tmp_path) -> Path:
    p = tmp_path / "sim.yaml"
    p.write_text(textwrap.dedent(CONFIG).replace("OUT", str(tmp_path / "traj.h5")))
    return p


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plugins_json(capsys):
    code, out, _ = _run(capsys, "plugins", "--json")
    assert code == 0
    info = json.loads(out)["plugins"]
    assert "qcsurrogate" in info and info["qcsurrogate"]["version"] == qcsurrogate.__version__
    sysinfo = info["toy-plugin"]["systems"]["toy"]
    assert sysinfo["scenarios"] == {
        "at_rest": "Oscillators at rest at the origin, electrons in a random half-filled state (seed 1).",
        "random_start": "Random oscillator displacements and velocities, a random half-filled Slater determinant.",
        "from_file": "States read from one snapshot of a trajectory file of this system, batch (n_traj,).",
    }
    assert sysinfo["fields"] == ["X", "V"]
    assert sysinfo["params"]["L"] == {"required": False, "default": 6}


def test_plugins_text(capsys):
    code, out, _ = _run(capsys, "plugins")
    assert code == 0
    assert "toy-plugin" in out and "system toy" in out and "scenario random_start" in out


def test_simulate_end_to_end(capsys, config, tmp_path):
    code, out, err = _run(capsys, "simulate", str(config), "--no-progress")
    assert code == 0, err
    path = tmp_path / "traj.h5"
    assert f"wrote {path}" in out
    with open_trajectory(path) as f:
        assert (f.n_traj, f.n_time, f.L) == (3, 21, 4)
        assert f.scenario_kwargs == {"n_traj": 3, "sigma": 0.5, "seed": 5}  # defaults filled in
        assert f.attrs["extra"]["config"]["simulation"]["dt"] == 0.05
        system = f.system()
        got = f.load()
    ref = qcsurrogate.simulate(system, system.initial_state("random_start", n_traj=3, seed=5), 0.05, 40, 2)
    assert got.allclose(ref.map(lambda t: t.transpose(0, 1)), rtol=0, atol=0)

    code, out, _ = _run(capsys, "inspect", str(path))
    assert code == 0
    assert "toy (plugin toy-plugin" in out and "trajectories  3" in out and "snapshots     21" in out
    code, out, _ = _run(capsys, "inspect", str(path), "--json")
    assert code == 0 and json.loads(out)["n_time"] == 21

    # refuses to overwrite without --force, leaves the file alone; --force and --output work
    mtime = path.stat().st_mtime_ns
    code, _, err = _run(capsys, "simulate", str(config))
    assert code == 2 and "already exists; pass --force" in err and "Traceback" not in err
    assert path.stat().st_mtime_ns == mtime
    assert _run(capsys, "simulate", str(config), "--force")[0] == 0
    other = tmp_path / "sub" / "other.h5"
    assert _run(capsys, "simulate", str(config), "-o", str(other))[0] == 0
    assert open_trajectory(other).n_time == 21
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("dt: 0.05", "dt: -1"), "simulation.dt: Input should be greater than 0"),
        (("save_every: 2", "save_evry: 2"), "simulation.save_evry: unknown key (did you mean 'save_every'?)"),
        (("name: toy", "name: nope"), "system.name: unknown system 'nope'"),
        (("{n_traj: 3, seed: 5}", "{n_traj: three}"), "scenario.kwargs"),
    ],
)
def test_bad_config_exits_2_without_traceback(capsys, config, edit, expected):
    config.write_text(config.read_text().replace(*edit))
    code, out, err = _run(capsys, "simulate", str(config))
    assert code == 2
    assert expected in err, err
    assert err.startswith("qcsurrogate: error:") and "Traceback" not in err
    assert not (config.parent / "traj.h5").exists()


def test_file_errors_exit_2(capsys, tmp_path):
    code, _, err = _run(capsys, "simulate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "config file not found" in err
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # an HDF5 signature and nothing else
    code, _, err = _run(capsys, "inspect", str(junk))
    assert code == 2 and "junk.h5" in err and "Traceback" not in err
    code, _, err = _run(capsys, "inspect", str(tmp_path / "none.h5"))
    assert code == 2 and "not found" in err


def test_usage(capsys):
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["--version"]) == 0
    assert "qcsurrogate" in capsys.readouterr().out
    assert main(["simulate", "--help"]) == 0
    assert set(COMMANDS) >= {"plugins", "simulate", "inspect"}


def test_output_into_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`qcsurrogate plugins | head -1`: the reader leaving early is normal, not an error."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "qcsurrogate", "plugins", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # closed before the child writes anything (it is still importing)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err


@pytest.mark.parametrize("output", ["''", "'.'", "DIR"])
def test_simulate_to_a_directory_is_a_clean_error(capsys, config, tmp_path, monkeypatch, output):
    monkeypatch.chdir(tmp_path)
    config.write_text(config.read_text().replace(f"output: {{path: {tmp_path / 'traj.h5'}}}",
                                                 f"output: {{path: {output.replace('DIR', str(tmp_path))}}}"))
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = _run(capsys, "simulate", str(config))
    assert code == 2 and "output.path: " in err and "is a directory" in err and "give a file name" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_simulate_beyond_the_solver_s_stability_writes_nothing(capsys, config, tmp_path):
    config.write_text(config.read_text().replace("dt: 0.05", "dt: 40.0"))
    code, _, err = _run(capsys, "simulate", str(config))
    assert code == 2 and "Traceback" not in err
    assert "the integration became non-finite by step " in err and "is probably beyond rk4's stability" in err
    assert not (tmp_path / "traj.h5").exists() and not list(tmp_path.glob("*.shards"))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
