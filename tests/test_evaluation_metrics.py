"""Metrics against hand-computed values: energy drifts relative to max(|E0|, 1), final vs max drift, the truth's
own drift, the RMSE of declared observables, rollout start-time edges, per-sample shapes and strict-JSON conversion."""

from __future__ import annotations

import json
import math

import pytest
import torch

from qcsurrogate import State
from qcsurrogate.evaluation.metrics import (
    json_safe,
    next_step_rmse,
    persistence,
    physics_diagnostics,
    rmse_per_sample,
    rollout_rmse,
)
from qcsurrogate.observables import Observable, structure_factor, wavevectors


class _Energy:
    """E = sum_i Q_i (linear, so drifts are easy to compute by hand); declares the observables it is given."""

    def __init__(self, *observables: Observable) -> None:
        self._observables = observables

    def energy(self, s):
        return s["Q"].sum(-1)

    def observables(self):
        return self._observables


def rollout(Q: list[list[float]], L: int = 2) -> State:
    """`(n_time, batch=len(Q[0]))` snapshots with uniform Q (per site Q / L), P = 0, rho = diag(1/2)."""
    q = torch.tensor(Q, dtype=torch.float64)[..., None].expand(-1, -1, L) / L
    rho = (0.5 * torch.eye(L, dtype=torch.complex128)).expand(*q.shape[:2], L, L).clone()
    return State._raw({"Q": q.clone(), "P": torch.zeros_like(q)}, rho)


@pytest.mark.parametrize("e0, scale", [(4.0, 4.0), (0.5, 1.0), (-3.0, 3.0)], ids=["|E0|>1", "|E0|<1", "E0<0"])
def test_energy_drifts_are_relative_to_max_abs_e0_and_one(e0, scale):
    # truth energies over time per trajectory (batch 2); the prediction drifts differently
    true = rollout([[e0, e0], [e0 + 0.1, e0], [e0, e0 - 0.2]])
    pred = rollout([[e0, e0], [e0 + 0.6, e0 - 0.3], [e0 + 0.4, e0 - 0.2]])
    d = physics_diagnostics(_Energy(), pred, true)
    assert d["energy_drift_max_rel"] == pytest.approx(0.6 / scale)
    assert d["energy_drift_final_rel"] == pytest.approx((0.4 + 0.2) / 2 / scale)  # mean over the batch, last time
    assert d["truth_energy_drift_max_rel"] == pytest.approx(0.2 / scale)
    assert d["trace_error_max"] == 0 and d["hermiticity_error_max"] == 0


def test_scalar_observable_rmse_is_over_time_and_batch():
    L = 4
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    amp_true = torch.tensor([[1.0, 0.0], [0.5, 0.0]], dtype=torch.float64)  # (time, batch)
    amp_pred = torch.tensor([[1.0, 0.3], [0.1, 0.0]], dtype=torch.float64)
    rho = (0.5 * torch.eye(L, dtype=torch.complex128)).expand(2, 2, L, L).clone()

    def state(amp):
        x = amp[..., None] * sign
        return State._raw({"Q": x + 2.0, "P": 3.0 * x}, rho)

    stag = [Observable(f"m_{f}", lambda s, f=f: (s[f] * sign).mean(-1)) for f in ("Q", "P")]
    d = physics_diagnostics(_Energy(*stag), state(amp_pred), state(amp_true))
    assert list(d["observables"]) == ["m_Q", "m_P"]
    assert d["observables"]["m_Q"] == pytest.approx(
        {"kind": "scalar", "rmse": math.sqrt((0 + 0.3**2 + 0.4**2 + 0) / 4), "truth_rms": math.sqrt((1 + 0.25) / 4)}
    )
    assert d["observables"]["m_P"]["rmse"] == pytest.approx(3 * math.sqrt((0.3**2 + 0.4**2) / 4))


