#!/usr/bin/env python
"""Throughput of `qcsurrogate.simulate` on the Holstein deep quench, side by side with two baselines.

Measured: trajectories x RK steps per second (traj*steps/s) of dt = 0.08 on the deep quench to
g = 2.0 (the defaults of docs/physics.md), for

* `simulate` eager (`compile=False`, complex128) and compiled (`compile=True`, real-arithmetic rhs
  fused by torch.compile; compile time reported separately, excluded from throughput), at each torch
  thread count asked for, compiled also with several `steps_per_call`;
* a plain numpy batched RK4 with dense `H @ rho - rho @ H` (written below, vectorised over the batch),
  with OpenBLAS limited to the same thread count;
* `scipy.integrate.solve_ivp`, one trajectory per call, given the same dense numpy rhs: RK45 and
  DOP853 at rtol=1e-8, atol=1e-10 (the issue's baseline; about 30x more accurate than RK4 at dt = 0.08
  here), and DOP853 at rtol=1e-6, atol=1e-8, whose error on the deep quench is close to RK4's at
  dt = 0.08 (the accuracy-matched comparison). It is adaptive, so its "steps" are simulated time / 0.08;
  it runs a few trajectories and its throughput is extrapolated per trajectory (they are independent).

* the default path: what `qcsurrogate simulate` chooses by itself (`qcsurrogate.execution`) for a long
  run of the case (100,000 steps): compile (4 steps per call at small L), one thread per process, one
  process per core (several: persistent worker processes, each on its slice of the trajectories, started
  and compiled before timing);
* compiled on two persistent processes whatever the load ("x2 procs", when the default path chose one
  process), so that one process per core is always among the configurations the default is judged against;
* a C++ reference (benchmarks/cpp_reference/holstein_rk4.cpp: a STAND-IN for the authors' C++
  simulator, which is not available here; same equations, dense H, plain RK4, g++ -O3 -march=native),
  in one process and in two processes at once (each on half of the trajectories: one per core).

Everything runs round-robin: each of `--repeats` rounds times every method once (in
a shuffled order), so all methods see the same machine load; throughputs are medians over rounds and
ratios are medians of the per-round ratios. Before timing, every method integrates `check_steps`
steps from the same initial state and its max |rho - rho_ref| is printed, against the float64 eager
`simulate` result (same algorithm: agreement to round-off, amplified by the quench's instability)
and against RK4 at dt/8 (about 4000x more accurate than dt = 0.08: the true error of each method).

    .venv/bin/python benchmarks/bench_simulate.py            # full run, writes docs/performance.md
    .venv/bin/python benchmarks/bench_simulate.py --quick    # tiny sizes, seconds, writes nothing
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import glob
import math
import os
import platform
import random
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy
import torch
from scipy.integrate import solve_ivp

import multiprocessing
import resource
import tempfile

import qcsurrogate
from qcsurrogate import State, simulate
from qcsurrogate.execution import resolve_execution

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpp_ref  # noqa: E402 - the C++ reference (stand-in for the authors' simulator)

ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore", category=FutureWarning)  # torch inductor internals
DT = 0.08
G = 2.0


# -- thread control ------------------------------------------------------------------------------
def _openblas_setter() -> Callable[[int], None] | None:
    """numpy's bundled OpenBLAS `set_num_threads` (no threadpoolctl dependency), or None."""
    libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(glob.glob(str(libdir / "libscipy_openblas*.so*"))):
        lib = ctypes.CDLL(path)  # already loaded by numpy: dlopen hands back the same library
        for sym in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                return lambda n, fn=fn: fn(int(n))
    return None


_SET_BLAS = _openblas_setter()


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    if _SET_BLAS is not None:
        _SET_BLAS(n)


# -- the baselines -------------------------------------------------------------------------------
def hopping_matrix(L: int) -> np.ndarray:
    T = np.zeros((L, L))
    for i in range(L):  # periodic ring, as the benchmarked system
        T[i, (i + 1) % L] += 1.0
        T[(i + 1) % L, i] += 1.0
    return T


@dataclass
class Params:
    L: int
    t: float
    g: float
    K: float
    m: float
    n0: float


