#!/usr/bin/env python
"""Time, file size and peak memory of generating the paper's data set with `qcsurrogate simulate`.

Runs the command a user runs, `qcsurrogate simulate CONFIG -o OUT`, as a child process (default config:
examples/holstein_deep_paper_data.yaml, 2048 deep-quench trajectories x 2500 RK4 steps at L = 8) and
records its wall time and peak resident memory (the child's own `ru_maxrss`). Two more children put
that peak in context, all in one run:

* the same command for one trajectory and ten steps: what Python, torch and the package cost anyway;
* the full ensemble for an eighth of the steps: memory must not grow with the number of steps.

Then the file is read back lazily (no trajectory is loaded whole) and checked: its t = 0 snapshot of
the last trajectory equals the scenario's initial state, and its snapshot at step `--check-step` equals
that trajectory integrated alone (agreement to round-off: the ensemble and the single trajectory take
the same RK4 steps; the deep quench is chaotic, so a late step would amplify round-off).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_data.py            # ~3 min, 6 GB in data/
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_data.py --quick    # 64 trajectories, seconds

Writes docs/paper_scale_data.json (unless --quick or --no-write) and prints a markdown table; the file
is deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def output_files(path: Path) -> list[Path]:
    from qcsurrogate.generate import output_files as files

    return files(path)


def remove_data_set(path: Path) -> None:
    """The file, and the shards of a sharded data set (`OUT.shards/`)."""
    import shutil

    for f in output_files(path):
        f.unlink(missing_ok=True)
    from qcsurrogate.io.shards import shard_dir

    shutil.rmtree(shard_dir(path), ignore_errors=True)
DEFAULT_CONFIG = ROOT / "examples" / "holstein_deep_paper_data.yaml"
QCS = [sys.executable, "-m", "qcsurrogate"]


def run_child(config: dict, out: Path, workdir: Path, label: str) -> dict:
    """`qcsurrogate simulate` in a child process: wall time and the child's peak RSS."""
    cfg_path = workdir / f"{label.split(',')[0].replace(' ', '_')}.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    proc = subprocess.Popen([*QCS, "simulate", str(cfg_path), "-o", str(out), "-f", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    output = proc.stdout.read() if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{label}: qcsurrogate simulate failed ({proc.returncode}):\n{output}")
    sim = config["simulation"]
    n_traj = config["scenario"]["kwargs"]["n_traj"]
    inner = re.findall(r"wrote .* in ([0-9.]+) s", output)
    peaks = re.findall(r"peak RSS: ([^)]*)\)", output)  # every process of the command, as it reports them
    choices = [line.strip() for line in output.splitlines() if line.startswith("execution:")]
    return {
        "label": label, "n_traj": n_traj, "n_steps": sim["n_steps"], "wall_s": round(wall, 2),
        "simulate_and_write_s": float(inner[-1]) if inner else None,  # as the command reports it
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: kilobytes
        "file_mb": round(sum(f.stat().st_size for f in output_files(out)) / 1e6, 1),  # master and shards
        "files": len(output_files(out)),
        "peak_rss_by_process": peaks[-1] if peaks else None,
        "execution": choices,
        "traj_steps_per_s": round(n_traj * sim["n_steps"] / wall),
    }


def check_file(config: dict, path: Path, check_step: int) -> dict:
    """Read the last trajectory back lazily and compare it with the scenario and a lone integration."""
    from qcsurrogate import simulate
    from qcsurrogate.io import open_trajectory
    from qcsurrogate.pipeline.config import DataConfig

    data = DataConfig.model_validate({k: config[k] for k in ("system", "scenario", "simulation")})
    system = data.build_system()
    state0 = data.initial_state(system)
    last = state0.batch_shape.numel() - 1
    lone = state0.index(last)
    sim = data.simulation
    with open_trajectory(path) as tr:
        first = tr.state(last, 0)
        later = tr.state(last, check_step // sim.save_every)
        final_t = float(tr.times[-1])
    exact = simulate(system, lone, sim.dt, check_step, check_step).index(-1)
    diff = lambda a, b: max(float((a.rho - b.rho).abs().max()),
                            *(float((a[f] - b[f]).abs().max()) for f in system.field_names))
    return {"trajectory": last, "t0_max_abs_diff": diff(first, lone),
            "check_step": check_step, "check_max_abs_diff": diff(later, exact), "final_t": final_t}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--quick", action="store_true", help="64 trajectories x 200 steps; writes nothing")
    p.add_argument("--check-step", type=int, default=100)
    p.add_argument("--keep", action="store_true", help="keep the generated file")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "paper_scale_data.json")
    args = p.parse_args()
    torch.set_num_threads(1)

    config = yaml.safe_load(args.config.read_text())
    if args.quick:
        config["scenario"]["kwargs"]["n_traj"] = 64
        config["simulation"]["n_steps"] = 200
    sim = config["simulation"]
    short = {**config, "simulation": {**sim, "n_steps": sim["n_steps"] // 8 // sim["save_every"] * sim["save_every"]}}
    tiny = {**config, "scenario": {**config["scenario"], "kwargs": {**config["scenario"]["kwargs"], "n_traj": 1}},
            "simulation": {**sim, "n_steps": 10 * sim["save_every"]}}

    data_dir = ROOT / "data"
    data_dir.mkdir(exist_ok=True)
    out = data_dir / "paper_scale_benchmark.h5"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows.append(run_child(tiny, work / "tiny.h5", work, "1 trajectory, 10 steps (baseline)"))
        rows.append(run_child(short, out, work, "full ensemble, 1/8 of the steps"))
        rows.append(run_child(config, out, work, "full ensemble, all steps"))
    check = check_file(config, out, args.check_step)
    if not args.keep:
        remove_data_set(out)

    load = os.getloadavg()
    result = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_data.py",
        "config": str(args.config.relative_to(ROOT)) if args.config.is_relative_to(ROOT) else str(args.config),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(), "loadavg_1_5_15": [round(x, 2) for x in load],
        "runs": rows, "check": check,
    }
    print("| run | trajectories | steps | wall s (process) | integrate + write s | traj*steps/s | files | MB | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['n_traj']} | {r['n_steps']} | {r['wall_s']:.1f} | {r['simulate_and_write_s']} | "
              f"{r['traj_steps_per_s']:,} | {r['files']} "
              f"| {r['file_mb']:,.0f} | {r['peak_rss_mb']:,.0f} |")
    print(f"\nread back lazily, trajectory {check['trajectory']}: t = 0 differs from the scenario by "
          f"{check['t0_max_abs_diff']:.1e}; step {check['check_step']} differs from the lone integration by "
          f"{check['check_max_abs_diff']:.1e}; last time {check['final_t']:g}")
    print(f"load average at the end (1, 5, 15 min): {result['loadavg_1_5_15']}")
    if np.isfinite(check["check_max_abs_diff"]) and check["check_max_abs_diff"] > 1e-9:
        raise SystemExit("the stored trajectory does not match its lone integration")
    if not (args.quick or args.no_write):
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
