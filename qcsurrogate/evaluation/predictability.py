"""How predictable the truth itself is: growth of small perturbations under the exact solver.

Two perturbations of each start state x (a held-out trajectory at a start snapshot) are integrated with
the exact solver (the method, integration step and save interval of the data file), beside x itself:

- **noise**: every classical field f is moved by `size * rms(f) * xi` with xi ~ N(0, 1) per site (seeded),
  rms(f) the root mean square of f over all sites and start states (a field that is zero everywhere, e.g.
  P at rest, is not moved); rho is left as it is, so the perturbed state is still a valid density matrix
  of the same trace and purity: the coupled dynamics carries the perturbation into rho within one step.
  Its RMSE against the unperturbed integration is the *predictability limit of the truth*: no surrogate
  can follow a chaotic trajectory point by point much past where this curve reaches O(1).
- **surrogate error**: x + e, with e = pred(x) - truth(x + 1 step) the surrogate's own one-step error at
  that start (fields as they are, rho's error made Hermitian, (e + e^H) / 2). The number of model steps
  until its total RMSE against the unperturbed integration reaches `threshold` is the *predictability
  horizon* (issue 8): how far even a perfect model would get after one step of the surrogate's error.

RMSEs are the paper's (`metrics.rmse_per_sample`, total = sum over variables) against the re-integrated
unperturbed state (not the stored trajectory, so float32 storage does not add its rounding to the
1e-6 perturbation), per model step, averaged over start states for the curves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..solvers import simulate
from ..state import RHO, State
from ..system import System
from .metrics import rmse_per_sample


def perturb_fields(state: State, size: float, seed: int) -> State:
    """Fields moved by `size` relative Gaussian noise (see the module doc); rho unchanged."""
    g = torch.Generator().manual_seed(seed)
    fields = {}
    for name, f in state.fields.items():
        f64 = f.to(dtype=torch.float64, device="cpu")
        scale = float(f64.pow(2).mean().sqrt())
        noise = torch.randn(f64.shape, generator=g, dtype=torch.float64)
        fields[name] = (f64 + size * scale * noise).to(dtype=f.dtype, device=f.device)
    return State._raw(fields, state.rho.clone())


def add_error(state: State, error: State) -> State:
    """`state + error` with the error of rho made Hermitian."""
    e_rho = error.rho.to(state.rho.dtype)
    return State._raw({k: v + error[k].to(v.dtype) for k, v in state.fields.items()},
                      state.rho + 0.5 * (e_rho + e_rho.mH))


class _RmseSink:
    """Receives the solver's snapshot chunks of the batch [x, perturbed_1, ..., perturbed_m] and keeps, per
    snapshot, each perturbed sample's RMSE per variable against x."""

    def __init__(self, batch: int, n_pert: int) -> None:
        self.batch, self.n_pert = batch, n_pert
        self.parts: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(n_pert)]

    def append(self, chunk: State) -> None:
        B = self.batch
        ref = chunk.index((slice(None), slice(0, B)))
        for j in range(self.n_pert):
            pert = chunk.index((slice(None), slice((j + 1) * B, (j + 2) * B)))
            self.parts[j].append({k: v.cpu() for k, v in rmse_per_sample(pert, ref).items()})

    def curves(self) -> list[dict[str, np.ndarray]]:
        """Per perturbation: variable -> (n_snapshots, batch)."""
        return [{k: torch.cat([p[k] for p in parts]).double().numpy() for k in parts[0]} for parts in self.parts]


def perturbation_growth(
    system: System, state0: State, perturbed: list[State], *, dt: float, save_every: int, n_model_steps: int,
    solver: str = "rk4", compile: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Integrate `state0` `(batch, ...)` and each perturbed copy with the exact solver for `n_model_steps`
    model steps (`save_every` steps of `dt` each); per perturbation, variable -> per-sample RMSE against the
    unperturbed integration, `(n_model_steps + 1, batch)`, plus "total" (the sum over variables)."""
    B = state0.rho.shape[0]
    batch = State.cat([state0.to(dtype=torch.float64), *(p.to(dtype=torch.float64) for p in perturbed)])
    sink = _RmseSink(B, len(perturbed))
    simulate(system, batch, dt, n_model_steps * save_every, save_every, solver=solver, dtype=torch.float64,
             sink=sink, chunk_size=64, progress=False, compile=compile)
    out = []
    for c in sink.curves():
        c["total"] = sum(c[k] for k in list(c))
        out.append(c)
    return out


def horizon_steps(total: np.ndarray, threshold: float) -> list[int | None]:
    """Per sample (column of `total` `(n_steps + 1, batch)`): the first model step at which the total RMSE
    reaches `threshold` (0 if it starts there), None if it never does within the integration."""
    reached = np.asarray(total) >= threshold
    return [int(np.argmax(reached[:, b])) if reached[:, b].any() else None for b in range(reached.shape[1])]


def median_steps(steps: list[int | None]) -> float | None:
    """Median with not-reached counted as longer than everything; None if the median is not reached."""
    v = sorted(np.inf if s is None else s for s in steps)
    m = float(np.median(v)) if v else np.nan
    return m if np.isfinite(m) else None


def curve_of(c: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
    """Mean over samples at steps 1..n (the layout of a rollout curve in metrics.json)."""
    n = c["total"].shape[0] - 1
    d: dict[str, Any] = {"steps": list(range(1, n + 1))}
    for k in names:
        d[f"rmse_{k}"] = [float(v) for v in c[k][1:].mean(1)]
    d["rmse_total"] = [float(v) for v in c["total"][1:].mean(1)]
    d["initial_rmse_total"] = float(c["total"][0].mean())
    return d


def steps_below(curve_total: list[float | None], threshold: float) -> int:
    """Leading model steps (of a curve recorded at steps 1, 2, ...) whose RMSE stays below `threshold`
    (a non-finite or missing value counts as reaching it)."""
    for i, v in enumerate(curve_total):
        if v is None or not np.isfinite(v) or v >= threshold:
            return i
    return len(curve_total)


def predictability(
    system: System, state0: State, one_step_error: State, *, dt: float, save_every: int, n_model_steps: int,
    perturbation: float, seed: int, threshold: float, solver: str = "rk4", compile: bool = False,
) -> dict[str, Any]:
    """The `predictability` section of metrics.json for the start states `state0` `(batch, ...)` and the
    surrogate's one-step errors at them (same batch)."""
    noisy = perturb_fields(state0, perturbation, seed)
    by_error = add_error(state0, one_step_error)
    c_noise, c_err = perturbation_growth(system, state0, [noisy, by_error], dt=dt, save_every=save_every,
                                         n_model_steps=n_model_steps, solver=solver, compile=compile)
    names = [k for k in c_noise if k != "total"]
    names = [k for k in names if k != RHO] + ([RHO] if RHO in names else [])
    hs = horizon_steps(c_err["total"], threshold)
    return {
        "solver": solver, "integration_dt": dt, "save_every": save_every, "model_steps": n_model_steps,
        "threshold": threshold,
        "truth_perturbed": {"perturbation": perturbation, "seed": seed, **curve_of(c_noise, names)},
        "surrogate_error": {
            **curve_of(c_err, names),
            "horizon_steps": hs,
            "median_horizon_steps": median_steps(hs),
            "not_reached_fraction": float(np.mean([h is None for h in hs])) if hs else 0.0,
        },
    }
