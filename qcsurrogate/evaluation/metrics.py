"""The paper's error metrics and physics diagnostics of surrogate rollouts.

RMSE_X = sqrt(mean_i (X - X_pred)^2) per field, RMSE_rho = sqrt(mean_ij |rho - rho_pred|^2), computed
per sample and then averaged over samples (trajectories and start times); total = sum of the three
(Sec. IV). Everything here is generic over a System's fields; physical observables are the ones
the System declares (`System.observables()`), none is assumed. With d orbitals per site the mean of
RMSE_rho runs over all (L*d)^2 elements rho_{ia,jb} (the same number for d = 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..observables import Observable, check_observables, dominant_index
from ..state import RHO, State
from ..system import System

Predictor = Callable[[State, int], State]
"""`predict(state0, n_steps) -> trajectory` with a leading time axis of n_steps + 1 snapshots."""


def rmse_per_sample(pred: State, true: State) -> dict[str, torch.Tensor]:
    """Per-sample RMSE of each variable, shaped like the batch."""
    out = {}
    for name in true.names:
        d = (pred[name].to(true[name].dtype) - true[name]).abs().pow(2)
        dims = (-2, -1) if name == RHO else (-1,)
        out[name] = d.mean(dim=dims).sqrt()
    return out


def summarize_rmse(per_sample: dict[str, torch.Tensor]) -> dict[str, float]:
    """Average over samples; `rmse_total` is the sum of the per-variable averages (the paper's total)."""
    res = {f"rmse_{k}": float(v.double().mean()) for k, v in per_sample.items()}
    res["rmse_total"] = sum(res.values())
    return res


def next_step_rmse(predict_one: Callable[[State], State], current: State, nxt: State, batch: int = 1024) -> dict[str, float]:
    """One-step RMSE over all given (state, next) pairs."""
    parts: dict[str, list[torch.Tensor]] = {}
    n = current.rho.shape[0]
    for i in range(0, n, batch):
        sl = slice(i, i + batch)
        with torch.no_grad():
            pred = predict_one(current.index(sl))
        for k, v in rmse_per_sample(pred.to(dtype=torch.float64), nxt.index(sl)).items():
            parts.setdefault(k, []).append(v.cpu())
    return summarize_rmse({k: torch.cat(v) for k, v in parts.items()})


def rollout_rmse(
    predictor: Predictor, trajectories: State, starts: Sequence[int], horizon: int, record: Sequence[int]
) -> tuple[dict[str, Any], State]:
    """RMSE against the number of recurrent steps, averaged over trajectories and start times.

    `trajectories` is `(n_traj, n_time, ...)`. All (trajectory, start) pairs roll out as one batch.
    Returns the curve (at the step counts in `record`) and the predicted rollouts `(n_time', n_pairs, ...)`.
    """
    return rollout_rmse_from_truth(predictor, rollout_windows(trajectories, starts, horizon), record)


def rollout_windows(trajectories: State, starts: Sequence[int], horizon: int) -> State:
    """The truth windows `(horizon + 1, n_pairs, ...)` of every (trajectory, start) pair of `trajectories`
    `(n_traj, n_time, ...)`, for the starts that leave room for `horizon` steps (pairs: trajectory-major)."""
    starts = [s for s in starts if s + horizon < trajectories.rho.shape[1]]
    if not starts:
        raise ValueError(f"no start time leaves room for a {horizon}-step rollout")
    idx = torch.tensor(starts)[None, :] + torch.arange(horizon + 1)[:, None]  # (time, starts)
    return trajectories.map(lambda x: x[:, idx].permute(1, 0, 2, *range(3, x.ndim + 1)).reshape(horizon + 1, -1, *x.shape[2:]))


def rollout_rmse_from_truth(predictor: Predictor, truth: State, record: Sequence[int]) -> tuple[dict[str, Any], State]:
    """`rollout_rmse` against truth windows `(horizon + 1, n_samples, ...)` (each sample's rollout starts
    at its truth's first snapshot), so a caller can read just the windows instead of whole trajectories."""
    horizon = truth.rho.shape[0] - 1
    pred = predictor(truth.index(0), horizon)
    curve: dict[str, Any] = {"steps": list(record)}
    per_step: dict[str, list[float]] = {}
    for k in record:
        per_sample = rmse_per_sample(pred.index(k).to(dtype=torch.float64), truth.index(k))
        summary = summarize_rmse(per_sample)
        finite = torch.stack([torch.isfinite(v) for v in per_sample.values()]).all(0)
        summary["diverged_fraction"] = float(1 - finite.double().mean())  # non-finite predictions
        for key, v in summary.items():
            per_step.setdefault(key, []).append(v)
    curve.update(per_step)
    return curve, pred


def json_safe(obj: Any) -> Any:
    """NaN/inf (a diverged rollout) become null, so metrics.json stays strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def persistence(state0: State, n_steps: int) -> State:
    """The trivial baseline u(t + k) = u(t)."""
    return State.stack([state0] * (n_steps + 1))


def observable_diagnostics(observables: Sequence[Observable], pred: State, true: State) -> dict[str, dict[str, Any]]:
    """Per declared observable: RMSE of the prediction against the truth over every (time, batch) entry.

    Every entry has `kind`, `rmse` and `truth_rms` (the truth's own root mean square, the scale to
    judge the RMSE against). A spectrum adds the truth's dominant axis value, measured on these
    data (largest entry of the truth's spectrum averaged over time and batch): `dominant_q` (in the
    axis's units, radians for a wave vector), `dominant_q_over_pi`, `truth_mean_at_dominant_q` and
    `rmse_at_dominant_q`. `pred` and `true` are float64 States of the same shape.
    """
    out: dict[str, dict[str, Any]] = {}
    for obs in check_observables(observables):
        yt, yp = obs(true), obs(pred)
        entry: dict[str, Any] = {
            "kind": obs.kind,
            "rmse": float((yp - yt).pow(2).mean().sqrt()),
            "truth_rms": float(yt.pow(2).mean().sqrt()),
        }
        if obs.kind == "spectrum":
            assert obs.axis is not None
            k = dominant_index(yt)
            entry.update(
                dominant_q=obs.axis[k],
                dominant_q_over_pi=obs.axis[k] / math.pi,
                truth_mean_at_dominant_q=float(yt[..., k].mean()),
                rmse_at_dominant_q=float((yp[..., k] - yt[..., k]).pow(2).mean().sqrt()),
            )
        out[obs.name] = entry
    return out


def physics_diagnostics(system: System, pred: State, true: State) -> dict[str, Any]:
    """Trace and Hermiticity error of predicted rho, energy drift, and the System's observables vs truth.

    `pred`/`true` are `(n_time, batch, ...)` rollouts starting from the same state. The observables
    are those `system.observables()` declares (see `observable_diagnostics`), under `"observables"`.
    """
    pred64 = pred.to(dtype=torch.float64)
    true64 = true.to(dtype=torch.float64)
    rho = pred64.rho
    tr = torch.diagonal(rho, dim1=-2, dim2=-1).sum(-1)
    tr_true = torch.diagonal(true.rho, dim1=-2, dim2=-1).sum(-1)
    e_pred = system.energy(pred64)
    e_true0 = system.energy(true.index(0))
    scale = e_true0.abs().clamp_min(1.0)
    return {
        "trace_error_max": float((tr - tr_true).abs().max()),
        "hermiticity_error_max": float((rho - rho.mH).abs().amax()),
        "energy_drift_max_rel": float(((e_pred - e_true0) / scale).abs().max()),
        "energy_drift_final_rel": float(((e_pred[-1] - e_true0) / scale).abs().mean()),
        "truth_energy_drift_max_rel": float(((system.energy(true) - e_true0) / scale).abs().max()),
        "observables": observable_diagnostics(system.observables(), pred64, true64),
    }
