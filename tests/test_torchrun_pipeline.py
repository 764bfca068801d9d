"""`torchrun --nproc_per_node=2 -m qcsurrogate run` on a tiny Holstein config: the whole pipeline (data on
rank 0, sharded training, evaluation on rank 0) gives the single-process weights up to reduction order."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

pytest.importorskip("qcsurrogate_holstein")

CONFIG = {
    "name": "torchrun-tiny",
    "device": "cpu",
    "data": {
        "system": {"name": "holstein", "params": {"L": 4, "g": 1.0}},
        "scenario": {"name": "deep_quench", "kwargs": {"n_traj": 4, "sigma": 0.1, "seed": 0}},
        "simulation": {"dt": 0.1, "n_steps": 40},
    },
    "split": {"val_fraction": 0.25, "test_fraction": 0.25, "seed": 0},
    "model": {"width": 8, "dtype": "float64"},
    "training": {"steps": 6, "batch_size": 8, "warmup_steps": 1, "log_every": 2, "val_every": 3, "checkpoint_every": 3,
                 "threads": 1},
    "evaluation": {"horizon": 5, "starts": [0], "baselines": ["persistence"], "figure_snapshots": 2},
}


def _run(tmp_path, name: str, ranks: int) -> dict:
    cfg = {**CONFIG, "output_dir": str(tmp_path / name)}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *launcher, "-m", "qcsurrogate", "run", str(path)], capture_output=True,
                          text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return load_file(str(tmp_path / name / "model" / "model.safetensors"))


def test_two_ranks_give_the_single_process_model_and_metrics(tmp_path):
    single = _run(tmp_path, "single", 1)
    ddp = _run(tmp_path, "ddp", 2)
    assert single.keys() == ddp.keys()
    worst = max(float((single[k] - ddp[k]).abs().max()) for k in single)
    assert worst < 1e-10, worst  # float64: gradients averaged over ranks differ from the global mean by round-off
    assert any(float(v.abs().max()) > 0 for v in single.values())
    m1 = json.loads((tmp_path / "single" / "metrics.json").read_text())["next_step"]["rmse_total"]
    m2 = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["next_step"]["rmse_total"]
    assert m2 == pytest.approx(m1, rel=1e-8)
    log = (tmp_path / "ddp" / "log.txt").read_text()
    assert "data-parallel on 2 processes (gloo), this is rank 0" in log.splitlines()[0]
    assert torch.isfinite(torch.tensor(m1))
