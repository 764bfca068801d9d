"""The adiabatic CDW ground state, the shared level-filling rule and its degenerate Fermi shell."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from qcsurrogate import State
from qcsurrogate_holstein import (
    DegenerateFermiLevelWarning,
    HolsteinChain,
    SelfConsistencyError,
    fill_levels,
    ground_state_density,
    idempotency_error,
    staggered_mean,
)

CDW_AMPLITUDE_L8 = 0.0664755585285  # staggered mean of Q, L = 8, g_i = 0.5, K = 1 (defaults)


@pytest.fixture(scope="module")
def cdw():
    system = HolsteinChain(L=8, g=0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateFermiLevelWarning)  # the CDW gap lifts the degeneracy
        state = system.initial_state("shallow_quench", g_initial=0.5)
    return system, state


def test_cdw_amplitude_with_default_parameters(cdw):
    _, state = cdw
    amp = float(staggered_mean(state["Q"]))
    assert amp == pytest.approx(CDW_AMPLITUDE_L8, abs=1e-10)
    # delta n = amp K / g_i: even sites 0.633, odd 0.367
    n = torch.diagonal(state.rho, dim1=-2, dim2=-1).real
    assert torch.allclose(n[0::2], torch.full((4,), 0.5 + 2 * CDW_AMPLITUDE_L8, dtype=torch.float64), atol=1e-9)


def test_amplitude_062_belongs_to_m1_convention():
    """The ~0.62 sometimes quoted for 'the defaults' is the K = 0.16 (m = 1) chain. With the
    documented defaults K = 1, m = 6.25 the self-consistent amplitude is 0.0665 (test above)."""
    system = HolsteinChain(L=8, g=0.8, K=0.16)
    assert system.m == pytest.approx(1.0)
    amp = float(staggered_mean(system.initial_state("shallow_quench", g_initial=0.5)["Q"]))
    assert amp == pytest.approx(0.6165, abs=5e-4)


def test_cdw_is_self_consistent_projector_at_rest(cdw):
    system, state = cdw
    p, g_i = system.params, 0.5
    n = torch.diagonal(state.rho, dim1=-2, dim2=-1).real
    assert torch.allclose(state["Q"], g_i * (n - p.density_offset) / p.K, rtol=0, atol=1e-12)
    assert torch.equal(state["P"], torch.zeros(8, dtype=torch.float64))
    H = system.hamiltonian(state["Q"], g=g_i).to(state.rho.dtype)
    assert float((H @ state.rho - state.rho @ H).abs().max()) < 1e-11
    assert float(idempotency_error(state.rho)) < 1e-12
    assert float(torch.diagonal(state.rho).sum().real) == pytest.approx(4.0, abs=1e-12)
    assert float(state["Q"].mean()) == pytest.approx(0.0, abs=1e-12)  # n0 = 1/2: particle-hole symmetric


def test_cdw_is_stationary_under_the_initial_coupling(cdw):
    system, state = cdw
    before = HolsteinChain(**{**system.params.model_dump(), "g": 0.5})
    d = before.rhs(state)
    assert max(float(d[v].abs().max()) for v in state.names) < 1e-11
    # and is not stationary after the quench: the coupling jump drives the CDW oscillation
    assert float(system.rhs(state)["P"].abs().max()) > 1e-3


def test_cdw_lowers_the_adiabatic_energy(cdw):
    """The broken-symmetry state beats the undistorted filled band (Q = 0) at the same coupling."""
    system, state = cdw
    before = HolsteinChain(**{**system.params.model_dump(), "g": 0.5})
    Q0 = torch.zeros(8, dtype=torch.float64)
    rho0, _ = ground_state_density(before.hamiltonian(Q0).numpy(), 4)  # degenerate shell shared: still a valid rho
    e_uniform = before.energy(State({"Q": Q0, "P": Q0}, rho0))
    assert float(before.energy(state)) < float(e_uniform) - 1e-3


def test_density_offset_zero_shifts_uniform_displacement():
    system = HolsteinChain(L=8, density_offset=0.0)
    state = system.initial_state("shallow_quench", g_initial=0.5)
    assert float(state["Q"].mean()) == pytest.approx(0.5 * 0.5 / 1.0, abs=1e-12)  # g n_bar / K
    assert float(staggered_mean(state["Q"])) == pytest.approx(CDW_AMPLITUDE_L8, abs=1e-10)


def test_open_chain_ground_state_is_pure_and_silent():
    system = HolsteinChain(L=8, boundary="open")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateFermiLevelWarning)
        for g_i in (0.0, 0.5, 1.5):
            state = system.initial_state("shallow_quench", g_initial=g_i)
            assert float(idempotency_error(state.rho)) < 1e-12
        state = system.initial_state("deep_quench", n_traj=2)
        assert float(idempotency_error(state.rho).max()) < 1e-12


def test_non_half_filling_and_nonconvergence_error():
    system = HolsteinChain(L=8)
    state = system.initial_state("shallow_quench", g_initial=0.8, n_electrons=3)
    assert float(torch.diagonal(state.rho).sum().real) == pytest.approx(3.0, abs=1e-12)
    with pytest.raises(SelfConsistencyError, match="did not converge in 2 iterations"):
        system.initial_state("shallow_quench", g_initial=0.5, max_iter=2)


# -- degenerate Fermi level -----------------------------------------------------------------------


def test_degenerate_fermi_level_is_shared_and_reported(caplog):
    system = HolsteinChain(L=8)  # periodic, half filling: k = +-pi/2 at energy 0 hold one electron
    with caplog.at_level(logging.INFO, logger="qcsurrogate_holstein"):
        with pytest.warns(DegenerateFermiLevelWarning, match=r"levels 3\.\.4 .* share 1 of the 4 electrons.*occupation 0\.5"):
            state = system.initial_state("deep_quench", n_traj=3)
    assert any("degenerate Fermi level" in r.message for r in caplog.records)
    ev = torch.linalg.eigvalsh(state.rho[0])
    expected = torch.tensor([0, 0, 0, 0.5, 0.5, 1, 1, 1], dtype=torch.float64)
    assert torch.allclose(ev, expected, atol=1e-12)
    rho = state.rho[0]
    shifted = torch.roll(rho, shifts=(1, 1), dims=(0, 1))
    assert torch.allclose(rho, shifted, atol=1e-13)  # translation invariant
    assert torch.allclose(torch.diagonal(rho).real, torch.full((8,), 0.5, dtype=torch.float64), atol=1e-13)


def test_shallow_quench_from_free_electrons_reports_degeneracy_too():
    with pytest.warns(DegenerateFermiLevelWarning):
        HolsteinChain(L=8).initial_state("shallow_quench", g_initial=0.0)


def test_no_degeneracy_when_fermi_level_is_gapped():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateFermiLevelWarning)
        HolsteinChain(L=6).initial_state("deep_quench")  # periodic L = 6, N = 3: shell at -t is full
        HolsteinChain(L=8).initial_state("deep_quench", n_electrons=3)


def test_fill_levels_rules():
    occ, shell = fill_levels(np.array([-1.0, 0.0, 0.0, 0.0, 1.0]), 2)
    assert shell is not None and (shell.first, shell.last, shell.electrons) == (1, 3, 1)
    assert np.allclose(occ, [1, 1 / 3, 1 / 3, 1 / 3, 0])
    occ, shell = fill_levels(np.array([-1.0, 0.0, 0.0, 1.0]), 3)  # shell full: no choice to make
    assert shell is None and np.allclose(occ, [1, 1, 1, 0])
    occ, shell = fill_levels(np.array([-1.0, -1.0 + 5e-9, -1.0 + 1e-8, 2.0]), 1)  # grown transitively
    assert shell is not None and shell.size == 3 and np.allclose(occ[:3], 1 / 3)
    for n in (0, 4):
        assert fill_levels(np.array([-1.0, 0.0, 0.0, 1.0]), n)[1] is None
    with pytest.raises(ValueError, match="ascending"):
        fill_levels(np.array([1.0, 0.0]), 1)
    with pytest.raises(ValueError, match="n_electrons"):
        fill_levels(np.array([0.0, 1.0]), 3)


# -- self-consistency in the regimes where damping used to stall ---------------------------------


def _plain_iteration(system: HolsteinChain, g_i: float, n_electrons: int, seed: np.ndarray, max_iter: int = 5000):
    """Undamped Q -> g (n - n0) / K from a given seed: the reference the solver must never do worse than."""
    p = system.params
    filling = n_electrons / p.L
    Q = (g_i / p.K) * (filling - p.density_offset + min(filling, 1 - filling) * seed)
    for it in range(1, max_iter + 1):
        rho, _ = ground_state_density(system.hamiltonian(Q, g=g_i).numpy(), n_electrons)
        Q_new = (g_i / p.K) * (np.diag(rho) - p.density_offset)
        if np.abs(Q_new - Q).max() <= 1e-12:
            return it
        Q = Q_new
    return None


def test_quarter_filling_strong_coupling_converges_to_a_period_four_cdw():
    """The reported case: damping halved at every rise of the residual stalled at mixing 1e-3 and
    raised after 5000 iterations, where plain iteration converges in 57."""
    system = HolsteinChain(L=8, K=0.16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateFermiLevelWarning)  # gapped: a pure Slater determinant
        state = system.initial_state("shallow_quench", g_initial=1.0, n_electrons=2)
    Q, p = state["Q"], system.params
    n = torch.diagonal(state.rho).real
    assert torch.allclose(Q, 1.0 * (n - p.density_offset) / p.K, rtol=0, atol=1e-11)  # self-consistent
    assert float(idempotency_error(state.rho)) < 1e-12
    assert torch.allclose(Q, torch.roll(Q, 4), atol=1e-10) and not torch.allclose(Q, torch.roll(Q, 2), atol=1e-3)
    H = system.hamiltonian(Q, g=1.0).to(state.rho.dtype)
    assert float((H @ state.rho - state.rho @ H).abs().max()) < 1e-10  # rho is stationary under H(Q)


@pytest.mark.parametrize(
    ("L", "K", "g_i", "N"),
    [(4, 0.16, 1.0, 1), (4, 0.3, 1.5, 1), (8, 0.3, 1.5, 2), (8, 1.0, 2.0, 2), (12, 0.16, 1.0, 3), (6, 1.0, 2.0, 2)],
)
def test_strong_coupling_cases_that_stalled_now_converge(L, K, g_i, N):
    system = HolsteinChain(L=L, K=K)
    state = system.initial_state("shallow_quench", g_initial=g_i, n_electrons=N)
    n = torch.diagonal(state.rho).real
    assert torch.allclose(state["Q"], g_i * (n - system.params.density_offset) / K, rtol=0, atol=1e-11)


def test_never_fails_where_plain_iteration_from_the_same_seed_converges():
    """On a grid of chains, couplings and fillings the solver converges whenever undamped iteration
    from its seed does, and never needs many more iterations."""
    from qcsurrogate_holstein.ground_state import peierls_pattern

    for L, K, g_i, N, bc in [
        (L, K, g_i, N, bc)
        for L in (4, 6, 8, 12)
        for K in (0.16, 1.0)
        for g_i in (0.5, 1.0, 2.0)
        for N in {max(1, L // 4), L // 2}
        for bc in ("periodic", "open")
    ]:
        system = HolsteinChain(L=L, K=K, boundary=bc)
        plain = _plain_iteration(system, g_i, N, peierls_pattern(L, N))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateFermiLevelWarning)
            try:
                system.initial_state("shallow_quench", g_initial=g_i, n_electrons=N, max_iter=5000)
                ok = True
            except SelfConsistencyError:
                ok = False
        assert ok or plain is None, f"plain iteration converges in {plain} for {(L, K, g_i, N, bc)}, the solver fails"


def test_mixing_halves_on_oscillation_and_recovers():
    """A repulsive coupling (H(-Q)) makes plain iteration flip-flop; the solver damps it and converges.

    The mixing actually used at each step, read off the iterates, follows the rule: halved after an
    update that reverses the previous one, otherwise grown by MIXING_GROWTH up to the requested mixing,
    so an early oscillation does not leave the iteration crawling for good."""
    from qcsurrogate_holstein.ground_state import MIXING_GROWTH, self_consistent_cdw

    L, g, K, N = 8, 2.0, 1.0, 3
    system = HolsteinChain(L=L, K=K, boundary="open")
    repulsive = lambda Q: system.hamiltonian(-Q, g=g).numpy()  # noqa: E731
    calls = []

    def ham(Q):
        calls.append(Q.copy())
        return repulsive(Q)

    sol = self_consistent_cdw(ham, L=L, g=g, K=K, n0=0.5, n_electrons=N, mixing=1.0)
    assert sol.residual <= 1e-12 and sol.iterations == len(calls) < 200

    def update(Q):
        rho, _ = ground_state_density(repulsive(Q), N)
        return (g / K) * (np.diag(rho) - 0.5) - Q

    steps = [update(Q) for Q in calls[:-1]]
    alphas = [float((b - a) @ d / (d @ d)) for a, b, d in zip(calls, calls[1:], steps)]
    assert alphas[0] == pytest.approx(1.0)
    measurable = [k for k in range(1, len(alphas)) if np.abs(steps[k]).max() > 1e-6]  # alpha read off above round-off
    assert len(measurable) > 10
    for k in measurable:
        reversed_ = float(steps[k] @ steps[k - 1]) < 0
        expected = alphas[k - 1] * 0.5 if reversed_ else min(1.0, alphas[k - 1] * MIXING_GROWTH)
        assert alphas[k] == pytest.approx(expected, rel=1e-6), (k, alphas[: k + 1])
    halved = [k for k in range(1, len(alphas)) if alphas[k] < alphas[k - 1]]
    assert halved and max(alphas[halved[0]:]) > alphas[halved[0]]  # it oscillated, and the mixing grew back
    # plain iteration of the same map never settles: it is the oscillation the damping is for
    Q = calls[0]
    for _ in range(500):
        Q = Q + update(Q)
    assert np.abs(update(Q)).max() > 1e-3


def test_peierls_seed_has_the_filling_period():
    from qcsurrogate_holstein.ground_state import peierls_pattern

    assert np.array_equal(peierls_pattern(8, 4), np.array([1.0, -1, 1, -1, 1, -1, 1, -1]))  # exact at half filling
    quarter = peierls_pattern(8, 2)
    assert np.allclose(quarter, np.cos(np.pi / 2 * np.arange(8)))
    assert np.allclose(np.roll(quarter, 4), quarter) and not np.allclose(np.roll(quarter, 2), quarter)
