"""Statistics ("climate") of rollouts longer than the predictability horizon, against the truth.

Past the horizon over which a chaotic trajectory can be predicted point by point, a surrogate is judged
by whether its rollouts have the truth's statistics. Everything here is computed from the observables a
System declares (`System.observables()`); an *order* is a scalar observable as it is, or a spectrum
(a structure factor S(q)) at the truth's dominant q, the largest entry of the truth's spectrum averaged
over the statistics window and the rollouts.

For the rollouts of the truth and of the surrogate from the same start states (held-out trajectories,
the same windows), with the first `discard` model steps of each window left out of the statistics:

- **autocorrelation** of each order, per rollout

      C(k) = sum_{t=0}^{T-1-k} (x_t - m)(x_{t+k} - m) / ((T - k) v),   k = 0 .. max_lag,

  with m and v the rollout's own mean and variance over its T statistics steps (C(0) = 1; a constant
  rollout, v = 0, never decorrelates: C = 1), averaged over rollouts; reported with the largest
  |C_surrogate(k) - C_truth(k)| over the lags;
- **stationary distribution** of each order: every value of the statistics windows pooled over rollouts,
  histograms (probability densities on common bins spanning the allowed range below) and the
  Wasserstein-1 distance between the pooled samples divided by the truth's standard deviation (a
  distance in units of the truth's spread; a rigid shift by s gives s / std);
- **time-averaged spectra**: each spectrum observable averaged over the statistics windows and rollouts,
  at every q, and the relative L2 difference ||S_sur - S_truth|| / ||S_truth||;
- **diverged rollouts**: a surrogate rollout is diverged when any variable is non-finite at any step
  (criterion `non_finite`), or when an order leaves the truth's range widened by `range_factor`
  (criterion `out_of_range`, the count the paper's authors use with 1.1): both ends of the truth's range
  [lo, hi] (over every step of every truth window) move outward by (range_factor - 1) M, with
  M = max(|lo|, |hi|) the truth's largest magnitude: [lo - 0.1 M, hi + 0.1 M] for 1.1, so a signed order
  of range +-m may reach +-1.1 m and a non-negative S(q) 1.1 times the truth's largest (and a value
  that is 0 where the truth is 1e-34 is not an exit). Diverged rollouts are counted and left out of
  the surrogate's statistics; which criterion fired, for which order and at which step is recorded;
- **energy drift**: (E(t) - E(0)) / max(|E(0)|, 1) of every rollout, the truth's beside the surrogate's;
- **the truth's own sampling noise** (given the trajectory each rollout comes from): the same ACF and W1
  distances between the truth rollouts of the first and of the second half of the trajectories. With
  few held-out trajectories a surrogate cannot be shown closer than this; it overstates the noise of the
  full comparison by about sqrt(2) (two half-size sets instead of two full-size ones).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from ..observables import Observable, check_observables, format_over_pi
from ..state import State
from ..system import System

Predictor = Callable[[State, int], State]


# -- time series of observables -----------------------------------------------------------------------
@dataclass
class Series:
    """Observables of a set of rollouts: `values[name]` is `(n_time, batch)` (scalar) or
    `(n_time, batch, n_axis)` (spectrum), `energy` `(n_time, batch)`, `finite` `(n_time, batch)` (every
    variable of that snapshot finite). float64 numpy arrays."""

    values: dict[str, np.ndarray]
    energy: np.ndarray
    finite: np.ndarray

    @property
    def n_time(self) -> int:
        return self.energy.shape[0]

    @staticmethod
    def cat(parts: Sequence[Series]) -> Series:
        """Join along time."""
        return Series({k: np.concatenate([p.values[k] for p in parts]) for k in parts[0].values},
                      np.concatenate([p.energy for p in parts]), np.concatenate([p.finite for p in parts]))


def observe(system: System, traj: State) -> Series:
    """The System's observables, energy and finiteness of `traj` `(n_time, batch, ...)`."""
    s = traj.detach().to(device="cpu", dtype=torch.float64)
    if s.rho.ndim != 4:
        raise ValueError(f"observe needs rollouts shaped (n_time, batch, ...), got rho of shape {tuple(s.rho.shape)}")
    finite = torch.stack([torch.isfinite(v).reshape(*v.shape[:2], -1).all(-1) for v in s.variables().values()]).all(0)
    with torch.no_grad():
        values = {o.name: o(s).numpy() for o in check_observables(system.observables())}
        energy = system.energy(s).numpy()
    return Series(values, np.asarray(energy, dtype=float), finite.numpy())