def test_spectrum_dominant_q_is_the_truths_time_average_not_the_surrogates():
    """Truth: a q = pi/2 wave all the time plus a q = pi burst at one time; the surrogate puts everything at pi.

    The dominant q follows the truth's time average: pi while the burst's mean wins, pi/2 once the burst is
    halved (although its peak, 4.5 at one time, still exceeds S(pi/2) = 2)."""
    L, n_time = 8, 4
    j = torch.arange(L, dtype=torch.float64)
    amp_half = torch.full((n_time, 1), 1.0, dtype=torch.float64)
    amp_pi = torch.tensor([[0.0], [0.0], [0.0], [1.5]], dtype=torch.float64)  # S(pi) = L * 1.5^2 = 18 once
    Q_true = amp_half[..., None] * torch.cos(torch.pi / 2 * j) + amp_pi[..., None] * torch.cos(torch.pi * j)
    Q_pred = 2.0 * torch.cos(torch.pi * j).expand(n_time, 1, L)  # the surrogate puts everything at q = pi
    rho = (0.5 * torch.eye(L, dtype=torch.complex128)).expand(n_time, 1, L, L).clone()
    true = State._raw({"Q": Q_true, "P": torch.zeros_like(Q_true)}, rho)
    pred = State._raw({"Q": Q_pred.clone(), "P": torch.zeros_like(Q_true)}, rho)
    q = wavevectors(L)
    obs = Observable("S_Q", lambda s: structure_factor(s["Q"], q), kind="spectrum", axis=q)
    (entry,) = physics_diagnostics(_Energy(obs), pred, true)["observables"].values()
    # truth S(pi/2) = L/4 = 2 at every time; S(pi) = 0, 0, 0, 18 with mean 4.5 > 2
    assert entry["dominant_q"] == pytest.approx(math.pi) and entry["dominant_q_over_pi"] == pytest.approx(1.0)
    assert entry["truth_mean_at_dominant_q"] == pytest.approx(4.5)
    # predicted S(pi) = L * 4 = 32 at every time; truth 0, 0, 0, 18
    assert entry["rmse_at_dominant_q"] == pytest.approx(math.sqrt((3 * 32**2 + 14**2) / 4))
    # halve the burst: S(pi) mean = L * 0.75^2 / 4 = 1.125 < 2, and the dominant q moves to pi/2
    true.fields["Q"] = amp_half[..., None] * torch.cos(torch.pi / 2 * j) + 0.5 * amp_pi[..., None] * torch.cos(torch.pi * j)
    (entry,) = physics_diagnostics(_Energy(obs), pred, true)["observables"].values()
    assert entry["dominant_q_over_pi"] == pytest.approx(0.5) and entry["truth_mean_at_dominant_q"] == pytest.approx(2.0)
    assert entry["rmse_at_dominant_q"] == pytest.approx(2.0)  # predicted S(pi/2) = 0


def test_diagnostics_report_only_what_the_system_declares():
    true = rollout([[1.0], [1.0]])
    d = physics_diagnostics(_Energy(), true, true)
    assert d["observables"] == {}
    assert not any("staggered" in k for k in d)


def test_trace_error_is_against_the_true_trace_per_snapshot():
    true = rollout([[1.0], [1.0]])
    pred = true.clone()
    pred.rho[1, 0, 1, 1] = 0.9  # trace 1.4 instead of 1.0
    true_rho = true.rho.clone()
    true_rho[0, 0] *= 2  # true trace 2 at t = 0; prediction keeps 1
    true = State._raw(true.fields, true_rho)
    d = physics_diagnostics(_Energy(), pred, true)
    assert d["trace_error_max"] == pytest.approx(1.0)  # max(|1 - 2|, |1.4 - 1|)


def test_rollout_uses_starts_whose_horizon_ends_at_the_last_snapshot():
    n_time = 6
    Q = torch.arange(n_time, dtype=torch.float64)[None, :, None].expand(1, n_time, 2)
    traj = State._raw({"Q": Q.clone(), "P": torch.zeros(1, n_time, 2)}, torch.zeros(1, n_time, 2, 2, dtype=torch.complex128))
    curve, pred = rollout_rmse(persistence, traj, [0, 2, 3], 3, [3])  # 2 + 3 = 5: the last snapshot; 3 + 3: none
    assert pred.rho.shape == (4, 2, 2, 2)
    assert curve == {"steps": [3], "rmse_Q": [3.0], "rmse_P": [0.0], "rmse_rho": [0.0], "rmse_total": [3.0],
                     "diverged_fraction": [0.0]}
    with pytest.raises(ValueError, match="no start time leaves room for a 3-step rollout"):
        rollout_rmse(persistence, traj, [3, 4], 3, [1])


def test_persistence_repeats_the_state():
    s = rollout([[1.0, 2.0]]).index(0)
    p = persistence(s, 3)
    assert p.rho.shape == (4, 2, 2, 2)
    for k in range(4):
        assert torch.equal(p["Q"][k], s["Q"]) and torch.equal(p.rho[k], s.rho)


def test_rmse_per_sample_is_shaped_like_the_batch_and_casts_the_prediction():
    true = rollout([[1.0, 2.0, 3.0]]).index(0)
    pred = true.to(dtype=torch.float32)
    pred.fields["Q"] = pred["Q"] + torch.tensor([[0.0], [1.0], [2.0]])
    r = rmse_per_sample(pred, true)
    assert set(r) == {"Q", "P", "rho"} and all(v.shape == (3,) for v in r.values())
    assert r["Q"].dtype == torch.float64
    assert torch.allclose(r["Q"], torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    nxt = next_step_rmse(lambda s: s.to(dtype=torch.float32), true, pred.to(dtype=torch.float64), batch=2)
    assert nxt["rmse_Q"] == pytest.approx(1.0) and nxt["rmse_total"] == pytest.approx(1.0)


def test_json_safe_turns_non_finite_floats_into_null_everywhere():
    obj = {"a": [1.0, float("nan"), (float("inf"), 2)], "b": {"c": -float("inf"), "d": 3, "e": "x", "f": None}}
    out = json_safe(obj)
    assert out == {"a": [1.0, None, [None, 2]], "b": {"c": None, "d": 3, "e": "x", "f": None}}
    assert isinstance(out["a"][2], list)
    json.dumps(out, allow_nan=False)
