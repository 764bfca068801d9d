"""What a trajectory file's ground truth conserves and how its observables range: the numbers an example
config quotes about its data.

For every trajectory of the file: the largest relative energy drift, the largest drift of each quantity
the System declares in `invariants()`, the range of each scalar observable and the dominant axis value
of each spectrum observable (time-averaged):

    .venv/bin/python benchmarks/trajectory_invariants.py runs/sd_spiral/data/<key>.h5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from qcsurrogate import open_trajectory
from qcsurrogate.observables import dominant_index, format_over_pi


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    args = ap.parse_args(argv)
    with open_trajectory(args.path) as tr:
        system = tr.system()
        traj = tr.load()  # (n_traj, n_time, ...) float64
        t = tr.times
    states = traj.map(lambda x: x.transpose(0, 1))  # (time, traj, ...)
    print(f"{args.path}: system '{system.name}' L={system.L}, {tr.n_traj} trajectories, t = {t[0]:g} .. {t[-1]:g}")
    E = system.energy(states)
    drift = ((E - E[0]).abs() / E[0].abs().clamp_min(1.0)).amax()
    print(f"energy: largest relative drift {float(drift):.2e}")
    for name, v in system.invariants(states).items():
        d = (v - v[0]).abs().reshape(v.shape[0], v.shape[1], -1).amax()
        print(f"invariant {name}: largest drift {float(d):.2e} (values {float(v.min()):.6g} .. {float(v.max()):.6g})")
    for obs in system.observables():
        y = obs(states)
        if obs.kind == "scalar":
            print(f"observable {obs.name}: {float(y.min()):.3g} .. {float(y.max()):.3g}")
        else:
            k = dominant_index(y)
            per_time = torch.nan_to_num(y.mean(1)).argmax(-1)
            steady = float((per_time == k).double().mean())
            print(f"observable {obs.name}: dominant at {format_over_pi(obs.axis[k])} (the argmax at "
                  f"{steady:.0%} of the times), there {float(y[..., k].min()):.3g} .. {float(y[..., k].max()):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