def dense_rhs(p: Params, T: np.ndarray, Q: np.ndarray, P: np.ndarray, rho: np.ndarray):
    """The equations of motion with a dense H(Q), batched over leading axes: no tricks."""
    H = -p.t * T - p.g * (Q[..., :, None] * np.eye(p.L))
    drho = -1j * (H @ rho - rho @ H)
    n = np.diagonal(rho, axis1=-2, axis2=-1).real
    return P / p.m, p.g * (n - p.n0) - p.K * Q, drho


def numpy_rk4(p: Params, T: np.ndarray, Q, P, rho, dt: float, n_steps: int):
    """Classic RK4, vectorised over the batch, with the dense rhs."""
    for _ in range(n_steps):
        k1 = dense_rhs(p, T, Q, P, rho)
        k2 = dense_rhs(p, T, Q + 0.5 * dt * k1[0], P + 0.5 * dt * k1[1], rho + 0.5 * dt * k1[2])
        k3 = dense_rhs(p, T, Q + 0.5 * dt * k2[0], P + 0.5 * dt * k2[1], rho + 0.5 * dt * k2[2])
        k4 = dense_rhs(p, T, Q + dt * k3[0], P + dt * k3[1], rho + dt * k3[2])
        Q = Q + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        P = P + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        rho = rho + dt / 6 * (k1[2] + 2 * k2[2] + 2 * k3[2] + k4[2])
    return Q, P, rho


def ivp_one(p: Params, T: np.ndarray, Q, P, rho, t_end: float, method: str, rtol: float, atol: float):
    """One trajectory with solve_ivp on the real vector (Q, P, Re rho, Im rho); returns final state and nfev."""
    L = p.L

    def f(_t, y):
        r = y[2 * L : 2 * L + L * L].reshape(L, L) + 1j * y[2 * L + L * L :].reshape(L, L)
        dQ, dP, dr = dense_rhs(p, T, y[:L], y[L : 2 * L], r)
        return np.concatenate((dQ, dP, dr.real.ravel(), dr.imag.ravel()))

    y0 = np.concatenate((Q, P, rho.real.ravel(), rho.imag.ravel()))
    sol = solve_ivp(f, (0.0, t_end), y0, method=method, rtol=rtol, atol=atol, t_eval=[t_end])
    if not sol.success:
        raise RuntimeError(f"solve_ivp {method} failed: {sol.message}")
    y = sol.y[:, -1]
    r = y[2 * L : 2 * L + L * L].reshape(L, L) + 1j * y[2 * L + L * L :].reshape(L, L)
    return y[:L], y[L : 2 * L], r, sol.nfev


# -- methods under test ------------------------------------------------------------------------------
@dataclass
class Method:
    name: str
    threads: int
    run: Callable[[int], np.ndarray]  # run(n_steps) -> final rho (n_traj_run, L, L), complex
    n_traj: int  # trajectories per run
    quantum: int = 1  # n_steps must be a multiple of this
    compile_s: float | None = None
    times: list[float] = field(default_factory=list)  # seconds per run, one per round
    cpu: list[float] = field(default_factory=list)  # process CPU seconds (all threads) per run
    n_steps: int = 0
    err_ref: float = math.nan
    err_true: float = math.nan
    nfev_per_dt: float | None = None
    last_nfev: int | None = None  # rhs evaluations of the last run (solve_ivp only)

    def throughput(self, seconds: float) -> float:
        return self.n_traj * self.n_steps / seconds


LONG_RUN_STEPS = 100_000
"""The length of run the default path is resolved for: long enough that compiling pays (a real data set)."""