def observe_chunks(system: System, chunks: Iterable[State]) -> Series:
    """`observe` on consecutive time chunks of one long set of rollouts, joined along time."""
    return Series.cat([observe(system, c) for c in chunks])


def rollout_chunks(predictor: Predictor, state0: State, n_steps: int, chunk: int = 100) -> Iterable[State]:
    """A `n_steps` rollout of a Markov `predictor` in pieces of at most `chunk` steps (t = 0 included once),
    so that only one piece is held at a time; the same snapshots as `predictor(state0, n_steps)`."""
    done, y = 0, state0
    while done < n_steps:
        n = min(chunk, n_steps - done)
        piece = predictor(y, n)
        yield piece if done == 0 else piece.index(slice(1, None))
        y = piece.index(-1)
        done += n


def window_chunks(test: State, starts: Sequence[int], horizon: int, chunk: int = 100) -> Iterable[State]:
    """Truth windows `(time, n_traj * n_starts, ...)` (batch order of `rollout_rmse`: trajectory-major) over
    steps 0 .. horizon, in time chunks of at most `chunk + 1` snapshots."""
    s0 = torch.tensor(list(starts))
    for a in range(0, horizon + 1, chunk + 1):
        b = min(a + chunk + 1, horizon + 1)
        idx = s0[None, :] + torch.arange(a, b)[:, None]  # (time, starts)
        n = b - a
        yield test.map(
            lambda x, idx=idx, n=n: x[:, idx].permute(1, 0, 2, *range(3, x.ndim + 1)).reshape(n, -1, *x.shape[2:]))


# -- statistics -----------------------------------------------------------------------------------------
def autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    """C(k), k = 0 .. min(max_lag, T - 1), of each column of `x` `(T, batch)` (see the module doc), averaged
    over the columns. A 1-D `x` is one series."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    T = x.shape[0]
    if T < 2:
        raise ValueError(f"an autocorrelation needs at least two time steps, got {T}")
    K = min(max_lag, T - 1)
    d = x - x.mean(0)
    var = (d**2).mean(0)
    out = np.empty((K + 1, x.shape[1]))
    for k in range(K + 1):
        out[k] = (d[: T - k] * d[k:]).mean(0)
    flat = var <= 1e-300 * np.maximum(1.0, np.abs(x).max(0) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = out / np.where(flat, 1.0, var)
    c[:, flat] = 1.0  # a constant series never decorrelates
    return c.mean(1)


def w1_over_std(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Wasserstein-1 distance of the pooled samples, and divided by the truth's standard deviation."""
    t, p = np.ravel(truth).astype(float), np.ravel(pred).astype(float)
    w1 = float(wasserstein_distance(t, p))
    std = float(t.std())
    return {"w1": w1, "truth_std": std, "w1_over_std": w1 / std if std > 0 else (0.0 if w1 == 0 else math.inf)}


def allowed_range(truth: np.ndarray, factor: float) -> tuple[float, float]:
    """The truth's range [lo, hi] with both ends moved outward by (factor - 1) max(|lo|, |hi|)."""
    t = np.asarray(truth, dtype=float)
    t = t[np.isfinite(t)]
    lo, hi = float(t.min()), float(t.max())
    pad = (factor - 1) * max(abs(lo), abs(hi))
    return lo - pad, hi + pad


def first_exit(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Per column of `x` `(T, batch)`: the first step at which it is outside `bounds` (a non-finite value is
    not an exit: that is the other criterion), or -1 if it never leaves."""
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore"):
        out = np.isfinite(x) & ((x < bounds[0]) | (x > bounds[1]))
    return np.where(out.any(0), out.argmax(0), -1)


def dominant_index(spectrum: np.ndarray) -> int:
    """Largest entry of the spectrum averaged over every leading axis (non-finite entries ignored)."""
    m = np.asarray(spectrum, dtype=float).reshape(-1, spectrum.shape[-1])
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(np.isfinite(m), m, np.nan), axis=0)
    return int(np.argmax(np.nan_to_num(mean, nan=-np.inf)))


@dataclass(frozen=True)
class Order:
    """A scalar observable, or a spectrum at one of its axis indices."""

    obs: Observable
    index: int | None

    @property
    def name(self) -> str:
        return self.obs.name

    def of(self, series: Series) -> np.ndarray:
        v = series.values[self.obs.name]
        return v if self.index is None else v[..., self.index]

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.obs.kind, "label": self.obs.label, "unit": self.obs.unit}
        if self.index is not None:
            assert self.obs.axis is not None
            q = self.obs.axis[self.index]
            d.update(axis_name=self.obs.axis_name, q=q, q_over_pi=q / math.pi,
                     at=f"{self.obs.axis_name} = {format_over_pi(q)}")
        return d


def orders(observables: Sequence[Observable], truth: Series, discard: int = 0) -> list[Order]:
    """One order per declared observable; a spectrum at the truth's dominant index over the statistics window."""
    out = []
    for o in check_observables(observables):
        idx = dominant_index(truth.values[o.name][discard:]) if o.kind == "spectrum" else None
        out.append(Order(o, idx))
    return out


def _floats(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=float)]


