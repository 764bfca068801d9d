"""The chain's declared observables as physics: S_Q(q), S_n(q) and the staggered orders, their exact
relations, and which wave vector actually orders in the shallow and the deep quench (measured on RK4 data)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from qcsurrogate_holstein import DegenerateFermiLevelWarning, HolsteinChain, observables

from qcsurrogate import simulate
from qcsurrogate.evaluation.metrics import observable_diagnostics
from qcsurrogate.observables import structure_factor, wavevectors

CDW_AMPLITUDE_L8 = 0.0664755585285  # staggered mean of Q, L = 8, g_i = 0.5, K = 1 (test_holstein_ground_state.py)


def random_states(L: int, n: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    Q, P = rng.normal(size=(n, L)), rng.normal(size=(n, L))
    A = rng.normal(size=(n, L, L)) + 1j * rng.normal(size=(n, L, L))
    _, U = np.linalg.eigh(A + np.conj(np.swapaxes(A, -1, -2)))
    occ = rng.uniform(0, 1, size=(n, L))  # a mixed state with a random spectrum in [0, 1]
    rho = (U * occ[:, None, :]) @ np.conj(np.swapaxes(U, -1, -2))
    return HolsteinChain(L=L).from_arrays(Q, P, rho)


def test_declared_observables():
    obs = HolsteinChain(L=8).observables()
    assert [o.name for o in obs] == ["S_Q", "S_n", "staggered_Q", "staggered_n"]
    assert [o.kind for o in obs] == ["spectrum", "spectrum", "scalar", "scalar"]
    for o in obs[:2]:
        assert o.axis == pytest.approx([math.pi * k / 4 for k in range(5)])
    assert HolsteinChain(L=5).observables()[0].axis == pytest.approx(wavevectors(5))


@pytest.mark.parametrize("L", [4, 8, 10])
def test_structure_factors_and_staggered_orders_agree_at_q_pi(L):
    s = random_states(L)
    S_Q, S_n, m_Q, m_n = (o(s) for o in HolsteinChain(L=L).observables())
    n = torch.diagonal(s.rho, dim1=-2, dim2=-1).real
    sign = torch.tensor([(-1.0) ** j for j in range(L)], dtype=torch.float64)
    np.testing.assert_allclose(m_Q.numpy(), (s["Q"] * sign).mean(-1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(m_n.numpy(), (n * sign).mean(-1).numpy(), rtol=1e-12)
    # S(pi) = L m^2; for n the subtracted mean has no q = pi component on an even ring
    np.testing.assert_allclose(S_Q[:, -1].numpy(), L * m_Q.numpy() ** 2, rtol=1e-10)
    np.testing.assert_allclose(S_n[:, -1].numpy(), L * m_n.numpy() ** 2, rtol=1e-10)
    assert float(m_n.abs().min()) > 1e-3  # a random state: the relation is not 0 = 0


def test_charge_structure_factor_removes_only_the_conserved_mean():
    L = 8
    s = random_states(L, seed=3)
    n = torch.diagonal(s.rho, dim1=-2, dim2=-1).real
    S_n = observables.charge_structure_factor(s.rho)
    np.testing.assert_allclose(S_n[:, 0].numpy(), 0.0, atol=1e-12)  # S_n(0) = 0: N is conserved, no dynamics there
    # away from q = 0 subtracting any constant changes nothing: n - n0 (n0 = 1/2) gives the same S_n(q != 0)
    np.testing.assert_allclose(S_n[:, 1:].numpy(), structure_factor(n - 0.5)[:, 1:].numpy(), rtol=1e-10, atol=1e-12)
    # ... while at q = 0 it would have kept L (n_bar - n0)^2, a Bragg peak of the filling
    n_bar = n.mean(-1)
    np.testing.assert_allclose(structure_factor(n - 0.5)[:, 0].numpy(), (L * (n_bar - 0.5) ** 2).numpy(), rtol=1e-10)
    assert float((n_bar - 0.5).abs().max()) > 1e-2
    np.testing.assert_allclose(
        observables.charge_fluctuation(s.rho).numpy(), (n - n_bar[:, None]).numpy(), rtol=1e-12, atol=1e-15
    )


def test_shallow_quench_state_orders_at_pi_with_the_known_cdw_amplitude():
    chain = HolsteinChain(L=8, g=0.8)
    s = chain.initial_state("shallow_quench", g_initial=0.5)
    S_Q, S_n, m_Q, _ = (o(s) for o in chain.observables())
    assert int(S_Q.argmax()) == 4 and int(S_n.argmax()) == 4  # q = pi: 2 k_F at half filling
    assert float(m_Q) == pytest.approx(CDW_AMPLITUDE_L8, abs=1e-10)
    assert float(S_Q[4]) == pytest.approx(8 * CDW_AMPLITUDE_L8**2, rel=1e-9)
    assert float(S_Q[:4].max()) < 1e-20  # a pure period-2 pattern: nothing at any other q


def test_deep_quench_orders_at_three_pi_over_four_not_at_pi():
    """The periodic L = 8 deep quench (degenerate half-filled Fermi level) builds order at q = 3pi/4.

    Measured (16 seeds, 2500 steps): |F_Q(3pi/4)| = |sum_j Q_j e^{-iqj}| / L reaches 0.54-0.55 in every
    trajectory, while the q = pi (staggered) amplitude stays below 4.1e-3. Here 4 seeds, t <= 80.
    """
    chain = HolsteinChain(L=8, g=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateFermiLevelWarning)
        s0 = chain.initial_state("deep_quench", n_traj=4, sigma=1e-4, seed=0)
    traj = simulate(chain, s0, 0.08, 1000, save_every=10, progress=False)  # (time, traj, ...)
    d = observable_diagnostics(chain.observables(), traj, traj)
    for name in ("S_Q", "S_n"):
        assert d[name]["dominant_q_over_pi"] == pytest.approx(0.75)
        assert d[name]["rmse"] == 0.0
    S_Q = chain.observables()[0](traj)
    assert float(S_Q[..., 3].amax(0).min()) > 1.0  # every trajectory: |F(3pi/4)| > 0.35, i.e. S > 8 * 0.35^2
    assert float(traj["Q"].abs().amax()) > 0.5  # the lattice did distort ...
    assert float(chain.observables()[2](traj).abs().max()) < 5e-3  # ... but not at q = pi
