#!/usr/bin/env python
"""Which RK4 step is small enough for the L = 32 deep-quench data: dt against dt/2 over the predictability horizon.

The criterion (issue 10): a step larger than 0.01 is fine where it changes the trajectories by less than
1e-8 over the predictability horizon of the chaotic dynamics, measured against a step half as large.
Here: the published-scale parameters of examples/holstein_deep_L32_paper_data.yaml (L = 32, K = omega = 0.3,
g = 0.894, deep quench, sigma 1e-4), `--n-traj` trajectories of the same seed, integrated from t = 0 through
the discarded transient (t = 64) and one predictability horizon after it (38.5 model steps of 2.56, the
truth's median horizon measured in docs/results.md), compared at every multiple of 2.56 (where both
grids have a point): max |x_dt - x_dt/2| over Q, P and rho, all snapshots, all trajectories.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/integration_step.py [--dts 0.08,0.04,0.02,0.01]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import qcsurrogate
from qcsurrogate import simulate

PARAMS = {"L": 32, "K": 0.3, "omega": 0.3, "g": 0.894}
TRANSIENT = 64.0
MODEL_STEP = 2.56
HORIZON_STEPS = 38.5  # docs/results.md: median predictability horizon of the L = 32 deep-quench truth
CRITERION = 1e-8


def run(dt: float, t_end: float, state0, system) -> tuple[torch.Tensor, float]:
    save = round(MODEL_STEP / dt)
    n = round(t_end / MODEL_STEP) * save
    t0 = time.perf_counter()
    traj = simulate(system, state0, dt, n, save, compile=False)
    flat = torch.cat([traj["Q"].flatten(1), traj["P"].flatten(1), torch.view_as_real(traj.rho).flatten(1)], dim=1)
    return flat, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dts", default="0.08,0.04,0.02,0.01")
    ap.add_argument("--n-traj", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    system = qcsurrogate.load_system("holstein", **PARAMS)
    state0 = system.initial_state("deep_quench", n_traj=args.n_traj, sigma=1e-4, seed=0)
    t_end = TRANSIENT + HORIZON_STEPS * MODEL_STEP
    dts = [float(x) for x in args.dts.split(",")]
    results = {}
    cache: dict[float, torch.Tensor] = {}
    for dt in dts:
        for d in (dt, dt / 2):
            if d not in cache:
                cache[d], secs = run(d, t_end, state0, system)
                print(f"  dt={d:g}: {secs:.1f} s", flush=True)
        diff = (cache[dt] - cache[dt / 2]).abs().amax(dim=1)  # per snapshot
        k_transient = round(TRANSIENT / MODEL_STEP)
        results[dt] = {"max_all": float(diff.max()), "at_transient_end": float(diff[k_transient]),
                       "at_horizon_end": float(diff[-1]), "meets": bool(diff.max() < CRITERION)}
        r = results[dt]
        print(f"dt={dt:g} vs dt/2: max |dx| over t in [0, {t_end:g}] = {r['max_all']:.2e} "
              f"(at t = {TRANSIENT:g}: {r['at_transient_end']:.2e}, at t = {t_end:g}: {r['at_horizon_end']:.2e}) "
              f"-> {'meets' if r['meets'] else 'fails'} the < {CRITERION:g} criterion", flush=True)
    print(json.dumps({str(k): v for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
