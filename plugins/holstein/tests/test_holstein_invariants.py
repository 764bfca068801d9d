"""Property tests over random chains and states: the flow's exact and RK4-level invariants.

Hermiticity and trace are exact for the flow and (the commutator kernel being exactly
(anti)symmetric) for RK4 to the last bit; energy and the spectrum of rho are conserved by the flow
with an RK4 error that must shrink like dt^4 or faster.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from qcsurrogate import State, simulate
from qcsurrogate.testing import hermiticity_error, observed_order, random_density_matrix, trace_of
from qcsurrogate_holstein import HolsteinChain, purity


@st.composite
def chains(draw, max_L: int = 8) -> HolsteinChain:
    return HolsteinChain(
        L=draw(st.integers(2, max_L)),
        hopping=draw(st.floats(0.5, 1.5)),
        g=draw(st.floats(0.0, 2.0)),
        K=draw(st.floats(0.5, 2.0)),
        omega=draw(st.floats(0.2, 1.0)),
        density_offset=draw(st.sampled_from([0.0, 0.5, 0.3])),
        boundary=draw(st.sampled_from(["periodic", "open"])),
    )


@st.composite
def chains_and_states(draw, max_L: int = 8, batch=(2,)):
    system = draw(chains(max_L))
    L = system.L
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    n_el = draw(st.integers(0, L))
    pure = draw(st.booleans())
    rho = random_density_matrix(L, n_el, batch, gen, pure=pure)
    fields = {n: 0.3 * torch.randn(*batch, L, generator=gen, dtype=torch.float64) for n in ("Q", "P")}
    return system, State(fields, rho)


def dense_rhs(system: HolsteinChain, state: State) -> State:
    """-i[H, rho] with the dense H, and Newton's equations written out from docs/physics.md."""
    p = system.params
    H = system.hamiltonian(state["Q"]).to(state.rho.dtype)
    n = torch.diagonal(state.rho, dim1=-2, dim2=-1).real
    return State._raw(
        {"Q": state["P"] / p.m, "P": p.g * (n - p.density_offset) - p.K * state["Q"]},
        -1j * (H @ state.rho - state.rho @ H),
    )


def dense_energy(system: HolsteinChain, state: State) -> torch.Tensor:
    p = system.params
    Q, P = state["Q"], state["P"]
    H = system.hamiltonian(Q).to(state.rho.dtype)
    tr = torch.diagonal(state.rho @ H, dim1=-2, dim2=-1).sum(-1)
    assert float(tr.imag.abs().max()) < 1e-12
    return tr.real + p.g * p.density_offset * Q.sum(-1) + (P**2 / (2 * p.m) + 0.5 * p.K * Q**2).sum(-1)


@given(chains_and_states())
def test_rhs_matches_dense_commutator(case):
    system, state = case
    d, ref = system.rhs(state), dense_rhs(system, state)
    for name in state.names:
        assert torch.allclose(d[name], ref[name], rtol=0, atol=1e-13), name


@given(chains_and_states())
def test_energy_matches_dense_formula(case):
    system, state = case
    assert torch.allclose(system.energy(state), dense_energy(system, state), rtol=1e-13, atol=1e-13)


@given(chains_and_states(), st.integers(0, 3))
def test_energy_is_conserved_by_exact_flow(case, k):
    """dE/dt = grad E . rhs = 0 for every state, checked without any integrator (directional derivative)."""
    system, state = case
    h = 1e-6
    d = system.rhs(state)
    de = (system.energy(state.axpy(h, d)) - system.energy(state.axpy(-h, d))) / (2 * h)
    assert float(de.abs().max()) < 1e-7


@given(chains_and_states())
def test_hermiticity_and_trace_exact_under_rk4(case):
    system, state = case
    state = State._raw(dict(state.fields), 0.5 * (state.rho + state.rho.mH))  # exactly Hermitian start
    traj = simulate(system, state, dt=0.1, n_steps=100, save_every=10)
    assert hermiticity_error(traj.rho) <= 1e-15
    tr = trace_of(traj.rho)
    assert float((tr - tr[0]).abs().max()) < 1e-12
    assert float(tr.imag.abs().max()) < 1e-14


def _drifts(system: HolsteinChain, state: State, dt: float, T: float) -> tuple[float, float]:
    n = round(T / dt)
    traj = simulate(system, state, dt, n, save_every=n // 10)
    E, pu = system.energy(traj), purity(traj.rho)
    return float((E - E[0]).abs().max()), float((pu - pu[0]).abs().max())


@given(chains_and_states())
def test_energy_and_purity_drift_bounded_and_fall_like_dt4(case):
    """Bounds: |dE| <= 2 T dt^4 and |d Tr rho^2| <= 50 T dt^4 (measured constants are >10x smaller for
    |Q|, |P| ~ 0.3, g <= 2); orders from dt = 0.1, 0.05, 0.025 must be >= 3.4 unless at round-off."""
    system, state = case
    T = 2.0
    runs = [_drifts(system, state, 0.1 / 2**k, T) for k in range(3)]
    e_drift, p_drift = zip(*runs)
    dt = 0.05
    assert e_drift[1] <= 2 * T * dt**4, e_drift
    assert p_drift[1] <= 50 * T * dt**4, p_drift
    for drifts in (e_drift, p_drift):
        if drifts[1] > 1e-11:  # measurable above round-off at the middle step
            order = observed_order([max(x, 1e-16) for x in drifts])[-1]
            assert order >= 3.4, (drifts, order)


@given(chains_and_states(batch=(3,)))
def test_spectrum_of_rho_conserved(case):
    """Unitary flow keeps every eigenvalue of rho; RK4 keeps them to its error, far below the gaps."""
    system, state = case
    dt, n = 0.05, 40
    traj = simulate(system, state, dt=dt, n_steps=n, save_every=n)
    ev = torch.linalg.eigvalsh(traj.rho)
    # RK4 shrinks a mode of frequency w by ~(w dt)^6/144 per step; w <= the spread of H's levels.
    levels = torch.linalg.eigvalsh(system.hamiltonian(traj["Q"]))
    w = float((levels[..., -1] - levels[..., 0]).max())
    assert float((ev[-1] - ev[0]).abs().max()) < n * (w * dt) ** 6 / 10 + 1e-12


@given(chains_and_states(batch=(2, 3)))
def test_batched_equals_single(case):
    system, state = case
    d = system.rhs(state)
    e = system.energy(state)
    for i in range(2):
        for j in range(3):
            one = state.index((i, j))
            assert system.rhs(one).allclose(d.index((i, j)), rtol=0, atol=0)
            assert torch.equal(system.energy(one), e[i, j])
    assert math.isfinite(float(e.sum()))