def _worker(conn, L: int, g: float, arrays: dict, dt: float, compile: bool, threads: int | None, warm: bool,
            spc: int = 1) -> None:
    """A persistent worker: integrates its slice on request, returns (seconds, CPU seconds, final rho)."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    if not warm:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
    system = qcsurrogate.load_system("holstein", L=L, g=g)
    state = State({"Q": torch.from_numpy(arrays["Q"]), "P": torch.from_numpy(arrays["P"])}, torch.from_numpy(arrays["rho"]))
    simulate(system, state, dt, spc, spc, compile=compile, threads=threads, steps_per_call=spc)  # trace first
    conn.send("ready")
    while True:
        n = conn.recv()
        if n is None:
            return
        c0, t0 = time.process_time(), time.perf_counter()
        rho = simulate(system, state, dt, n, n, compile=compile, threads=threads, steps_per_call=spc).rho[-1].numpy()
        conn.send((time.perf_counter() - t0, time.process_time() - c0, rho))


class ProcessGroup:
    """`n` persistent spawned processes, each holding a contiguous slice of the batch (one per core)."""

    def __init__(self, n: int, L: int, g: float, state0: State, dt: float, compile: bool, threads: int | None,
                 warm: bool, spc: int = 1) -> None:
        ctx = multiprocessing.get_context("spawn")
        B = state0.rho.shape[0]
        bounds = [(i * B // n, (i + 1) * B // n) for i in range(n)]
        self.conns, self.procs = [], []
        for a, b in bounds:
            parent, child = ctx.Pipe()
            arrays = {"Q": state0["Q"][a:b].numpy().copy(), "P": state0["P"][a:b].numpy().copy(),
                      "rho": state0.rho[a:b].numpy().copy()}
            p = ctx.Process(target=_worker, args=(child, L, g, arrays, dt, compile, threads, warm, spc), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)
        for c in self.conns:
            assert c.recv() == "ready"
        self.cpu = 0.0

    def run(self, n: int) -> np.ndarray:
        for c in self.conns:
            c.send(n)
        out = [c.recv() for c in self.conns]
        self.cpu = sum(o[1] for o in out)
        return np.concatenate([o[2] for o in out])

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(timeout=10)


def cpp_runner(binary: Path, params, state0: State, n_procs: int, workdir: Path) -> Callable[[int], np.ndarray]:
    """The C++ reference on `n_procs` processes at once, each on a contiguous slice of the batch."""
    Q, P, rho = state0["Q"].numpy(), state0["P"].numpy(), state0.rho.numpy()
    B = Q.shape[0]
    bounds = [(i * B // n_procs, (i + 1) * B // n_procs) for i in range(n_procs)]

    def run(n: int) -> np.ndarray:
        started = [cpp_ref.start(binary, params, Q[a:b], P[a:b], rho[a:b], DT, n, workdir, tag=str(i))
                   for i, (a, b) in enumerate(bounds) if b > a]
        for proc, _ in started:
            if proc.wait() != 0:
                raise RuntimeError("the C++ reference failed")
        return np.concatenate([cpp_ref.unpack(np.fromfile(out, dtype=np.float64).reshape(-1, 2 * Q.shape[1] + 2 * Q.shape[1] ** 2), Q.shape[1])[2]
                               for _, out in started])

    return run


def make_methods(case: Case, args, system, state0: State) -> list[Method]:
    L, B = case.L, case.n_traj
    hp = system.params
    p = Params(L=L, t=hp.hopping, g=hp.g, K=hp.K, m=hp.m, n0=hp.density_offset)
    T = hopping_matrix(L)
    Q0, P0, rho0 = state0["Q"].numpy(), state0["P"].numpy(), state0.rho.numpy()
    methods: list[Method] = []

    for th in args.threads:

        def eager(n, th=th):
            set_threads(th)
            return simulate(system, state0, DT, n, n, compile=False, threads=None).rho[-1].numpy()

        methods.append(Method("simulate eager", th, eager, B))

        for k in args.steps_per_call:

            def comp(n, th=th, k=k):
                set_threads(th)
                return simulate(system, state0, DT, n, n, compile=True, steps_per_call=k, threads=None).rho[-1].numpy()

            set_threads(th)
            t0 = time.perf_counter()
            comp(k)  # the first call traces and compiles
            cs = time.perf_counter() - t0
            name = "simulate compiled" + (f" spc={k}" if k != 1 else "")
            methods.append(Method(name, th, comp, B, quantum=k, compile_s=cs))
            print(f"  compiled L={L} threads={th} steps_per_call={k}: compile {cs:.1f} s", flush=True)

        def dense(n, th=th):
            set_threads(th)
            return numpy_rk4(p, T, Q0, P0, rho0, DT, n)[2]

        methods.append(Method("numpy dense RK4", th, dense, B))

    # The default path, as `qcsurrogate simulate` resolves it for a long run of this case on this machine.
    ex = resolve_execution(compile="auto", threads="auto", processes="auto", shards="auto", device="cpu", L=L,
                           n_traj=B, n_steps=LONG_RUN_STEPS, step_counts=(4,))
    print(f"  default path for L={L} x {B}: {ex.describe()}", flush=True)
    args.defaults.append(f"L = {L} x {B}: {'compiled' if ex.compile else 'eager'}"
                         f"{f' spc={ex.steps_per_call}' if ex.steps_per_call > 1 else ''}, {ex.processes} process"
                         f"{'es' * (ex.processes > 1)} x {ex.threads or torch.get_num_threads()} thread")
    if ex.processes == 1:

        def default(n, ex=ex):
            return simulate(system, state0, DT, n, n, compile=ex.compile, threads=ex.threads,
                            steps_per_call=ex.steps_per_call).rho[-1].numpy()

        set_threads(1)
        default(ex.steps_per_call)  # trace
        methods.append(Method(DEFAULT, 1, default, B, quantum=ex.steps_per_call))
    else:
        group = ProcessGroup(ex.processes, L, G, state0, DT, ex.compile, ex.threads, args.warm_cache,
                             ex.steps_per_call)
        args.cleanup.append(group.close)
        m = Method(DEFAULT, ex.processes, group.run, B, quantum=ex.steps_per_call)
        m.cpu_of = lambda group=group: group.cpu  # type: ignore[attr-defined]
        methods.append(m)

    # A candidate for the best configuration that the default path may not pick: compiled, one process per
    # core (2 here), one thread each, whatever the load.
    if B >= 2 and ex.processes != 2:
        group2 = ProcessGroup(2, L, G, state0, DT, True, 1, args.warm_cache, ex.steps_per_call)
        args.cleanup.append(group2.close)
        m2 = Method(TWO_PROCS, 2, group2.run, B, quantum=ex.steps_per_call)
        m2.cpu_of = lambda group2=group2: group2.cpu  # type: ignore[attr-defined]
        methods.append(m2)

    # The C++ reference (stand-in for the authors' simulator): one process, and one per core at once.
    if args.cpp is not None:
        work = Path(tempfile.mkdtemp(prefix="bench_cpp_"))
        for n_procs in sorted({1, min(2, B)}):
            m = Method(CPP if n_procs == 1 else CPP2, n_procs, cpp_runner(args.cpp, hp, state0, n_procs, work), B)
            m.cpu_of = lambda: resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime  # type: ignore[attr-defined]
            m.cpu_children = True  # type: ignore[attr-defined]
            methods.append(m)

    n_ivp = min(B, case.ivp_traj)
    for meth, rtol, atol in IVP_VARIANTS:
        m = Method(ivp_name(meth, rtol), 1, None, n_ivp)  # type: ignore[arg-type]

        def ivp(n, meth=meth, rtol=rtol, atol=atol, m=m):
            set_threads(1)
            out, nfev = [], 0
            for b in range(n_ivp):
                _, _, r, nf = ivp_one(p, T, Q0[b], P0[b], rho0[b], n * DT, meth, rtol, atol)
                out.append(r)
                nfev += nf
            m.last_nfev = nfev
            return np.stack(out)

        m.run = ivp
        methods.append(m)
    return methods


# -- cases -----------------------------------------------------------------------------------------
@dataclass
class Case:
    L: int
    n_traj: int
    check_steps: int  # steps of the accuracy check
    ivp_traj: int  # trajectories given to solve_ivp (timed per trajectory)

    @property
    def label(self) -> str:
        return f"L={self.L} x {self.n_traj}"


FULL_CASES = [Case(8, 256, 240, 8), Case(32, 64, 24, 2), Case(256, 1, 24, 1)]
QUICK_CASES = [Case(4, 16, 8, 2), Case(32, 1, 4, 1)]


# -- measurement -----------------------------------------------------------------------------------
def calibrate(m: Method, min_time: float, max_steps: int) -> int:
    """Steps so one timed run lasts about `min_time` (probed with a short run)."""
    n = m.quantum
    while True:
        t0 = time.perf_counter()
        m.run(n)
        dt = time.perf_counter() - t0
        if dt > 0.2 * min_time or n >= max_steps:
            break
        n = min(max_steps, n * max(2, int(0.25 * min_time / max(dt, 1e-4))))
    steps = max(1, int(math.ceil(min_time / dt * n)))
    steps = min(steps, max_steps)
    return max(m.quantum, steps // m.quantum * m.quantum)


def run_case(case: Case, args, loads: list[float]) -> tuple[list[Method], dict]:
    print(f"\n== {case.label} (deep quench g={G}, dt={DT}) ==", flush=True)
    system = qcsurrogate.load_system("holstein", L=case.L, g=G)
    state0 = system.initial_state("deep_quench", n_traj=case.n_traj, seed=0)
    methods = make_methods(case, args, system, state0)

    # Accuracy: every method integrates check_steps steps from the same state.
    set_threads(max(args.threads))
    n = case.check_steps
    ref = simulate(system, state0, DT, n, n, compile=False).rho[-1].numpy()
    fine = simulate(system, state0, DT / 8, 8 * n, 8 * n, compile=False).rho[-1].numpy()
    for m in methods:
        n_chk = n - n % m.quantum
        rho = m.run(n_chk) if n_chk == n else None
        if rho is None:  # check_steps not a multiple of steps_per_call: say so rather than compare apples/pears
            continue
        b = rho.shape[0]
        m.err_ref = float(np.abs(rho - ref[:b]).max())
        m.err_true = float(np.abs(rho - fine[:b]).max())
        if m.last_nfev is not None:
            m.nfev_per_dt = m.last_nfev / (b * n)
    info = {"check_steps": n, "check_t": n * DT}

    for m in methods:
        m.n_steps = calibrate(m, args.min_time, args.max_steps.get(m.name.split()[0], 10**7))
    for r in range(args.repeats):
        # A fresh random order each round (seeded): a method must not always follow the same one, e.g. the
        # 2-thread OpenBLAS row, whose threads keep spinning for a while after it returns.
        order = list(methods)
        random.Random(r).shuffle(order)
        for m in order:
            children = getattr(m, "cpu_children", False)
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime if children else time.process_time()
            t0 = time.perf_counter()
            m.run(m.n_steps)
            m.times.append(time.perf_counter() - t0)
            if children:
                m.cpu.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - c0)
            elif hasattr(m, "cpu_of"):
                m.cpu.append(m.cpu_of())  # the worker processes' CPU time
            else:
                m.cpu.append(time.process_time() - c0)
        loads.append(os.getloadavg()[0])
        per = [f"{m.name.removeprefix('simulate ')}/{m.threads}: {m.throughput(m.times[-1]):,.0f}" for m in methods]
        print(f"  round {r + 1}/{args.repeats} (load {loads[-1]:.2f}) " + ", ".join(per), flush=True)
    return methods, info


def summarise(case: Case, methods: list[Method]) -> list[dict]:
    """Rows with median throughput and median per-round ratios."""

    def find(name: str, threads: int | None = None) -> Method | None:
        for m in methods:
            if m.name == name and (threads is None or m.threads == threads):
                return m
        return None

    rows = []
    for m in methods:
        thr = [m.throughput(t) for t in m.times]
        note = []
        if m.name.startswith("solve_ivp"):
            note.append(f"{m.n_traj} traj, extrapolated")
            if m.nfev_per_dt is not None:
                note.append(f"{m.nfev_per_dt:.1f} rhs evals per {DT}")
        row = {
            "method": m.name,
            "case": case.label,
            "threads": m.threads,
            "thr": statistics.median(thr),
            "spread": (min(thr), max(thr)),
            "cpu_share": statistics.median(c / t for c, t in zip(m.cpu, m.times)),
            "steps": m.n_steps,
            "compile_s": m.compile_s,
            "err_ref": m.err_ref,
            "err_true": m.err_true,
            "note": "; ".join(note),
        }
        bases = {
            "vs_numpy": find(NUMPY, m.threads) or find(NUMPY),
            "vs_ivp": find(IVP_SPEC),
            "vs_ivp_matched": find(IVP_MATCHED),
        }
        bases["vs_cpp"] = find(CPP)
        bases["vs_cpp2"] = find(CPP2)
        for key, b in bases.items():
            if b is None:
                row[key] = math.nan
                continue
            ratios = [m.throughput(t) / b.throughput(tb) for t, tb in zip(m.times, b.times)]
            row[key] = statistics.median(ratios)
        # against the best simulate configuration of each round (the default path included)
        configs = [x for x in methods if x.name.startswith("simulate") or x.name == DEFAULT]
        per_round = []
        for r in range(len(m.times)):
            best = max(configs, key=lambda x: x.throughput(x.times[r]))
            per_round.append((m.throughput(m.times[r]) / best.throughput(best.times[r]), best))
        row["vs_best"] = statistics.median(v for v, _ in per_round)
        names = [b.name + ("" if b.name == DEFAULT else f"/{b.threads}") for _, b in per_round]
        row["best_method"] = max(set(names), key=names.count)
        rows.append(row)
    return rows


def targets(rows: list[dict], cases: list[Case]) -> list[dict]:
    """The issue's targets, each met by the best `simulate` variant at each thread count."""
    out = []
    big = [c for c in cases if c.n_traj == 1]
    small = [c for c in cases if c.n_traj > 1]
    specs = [(c, "vs_numpy", 2.0) for c in small] + [(c, "vs_numpy", 10.0) for c in big]
    specs += [(c, "vs_ivp", 50.0) for c in small]
    for case in cases:  # issue 10: the default path against the best configuration measured, and the C++ reference
        r = next((r for r in rows if r["case"] == case.label and r["method"] == DEFAULT), None)
        if r is not None:
            out.append({"target": ">= 0.8x the best configuration (default path)", "case": case.label,
                        "threads": r["threads"], "best": f"{DEFAULT} (best: {r['best_method']})",
                        "ratio": r["vs_best"], "met": r["vs_best"] >= 0.8})
        if r is not None and case.L == 32 and not math.isnan(r.get("vs_cpp2", math.nan)):
            out.append({"target": ">= 5x C++ reference (stand-in), both on 2 cores", "case": case.label,
                        "threads": r["threads"], "best": DEFAULT, "ratio": r["vs_cpp2"], "met": r["vs_cpp2"] >= 5.0})
            one = max((x for x in rows if x["case"] == case.label and x["threads"] == 1
                       and x["method"].startswith("simulate compiled")), key=lambda x: x["thr"], default=None)
            if one is not None:
                out.append({"target": "C++ reference (stand-in) on 1 core, for scale", "case": case.label,
                            "threads": 1, "best": one["method"], "ratio": one["vs_cpp"], "met": True})
    for case, key, goal in specs:
        cands = [r for r in rows if r["case"] == case.label and r["method"].startswith("simulate")]
        for th in sorted({r["threads"] for r in cands}):
            best = max((r for r in cands if r["threads"] == th), key=lambda r: r[key])
            what = "numpy dense RK4 (same threads)" if key == "vs_numpy" else "solve_ivp RK45 rtol=1e-8"
            out.append(
                {"target": f">= {goal:g}x {what}", "case": case.label, "threads": th, "best": best["method"],
                 "ratio": best[key], "met": best[key] >= goal}
            )  # fmt: skip
    return out


