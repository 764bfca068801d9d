"""Wall time of the conformance kit (`check_system`) on the SSH ring at L = 8, at two `n_steps`.

The number docs/plugins.md quotes ("Time" under the conformance kit):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kit_time.py
"""

from __future__ import annotations

import time
import warnings

import qcsurrogate as q
from qcsurrogate.testing import check_system


def main() -> None:
    system = q.load_system("ssh_chain", L=8)
    kwargs = {"solitons": {"xi": 1.0}}  # walls narrow enough for a ring of 8
    for n_steps in (100, 20):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate-level and unused-input warnings are not the point here
            passed = check_system(system, scenario_kwargs=kwargs, n_steps=n_steps, dt=0.1)
        states = sorted({cid.split("[")[1].rstrip("]") for cid in passed if "[" in cid})
        print(f"n_steps={n_steps}: {time.perf_counter() - t0:.1f} s, {len(passed)} checks passed on states {states}")


if __name__ == "__main__":
    main()
