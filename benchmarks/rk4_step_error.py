"""How large an RK4 step the ground truth can take: each dt against dt/2, on the stored snapshots.

    .venv/bin/python benchmarks/rk4_step_error.py examples/holstein_shallow_L32.yaml --dts 0.01 0.02 0.04 0.08 \
        --n-traj 2 --duration 768

Integrates the data config's scenario (first `--n-traj` trajectories) with each dt and with dt/2 up to
`--duration` (default: the config's stored window), both sampled at the config's model step, and prints
the largest absolute difference of every variable at any stored snapshot, with the time it took.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from qcsurrogate import simulate
from qcsurrogate.config import DataConfig, SimulateConfig, load_yaml


def _data_config(path: str) -> DataConfig:
    from qcsurrogate.config import read_yaml

    raw = read_yaml(path)
    if "data" in raw:  # a run config
        return DataConfig.model_validate(raw["data"])
    return load_yaml(path, SimulateConfig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--dts", type=float, nargs="+", required=True)
    ap.add_argument("--n-traj", type=int, default=2)
    ap.add_argument("--duration", type=float, default=None, help="hbar/t after the transient (default: the config's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = _data_config(args.config)
    sim = data.simulation
    system = data.build_system()
    y0 = data.initial_state(system)
    if y0.batch_shape:
        y0 = y0.index(slice(0, args.n_traj))
    step = sim.step
    duration = args.duration if args.duration is not None else sim.duration + sim.discard
    print(f"{system!r}, scenario {data.scenario.name}, model step {step:g}, t = 0..{duration:g} (transient included)")
    print("| dt | max abs diff vs dt/2 (" + ", ".join(y0.names) + ") | seconds |")
    print("|---|---|---|")
    for dt in args.dts:
        runs = []
        t0 = time.perf_counter()
        for h in (dt, dt / 2):
            k, n = round(step / h), round(duration / h)
            if abs(k * h - step) > 1e-9 or n % k:
                raise SystemExit(f"dt={h} does not divide the model step {step} and the duration {duration}")
            runs.append(simulate(system, y0, h, n, k))
        diff = [float((runs[0][v] - runs[1][v]).abs().max()) for v in y0.names]
        print(f"| {dt:g} | {', '.join(f'{d:.1e}' for d in diff)} | {time.perf_counter() - t0:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
