"""The shallow quench as an ensemble: the CDW ground state with Q and P perturbed site by site."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qcsurrogate_holstein import HolsteinChain

PUBLISHED = {"L": 32, "K": 0.3, "omega": 0.3, "g": 0.716}  # the published shallow quench in these units


@pytest.fixture(scope="module")
def chain():
    return HolsteinChain(**PUBLISHED)


def test_without_ensemble_arguments_it_is_the_single_unbatched_trajectory(chain):
    a = chain.initial_state("shallow_quench", g_initial=0.447)
    b = chain.initial_state("shallow_quench", g_initial=0.447, sigma_Q=0.0, seed=5)
    assert a.batch_shape == () and torch.equal(a["Q"], b["Q"]) and torch.equal(a.rho, b.rho)
    assert float(a["P"].abs().max()) == 0.0


def test_ensemble_perturbs_q_and_p_by_sigma_and_keeps_rho(chain):
    base = chain.initial_state("shallow_quench", g_initial=0.447)
    ens = chain.initial_state("shallow_quench", g_initial=0.447, n_traj=64, sigma_Q=1e-4, sigma_P=2e-4, seed=1)
    assert ens.batch_shape == (64,)
    dq, p = (ens["Q"] - base["Q"]).numpy(), ens["P"].numpy()
    n = dq.size  # 2048 samples: the sample std is within ~5% of sigma
    assert abs(dq.std() / 1e-4 - 1) < 4 / np.sqrt(2 * n) + 0.01 and abs(p.std() / 2e-4 - 1) < 4 / np.sqrt(2 * n) + 0.01
    assert abs(dq.mean()) < 4e-4 / np.sqrt(n) and not np.allclose(dq[0], dq[1])  # independent per trajectory
    assert torch.equal(ens.rho, base.rho.expand(64, 32, 32))
    again = chain.initial_state("shallow_quench", g_initial=0.447, n_traj=64, sigma_Q=1e-4, sigma_P=2e-4, seed=1)
    other = chain.initial_state("shallow_quench", g_initial=0.447, n_traj=64, sigma_Q=1e-4, sigma_P=2e-4, seed=2)
    assert torch.equal(again["Q"], ens["Q"]) and not torch.equal(other["Q"], ens["Q"])


def test_unperturbed_ensemble_repeats_the_ground_state(chain):
    base = chain.initial_state("shallow_quench", g_initial=0.447)
    ens = chain.initial_state("shallow_quench", g_initial=0.447, n_traj=3)
    assert torch.equal(ens["Q"], base["Q"].expand(3, 32)) and float(ens["P"].abs().max()) == 0.0
