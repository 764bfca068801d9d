"""The paper's RMSE metrics against hand-computed values, and the physics diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qcsurrogate import State
from qcsurrogate.evaluation.metrics import (
    next_step_rmse,
    persistence,
    physics_diagnostics,
    rmse_per_sample,
    rollout_rmse,
    summarize_rmse,
)
from qcsurrogate.observables import default_observables
from qcsurrogate.testing import hermiticity_error


def const_state(q, p, r, batch=(), L=2):
    return State(
        {"Q": torch.full((*batch, L), float(q)), "P": torch.full((*batch, L), float(p))},
        torch.full((*batch, L, L), complex(r)),
    )


def test_rmse_matches_hand_computed_values():
    true = State({"Q": torch.tensor([1.0, 2.0]), "P": torch.tensor([0.0, 0.0])}, torch.zeros(2, 2, dtype=torch.complex128))
    pred = State({"Q": torch.tensor([1.0, 4.0]), "P": torch.tensor([3.0, -3.0])},
                 torch.tensor([[1j, 0], [0, 0]], dtype=torch.complex128))
    r = summarize_rmse(rmse_per_sample(pred, true))
    assert r["rmse_Q"] == pytest.approx(math.sqrt((0 + 4) / 2))
    assert r["rmse_P"] == pytest.approx(3.0)
    assert r["rmse_rho"] == pytest.approx(math.sqrt(1 / 4))  # element-wise magnitude over L^2 entries
    assert r["rmse_total"] == pytest.approx(math.sqrt(2) + 3.0 + 0.5)


def test_rmse_is_averaged_per_sample_not_pooled():
    true = const_state(0, 0, 0, batch=(2,))
    pred = State({"Q": torch.tensor([[1.0, 1.0], [3.0, 3.0]]), "P": torch.zeros(2, 2)}, torch.zeros(2, 2, 2))
    assert summarize_rmse(rmse_per_sample(pred, true))["rmse_Q"] == pytest.approx(2.0)  # mean(1, 3), not sqrt(5)


def test_persistence_and_rollout_curve():
    # a trajectory that moves Q by +1 per step: persistence error after k steps is exactly k
    n_time, L = 12, 3
    Q = torch.arange(n_time, dtype=torch.float64)[None, :, None].expand(2, n_time, L)
    traj = State({"Q": Q, "P": torch.zeros(2, n_time, L)}, torch.zeros(2, n_time, L, L))
    curve, pred = rollout_rmse(persistence, traj, starts=[0, 3], horizon=5, record=[1, 2, 5])
    assert curve["steps"] == [1, 2, 5]
    assert curve["rmse_Q"] == pytest.approx([1.0, 2.0, 5.0])
    assert curve["rmse_rho"] == pytest.approx([0.0, 0.0, 0.0])
    assert pred.rho.shape == (6, 4, L, L)

    def exact(s0, n):
        start = s0["Q"][:, 0]
        return State.stack([State({"Q": (start + k)[:, None].expand(-1, L), "P": s0["P"]}, s0.rho) for k in range(n + 1)])

    curve, _ = rollout_rmse(exact, traj, starts=[0, 3], horizon=5, record=[1, 5])
    assert curve["rmse_total"] == pytest.approx([0.0, 0.0])


def test_rollout_skips_starts_without_room_and_errors_when_none():
    traj = State({"Q": torch.zeros(1, 5, 2), "P": torch.zeros(1, 5, 2)}, torch.zeros(1, 5, 2, 2))
    curve, pred = rollout_rmse(persistence, traj, [0, 3], 3, [1, 3])
    assert pred.rho.shape[1] == 1
    with pytest.raises(ValueError):
        rollout_rmse(persistence, traj, [3], 3, [1])


def test_next_step_rmse_batches_consistently():
    cur = const_state(0, 0, 0, batch=(10,))
    nxt = const_state(1, 2, 0.5, batch=(10,))
    r = next_step_rmse(lambda s: s, cur, nxt, batch=3)
    assert r == pytest.approx({"rmse_Q": 1.0, "rmse_P": 2.0, "rmse_rho": 0.5, "rmse_total": 3.5})


class _FreeOscillators:
    """Energy = sum Q^2 + P^2 and Tr(rho), and the default observables S_Q(q), S_P(q): enough to exercise the diagnostics."""

    field_names = ("Q", "P")

    def __init__(self, L: int = 2) -> None:
        self.L = L

    def observables(self):
        return default_observables(self)

    def energy(self, s):
        return (s["Q"] ** 2 + s["P"] ** 2).sum(-1) + torch.diagonal(s.rho, dim1=-2, dim2=-1).sum(-1).real


def test_physics_diagnostics_detect_broken_rollouts():
    L = 2
    true = State.stack([const_state(1, 0, 0, L=L)] * 3)
    eye = torch.eye(L, dtype=torch.complex128)
    staggered = torch.tensor([1.0, -1.0], dtype=torch.float64).expand(3, L).clone()
    true = State._raw({**true.fields, "Q": staggered}, (0.5 * eye).expand(3, L, L).clone())
    good = true.clone()
    d = physics_diagnostics(_FreeOscillators(), good, true)
    assert d["trace_error_max"] == 0 and d["hermiticity_error_max"] == 0 and d["energy_drift_max_rel"] == 0
    bad_rho = true.rho.clone()
    bad_rho[-1, 0, 1] = 0.3  # not Hermitian
    bad_rho[-1, 0, 0] += 0.1  # trace off by 0.1
    bad = State._raw({"Q": true["Q"] * 1.1, "P": true["P"]}, bad_rho)
    d = physics_diagnostics(_FreeOscillators(), bad, true)
    assert d["trace_error_max"] == pytest.approx(0.1)
    assert d["hermiticity_error_max"] == pytest.approx(0.3)
    assert d["energy_drift_max_rel"] > 0.1
    # staggered Q = (1, -1) on L = 2 sites: S_Q(pi) = |sum_j (-1)^j Q_j|^2 / L = 2 in the truth, 2.2^2 / 2 = 2.42
    # predicted, and the connected S_Q(0) = 0 in both
    s_q = d["observables"]["S_Q"]
    assert s_q["dominant_q"] == pytest.approx(math.pi) and s_q["truth_mean_at_dominant_q"] == pytest.approx(2.0)
    assert s_q["rmse_at_dominant_q"] == pytest.approx(0.42)
    assert s_q["rmse"] == pytest.approx(0.42 / math.sqrt(2))  # over (time, q): q = pi contributes zeros
    assert d["observables"]["S_P"]["rmse"] == 0.0


def test_diverged_rollouts_are_counted_and_json_safe():
    import json

    from qcsurrogate.evaluation.metrics import json_safe

    traj = State({"Q": torch.zeros(2, 6, 2), "P": torch.zeros(2, 6, 2)}, torch.zeros(2, 6, 2, 2))

    def explode(s0, n):
        out = persistence(s0, n)
        out.fields["Q"][3:, 1] = float("nan")  # the second trajectory diverges from step 3 on
        return out

    curve, _ = rollout_rmse(explode, traj, [0], 4, [1, 3])
    assert curve["diverged_fraction"] == [0.0, 0.5]
    assert math.isnan(curve["rmse_total"][1])
    text = json.dumps(json_safe(curve), allow_nan=False)
    assert json.loads(text)["rmse_total"][1] is None


# -- Hermiticity diagnostic on complex matrices -----------------------------------------------------
def _complex_rollout(seed: int, n_time: int, batch: int, L: int, kind: str, dtype: torch.dtype) -> State:
    """`(n_time, batch)` snapshots whose rho is Hermitian (A + A^H) or complex symmetric (A + A^T)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.complex(torch.randn(n_time, batch, L, L, generator=g, dtype=torch.float64),
                      torch.randn(n_time, batch, L, L, generator=g, dtype=torch.float64)).to(dtype)
    rho = a + (a.mH if kind == "hermitian" else a.mT)
    zeros = torch.zeros(n_time, batch, L, dtype=torch.float64)
    return State._raw({"Q": zeros, "P": zeros.clone()}, rho)


