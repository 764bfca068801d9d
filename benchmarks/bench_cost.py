"""The honest cost comparison of issue 8: one batched surrogate step against the exact solver for the
same physical time at matched accuracy, plus the surrogate's inference throughput against this CPU's
attainable rate for the same convolutions.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cost.py          # ~4-5 min; rewrites its block in docs/performance.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cost.py --quick  # smoke test, prints only

What it does, all in one process and one torch thread:

1. Ground truth states. The deep quench of issue 8 in our units (K = omega = 0.3, g 0 -> 0.894, Q noise
   1e-4, periodic), integrated past the transient (t = 64) for each L: the states the surrogate would
   see, where RK4's error is representative (at t = 0 nothing moves yet).
2. RK4's error over one model step T (0.64 and 2.56) as a function of its substep count n (dt = T / n),
   measured against RK4 with 512 substeps, in the paper's total RMSE (RMSE of Q + of P + of rho, per
   state, averaged). "Matched accuracy" at an error level eps is the smallest n (largest dt) whose
   error stays below eps: levels 1e-6 .. 1e-3 by default, or the surrogate's own one-step error
   (`--surrogate-error`, e.g. the `next_step.rmse_total` of a run's metrics.json).
3. Cost of one RK4 substep per trajectory at the same batch, float64, `qcsurrogate.simulate` eager
   and compiled (compile time excluded, reported).
4. Cost of one surrogate step per state (PARC, float32, random weights of the given width, or a
   trained `--model DIR`), eager and compiled (`Surrogate.inference_step`), for batches 1 .. 256;
   the same convolution calls bare (the recorded padded inputs and kernels of one forward pass, fed
   straight to conv1d/conv2d: what the network's convolutions cost with no glue at all); its FLOPs
   (2 x MACs of the convolutions) against a measured fp32 matmul rate (1024^3, the best sustained
   rate of this core we could find).
5. Ratios: exact cost / surrogate cost for the same physical time (> 1: the surrogate is cheaper),
   and the error level below which the surrogate becomes cheaper (crossover).

Timings are medians over `--rounds` rounds, each round timing every method once in a rotated order;
the load average is recorded before and after. Compare ratios, not absolute numbers across runs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no compile worker pool on a shared machine

import argparse
import itertools
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins" / "holstein"))

from qcsurrogate import simulate
from qcsurrogate.evaluation.metrics import rmse_per_sample, summarize_rmse
from qcsurrogate.registry import load_system
from qcsurrogate.state import State
from qcsurrogate.surrogate.base import PARCConfig, build_surrogate
from qcsurrogate.surrogate.layers import Conv, lattice_pad
from qcsurrogate.surrogate.normalization import Normalization
from qcsurrogate.training.checkpoint import load_model

BEGIN, END = "<!-- bench_cost.py: begin generated results -->", "<!-- bench_cost.py: end generated results -->"
SUBSTEPS = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256]
N_REF = 512


def load_avg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def per_second(fn, items: int, min_time: float) -> float:
    """items / s of `fn` over at least `min_time` seconds (one warm call first)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return items * n / dt


def rounds(methods: dict, rounds_: int, min_time: float) -> dict[str, float]:
    """Median items/s of each `name: (fn, items)`, every round timing all methods in a rotated order."""
    names = list(methods)
    got: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds_):
        for k in names[r % len(names):] + names[: r % len(names)]:
            fn, items = methods[k]
            got[k].append(per_second(fn, items, min_time))
    return {k: statistics.median(v) for k, v in got.items()}


def matmul_rate(min_time: float) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return max(per_second(lambda: a @ b, 1, min_time) for _ in range(3)) * 2 * 1024**3


# -- the exact solver ------------------------------------------------------------------------------
def holstein(L: int, g: float):
    return load_system("holstein", L=L, g=g, K=0.3, omega=0.3)