# -- reporting -------------------------------------------------------------------------------------
def fmt_num(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_err(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1e}"


def table(rows: list[dict]) -> str:
    head = (
        "| method | case | threads | traj*steps/s (median) | min-max over rounds | vs numpy dense "
        f"| vs {IVP_SPEC} | vs {IVP_MATCHED} | vs C++ ref 1 proc | vs C++ ref 2 procs | vs best config "
        "| CPU share | compile s | max abs drho vs simulate f64 | vs RK4 dt/8 |"
    )
    lines = [head, "|" + "---|" * (head.count(" | ") + 1)]
    for r in rows:
        lo, hi = r["spread"]
        name = r["method"] + (f" ({r['note']})" if r["note"] else "")
        compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.1f}"
        lines.append(
            f"| {name} | {r['case']} | {r['threads']} | {fmt_num(r['thr'])} | {fmt_num(lo)} - {fmt_num(hi)} "
            f"| {fmt_num(r['vs_numpy'])}x | {fmt_num(r['vs_ivp'])}x | {fmt_num(r['vs_ivp_matched'])}x "
            f"| {fmt_num(r['vs_cpp'])}x | {fmt_num(r['vs_cpp2'])}x | {fmt_num(r['vs_best'])}x "
            f"| {r['cpu_share']:.2f} | {compile_s} | {fmt_err(r['err_ref'])} | {fmt_err(r['err_true'])} |"
        )
    return "\n".join(lines)