herm_params = {
    "seed": st.integers(0, 10_000),
    "n_time": st.integers(1, 3),
    "batch": st.integers(1, 3),
    "L": st.integers(2, 6),
    "dtype": st.sampled_from([torch.complex128, torch.complex64]),
}


@settings(deadline=None, max_examples=15)
@given(**herm_params)
def test_hermitian_complex_matrices_have_zero_hermiticity_error(seed, n_time, batch, L, dtype):
    pred = _complex_rollout(seed, n_time, batch, L, "hermitian", dtype)
    off_diag = pred.rho.imag * (1 - torch.eye(L))
    assert float(off_diag.abs().max()) > 0.05  # genuinely complex: imaginary off-diagonals
    d = physics_diagnostics(_FreeOscillators(L), pred, pred.to(dtype=torch.float64))
    assert d["hermiticity_error_max"] == 0.0
    assert hermiticity_error(pred.rho) == 0.0


@settings(deadline=None, max_examples=15)
@given(**herm_params)
def test_complex_symmetric_matrices_are_not_hermitian(seed, n_time, batch, L, dtype):
    """rho = rho^T with imaginary entries: a transpose instead of a conjugate transpose would see 0."""
    pred = _complex_rollout(seed, n_time, batch, L, "symmetric", dtype)
    assert torch.equal(pred.rho, pred.rho.mT)
    rho64 = pred.rho.to(torch.complex128)
    # |rho_ij - conj(rho_ji)| = |rho_ij - conj(rho_ij)| = 2 |Im rho_ij| for a symmetric matrix
    expected = 2 * float(rho64.imag.abs().max())
    assert expected > 0.1
    d = physics_diagnostics(_FreeOscillators(L), pred, pred.to(dtype=torch.float64))
    assert d["hermiticity_error_max"] == pytest.approx(expected, rel=1e-15)
    assert d["hermiticity_error_max"] == pytest.approx(float((rho64 - rho64.conj().transpose(-2, -1)).abs().max()))
    assert hermiticity_error(rho64) == pytest.approx(expected, rel=1e-15)