def developed_states(system, n: int, t_transient: float, dt: float = 0.04) -> State:
    s0 = system.initial_state("deep_quench", n_traj=n, sigma=1e-4, seed=0)
    steps = round(t_transient / dt)
    return simulate(system, s0, dt, steps, save_every=steps).index(-1)


def rk4_errors(system, y: State, T: float, substeps: list[int]) -> dict[int, float]:
    """Total RMSE (paper's definition) of RK4 with n substeps over time T, against n = N_REF."""
    ref = simulate(system, y, T / N_REF, N_REF, save_every=N_REF).index(-1)
    out = {}
    for n in substeps:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = simulate(system, y, T / n, n, save_every=n).index(-1)
        err = summarize_rmse(rmse_per_sample(got, ref))["rmse_total"]
        out[n] = err if math.isfinite(err) else float("inf")
    return out


def matched_substeps(errors: dict[int, float], eps: float) -> int | None:
    """The fewest substeps (largest RK4 step) whose error over the model step stays below eps."""
    ok = [n for n, e in sorted(errors.items()) if e <= eps]
    return ok[0] if ok else None


def crossover_error(errors: dict[int, float], n_star: float) -> float:
    """RK4's error at n_star substeps (log-log interpolation between measured n): the surrogate is cheaper
    for accuracy demands below this."""
    pts = sorted((n, e) for n, e in errors.items() if math.isfinite(e) and e > 0)
    if n_star <= pts[0][0]:
        return pts[0][1]
    for (n0, e0), (n1, e1) in itertools.pairwise(pts):
        if n0 <= n_star <= n1:
            w = math.log(n_star / n0) / math.log(n1 / n0)
            return math.exp((1 - w) * math.log(e0) + w * math.log(e1))
    return pts[-1][1]


def solver_cost(system, y: State, batch: int, min_time: float, rounds_: int) -> dict[str, float]:
    """Seconds per RK4 substep per trajectory, float64, eager and compiled (+ compile seconds)."""
    yb = State._raw({k: v.repeat(math.ceil(batch / v.shape[0]), 1)[:batch] for k, v in y.fields.items()},
                    y.rho.repeat(math.ceil(batch / y.rho.shape[0]), 1, 1)[:batch])
    k = 8  # substeps per timed call
    t0 = time.perf_counter()
    simulate(system, yb, 0.01, k, save_every=k, compile=True)
    compile_s = time.perf_counter() - t0
    rates = rounds({"eager": (lambda: simulate(system, yb, 0.01, k, save_every=k, compile=False), batch * k),
                    "compiled": (lambda: simulate(system, yb, 0.01, k, save_every=k, compile=True), batch * k)},
                   rounds_, min_time)
    return {"eager": 1 / rates["eager"], "compiled": 1 / rates["compiled"], "compile_s": compile_s}


# -- the surrogate -------------------------------------------------------------------------------------
def make_model(system, width: int, model_dir: Path | None):
    if model_dir is not None:
        return load_model(model_dir).eval()
    torch.manual_seed(0)
    return build_surrogate("parc", system, PARCConfig(width=width), Normalization.identity(system.graph)).eval()


def record_convs(model, y: State) -> list[tuple]:
    """(conv function, padded input, kernel, bias) of every convolution in one forward pass."""
    calls: list[tuple] = []

    def hook(mod, inp, _out):
        w, b = mod.kernel()
        calls.append((mod._conv, lattice_pad(inp[0], mod.k, mod.dim, mod.boundary).clone(), w.detach().clone(),
                      b.detach().clone()))

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Conv)]
    with torch.no_grad():
        model(model.prepare(y))
    for h in hooks:
        h.remove()
    return calls


def conv_flops(calls: list[tuple]) -> float:
    total = 0.0
    with torch.no_grad():
        for f, x, w, b in calls:
            total += 2.0 * w[0].numel() * f(x, w, b).numel()
    return total


def batch_of(y: State, batch: int) -> State:
    r = math.ceil(batch / y.rho.shape[0])
    return State._raw({k: v.repeat(r, 1)[:batch] for k, v in y.fields.items()}, y.rho.repeat(r, 1, 1)[:batch])