def target_table(tg: list[dict]) -> str:
    lines = ["| target | case | threads | best simulate variant | measured | met |", "|---|---|---|---|---|---|"]
    for t in tg:
        lines.append(
            f"| {t['target']} | {t['case']} | {t['threads']} | {t['best']} | {fmt_num(t['ratio'])}x "
            f"| {'yes' if t['met'] else 'NO'} |"
        )
    return "\n".join(lines)


def machine_info() -> dict:
    cpu, flags = "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "fma", "avx512f") if f in have)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "flags": flags or "unknown",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load": os.getloadavg(),
        "blas_threads": "set per row through OpenBLAS" if _SET_BLAS else "NOT controlled (OpenBLAS symbol not found)",
    }


SECTION = "## Ground truth (simulate)"
BEGIN = "<!-- bench_simulate.py: begin generated results -->"
END = "<!-- bench_simulate.py: end generated results -->"


def write_doc(path: Path, generated: str) -> None:
    """Replace the generated block of the '## Ground truth (simulate)' section, nothing else.

    Hand-written text of the section (conclusions, reproduction) and every other `##` section (e.g.
    "Surrogate") is kept. A missing file or section is created with the block in it.
    """
    block = f"{BEGIN}\n{generated.strip()}\n{END}"
    text = path.read_text() if path.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    elif SECTION in text:
        start = text.index(SECTION) + len(SECTION)
        nxt = re.search(r"^## ", text[start:], flags=re.M)
        end = start + nxt.start() if nxt else len(text)
        text = text[:end].rstrip("\n") + "\n\n" + block + "\n" + ("\n" + text[end:] if nxt else "")
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{block}\n"
    path.write_text(text)


