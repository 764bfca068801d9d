"""Build and run the C++ reference integrator (benchmarks/cpp_reference/holstein_rk4.cpp).

A stand-in for the authors' C++ simulator, which is not available here: the same equations and plain
dense RK4, compiled with g++ -O3 -march=native. `check()` shows it agrees with `qcsurrogate.simulate`
to round-off; `run()` integrates a batch in one process (one core).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).resolve().parent / "cpp_reference" / "holstein_rk4.cpp"
FLAGS = ["-O3", "-march=native"]


def build(out_dir: Path | None = None) -> Path:
    """Compile the reference (g++ must be installed); returns the binary's path."""
    cxx = shutil.which("g++")
    if cxx is None:
        raise RuntimeError("g++ not found: install it (Debian: apt-get install g++) to build the C++ reference")
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="holstein_rk4_"))
    binary = out_dir / "holstein_rk4"
    subprocess.run([cxx, *FLAGS, "-o", str(binary), str(SOURCE)], check=True)
    return binary


def pack(Q: np.ndarray, P: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """(n_traj, L), (n_traj, L), (n_traj, L, L) complex -> the binary's raw float64 layout."""
    n = Q.shape[0]
    return np.concatenate([Q, P, rho.real.reshape(n, -1), rho.imag.reshape(n, -1)], axis=1).astype(np.float64)


def unpack(flat: np.ndarray, L: int):
    Q, P = flat[:, :L], flat[:, L:2 * L]
    re = flat[:, 2 * L:2 * L + L * L].reshape(-1, L, L)
    im = flat[:, 2 * L + L * L:].reshape(-1, L, L)
    return Q, P, re + 1j * im


def start(binary: Path, params, Q, P, rho, dt: float, n_steps: int, workdir: Path, tag: str = "0") -> tuple[subprocess.Popen, Path]:
    """Launch one integration (one process, one core); returns the process and its output path."""
    L = Q.shape[1]
    inp, out = workdir / f"in{tag}.bin", workdir / f"out{tag}.bin"
    pack(Q, P, rho).tofile(inp)
    args = [str(binary), str(L), str(Q.shape[0]), str(n_steps), repr(dt), repr(params.hopping), repr(params.g),
            repr(params.K), repr(params.m), repr(params.density_offset), str(inp), str(out)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True), out


def run(binary: Path, params, Q, P, rho, dt: float, n_steps: int, workdir: Path):
    """Integrate in one process; returns the final (Q, P, rho)."""
    proc, out = start(binary, params, Q, P, rho, dt, n_steps, workdir)
    if proc.wait() != 0:
        raise RuntimeError("the C++ reference failed")
    return unpack(np.fromfile(out, dtype=np.float64).reshape(Q.shape[0], -1), Q.shape[1])


def check(binary: Path, L: int = 8, n_traj: int = 4, n_steps: int = 200, dt: float = 0.08) -> float:
    """max |rho_cpp - rho_simulate| after `n_steps` of the deep quench (round-off, amplified by the chaos)."""
    import qcsurrogate

    system = qcsurrogate.load_system("holstein", L=L, g=2.0)
    s0 = system.initial_state("deep_quench", n_traj=n_traj, seed=0)
    ref = qcsurrogate.simulate(system, s0, dt, n_steps, n_steps, compile=False).index(-1)
    with tempfile.TemporaryDirectory() as d:
        _, _, rho = run(binary, system.params, s0["Q"].numpy(), s0["P"].numpy(), s0.rho.numpy(), dt, n_steps, Path(d))
    return float(np.abs(rho - ref.rho.numpy()).max())


if __name__ == "__main__":
    b = build()
    for L, n in ((8, 200), (32, 100)):
        print(f"L={L}, {n} steps of dt=0.08: max |drho| C++ reference vs simulate = {check(b, L=L, n_steps=n):.1e}")
