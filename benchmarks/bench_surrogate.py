"""Surrogate benchmarks: training throughput, rollout cost versus RK4, and architecture ablations.

    .venv/bin/python benchmarks/bench_surrogate.py            # full (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_surrogate.py --quick    # smoke run (about a minute)

Everything is measured side by side in one process and reported with ratios, because the machine
is shared and noisy. Results are printed as tables and written between markers into
docs/performance.md (speed) and docs/results.md (ablation).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

import qcsurrogate as qcs
from qcsurrogate.evaluation.metrics import next_step_rmse, rollout_rmse
from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.training import TrainConfig, Trainer, WindowSampler
from qcsurrogate.training.data import fit_normalization

ROOT = Path(__file__).resolve().parents[1]
DT = 0.08


def shallow_data(n_steps: int):
    system = qcs.load_system("holstein", L=8, g=0.8)
    traj = qcs.simulate(system, system.initial_state("shallow_quench", g_initial=0.5), DT, n_steps)
    return system, traj.map(lambda x: x[None])  # (1 trajectory, time, ...)


def deep_data(n_traj: int, n_steps: int):
    import warnings

    system = qcs.load_system("holstein", L=8, g=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y0 = system.initial_state("deep_quench", n_traj=n_traj, seed=0)
    traj = qcs.simulate(system, y0, DT, n_steps)
    return system, traj.map(lambda x: x.transpose(0, 1).contiguous())


def make_model(system, sampler, name="parc", **cfg):
    norm = fit_normalization(system, sampler)
    torch.manual_seed(0)
    model = build_surrogate(name, system, PARCConfig(**cfg), norm)
    cur, nxt = sampler.all_pairs(stride=max(1, sampler.size // 512))
    model.initialize_from_data(cur, system.rhs(cur), nxt)
    return model


# -- speed ------------------------------------------------------------------------------------------
def bench_training(system, traj, widths, steps, batch):
    rows = []
    sampler = WindowSampler(traj, range(traj.rho.shape[0]), 1, 0)
    for mode in ("complex", "split"):
        for w in widths:
            model = make_model(system, sampler, width=w, complex_mode=mode)
            cfg = TrainConfig(steps=steps, batch_size=batch, warmup_steps=1, log_every=max(1, steps // 4),
                              val_every=10**6, checkpoint_every=10**6, progress=False)
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                summary = Trainer(model, system, sampler, None, cfg, Path(tmp)).fit()
            rows.append({"complex_mode": mode, "width": w, "parameters": model.n_parameters(),
                         "samples_per_s": summary["samples_per_s"],
                         "outside_model_share": summary["outside_model_fraction"]})
            print(f"  train {mode:7s} width {w:4d}: {summary['samples_per_s']:8.1f} samples/s, "
                  f"outside model {summary['outside_model_fraction']:.1%}", flush=True)
    return rows


def _time(fn, repeats=5):
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_rollout(system, traj, widths, n_steps, batches):
    """Seconds per step of a surrogate rollout and of eager RK4, same dt (one surrogate step = one RK4 step)."""
    rows = []
    sampler = WindowSampler(traj, range(traj.rho.shape[0]), 1, 0)
    for b in batches:
        y0 = traj.index((slice(None), 0))
        y0 = y0.map(lambda x: x.repeat(b // x.shape[0] + 1, *[1] * (x.ndim - 1))[:b])
        rk4 = _time(lambda: qcs.simulate(system, y0, DT, n_steps, save_every=n_steps)) / n_steps
        for w in widths:
            model = make_model(system, sampler, width=w).eval()
            s = _time(lambda: model.rollout(y0, n_steps, save_every=n_steps)) / n_steps
            rows.append({"batch": b, "width": w, "rk4_s_per_step": rk4, "surrogate_s_per_step": s, "ratio": s / rk4})
            print(f"  rollout batch {b:4d} width {w:4d}: surrogate {s * 1e3:8.3f} ms/step, "
                  f"RK4 {rk4 * 1e3:8.3f} ms/step, ratio {s / rk4:7.1f}x", flush=True)
    return rows


# -- ablation ---------------------------------------------------------------------------------------
VARIANTS = {
    "paper (F -> S, random init)": {},
    "+ bilinear inputs": {"bilinear_inputs": True},
    "+ linear skip, lstsq init": {"bilinear_inputs": True, "linear_skip": True, "init": "lstsq"},
    "+ S sees the state (shipped)": {"bilinear_inputs": True, "linear_skip": True, "init": "lstsq",
                                     "integrator_inputs": "state"},
    "shipped, split Re/Im rho block": {"bilinear_inputs": True, "linear_skip": True, "init": "lstsq",
                                       "integrator_inputs": "state", "complex_mode": "split"},
    "shipped + rho projection": {"bilinear_inputs": True, "linear_skip": True, "init": "lstsq",
                                 "integrator_inputs": "state", "project_rho": True},
}


def bench_ablation(system, traj, width, steps, horizon):
    rows = []
    sampler = WindowSampler(traj, range(traj.rho.shape[0]), 1, 0)
    cur, nxt = sampler.all_pairs(stride=5)
    for label, opts in VARIANTS.items():
        model = make_model(system, sampler, width=width, **opts)
        cfg = TrainConfig(steps=steps, batch_size=64, lr=1e-3, warmup_steps=min(100, steps // 10), log_every=steps,
                          val_every=10**6, checkpoint_every=10**6, progress=False)
        import tempfile

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            Trainer(model, system, sampler, None, cfg, Path(tmp)).fit()
        wall = time.perf_counter() - t0
        model.eval()
        ns = next_step_rmse(lambda s: model(model.prepare(s)), cur, nxt)
        curve, pred = rollout_rmse(lambda s, n: model.rollout(s, n), traj, [0], horizon, [horizon])
        rho = pred.rho.to(torch.complex128)
        herm = float((rho - rho.mH).abs().amax())
        tr = torch.diagonal(rho, dim1=-2, dim2=-1).sum(-1).real
        row = {"variant": label, "next_step_total": ns["rmse_total"], f"total_after_{horizon}": curve["rmse_total"][0],
               "hermiticity_error": herm, "trace_error": float((tr - tr[0]).abs().max()), "train_s": wall}
        rows.append(row)
        print(f"  {label:34s} next-step {ns['rmse_total']:.2e}  after {horizon}: {curve['rmse_total'][0]:.2e}  "
              f"herm {herm:.1e}  trace {row['trace_error']:.1e}  ({wall:.0f} s)", flush=True)
    return rows


# -- reporting --------------------------------------------------------------------------------------
def md_table(rows, cols, fmt):
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(fmt(r, c) for c in cols) + " |\n" for r in rows)


def replace_block(path: Path, tag: str, body: str) -> None:
    text = path.read_text() if path.exists() else ""
    start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
    block = f"{start}\n{body}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.processor())
    return (f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, nothing written to docs/")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-ablation", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    q = args.quick
    widths = [32, 64] if q else [32, 64, 128]
    print("training throughput (deep-quench data, L = 8, batch 64):", flush=True)
    system, deep = deep_data(4, 100 if q else 400)
    train_rows = bench_training(system, deep, widths, steps=4 if q else 30, batch=64)
    print("rollout cost per step against RK4 (same dt):", flush=True)
    roll_rows = bench_rollout(system, deep, widths[:2] if q else [16, 32, 128], n_steps=5 if q else 10,
                              batches=[1, 256] if not q else [1])
    abl_rows = []
    if not args.skip_ablation:
        print("ablation (shallow quench, same budget for every variant):", flush=True)
        sys_s, shallow = shallow_data(400 if q else 2500)
        abl_rows = bench_ablation(sys_s, shallow, width=16, steps=10 if q else 400, horizon=50 if q else 400)
    if q:
        return 0
    note = f"Machine: {machine()}. Measured by `benchmarks/bench_surrogate.py`; the machine is shared, so compare ratios."
    t1 = md_table(train_rows, ["complex_mode", "width", "parameters", "samples_per_s", "outside_model_share"],
                  lambda r, c: f"{r[c]:.1%}" if c == "outside_model_share" else f"{r[c]:.0f}" if isinstance(r[c], float) else str(r[c]))
    t2 = md_table(roll_rows, ["batch", "width", "surrogate_s_per_step", "rk4_s_per_step", "ratio"],
                  lambda r, c: f"{r[c] * 1e3:.3f} ms" if c.endswith("per_step") else f"{r[c]:.1f}x" if c == "ratio" else str(r[c]))
    replace_block(ROOT / "docs" / "performance.md", "surrogate-bench",
                  f"{note}\n\nTraining throughput (one optimizer step = forward, Eq. 11 loss with exact-rhs targets, "
                  f"backward, AdamW; the share outside the model is batch assembly, exact-derivative targets, "
                  f"logging):\n\n{t1}\nRollout cost per step, surrogate against eager float64 RK4 at the same dt "
                  f"(ratio > 1: the surrogate is slower):\n\n{t2}")
    if abl_rows:
        h = [k for k in abl_rows[0] if k.startswith("total_after_")][0]
        t3 = md_table(abl_rows, ["variant", "next_step_total", h, "hermiticity_error", "trace_error", "train_s"],
                      lambda r, c: r[c] if c == "variant" else f"{r[c]:.0f} s" if c == "train_s" else f"{r[c]:.2e}")
        replace_block(ROOT / "docs" / "results.md", "ablation",
                      f"{note}\n\nShallow quench (L = 8, g 0.5 -> 0.8), width 16, 400 optimizer steps of batch 64 for "
                      f"every variant, rollout from t = 0:\n\n{t3}")
    (ROOT / "docs" / "bench_surrogate.json").write_text(json.dumps({"training": train_rows, "rollout": roll_rows, "ablation": abl_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
