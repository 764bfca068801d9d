#!/usr/bin/env python
"""Peak memory and training throughput of lazy against in-memory reading, on a data set and one 8x larger.

Two Holstein deep-quench files are made with `qcsurrogate simulate` (the 8x one has 8x the trajectories).
Then every combination of file (1x, 8x) and loading (memory, lazy) trains the same PARC for a fixed
number of steps in a child process, exactly as `qcsurrogate train` does (open the data, fit the
normalisation, initialise from data, train with the objective's unroll curriculum); rounds are
interleaved so a change of machine load hits every combination alike. Per child: peak RSS (the child's
own `ru_maxrss` from `os.wait4`), training throughput (samples/s of `Trainer.fit`, optimizer steps over
wall time) and the load average around it. The targets (issue 10):

* lazy: peak RSS on the 8x file grows by less than 20% against the 1x file;
* throughput lazy within 10% of in-memory (on each file).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lazy_loading.py            # ~15 min, ~2.3 GB in data/
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lazy_loading.py --quick    # tiny, a smoke test

Prints a markdown table (paste it into docs/performance.md); the files are deleted afterwards unless --keep.
The files sit in the page cache after they are written, so lazy reads here come from memory through the
kernel, not from disk: what is measured is the reader's own cost and its memory, not disk bandwidth.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
QCS = [sys.executable, "-m", "qcsurrogate"]


def data_config(L: int, n_traj: int, n_steps: int) -> dict:
    return {
        "system": {"name": "holstein", "params": {"L": L, "g": 2.0}},
        "scenario": {"name": "deep_quench", "kwargs": {"n_traj": n_traj, "sigma": 1.0e-4, "seed": 0}},
        "simulation": {"dt": 0.08, "n_steps": n_steps, "save_every": 1, "solver": "rk4", "precision": "float64"},
    }


def make_file(cfg: dict, out: Path, workdir: Path) -> float:
    """`qcsurrogate simulate` in a child process; returns its wall time."""
    path = workdir / f"{out.stem}.yaml"
    path.write_text(yaml.safe_dump({**cfg, "output": {"path": str(out)}}, sort_keys=False))
    t0 = time.perf_counter()
    subprocess.run([*QCS, "simulate", str(path), "-o", str(out), "-f", "--no-progress"], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - t0


def child(path: Path, loading: str, steps: int, batch: int, width: int, out: Path) -> None:
    """Train in this process (the measured child) and write what it measured to `out`."""
    import torch

    from qcsurrogate.pipeline.stages import Dataset, train_surrogate, training_sampler
    from qcsurrogate.surrogate import PARCConfig
    from qcsurrogate.training import TrainConfig, split_trajectories
    from qcsurrogate.training.data import fit_normalization
    from qcsurrogate.training.trainer import TrainingFiles

    torch.set_num_threads(1)
    t_open = time.perf_counter()
    with Dataset(path, loading=loading, log=lambda s: None) as data:
        split = split_trajectories(data.n_traj, 0.125, 0.125, seed=0)
        cfg = TrainConfig(steps=steps, batch_size=batch, warmup_steps=min(10, steps - 1), log_every=steps,
                          val_every=10 * steps, checkpoint_every=10 * steps, progress=False, threads=1,
                          objective={"unroll": {"max_steps": 4, "start_fraction": 0.5}})
        norm = fit_normalization(data.system, training_sampler(data, split, cfg))
        prep = time.perf_counter() - t_open
        cpu0 = time.process_time()  # every thread of the process: the reader thread's work counts too
        with tempfile.TemporaryDirectory() as tmp:
            summary = train_surrogate(data, split, norm, PARCConfig(width=width, dtype="float32"), cfg,
                                      TrainingFiles.under(tmp), torch.device("cpu"), log=lambda s: None)
        cpu = time.process_time() - cpu0
        kind = data.source.kind
    samples = summary["samples_per_s"] * summary["wall_s"]
    out.write_text(json.dumps({"kind": kind, "prepare_s": prep, "train_wall_s": summary["wall_s"],
                               "samples_per_s": summary["samples_per_s"], "samples_per_cpu_s": samples / cpu}))


def measure(path: Path, loading: str, args: argparse.Namespace, workdir: Path) -> dict:
    """One child: its peak RSS, throughput and the load average around it."""
    out = workdir / "child.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", str(path), loading, str(out), "--steps", str(args.steps),
           "--batch", str(args.batch), "--width", str(args.width)]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child {path.name} {loading} failed ({proc.returncode})")
    res = json.loads(out.read_text())
    assert res["kind"] == loading, res
    res.update(peak_rss_mb=usage.ru_maxrss / 1024, child_wall_s=wall, load=(load0 + os.getloadavg()[0]) / 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs=3, metavar=("FILE", "LOADING", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--L", type=int, default=16)
    ap.add_argument("--n-traj", type=int, default=128, help="trajectories of the 1x file")
    ap.add_argument("--factor", type=int, default=8, help="the large file has this many times the trajectories")
    ap.add_argument("--n-steps", type=int, default=500, help="RK4 steps per trajectory (all stored)")
    ap.add_argument("--steps", type=int, default=120, help="optimizer steps per child")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "bench_lazy")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke test")
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.steps, args.batch, args.width, Path(args.child[2]))
        return
    if args.quick:
        args.L, args.n_traj, args.n_steps, args.steps, args.rounds, args.batch = 8, 8, 40, 6, 1, 8
    args.data_dir.mkdir(parents=True, exist_ok=True)
    files = {1: args.data_dir / "x1.h5", args.factor: args.data_dir / f"x{args.factor}.h5"}
    print(f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for f, path in files.items():
                wall = make_file(data_config(args.L, args.n_traj * f, args.n_steps), path, work)
                print(f"made {path.name}: {args.n_traj * f} trajectories x {args.n_steps + 1} snapshots, L = {args.L}, "
                      f"{path.stat().st_size / 2**20:.0f} MiB, in {wall:.0f} s")
            rows: dict[tuple[int, str], list[dict]] = {}
            for r in range(args.rounds):
                for f, path in files.items():
                    for loading in ("memory", "lazy"):
                        res = measure(path, loading, args, work)
                        rows.setdefault((f, loading), []).append(res)
                        print(f"round {r + 1}: {f}x {loading:<6} peak RSS {res['peak_rss_mb']:7.0f} MiB, "
                              f"{res['samples_per_s']:7.1f} samples/s, prepare {res['prepare_s']:5.1f} s, "
                              f"load {res['load']:.2f}", flush=True)
    finally:
        if not args.keep:
            for path in files.values():
                path.unlink(missing_ok=True)

    def med(f: int, loading: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[(f, loading)])

    big = args.factor
    print("\n| file | loading | peak RSS (MiB, median) | samples/s (median) | per-round samples/s | load |")
    print("|---|---|---|---|---|---|")
    for (f, loading), rs in rows.items():
        print(f"| {f}x | {loading} | {med(f, loading, 'peak_rss_mb'):.0f} | {med(f, loading, 'samples_per_s'):.1f} | "
              f"{', '.join(format(r['samples_per_s'], '.1f') for r in rs)} | {statistics.mean(r['load'] for r in rs):.2f} |")
    growth = med(big, "lazy", "peak_rss_mb") / med(1, "lazy", "peak_rss_mb") - 1
    growth_mem = med(big, "memory", "peak_rss_mb") / med(1, "memory", "peak_rss_mb") - 1
    print(f"\nlazy peak RSS, {big}x against 1x: {growth:+.1%} (target < +20%: {'met' if growth < 0.2 else 'MISSED'}); "
          f"in memory: {growth_mem:+.1%}")
    for f in files:
        ratios = [b["samples_per_s"] / a["samples_per_s"] for a, b in zip(rows[(f, "memory")], rows[(f, "lazy")])]
        ratio = statistics.median(ratios)
        print(f"throughput lazy / memory on {f}x: {ratio:.3f} (per round {', '.join(f'{x:.3f}' for x in ratios)}; "
              f"target >= 0.90: {'met' if ratio >= 0.9 else 'MISSED'})")
        cpu = [b["samples_per_cpu_s"] / a["samples_per_cpu_s"] for a, b in zip(rows[(f, "memory")], rows[(f, "lazy")])]
        print(f"  per CPU-second of the whole process (less sensitive to the machine's load): lazy / memory "
              f"{statistics.median(cpu):.3f} (per round {', '.join(f'{x:.3f}' for x in cpu)})")


if __name__ == "__main__":
    main()
