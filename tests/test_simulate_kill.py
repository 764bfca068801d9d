"""`qcsurrogate simulate` killed outright (SIGKILL, no chance to clean up) resumes with the shards it had not
finished, removes its own temporary files, and gives the uninterrupted result bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

pytest.importorskip("qcsurrogate_holstein")

CONFIG = {
    "system": {"name": "holstein", "params": {"L": 8, "g": 2.0}},
    "scenario": {"name": "deep_quench", "kwargs": {"n_traj": 8, "sigma": 1.0e-4, "seed": 0}},
    "simulation": {"dt": 0.08, "n_steps": 4000, "save_every": 20, "compile": False, "processes": 1, "shards": 8},
}


def _simulate(cfg_path, out, wait=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "qcsurrogate", "simulate", str(cfg_path), "-o", str(out), "--no-progress"]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def test_a_killed_simulate_resumes_with_the_unfinished_shards(tmp_path):
    from qcsurrogate.io import open_trajectory

    cfg = tmp_path / "sim.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "output": str(tmp_path / "unused.h5")}))
    out = tmp_path / "killed.h5"
    shards = tmp_path / "killed.shards"
    proc = _simulate(cfg, out, wait=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(shards.glob("shard-*.h5"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(shards.glob("shard-*.h5")))
    assert 2 <= finished < 8, f"the kill came too late to test a resume ({finished} shards finished)"
    assert not out.exists()

    resumed = _simulate(cfg, out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {finished} of 8 shards are finished and valid" in resumed.stdout + resumed.stderr
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]

    fresh = _simulate(cfg, tmp_path / "fresh.h5")
    assert fresh.returncode == 0, fresh.stderr
    with open_trajectory(out) as a, open_trajectory(tmp_path / "fresh.h5") as b:
        for name in a.variables:
            assert np.array_equal(a.dataset(name)[()], b.dataset(name)[()]), name