def surrogate_rates(model, y: State, batches: list[int], compile_batches: list[int], min_time: float,
                    rounds_: int) -> list[dict]:
    rows = []
    eager = model.inference_step()
    compiled = model.inference_step(compile=True)
    for B in batches:
        yb = model.prepare(batch_of(y, B))
        calls = record_convs(model, yb)
        flops = conv_flops(calls) / B

        def bare(calls=calls):
            with torch.no_grad():
                for f, x, w, b in calls:
                    f(x, w, b)

        big = max(calls, key=lambda c: c[2][0].numel() * c[1][0, 0].numel())  # the widest layer (7-wide conv)
        with torch.no_grad():
            big_flops = 2.0 * big[2][0].numel() * big[0](*big[1:]).numel()
        methods = {"eager": (lambda yb=yb: eager(yb), B), "bare": (bare, B),
                   "widest conv": (lambda big=big: big[0](*big[1:]), 1)}
        compile_s = None
        if B in compile_batches:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = compiled(yb)
            compile_s = time.perf_counter() - t0
            ref = eager(yb)
            diff = max(float((out[k] - ref[k]).abs().max()) for k in ref.names)
            methods["compiled"] = (lambda yb=yb: compiled(yb), B)
        with torch.no_grad():
            rates = rounds(methods, rounds_, min_time)
        widest = rates.pop("widest conv") * big_flops
        rows.append({"batch": B, "flops_per_state": flops, "widest_conv_flops_per_s": widest,
                     **{f"{k}_per_s": v for k, v in rates.items()},
                     "compile_s": compile_s, "compiled_vs_eager_maxdiff": diff if compile_s is not None else None})
        print(f"  L={yb.rho.shape[-1]} batch {B}: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in rates.items())
              + (f" (compile {compile_s:.0f} s)" if compile_s else ""), flush=True)
    return rows


