"""Against exact solutions: free electrons and free oscillators at g = 0, and RK4's order at g > 0."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from qcsurrogate import simulate
from qcsurrogate.testing import observed_order, random_state
from qcsurrogate_holstein import HolsteinChain


def exact_g0(system: HolsteinChain, state, times: np.ndarray):
    """rho(t) = e^{-iHt} rho0 e^{iHt} and Q(t) = Q0 cos(Wt) + P0/(mW) sin(Wt), P = m dQ/dt."""
    p = system.params
    H = system.hamiltonian(torch.zeros(p.L, dtype=torch.float64)).numpy()
    rho0, Q0, P0 = state.rho.numpy(), state["Q"].numpy(), state["P"].numpy()
    w, m = p.omega, p.m
    rhos, Qs, Ps = [], [], []
    for t in times:
        U = scipy.linalg.expm(-1j * H * t)
        rhos.append(U @ rho0 @ U.conj().T)
        Qs.append(Q0 * np.cos(w * t) + P0 / (m * w) * np.sin(w * t))
        Ps.append(-m * w * Q0 * np.sin(w * t) + P0 * np.cos(w * t))
    return np.stack(rhos), np.stack(Qs), np.stack(Ps)


def _max_error(system, state, dt, T, save_every):
    n = round(T / dt)
    traj = simulate(system, state, dt, n, save_every=save_every)
    times = np.arange(0, n + 1, save_every) * dt
    rho, Q, P = exact_g0(system, state, times)
    return max(
        np.abs(traj.rho.numpy() - rho).max(), np.abs(traj["Q"].numpy() - Q).max(), np.abs(traj["P"].numpy() - P).max()
    )


@pytest.mark.parametrize("boundary", ["periodic", "open"])
def test_g0_matches_exact_solution_at_rk4_accuracy(boundary):
    system = HolsteinChain(L=6, g=0.0, boundary=boundary)
    state = random_state(system, batch=(2,), seed=11, scale=0.5)
    T = 4.0
    dts = (0.05, 0.025)
    errs = [_max_error(system, state, dt, T, save_every=round(0.5 / dt)) for dt in dts]
    w = 4 * system.params.hopping  # fastest electronic mode: spread of the band
    for dt, err in zip(dts, errs):  # RK4 global error <= T w^5 dt^4 / 120 (local truncation x steps)
        assert err < T * w**5 * dt**4 / 120, (dt, err)
    assert errs[1] < 2e-6
    order = observed_order(errs)[0]
    assert 3.6 < order < 4.6, (errs, order)


def test_rk4_global_error_falls_16x_per_halving_at_finite_g():
    system = HolsteinChain(L=8, g=0.8)
    state = system.initial_state("shallow_quench", g_initial=0.5)
    T = 4.0
    ref = simulate(system, state, 0.005, 800, save_every=800).index(-1)
    errs = []
    for dt in (0.2, 0.1, 0.05):
        n = round(T / dt)
        y = simulate(system, state, dt, n, save_every=n).index(-1)
        errs.append(max(float((y[v] - ref[v]).abs().max()) for v in state.names))
    ratios = [a / b for a, b in zip(errs, errs[1:])]
    assert all(12 < r < 24 for r in ratios), (errs, ratios)
