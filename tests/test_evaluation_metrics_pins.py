"""Precision and batching of the metrics: predictions are compared at the truth's precision, one-step RMSE
is evaluated in chunks of `batch`, physics diagnostics of a float32 rollout run in float64."""

from __future__ import annotations

import torch

from qcsurrogate import State, simulate
from qcsurrogate.evaluation.metrics import next_step_rmse, physics_diagnostics, rmse_per_sample


def state(q: torch.Tensor) -> State:
    L = q.shape[-1]
    rho = (0.5 * torch.eye(L, dtype=torch.complex128 if q.dtype == torch.float64 else torch.complex64))
    return State._raw({"Q": q, "P": torch.zeros_like(q)}, rho.expand(*q.shape[:-1], L, L).clone())


def test_rmse_per_sample_rounds_the_prediction_to_the_truths_precision():
    true = state(torch.ones(3, 2, dtype=torch.float32))
    pred = state(torch.full((3, 2), 1.0 + 1e-9, dtype=torch.float64))  # rounds to exactly 1.0 in float32
    r = rmse_per_sample(pred, true)
    assert all(v.dtype == torch.float32 for v in r.values())
    assert torch.equal(r["Q"], torch.zeros(3))


def test_next_step_rmse_feeds_consecutive_chunks_of_batch_pairs():
    q = torch.arange(10, dtype=torch.float64)[:, None].expand(10, 2).clone()
    seen = []

    def predict(s):
        seen.append(s["Q"][:, 0].tolist())
        return s

    nxt = state(q + 1)
    res = next_step_rmse(predict, state(q), nxt, batch=4)
    assert seen == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0]]
    assert res["rmse_Q"] == 1.0 and res["rmse_P"] == 0.0


def test_physics_diagnostics_of_a_float32_copy_of_the_truth_are_exact():
    from toy_system import ToySystem

    system = ToySystem(L=4)
    y0 = system.initial_state("random_start", seed=1, n_traj=2)
    true = simulate(system, y0, 0.05, 5).to(dtype=torch.float32).to(dtype=torch.float64)  # float32-representable
    pred = true.to(dtype=torch.float32)
    d = physics_diagnostics(system, pred, true)
    assert d["trace_error_max"] == 0.0
    assert d["energy_drift_max_rel"] == d["truth_energy_drift_max_rel"]
    assert set(d["observables"]) == {"S_X", "S_V"}  # the toy declares nothing: the default structure factors
    for entry in d["observables"].values():
        assert entry["rmse"] == 0.0 and entry["rmse_at_dominant_q"] == 0.0 and entry["truth_rms"] > 0