def render(rows, tg, info, infos, args, wall) -> str:
    checks = "; ".join(f"{k}: {v['check_steps']} steps (t = {v['check_t']:g})" for k, v in infos.items())
    lo, hi = min(info["loads"]), max(info["loads"])
    opts = f"--repeats {args.repeats} --min-time {args.min_time} --threads {','.join(map(str, args.threads))} "
    opts += f"--steps-per-call {','.join(map(str, args.steps_per_call))}" + (" --warm-cache" if args.warm_cache else "")
    return f"""### Machine and run

- CPU: {info['cpu']} ({info['flags']}), {info['cores']} cores (`os.cpu_count()`)
- Python {info['python']}, torch {info['torch']}, numpy {info['numpy']}, scipy {info['scipy']}
- Date: {info['date']}; benchmark wall time {wall:.0f} s
- Options: `{opts}`
- Load average (1 min) at start {info['load'][0]:.2f}, over the rounds {lo:.2f} - {hi:.2f}. The 2 cores were
  shared with another engineer's neural-network training, so absolute numbers are noisy and threads = 2
  rows compete with it for the same cores; ratios are taken within a round and are the steadier figures.
- torch threads via `torch.set_num_threads`, OpenBLAS threads (numpy) {info['blas_threads']}.
- Compile times are cold (Inductor caches disabled) unless `--warm-cache` is listed above; the first
  compile of the run also pays Inductor's one-time start-up in the process.

### Targets

{target_table(tg)}

### Results

{table(rows)}

"default path" is what `qcsurrogate simulate` chooses by itself for a long run of the case
({LONG_RUN_STEPS:,} steps) on this machine: {'; '.join(info.get('defaults', []))}. In its rows and the
"x2 procs" rows, "threads" counts processes (one thread each) and "CPU share" is their CPU time over
wall time (up to 2). "C++ reference (stand-in)" is benchmarks/cpp_reference/holstein_rk4.cpp, written
here as a stand-in for the authors' C++ simulator (not available here): same equations, dense H, plain
RK4, g++ -O3 -march=native ({info.get('cpp_check', 'agreement not checked')}). "vs best config" is
the median over rounds of the row's throughput over the fastest `simulate` row (or default path) of the
same round.

traj*steps/s = trajectories x RK4 steps of dt = {DT} per second; for solve_ivp, which is adaptive,
simulated time / {DT}. Median of {args.repeats} rounds. "spc=k" is
`simulate(..., compile=True, steps_per_call=k)`. "CPU share" is the process's CPU time over wall time
during the timed runs (median): about 1 for an undisturbed single thread, lower when the other load took
the core, up to 2 for two busy threads (OpenMP workers that spin at barriers count as busy).
"vs numpy dense" compares with the numpy row at the
same thread count, the solve_ivp columns with those single-threaded rows; every ratio is the median of
per-round ratios. Accuracy check ({checks}): max |rho - rho_ref| against the float64 eager `simulate`
result, and against RK4 at dt/8, which stands in for the exact solution (so the dt = {DT} RK4 rows
show RK4's own error, and the solve_ivp rows theirs).
"""