def divergence(
    truth: Series, pred: Series, order_list: Sequence[Order], factor: float, watched: Sequence[str] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Which surrogate rollouts diverged, by which criterion, at which step. Returns (diverged mask, report).

    The range rule watches the orders named in `watched` (default: all)."""
    n = pred.energy.shape[1]
    nonfinite_at = np.where((~pred.finite).any(0), (~pred.finite).argmax(0), -1)
    exits: dict[str, np.ndarray] = {}
    bounds: dict[str, tuple[float, float]] = {}
    known = [o.name for o in order_list]
    unknown = sorted(set(watched or ()) - set(known))
    if unknown:
        raise ValueError(f"range_orders names {unknown}, which the System does not declare; it declares {known}")
    for o in order_list:
        if watched is not None and o.name not in watched:
            continue
        bounds[o.name] = allowed_range(o.of(truth), factor)
        exits[o.name] = first_exit(o.of(pred), bounds[o.name])
    diverged = nonfinite_at >= 0
    for e in exits.values():
        diverged |= e >= 0
    rollouts = []
    for i in np.flatnonzero(diverged):
        criteria = []
        if nonfinite_at[i] >= 0:
            criteria.append({"criterion": "non_finite", "step": int(nonfinite_at[i])})
        for name, e in exits.items():
            if e[i] >= 0:
                criteria.append({"criterion": "out_of_range", "order": name, "step": int(e[i])})
        rollouts.append({"rollout": int(i), "step": min(c["step"] for c in criteria), "criteria": criteria})
    report = {
        "fraction": float(diverged.mean()) if n else 0.0,
        "n_diverged": int(diverged.sum()),
        "n_rollouts": int(n),
        "non_finite": int((nonfinite_at >= 0).sum()),
        "out_of_range": {name: int((e >= 0).sum()) for name, e in exits.items()},
        "out_of_range_any": int(np.any([e >= 0 for e in exits.values()], axis=0).sum()) if exits else 0,
        "allowed_range": {name: list(b) for name, b in bounds.items()},
        "watched_orders": list(exits),
        "range_factor": factor,
        "rollouts": rollouts,
    }
    return diverged, report


def energy_drift(series: Series, keep: np.ndarray | None = None) -> dict[str, float | None]:
    """Relative energy drift (E(t) - E(0)) / max(|E(0)|, 1) of the (kept) rollouts."""
    e = series.energy if keep is None else series.energy[:, keep]
    if e.shape[1] == 0:
        return {"max_abs_rel": None, "final_abs_rel_mean": None, "final_rel_mean": None}
    d = (e - e[0]) / np.maximum(np.abs(e[0]), 1.0)
    return {"max_abs_rel": float(np.abs(d).max()), "final_abs_rel_mean": float(np.abs(d[-1]).mean()),
            "final_rel_mean": float(d[-1].mean())}


def sampling_floor(series: np.ndarray, groups: Sequence[int], max_lag: int) -> dict[str, float] | None:
    """ACF and W1/std distances between the rollouts `(T, batch)` of the first and the second half of the
    groups (trajectories): the truth against itself. None with fewer than two groups."""
    ids = np.asarray(groups)
    distinct = np.unique(ids)
    if len(distinct) < 2:
        return None
    first = np.isin(ids, distinct[: len(distinct) // 2])
    a, b = series[:, first], series[:, ~first]
    acf_a, acf_b = autocorrelation(a, max_lag), autocorrelation(b, max_lag)
    return {"acf_max_abs_diff": float(np.abs(acf_a - acf_b).max()), "w1_over_std": w1_over_std(a, b)["w1_over_std"],
            "n_groups": [int(len(distinct) // 2), int(len(distinct) - len(distinct) // 2)]}


def climate_statistics(
    observables: Sequence[Observable], truth: Series, pred: Series, *, discard: int, max_lag: int, bins: int,
    range_factor: float, range_orders: Sequence[str] | None = None, groups: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The climate section of metrics.json for rollouts `pred` against `truth` (same windows, same batch order).

    `groups` (the trajectory of each rollout) adds the truth's sampling floor per order and in the summary."""
    if truth.energy.shape != pred.energy.shape:
        raise ValueError(f"truth and surrogate series differ in shape: {truth.energy.shape} vs {pred.energy.shape}")
    order_list = orders(observables, truth, discard)
    diverged, div = divergence(truth, pred, order_list, range_factor, range_orders)
    keep = ~diverged
    T = truth.n_time - discard
    out_orders: dict[str, Any] = {}
    for o in order_list:
        xt = o.of(truth)[discard:]
        xp = o.of(pred)[discard:, keep]
        lo, hi = div["allowed_range"].get(o.name) or allowed_range(o.of(truth), range_factor)
        entry = o.describe()
        acf_t = autocorrelation(xt, max_lag)
        lags = np.arange(len(acf_t))
        edges = np.linspace(lo, hi, bins + 1) if hi > lo else np.linspace(lo - 0.5, hi + 0.5, bins + 1)
        ht, _ = np.histogram(xt.ravel(), bins=edges, density=True)
        entry["truth_range"] = [float(np.nanmin(o.of(truth))), float(np.nanmax(o.of(truth)))]
        entry["allowed_range"] = [lo, hi]
        entry["acf"] = {"lags": [int(k) for k in lags], "truth": _floats(acf_t)}
        entry["distribution"] = {"bin_edges": _floats(edges), "truth": _floats(ht),
                                 "truth_mean": float(xt.mean()), "truth_std": float(xt.std())}
        entry["truth_sampling_floor"] = sampling_floor(xt, groups, max_lag) if groups is not None else None
        if keep.any():
            acf_p = autocorrelation(xp, max_lag)
            entry["acf"].update(surrogate=_floats(acf_p), max_abs_diff=float(np.abs(acf_p - acf_t).max()))
            hp, _ = np.histogram(xp.ravel(), bins=edges, density=True)
            entry["distribution"].update(surrogate=_floats(hp), surrogate_mean=float(xp.mean()),
                                         surrogate_std=float(xp.std()), **w1_over_std(xt, xp))
        else:
            entry["acf"].update(surrogate=None, max_abs_diff=None)
            entry["distribution"].update(surrogate=None, surrogate_mean=None, surrogate_std=None, w1=None,
                                         w1_over_std=None)
        out_orders[o.name] = entry
    spectra: dict[str, Any] = {}
    for o in check_observables(observables):
        if o.kind != "spectrum":
            continue
        assert o.axis is not None
        st = truth.values[o.name][discard:].mean((0, 1))
        e: dict[str, Any] = {"label": o.label, "unit": o.unit, "axis_name": o.axis_name, "q": list(o.axis),
                             "q_over_pi": [q / math.pi for q in o.axis], "truth": _floats(st)}
        if keep.any():
            sp = pred.values[o.name][discard:, keep].mean((0, 1))
            e.update(surrogate=_floats(sp), rel_l2=float(np.linalg.norm(sp - st) / max(np.linalg.norm(st), 1e-300)))
        else:
            e.update(surrogate=None, rel_l2=None)
        spectra[o.name] = e

    def worst(values: Iterable[float | None]) -> float | None:
        v = [x for x in values if x is not None]
        return max(v) if v else None

    return {
        "summary": {
            "diverged_fraction": div["fraction"],
            "max_acf_abs_diff": worst(e["acf"]["max_abs_diff"] for e in out_orders.values()),
            "max_w1_over_std": worst(e["distribution"]["w1_over_std"] for e in out_orders.values()),
            "max_structure_factor_rel_l2": worst(e["rel_l2"] for e in spectra.values()),
            "n_rollouts_in_statistics": int(keep.sum()),
            "truth_floor_max_acf_abs_diff": worst((e["truth_sampling_floor"] or {}).get("acf_max_abs_diff")
                                                  for e in out_orders.values()),
            "truth_floor_max_w1_over_std": worst((e["truth_sampling_floor"] or {}).get("w1_over_std")
                                                 for e in out_orders.values()),
        },
        "n_rollouts": int(truth.energy.shape[1]),
        "statistics_steps": int(T),
        "diverged": div,
        "orders": out_orders,
        "structure_factor": spectra,
        "energy": {"surrogate": energy_drift(pred, keep), "truth": energy_drift(truth)},
    }