# -- report ------------------------------------------------------------------------------------------------
def fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def md(rows: list[list[str]], head: list[str]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--L", default="32,64", help="chain lengths")
    p.add_argument("--model-steps", default="0.64,2.56", help="model steps T (hbar/t)")
    p.add_argument("--width", type=int, default=16, help="PARC width when no --model is given (issue 8's CPU setting)")
    p.add_argument("--model", type=Path, default=None, help="a trained model directory (timed instead)")
    p.add_argument("--surrogate-error", default="", help="the surrogate's one-step total RMSE(s), comma-separated")
    p.add_argument("--levels", default="1e-6,1e-5,1e-4,1e-3", help="error levels when no surrogate error is given")
    p.add_argument("--batches", default="1,4,16,64,256")
    p.add_argument("--compile-batches", default="64", help="batches also timed compiled (each is one trace, ~40 s)")
    p.add_argument("--cost-batch", type=int, default=64, help="batch of the surrogate-vs-solver comparison")
    p.add_argument("--g", type=float, default=0.894)
    p.add_argument("--transient", type=float, default=64.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--quick", action="store_true", help="tiny sizes, prints only")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.L, args.batches, args.compile_batches, args.cost_batch = "8,12", "1,4", "", 4
        args.transient, args.rounds, args.min_time, args.no_write = 4.0, 1, 0.05, True
    Ls = [int(x) for x in args.L.split(",")]
    Ts = [float(x) for x in args.model_steps.split(",")]
    batches = [int(x) for x in args.batches.split(",")]
    compile_batches = [int(x) for x in args.compile_batches.split(",") if x]
    if args.cost_batch not in batches:
        batches.append(args.cost_batch)
    sur_err = [float(x) for x in args.surrogate_error.split(",") if x]
    levels = sorted(set(sur_err or [float(x) for x in args.levels.split(",")]))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*degenerate Fermi level.*")
    warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for complex")
    t_start, load0 = time.time(), load_avg()
    loads = [load0]
    print(f"load {load0:.2f}; torch {torch.__version__}, {torch.get_num_threads()} thread", flush=True)

    peak = matmul_rate(args.min_time)
    print(f"fp32 matmul 1024^3: {peak / 1e9:.0f} GFLOP/s", flush=True)
    per_L = {}
    for L in Ls:
        system = holstein(L, args.g)
        y = developed_states(system, 4, args.transient)
        errs = {T: rk4_errors(system, y, T, [n for n in SUBSTEPS if n < N_REF]) for T in Ts}
        print(f"L={L}: RK4 errors over T: " + "; ".join(
            f"T={T}: " + ", ".join(f"n={n} {e:.1e}" for n, e in list(e_.items())[:12]) for T, e_ in errs.items()), flush=True)
        solver = solver_cost(system, y, args.cost_batch, args.min_time, args.rounds)
        print(f"L={L}: RK4 substep per trajectory (batch {args.cost_batch}): eager {solver['eager'] * 1e6:.1f} us, "
              f"compiled {solver['compiled'] * 1e6:.1f} us (compile {solver['compile_s']:.0f} s)", flush=True)
        model = make_model(system, args.width, args.model)
        rows = surrogate_rates(model, y, batches, compile_batches, args.min_time, args.rounds)
        per_L[L] = {"errors": errs, "solver": solver, "rows": rows, "n_parameters": model.n_parameters()}
        loads.append(load_avg())

    # -- tables ------------------------------------------------------------------------------------------
    conv_peak = max(r["widest_conv_flops_per_s"] for d in per_L.values() for r in d["rows"])
    attainable = max(peak, conv_peak)
    t1 = []
    for L, d in per_L.items():
        for r in d["rows"]:
            best = max(r.get("compiled_per_s", 0), r["eager_per_s"])
            gflops = best * r["flops_per_state"] / 1e9
            t1.append([str(L), str(r["batch"]), fmt(r["flops_per_state"] / 1e6), fmt(r["eager_per_s"]),
                       fmt(r.get("compiled_per_s")), fmt(r["bare_per_s"]),
                       f"{best / r['bare_per_s']:.0%}", fmt(gflops), f"{gflops * 1e9 / attainable:.0%}",
                       fmt(r["compile_s"], 2) if r["compile_s"] else "-",
                       f"{r['compiled_vs_eager_maxdiff']:.1e}" if r["compiled_vs_eager_maxdiff"] is not None else "-"])
    table1 = md(t1, ["L", "batch", "MFLOP/state", "eager states/s", "compiled states/s", "bare convs states/s",
                     "best / bare convs", "GFLOP/s (best)", "of attainable", "compile s", "max |compiled - eager|"])
    t2, cross = [], []
    for L, d in per_L.items():
        best_row = max(d["rows"], key=lambda r: max(r.get("compiled_per_s", 0), r["eager_per_s"]))
        sur = 1 / max(best_row.get("compiled_per_s", 0), best_row["eager_per_s"])
        d["surrogate_batch"] = best_row["batch"]
        sol = d["solver"]
        for T in Ts:
            e = d["errors"][T]
            for eps in levels:
                n = matched_substeps(e, eps)
                if n is None:
                    t2.append([str(L), f"{T:g}", f"{eps:.0e}", f"> {max(e)}", "-", "-", "-", "-"])
                    continue
                t2.append([str(L), f"{T:g}", f"{eps:.0e}", str(n), f"{T / n:.3g}", fmt(sur * 1e6),
                           fmt(n * sol["eager"] * 1e6), fmt(n * sol["compiled"] * 1e6),
                           f"{n * sol['eager'] / sur:.2g}x", f"{n * sol['compiled'] / sur:.2g}x"])
            n_star = sur / sol["compiled"]
            cross.append(f"L = {L}, T = {T:g}: one surrogate step costs as much as {n_star:.0f} compiled RK4 substeps "
                         f"(dt = {T / n_star:.2g}); RK4 with that many substeps has a one-step error of "
                         f"{crossover_error(e, n_star):.1e}: the surrogate is cheaper only where it must match "
                         f"an error below that.")
    table2 = md(t2, ["L", "model step T", "error level", "RK4 substeps n", "RK4 dt", "surrogate us/state",
                     "RK4 eager us/traj", "RK4 compiled us/traj", "eager RK4 / surrogate", "compiled RK4 / surrogate"])
    scaling = ""
    if len(Ls) == 2:
        (La, a), (Lb, b) = per_L.items()
        ra = next(r for r in a["rows"] if r["batch"] == args.cost_batch)
        rb = next(r for r in b["rows"] if r["batch"] == args.cost_batch)
        ea = math.log((1 / max(ra.get("compiled_per_s", 0), ra["eager_per_s"])) /
                      (1 / max(rb.get("compiled_per_s", 0), rb["eager_per_s"]))) / math.log(La / Lb)
        es = math.log(a["solver"]["compiled"] / b["solver"]["compiled"]) / math.log(La / Lb)
        scaling = (f"Measured scaling from L = {La} to {Lb} (batch {args.cost_batch}): surrogate step ~ L^{ea:.2f}, "
                   f"compiled RK4 substep ~ L^{es:.2f}.")
    wall = time.time() - t_start
    loads.append(load_avg())
    solver_lines = "\n".join(
        f"- L = {L}: RK4 substep per trajectory, batch {args.cost_batch}, float64: eager "
        f"{d['solver']['eager'] * 1e6:.1f} us, compiled {d['solver']['compiled'] * 1e6:.1f} us "
        f"(compile {d['solver']['compile_s']:.0f} s); RK4 one-step errors: "
        + "; ".join(f"T = {T:g}: " + ", ".join(f"n={n} {d['errors'][T][n]:.1e}" for n in (1, 2, 4, 8, 16, 32, 64))
                    for T in Ts)
        for L, d in per_L.items())
    what = (f"trained model {args.model}" if args.model else
            f"PARC width {args.width}, random weights, float32 ({next(iter(per_L.values()))['n_parameters']:,} parameters)")
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    block = f"""{BEGIN}
### Machine and run

- `{cmd.strip()}`; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; wall time {wall:.0f} s
- {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}, 1 torch thread,
  Inductor compile workers 1; Python {platform.python_version()}
- Load average (1 min): {load0:.2f} at start, {min(loads):.2f} - {max(loads):.2f} during the run
  (the machine is shared with training jobs; compare ratios)
- Surrogate: {what}; system: Holstein deep quench in issue 8's units (K = omega = 0.3, g = {args.g}),
  periodic, states taken after t = {args.transient:g}
- fp32 matmul 1024^3 on this core: {peak / 1e9:.0f} GFLOP/s (torch's BLAS); best rate of the model's widest
  convolution (7-wide, oneDNN) alone: {conv_peak / 1e9:.0f} GFLOP/s. "Attainable" below is the larger of the two.

### Surrogate inference throughput (one step, states/s)

{table1}

"best" is the faster of eager and compiled; "bare convs" runs the same convolution calls (recorded
padded inputs and kernels) with nothing else; GFLOP/s counts the convolutions' multiply-adds x 2.

### Exact solver

{solver_lines}

### Surrogate step against the exact solver for the same physical time, at matched accuracy

The exact solver runs {args.cost_batch} trajectories at once; the surrogate's cost per state is its best
over the batches above (batch """ + ", ".join(f"{d['surrogate_batch']} at L = {L}" for L, d in per_L.items()) + f"""), a choice in its favour.

{table2}

Ratios > 1: the exact solver costs more than the surrogate, i.e. the surrogate is cheaper.
{scaling}

""" + "\n".join(f"- {c}" for c in cross) + f"\n{END}"
    print(block)
    if not args.no_write:
        doc = ROOT / "docs" / "performance.md"
        text = doc.read_text()
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip() + "\n\n## Surrogate against the exact solver (cost at matched accuracy)\n\n" + block + "\n"
        doc.write_text(text)
        print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
