"""Climate statistics of long rollouts: autocorrelations, stationary distributions, the range rule for
diverged rollouts, time-averaged spectra; checked on series whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from toy_system import ToySystem

from qcsurrogate.evaluation.climate import (
    Series,
    allowed_range,
    autocorrelation,
    climate_statistics,
    divergence,
    first_exit,
    observe,
    orders,
    rollout_chunks,
    w1_over_std,
    window_chunks,
)
from qcsurrogate.observables import Observable
from qcsurrogate.pipeline.config import ClimateConfig, EvalConfig
from qcsurrogate.state import State


# -- autocorrelation ------------------------------------------------------------------------------------
def test_acf_of_a_pure_cosine_is_that_cosine():
    omega, T = 2 * math.pi / 50, 4000
    t = np.arange(T)
    c = autocorrelation(np.cos(omega * t + 0.3), max_lag=250)
    assert c.shape == (251,)
    # boundary terms of the finite window are O(1 / ((T - k) sin omega)) < 3e-3 here
    np.testing.assert_allclose(c, np.cos(omega * np.arange(251)), atol=3e-3)
    assert c[25] == pytest.approx(-1.0, abs=3e-3)  # half a period: anticorrelated


def test_acf_at_lag_zero_is_one_and_is_averaged_over_rollouts():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)) * np.arange(1, 6) + np.arange(5)  # rollouts of different mean and spread
    c = autocorrelation(x, max_lag=10)
    assert c[0] == pytest.approx(1.0, abs=1e-14)
    per = [autocorrelation(x[:, b], 10) for b in range(5)]
    np.testing.assert_allclose(c, np.mean(per, axis=0), rtol=1e-13)


def test_acf_of_an_ar1_process_decays_as_phi_to_the_lag():
    phi, T = 0.9, 200_000
    rng = np.random.default_rng(1)
    e = rng.normal(size=T)
    x = np.empty(T)
    x[0] = e[0]
    for i in range(1, T):
        x[i] = phi * x[i - 1] + e[i]
    c = autocorrelation(x, max_lag=30)
    np.testing.assert_allclose(c, phi ** np.arange(31), atol=0.02)


def test_acf_lags_stop_at_the_series_length_and_a_constant_series_never_decorrelates():
    c = autocorrelation(np.full((6, 2), 3.0), max_lag=250)
    np.testing.assert_array_equal(c, np.ones(6))
    with pytest.raises(ValueError, match="at least two"):
        autocorrelation(np.ones((1, 3)), 5)


# -- stationary distributions -------------------------------------------------------------------------
def test_w1_of_identical_samples_is_zero_and_of_a_shifted_sample_the_shift_over_std():
    rng = np.random.default_rng(2)
    a = rng.normal(2.0, 0.5, size=5000)
    assert w1_over_std(a, a.copy())["w1_over_std"] == 0.0
    r = w1_over_std(a, a + 0.2)
    assert r["w1"] == pytest.approx(0.2, rel=1e-12)
    assert r["truth_std"] == pytest.approx(a.std(), rel=1e-15)
    assert r["w1_over_std"] == pytest.approx(0.2 / a.std(), rel=1e-12)


# -- the 1.1x range rule ------------------------------------------------------------------------------
def test_allowed_range_widens_by_a_tenth_of_the_largest_magnitude():
    assert allowed_range(np.array([-2.0, 1.0, 2.0]), 1.1) == pytest.approx((-2.2, 2.2))  # signed order +-m
    assert allowed_range(np.array([1e-34, 0.5, 1.0]), 1.1) == pytest.approx((-0.1, 1.1))  # S(q) >= 0


def test_range_rule_flags_an_excursion_and_not_a_within_range_sample():
    truth = np.array([[-1.0, 0.5], [1.0, -0.5]])  # (time, rollout): range [-1, 1]
    bounds = allowed_range(truth, 1.1)
    inside = np.array([[0.0, 1.05], [-1.08, 0.3], [1.09, -1.0]])  # up to 1.09: not diverged
    outside = np.array([[0.0, 0.0], [0.5, -1.2], [1.2, 0.0]])  # 1.2 at step 2 / -1.2 at step 1
    np.testing.assert_array_equal(first_exit(inside, bounds), [-1, -1])
    np.testing.assert_array_equal(first_exit(outside, bounds), [2, 1])
    assert first_exit(np.array([[np.nan], [0.0]]), bounds)[0] == -1  # non-finite is the other criterion


def series(x: np.ndarray, finite: np.ndarray | None = None) -> Series:
    """A Series of one scalar order `m` (time, rollout)."""
    return Series({"m": x}, np.zeros_like(x), np.ones_like(x, bool) if finite is None else finite)


M = (Observable("m", lambda s: s["X"].sum(-1), label="order m"),)


def test_divergence_says_which_criterion_fired_and_when():
    t = np.linspace(0, 6, 50)
    truth = series(np.stack([np.sin(t), np.cos(t), np.sin(2 * t)], 1))
    p = truth.values["m"].copy()
    p[30, 1] = 1.5  # leaves [-1.1, 1.1] at step 30
    fin = np.ones_like(p, bool)
    fin[40:, 2] = False  # non-finite from step 40
    mask, rep = divergence(truth, series(p, fin), orders(M, truth), 1.1)
    np.testing.assert_array_equal(mask, [False, True, True])
    assert rep["fraction"] == pytest.approx(2 / 3) and rep["non_finite"] == 1 and rep["out_of_range"] == {"m": 1}
    assert rep["rollouts"] == [
        {"rollout": 1, "step": 30, "criteria": [{"criterion": "out_of_range", "order": "m", "step": 30}]},
        {"rollout": 2, "step": 40, "criteria": [{"criterion": "non_finite", "step": 40}]},
    ]
    _, rep = divergence(truth, series(p, fin), orders(M, truth), 1.1, watched=[])  # range rule off
    assert rep["out_of_range"] == {} and rep["n_diverged"] == 1
    with pytest.raises(ValueError, match=r"names \['S_Z'\], which the System does not declare"):
        divergence(truth, series(p, fin), orders(M, truth), 1.1, watched=["S_Z"])


# -- the whole section ----------------------------------------------------------------------------------
def test_climate_of_the_truth_itself_is_perfect_and_of_a_shifted_copy_is_the_shift():
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(size=(400, 4)), 0) * 0.01 + np.sin(np.arange(400) / 7.0)[:, None]
    truth = series(x)
    same = climate_statistics(M, truth, series(x.copy()), discard=50, max_lag=100, bins=20, range_factor=1.1)
    assert same["summary"] == {"diverged_fraction": 0.0, "max_acf_abs_diff": pytest.approx(0.0, abs=1e-15),
                               "max_w1_over_std": 0.0, "max_structure_factor_rel_l2": None,
                               "n_rollouts_in_statistics": 4, "truth_floor_max_acf_abs_diff": None,
                               "truth_floor_max_w1_over_std": None}
    e = same["orders"]["m"]
    assert e["acf"]["lags"] == list(range(101)) and e["acf"]["truth"][0] == pytest.approx(1.0)
    assert e["distribution"]["truth"] == e["distribution"]["surrogate"]
    edges = np.asarray(e["distribution"]["bin_edges"])
    assert len(edges) == 21 and (edges[0], edges[-1]) == pytest.approx(tuple(e["allowed_range"]))
    assert np.sum(np.diff(edges) * e["distribution"]["truth"]) == pytest.approx(1.0)  # a probability density
    s = 0.05
    shifted = climate_statistics(M, truth, series(x + s), discard=50, max_lag=100, bins=20, range_factor=1.1)
    d = shifted["orders"]["m"]["distribution"]
    assert d["w1_over_std"] == pytest.approx(s / x[50:].std(), rel=1e-9)
    assert shifted["orders"]["m"]["acf"]["max_abs_diff"] == pytest.approx(0.0, abs=1e-12)  # a shift keeps the ACF


def test_diverged_rollouts_are_left_out_of_the_statistics():
    t = np.arange(200)
    x = np.stack([np.sin(t / 5.0), np.sin(t / 5.0 + 1)], 1)
    p = x.copy()
    p[100:, 1] = 3.0  # runs off
    st = climate_statistics(M, series(x), series(p), discard=0, max_lag=20, bins=10, range_factor=1.1)
    assert st["summary"]["diverged_fraction"] == 0.5 and st["summary"]["n_rollouts_in_statistics"] == 1
    assert st["orders"]["m"]["distribution"]["surrogate_mean"] == pytest.approx(p[:, 0].mean())
    gone = climate_statistics(M, series(x), series(p + 5), discard=0, max_lag=20, bins=10, range_factor=1.1)
    assert gone["summary"]["max_acf_abs_diff"] is None and gone["orders"]["m"]["acf"]["surrogate"] is None


def wave_states(amp: np.ndarray, L: int = 4) -> State:
    """X = amp(t, b) cos(pi j / 2) on L sites; V = 0; rho = identity / 2."""
    a = torch.as_tensor(amp, dtype=torch.float64)
    j = torch.arange(L, dtype=torch.float64)
    X = a[..., None] * torch.cos(torch.pi / 2 * j)
    rho = 0.5 * torch.eye(L, dtype=torch.complex128).expand(*a.shape, L, L).clone()
    return State._raw({"X": X, "V": torch.zeros_like(X)}, rho)


def test_spectra_are_time_averaged_at_every_q_and_orders_taken_at_the_truths_dominant_q():
    system = ToySystem(L=4)  # declares S_X(q), S_V(q) over q = 0, pi/2, pi
    amp = 1.0 + 0.1 * np.sin(np.arange(60) / 3.0)[:, None] * np.ones((1, 2))
    truth, pred = observe(system, wave_states(amp)), observe(system, wave_states(1.1 * amp))
    st = climate_statistics(system.observables(), truth, pred, discard=0, max_lag=10, bins=10, range_factor=1.5)
    sx = st["structure_factor"]["S_X"]
    assert sx["q_over_pi"] == [0.0, 0.5, 1.0]
    S = (amp**2 * 4 / 4)  # |sum_j a cos(pi j/2) e^{-i pi j/2}|^2 / L = (a L / 2)^2 / L = a^2 at q = pi/2
    np.testing.assert_allclose(sx["truth"], [0.0, S.mean(), 0.0], atol=1e-12)
    np.testing.assert_allclose(sx["surrogate"], [0.0, 1.21 * S.mean(), 0.0], atol=1e-12)
    assert sx["rel_l2"] == pytest.approx(0.21, rel=1e-9)
    assert st["orders"]["S_X"]["q_over_pi"] == 0.5 and st["orders"]["S_X"]["at"] == "q = π/2"


# -- data handling ------------------------------------------------------------------------------------------
def test_chunked_rollout_and_truth_windows_hold_every_snapshot_once():
    calls = []

    def predictor(s: State, n: int) -> State:  # X grows by one per step
        calls.append(n)
        return State.stack([State._raw({"X": s["X"] + k}, s.rho) for k in range(n + 1)])

    s0 = State._raw({"X": torch.zeros(3, 2)}, torch.zeros(3, 2, 2, dtype=torch.complex128))
    parts = list(rollout_chunks(predictor, s0, 25, chunk=10))
    assert calls == [10, 10, 5]
    X = torch.cat([p["X"] for p in parts])
    np.testing.assert_array_equal(X[:, 0, 0].numpy(), np.arange(26))
    test = State._raw({"X": torch.arange(2 * 30, dtype=torch.float64).reshape(2, 30, 1)},
                      torch.zeros(2, 30, 1, 1, dtype=torch.complex128))
    w = State.cat(list(window_chunks(test, [0, 5], 12, chunk=4)))
    assert w["X"].shape == (13, 4, 1)
    np.testing.assert_array_equal(w["X"][:, 3, 0].numpy(), 30 + 5 + np.arange(13))  # trajectory 1, start 5


def test_observe_marks_non_finite_snapshots():
    s = wave_states(np.ones((5, 2)))
    s.fields["X"][3, 1, 0] = float("nan")
    obs = observe(ToySystem(L=4), s)
    assert obs.finite.shape == (5, 2) and not obs.finite[3, 1] and obs.finite.sum() == 9


# -- config -------------------------------------------------------------------------------------------
def test_absent_blocks_leave_the_evaluation_config_as_it_was():
    assert set(EvalConfig().model_dump()) == {"horizon", "starts", "next_step_max_pairs", "baselines", "figure_snapshots"}
    dumped = EvalConfig(climate={"horizon": 500}, predictability={}).model_dump(mode="json")
    assert dumped["climate"]["max_lag"] == 250 and dumped["predictability"]["perturbation"] == 1e-6
    with pytest.raises(ValueError, match="discard"):
        ClimateConfig(horizon=100, discard=99)



def test_truth_sampling_floor_compares_the_two_halves_of_the_trajectories():
    rng = np.random.default_rng(5)
    t = np.arange(300)[:, None]
    # trajectories 0, 1 oscillate slowly, 2, 3 fast: the halves differ, and by exactly what the ACF says
    x = np.concatenate([np.sin(t / 20.0 + rng.uniform(0, 6, (1, 4))), 2 * np.sin(t / 5.0 + rng.uniform(0, 6, (1, 4)))], 1)
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    out = climate_statistics(M, series(x), series(x.copy()), discard=0, max_lag=40, bins=10, range_factor=1.1,
                             groups=groups)
    floor = out["orders"][M[0].name]["truth_sampling_floor"]
    acf_a, acf_b = autocorrelation(x[:, :4], 40), autocorrelation(x[:, 4:], 40)
    assert floor["acf_max_abs_diff"] == pytest.approx(np.abs(acf_a - acf_b).max()) and floor["acf_max_abs_diff"] > 0.5
    assert floor["w1_over_std"] == pytest.approx(w1_over_std(x[:, :4], x[:, 4:])["w1_over_std"]) and floor["n_groups"] == [1, 1]
    assert out["summary"]["truth_floor_max_acf_abs_diff"] == pytest.approx(floor["acf_max_abs_diff"])
    one = climate_statistics(M, series(x), series(x.copy()), discard=0, max_lag=40, bins=10, range_factor=1.1,
                             groups=[0] * 8)
    assert one["orders"][M[0].name]["truth_sampling_floor"] is None  # one trajectory has no second half
