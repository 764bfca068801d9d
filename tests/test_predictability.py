"""The truth's predictability: growth of perturbations under the exact solver, checked against closed
forms (a linearly unstable toy) and against a direct integration of both states."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from toy_system import ScalarLinear, ToySystem

from qcsurrogate.evaluation.metrics import rmse_per_sample
from qcsurrogate.evaluation.predictability import (
    add_error,
    horizon_steps,
    median_steps,
    perturb_fields,
    perturbation_growth,
    predictability,
    steps_below,
)
from qcsurrogate.solvers import simulate
from qcsurrogate.state import State


def linear_start(batch: int = 3, L: int = 3) -> State:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(batch, L, dtype=torch.float64, generator=g)
    rho = torch.diag_embed(torch.full((batch, L), 0.5, dtype=torch.complex128))
    return State({"X": X}, rho)


def test_perturbation_of_an_unstable_linear_system_grows_as_exp_lambda_t():
    lam, dt, save_every, n = 0.5, 0.01, 10, 40  # model step 0.1, 40 steps: growth e^2
    system = ScalarLinear(L=3, lam=lam)
    x0 = linear_start()
    noisy = perturb_fields(x0, 1e-6, seed=3)
    (c,) = perturbation_growth(system, x0, [noisy], dt=dt, save_every=save_every, n_model_steps=n)
    r0 = rmse_per_sample(noisy, x0)["X"].numpy()
    t = dt * save_every * np.arange(n + 1)
    np.testing.assert_allclose(c["X"], r0[None, :] * np.exp(lam * t)[:, None], rtol=1e-8)  # RK4 at h lam = 5e-3
    np.testing.assert_array_equal(c["rho"], 0.0)  # rho was not perturbed and X does not feed it here
    np.testing.assert_allclose(c["total"], c["X"])
    assert c["total"][-1].mean() / c["total"][0].mean() == pytest.approx(math.e**2, rel=1e-8)


def test_noise_is_relative_to_each_fields_rms_seeded_and_leaves_rho_and_zero_fields_alone():
    x0 = ToySystem(L=6).initial_state("random_start", seed=0, n_traj=4)
    x0.fields["V"] = torch.zeros_like(x0["V"])
    a, b = perturb_fields(x0, 1e-6, seed=7), perturb_fields(x0, 1e-6, seed=7)
    assert a.allclose(b, rtol=0, atol=0) and not a.allclose(perturb_fields(x0, 1e-6, seed=8), rtol=0, atol=0)
    dX = (a["X"] - x0["X"]) / (1e-6 * x0["X"].pow(2).mean().sqrt())
    assert float(dX.std()) == pytest.approx(1.0, rel=0.35)  # N(0, 1) in units of the field's rms (24 draws)
    assert torch.equal(a["V"], x0["V"]) and torch.equal(a.rho, x0.rho)


def test_predictability_matches_integrating_both_states_directly():
    system = ToySystem(L=4)
    x0 = system.initial_state("random_start", seed=1, n_traj=2)
    err = State._raw({"X": torch.full((2, 4), 1e-3, dtype=torch.float64), "V": torch.zeros(2, 4, dtype=torch.float64)},
                     torch.zeros(2, 4, 4, dtype=torch.complex128))
    err.rho[:, 0, 1] = 1e-3j  # not Hermitian: made so before it is added
    out = predictability(system, x0, err, dt=0.05, save_every=2, n_model_steps=30, perturbation=1e-6, seed=0,
                         threshold=0.01)
    ref = simulate(system, x0, 0.05, 60, 2)
    for key, start in (("truth_perturbed", perturb_fields(x0, 1e-6, 0)), ("surrogate_error", add_error(x0, err))):
        other = simulate(system, start, 0.05, 60, 2)
        per = rmse_per_sample(other, ref)
        total = sum(per.values())
        np.testing.assert_allclose(out[key]["rmse_total"], total[1:].mean(1).numpy(), rtol=1e-9)
        np.testing.assert_allclose(out[key]["rmse_X"], per["X"][1:].mean(1).numpy(), rtol=1e-9)
        assert out[key]["initial_rmse_total"] == pytest.approx(float(total[0].mean()), rel=1e-12)
    d = add_error(x0, err).rho - x0.rho  # (e + e^H) / 2
    assert complex(d[0, 1, 0]) == pytest.approx(-0.5e-3j) and complex(d[0, 0, 1]) == pytest.approx(0.5e-3j)
    grows = np.asarray(out["truth_perturbed"]["rmse_total"])
    assert grows[-1] > 1.2 * out["truth_perturbed"]["initial_rmse_total"]  # grows (x1.35 by t = 3): not a rotation
    total = sum(rmse_per_sample(simulate(system, add_error(x0, err), 0.05, 60, 2), ref).values()).numpy()
    assert out["surrogate_error"]["horizon_steps"] == horizon_steps(total, 0.01)
    assert (out["solver"], out["integration_dt"], out["save_every"], out["model_steps"]) == ("rk4", 0.05, 2, 30)


def test_predictability_horizon_of_a_linear_instability_is_log_threshold_over_growth_rate():
    lam, h = 0.5, 0.1  # model step h = 10 x 0.01
    system = ScalarLinear(L=3, lam=lam)
    x0 = linear_start(batch=2)
    delta = torch.tensor([[1e-3] * 3, [1e-5] * 3], dtype=torch.float64)  # one-step errors, per start
    err = State._raw({"X": delta}, torch.zeros(2, 3, 3, dtype=torch.complex128))
    out = predictability(system, x0, err, dt=0.01, save_every=10, n_model_steps=150, perturbation=1e-6, seed=0,
                         threshold=0.1)
    expect = [math.ceil(math.log(0.1 / d) / (lam * h)) for d in (1e-3, 1e-5)]  # 93 and 185 (> 150)
    assert out["surrogate_error"]["horizon_steps"] == [expect[0], None]
    assert out["surrogate_error"]["not_reached_fraction"] == 0.5
    assert out["surrogate_error"]["median_horizon_steps"] is None  # half not reached: the median is beyond


def test_horizon_and_median_and_steps_below():
    total = np.array([[0.05, 0.2, 0.01], [0.09, 0.3, 0.02], [0.12, 0.4, 0.03]])
    assert horizon_steps(total, 0.1) == [2, 0, None]
    assert median_steps([2, 0, None]) == 2.0 and median_steps([None, None, 1]) is None
    assert steps_below([0.01, 0.05, 0.2], 0.1) == 2 and steps_below([0.01, None], 0.1) == 1
    assert steps_below([0.01, 0.02], 0.1) == 2