IVP_VARIANTS = [("RK45", 1e-8, 1e-10), ("DOP853", 1e-8, 1e-10), ("DOP853", 1e-6, 1e-8)]


def ivp_name(meth: str, rtol: float) -> str:
    return f"solve_ivp {meth} rtol={rtol:g}"


NUMPY = "numpy dense RK4"
DEFAULT = "default path"
TWO_PROCS = "simulate compiled x2 procs"
CPP = "C++ reference (stand-in)"
CPP2 = "C++ reference (stand-in) x2 procs"
IVP_SPEC = ivp_name("RK45", 1e-8)  # the issue's baseline
IVP_MATCHED = ivp_name("DOP853", 1e-6)  # error close to RK4 at dt = 0.08 on the deep quench


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, two short rounds: a smoke test (writes nothing)")
    ap.add_argument("--threads", default="1,2", help="torch/OpenBLAS thread counts, comma separated (default 1,2)")
    ap.add_argument("--steps-per-call", default="1,4", help="compiled variants' steps_per_call (default 1,4)")
    ap.add_argument("--repeats", type=int, default=7, help="timing rounds (default 7)")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per timed run (default 1.0)")
    ap.add_argument("--cases", default=None, help="e.g. '8x256,256x1' (L x n_traj)")
    ap.add_argument(
        "--warm-cache", action="store_true", help="let Inductor reuse its on-disk caches (compile times then flatter)"
    )
    ap.add_argument("--out", default=str(ROOT / "docs" / "performance.md"), help="markdown file to update")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--no-cpp", action="store_true", help="leave out the C++ reference (needs g++)")
    args = ap.parse_args(argv)
    args.threads = [int(x) for x in args.threads.split(",")]
    args.steps_per_call = [int(x) for x in args.steps_per_call.split(",")]
    cases = QUICK_CASES if args.quick else FULL_CASES
    if args.cases:
        cases = []
        for spec in args.cases.split(","):
            L, B = (int(v) for v in spec.lower().split("x"))
            cases.append(Case(L, B, 240 if L <= 16 else 24, min(B, 8)))
    if args.quick:  # a smoke test: warm Inductor caches make its second run take seconds
        args.repeats, args.min_time = min(args.repeats, 2), min(args.min_time, 0.1)
        args.no_write, args.warm_cache = True, True
        args.steps_per_call, args.threads = args.steps_per_call[:1], args.threads[:1]
    args.max_steps = {"solve_ivp": 2000}  # its throughput is per step anyway
    if not args.warm_cache:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True  # honest cold-start compile times

    args.cleanup, args.defaults = [], []
    args.cpp = None if args.no_cpp else cpp_ref.build()
    checks = []
    if args.cpp is not None:
        for L in (8, 32):
            checks.append(f"L = {L}: max |drho| {cpp_ref.check(args.cpp, L=L, n_steps=100):.1e} against `simulate` "
                          "after 100 steps")
            print(f"C++ reference vs simulate: {checks[-1]}", flush=True)
    info = machine_info()
    info["defaults"] = args.defaults
    info["cpp_check"] = "; ".join(checks) or "not run"
    info["loads"] = [info["load"][0]]
    print(f"machine: {info['cpu']}, {info['cores']} cores, load {info['load'][0]:.2f}; torch {info['torch']}, "
          f"numpy {info['numpy']}, scipy {info['scipy']}; BLAS threads {info['blas_threads']}")  # fmt: skip
    t_start = time.perf_counter()
    rows, infos = [], {}
    for case in cases:
        methods, cinfo = run_case(case, args, info["loads"])
        infos[case.label] = cinfo
        rows += summarise(case, methods)
        for close in args.cleanup:
            close()
        args.cleanup.clear()
    wall = time.perf_counter() - t_start
    tg = [] if args.quick else targets(rows, cases)  # the targets are for the full cases
    print("\n" + table(rows) + ("\n\n" + target_table(tg) if tg else ""))
    print(f"\nwall time {wall:.0f} s; load average over the rounds {min(info['loads']):.2f} - {max(info['loads']):.2f}")
    if not args.no_write:
        write_doc(Path(args.out), render(rows, tg, info, infos, args, wall))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
