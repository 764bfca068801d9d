"""The conformance kit: it passes on a correct System and, as importantly, fails on broken ones."""

from __future__ import annotations

import re
import unittest
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_system import (
    BrokenToyFriction,
    BrokenToyMirror,
    BrokenToyNonHermitian,
    BrokenToyRhsReal,
    BrokenToySlightlyNonHermitian,
    BrokenToyTraceLeak,
    ScalarLinear,
    ToySystem,
    ToySystemReal,
)

from qcsurrogate import testing
from qcsurrogate.solvers import simulate
from qcsurrogate.state import State
from qcsurrogate.system import scenario
from qcsurrogate.testing import (
    CHECKS,
    CheckSkipped,
    ConformanceSkipWarning,
    UnusedDependencyWarning,
    Tolerances,
    check_hermiticity_and_trace,
    check_von_neumann_generator,
    effective_hamiltonian,
    check_system,
    hermiticity_error,
    iter_checks,
    observed_order,
    random_density_matrix,
    random_state,
    random_unitary,
    trace_of,
)

SETTINGS = settings(deadline=None, max_examples=25)
FAST = {"dt": 0.2, "n_steps": 20}  # a shorter run than the defaults, plenty for a 4-site toy


def no_skip(fn, *args, **kwargs):
    """Call a kit function that must run: its `CheckSkipped` (a unittest.SkipTest) would otherwise make
    pytest report this test as skipped instead of failed."""
    try:
        return fn(*args, **kwargs)
    except CheckSkipped as why:
        pytest.fail(f"unexpectedly skipped: {why}")


# -- broken systems beyond those in toy_system -------------------------------------------------------
class BrokenDtype(ToySystem):
    """dX/dt comes back in single precision."""

    name = "toy-broken-dtype"

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        d.fields["X"] = d.fields["X"].float()
        return d


class BrokenBatch(ToySystem):
    """Trajectories in a batch feel each other (the force uses the batch mean)."""

    name = "toy-broken-batch"

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        if state.batch_shape:
            d.fields["V"] = d.fields["V"] + 0.1 * state["X"].mean(0)
        return d


class BrokenScenario(ToySystem):
    """A scenario drawn from the global RNG, so not reproducible."""

    name = "toy-broken-scenario"

    @scenario
    def unseeded(self) -> State:
        """Different every call."""
        L = self.params.L
        return State({"X": torch.randn(L), "V": torch.zeros(L)}, random_density_matrix(L, L // 2))


class BrokenOrder(ToySystem):
    """A discontinuous force, sign(X): the solution is not smooth, so RK4 cannot reach fourth order."""

    name = "toy-broken-order"

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        d.fields["V"] = d.fields["V"] - 0.3 * torch.sign(state["X"])
        return d


class ToyFlux(ToySystem):
    """The toy with a Peierls phase on every bond, so h is complex (conj(h) != h), and the hopping
    energy written bond by bond, `2 Re sum_<ij> h_ji rho_ij`: autograd's raw gradient of it is
    one-sided and only its Hermitian part is h. A correct system, made to pin the kit's convention."""

    name = "toy-flux"
    phi: float = 0.4

    def _bonds(self) -> list[tuple[int, int]]:
        L = self.params.L
        n_bonds = L if (self.params.boundary == "periodic" and L > 2) else L - 1
        return [(i, (i + 1) % L) for i in range(n_bonds)]

    def _build_hopping(self, dtype: torch.dtype) -> torch.Tensor:
        h = torch.zeros(self.params.L, self.params.L, dtype=dtype)
        for i, j in self._bonds():
            h[i, j] = -self.params.t * np.exp(1j * self.phi)
            h[j, i] = -self.params.t * np.exp(-1j * self.phi)
        return h

    def energy(self, state: State) -> torch.Tensor:
        X, V, rho = state["X"], state["V"], state.rho
        p = self.params
        hop = self.hopping(rho.dtype, rho.device)
        i, j = (list(ix) for ix in zip(*self._bonds()))
        e_el = 2.0 * (hop[j, i] * rho[..., i, j]).real.sum(-1)
        e_c = -p.c * (X * (self.occupations(rho) - 0.5)).sum(-1)
        return e_el + e_c + 0.5 * (V**2 + p.w**2 * X**2).sum(-1)


class NumpyEnergyToy(ToySystem):
    """The toy with its energy computed in numpy: correct, but not differentiable by autograd."""

    name = "toy-numpy-energy"

    def energy(self, state: State) -> torch.Tensor:
        X, V, rho = (np.asarray(state[k]) for k in ("X", "V", "rho"))
        p = self.params
        hop = np.asarray(self.hopping())
        n = np.real(np.diagonal(rho, axis1=-2, axis2=-1))
        e_el = np.einsum("ij,...ji->...", hop, rho).real - p.c * (X * (n - 0.5)).sum(-1)
        return torch.as_tensor(e_el + 0.5 * (V**2 + p.w**2 * X**2).sum(-1))


class DetachedEnergyToy(ToySystem):
    """The toy with its energy cut from autograd's graph."""

    name = "toy-detached-energy"

    def energy(self, state: State) -> torch.Tensor:
        return super().energy(state.map(torch.Tensor.detach))


class HookedNumpyEnergyToy(NumpyEnergyToy):
    """A non-differentiable energy, with the one-body Hamiltonian given through the kit's hook."""

    name = "toy-hooked"
    hook_sign: float = 1.0

    def one_body_hamiltonian(self, state: State) -> torch.Tensor:
        return self.hook_sign * self.hamiltonian(state["X"])


# -- passing ------------------------------------------------------------------------------------------
def test_check_system_passes_on_toy_with_default_states():
    toy = ToySystem(L=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConformanceSkipWarning)  # nothing skipped either
        warnings.simplefilter("error", UnusedDependencyWarning)  # and every declared input is used
        ids = check_system(toy, **FAST)
    once = ["scenarios_deterministic", "graph_matches_rhs"]
    per_state = [c for c in CHECKS if c not in once]
    expected = [f"{c}[{s}]" for c in per_state for s in ("at_rest", "random_start", "random")]
    assert sorted(ids) == sorted([*expected, *once])


def test_check_system_custom_states_and_scenario_kwargs():
    toy = ToySystem(L=4, boundary="open")
    states = {"mine": toy.initial_state("random_start", seed=7, n_traj=3)}
    ids = check_system(toy, states, scenario_kwargs={"random_start": {"seed": 5, "n_traj": 1}}, **FAST)
    assert "rk4_order[mine]" in ids and "scenarios_deterministic" in ids
    assert not any("random_start]" in i for i in ids)


def test_check_system_passes_with_handwritten_rhs_real():
    toy = ToySystemReal(L=4)
    state = toy.initial_state("random_start", seed=2)
    assert "rhs_real_matches_rhs[s]" in check_system(toy, {"s": state}, **FAST)
    s32 = state.to(dtype=torch.float32)
    df, dre, dim = toy.rhs_real(dict(s32.fields), s32.rho.real, s32.rho.imag)
    assert dre.dtype == torch.float32 and df["V"].dtype == torch.float32
    torch.testing.assert_close(torch.complex(dre, dim), toy.rhs(s32).rho, rtol=1e-5, atol=1e-6)


def test_check_system_unbatched_state():
    toy = ToySystem(L=4)
    assert "batch_equivalence[single]" in check_system(toy, {"single": toy.initial_state("at_rest")}, **FAST)


def test_n_steps_need_not_be_a_multiple_of_ten():
    toy = ToySystem(L=4)
    ids = check_system(toy, {"s": toy.initial_state("at_rest")}, dt=0.08, n_steps=25)
    assert "hermiticity_and_trace[s]" in ids


# -- failing ------------------------------------------------------------------------------------------
GEN = "von_neumann_generator"
OFF_GENERATOR = "not generated by the energy's one-body Hamiltonian"


@pytest.mark.parametrize(
    ("cls", "failing", "passing"),
    [
        (
            BrokenToyNonHermitian,
            {"hermiticity_and_trace": "rho lost Hermiticity", "energy_drift_order": "expected ~4", GEN: OFF_GENERATOR},
            {"rhs_real_matches_rhs"},
        ),
        (BrokenToyFriction, {"energy_drift_order": "expected ~4"}, {"hermiticity_and_trace", "rk4_order", GEN}),
        (BrokenToyRhsReal, {"rhs_real_matches_rhs": "rhs_real and rhs disagree"}, {"energy_drift_order", GEN}),
        (BrokenDtype, {"rhs_shapes_dtypes": "has dtype torch.float32"}, {"hermiticity_and_trace"}),
        (BrokenBatch, {"batch_equivalence": "batched rhs differs"}, {"rhs_shapes_dtypes"}),
        (BrokenScenario, {"scenarios_deterministic": "is not deterministic"}, {"rk4_order"}),
        (BrokenOrder, {"rk4_order": "expected ~4"}, {"hermiticity_and_trace", "rhs_real_matches_rhs", GEN}),
        (
            BrokenToyTraceLeak,
            {"hermiticity_and_trace": "trace of rho drifted", GEN: OFF_GENERATOR},
            {"rk4_order", "rhs_real_matches_rhs", "batch_equivalence"},
        ),
        (
            BrokenToySlightlyNonHermitian,
            {"hermiticity_and_trace": r"rho lost Hermiticity: max \|rho - rho\^H\| = \d\.\d+e-(09|10)"},
            {"rk4_order", "rhs_real_matches_rhs", "batch_equivalence"},
        ),
        (  # the mirror dynamics passes every other check: only the generator check can see it
            BrokenToyMirror,
            {GEN: r"opposite sign \+i\[H, rho\] matches .*: the sign of the von Neumann equation is flipped"},
            set(CHECKS) - {GEN},
        ),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_check_system_fails_on_broken_system(cls, failing, passing):
    system = cls(L=4)
    state = system.initial_state("random_start", seed=0, n_traj=2)
    with pytest.raises(AssertionError) as info:
        check_system(system, {"s": state}, **FAST)
    msg = str(info.value)
    assert "conformance check(s) failed" in msg and cls.__name__ in msg
    messages = dict(re.findall(r"^(\w+)(?:\[\w+\])?: (.*)$", msg, flags=re.M))
    assert set(failing) <= set(messages), msg
    for check, pattern in failing.items():  # each fails for its own reason, not just somehow
        assert re.search(pattern, messages[check]), f"{check}: {messages[check]!r} does not match {pattern!r}"
    assert not (passing & set(messages)), msg


def _floor(system, state, n_steps):
    """The energy-drift check's round-off floor (see check_energy_drift_order)."""
    return 1e-13 * max(1.0, float(system.energy(state).abs().amax())) * n_steps * 4


def test_mirror_dynamics_is_measurably_different_yet_conservative():
    """The other checks pass on the mirror for real, not because nothing moved: its trajectory is far
    from the toy's, its energy drift is above the round-off floor and its RK4 error is measurable."""
    mirror, toy = BrokenToyMirror(L=4), ToySystem(L=4)
    state = toy.initial_state("random_start", seed=0, n_traj=2)
    dt, n = FAST["dt"], FAST["n_steps"]
    a = simulate(mirror, state, dt, n, save_every=n).index(-1)
    b = simulate(toy, state, dt, n, save_every=n).index(-1)
    assert float((a.rho - b.rho).abs().amax()) > 0.1
    assert testing._energy_drift(mirror, state, dt, dt * n) > _floor(mirror, state, n)
    fine = simulate(mirror, state, dt / 4, 4 * n, save_every=4 * n).index(-1)
    assert float((a.rho - fine.rho).abs().amax()) > 1e-11  # what check_rk4_order needs to measure an order


def test_slightly_nonhermitian_caught_at_many_electrons():
    """The Hermiticity tolerance does not grow with the electron number: a ~1e-11 asymmetry at L = 100
    (trace 50) is caught, which a tolerance scaled by the trace (5e-11) would let through."""

    class Faint(BrokenToySlightlyNonHermitian):
        gamma = 3e-12

    system = Faint(L=100)
    state = random_state(system, batch=(1,), seed=1)
    traj = simulate(system, state, FAST["dt"], FAST["n_steps"], save_every=2)
    assert 1e-12 < hermiticity_error(traj.rho) < 1e-12 * float(trace_of(state.rho).real.max())
    with pytest.raises(AssertionError, match="rho lost Hermiticity"):
        check_hermiticity_and_trace(system, state, tol=Tolerances(), **FAST)


def test_broken_check_fails_alone_via_iter_checks():
    system = BrokenToyNonHermitian(L=4)
    checks = dict(iter_checks(system, {"s": system.initial_state("at_rest")}, **FAST))
    checks["rhs_shapes_dtypes[s]"]()  # unaffected checks still pass one by one
    with pytest.raises(AssertionError, match="rho lost Hermiticity"):
        checks["hermiticity_and_trace[s]"]()


def test_tolerances_are_applied():
    toy = ToySystem(L=4)
    strict = Tolerances(energy_order_min=8.0, order_window=(5.0, 6.0))
    with pytest.raises(AssertionError, match=r"energy_drift_order\[s\](.|\n)*rk4_order\[s\]"):
        check_system(toy, {"s": toy.initial_state("at_rest")}, tolerances=strict, **FAST)


# -- the von Neumann generator check ----------------------------------------------------------------
@settings(deadline=None, max_examples=20)
@given(
    cls=st.sampled_from([ToySystem, ToyFlux]),
    L=st.integers(3, 6),
    batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    seed=st.integers(0, 2**31),
    scale=st.floats(0.0, 2.0),
)
def test_autograd_hamiltonian_is_the_explicit_one(cls, L, batch, seed, scale):
    """H = dE/drho from autograd is the system's h(X), including a complex h whose energy is written
    bond by bond (autograd's raw gradient is then one-sided: only its Hermitian part is h)."""
    system = cls(L=L)
    state = random_state(system, batch=batch, seed=seed, scale=scale)
    H, source = no_skip(effective_hamiltonian, system, state)
    assert "dE/drho" in source and H.shape == state.rho.shape and H.dtype == torch.complex128
    torch.testing.assert_close(H, system.hamiltonian(state["X"]).expand_as(H), rtol=0, atol=1e-13)
    no_skip(check_von_neumann_generator, system, state, tol=Tolerances())


@pytest.mark.parametrize("system", [ToySystem(L=4), ToySystemReal(L=5), ScalarLinear(), ToyFlux(L=5, boundary="open")],
                         ids=lambda s: s.name)
def test_generator_check_passes_on_correct_systems(system):
    for seed in range(3):
        no_skip(check_von_neumann_generator, system, random_state(system, seed=seed), tol=Tolerances())


def test_generator_check_sees_a_small_mismatch():
    """An rhs whose coupling is 1e-7 (relative) off the energy's is caught; the tolerance is 1e-10."""

    class Mismatched(ToySystem):
        def rhs(self, state: State) -> State:
            d = super().rhs(state)
            X = state["X"]
            d.rho = d.rho + (1j * 1e-7 * self.params.c) * (X.unsqueeze(-1) - X.unsqueeze(-2)) * state.rho
            return d

    system = Mismatched(L=4)
    with pytest.raises(AssertionError, match=OFF_GENERATOR):
        no_skip(check_von_neumann_generator, system, random_state(system, scale=1.0), tol=Tolerances())
    no_skip(check_von_neumann_generator, system, random_state(system, scale=1.0), tol=Tolerances(generator=1e-5))


def test_generator_check_uses_the_hook_when_present():
    system = HookedNumpyEnergyToy(L=4)
    state = system.initial_state("random_start", seed=3)
    H, source = no_skip(effective_hamiltonian, system, state)
    assert "one_body_hamiltonian" in source
    torch.testing.assert_close(H, system.hamiltonian(state["X"]), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConformanceSkipWarning)  # the hook replaces autograd: nothing skipped
        assert "von_neumann_generator[s]" in check_system(system, {"s": state}, **FAST)
    # A hook disagreeing with rhs fails the check, although autograd (were it used) could not run at all.
    system.hook_sign = -1.0
    with pytest.raises(AssertionError, match=r"one_body_hamiltonian\(state\), but the opposite sign"):
        no_skip(check_von_neumann_generator, system, state, tol=Tolerances())


def test_generator_check_rejects_a_non_hermitian_hook():
    system = HookedNumpyEnergyToy(L=4)
    system.one_body_hamiltonian = lambda state: system.hamiltonian(state["X"]) + 1e-6j * torch.eye(4)
    with pytest.raises(AssertionError, match="one_body_hamiltonian.* is not Hermitian"):
        no_skip(check_von_neumann_generator, system, system.initial_state("at_rest"), tol=Tolerances())


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        (NumpyEnergyToy, r"autograd through energy\(state\) failed \(RuntimeError"),
        (DetachedEnergyToy, r"energy\(state\) is not connected to rho"),
    ],
)
def test_generator_check_skips_visibly_without_a_differentiable_energy(cls, reason):
    system = cls(L=4)
    state = system.initial_state("at_rest")
    with pytest.raises(CheckSkipped, match=reason) as info:  # not a crash, not a pass
        check_von_neumann_generator(system, state, tol=Tolerances())
    assert isinstance(info.value, unittest.SkipTest)  # so pytest reports a parametrized case as skipped
    assert "one_body_hamiltonian" in str(info.value)  # and says how to enable the check
    skipped = r"1 conformance check\(s\) skipped(.|\n)*von_neumann_generator\[s\]: " + reason
    with pytest.warns(ConformanceSkipWarning, match=skipped):
        ids = check_system(system, {"s": state}, **FAST)
    assert "von_neumann_generator[s]" not in ids and "rk4_order[s]" in ids  # the rest still ran


# -- iter_checks --------------------------------------------------------------------------------------
def test_iter_checks_yields_ids_and_callables():
    toy = ToySystem(L=4)
    states = {"a": toy.initial_state("at_rest"), "b": toy.initial_state("random_start")}
    pairs = list(iter_checks(toy, states, **FAST))
    ids = [cid for cid, _ in pairs]
    assert len(ids) == len(set(ids)) == 9 * 2 + 2  # 9 per-state checks (invariants_conserved among them), 2 once
    assert ids[:2] == ["rhs_shapes_dtypes[a]", "rhs_shapes_dtypes[b]"]
    assert {"von_neumann_generator[a]", "von_neumann_generator[b]"} <= set(ids)
    assert ids[-2:] == ["scenarios_deterministic", "graph_matches_rhs"]
    assert all(callable(run) for _, run in pairs)
    for cid, run in pairs:  # each closure is bound to its own check and state
        if cid.startswith(("rhs_", "batch_", "von_neumann_")) or cid == "scenarios_deterministic":
            no_skip(run)


def test_iter_checks_default_states_include_scenarios_and_random():
    ids = [cid for cid, _ in iter_checks(ToySystem(L=4))]
    assert {"rk4_order[at_rest]", "rk4_order[random_start]", "rk4_order[random]"} <= set(ids)


# -- random helpers -----------------------------------------------------------------------------------
@SETTINGS
@given(
    L=st.integers(1, 6),
    data=st.data(),
    batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    seed=st.integers(0, 2**31),
    pure=st.booleans(),
)
def test_random_density_matrix_is_physical(L, data, batch, seed, pure):
    n = data.draw(st.integers(0, L))
    rho = random_density_matrix(L, n, batch, torch.Generator().manual_seed(seed), pure=pure)
    assert rho.shape == (*batch, L, L) and rho.dtype == torch.complex128
    assert hermiticity_error(rho) < 1e-14
    torch.testing.assert_close(trace_of(rho).real, torch.full(batch, float(n), dtype=torch.float64), atol=1e-12, rtol=0)
    assert float(trace_of(rho).imag.abs().max()) < 1e-12
    ev = torch.linalg.eigvalsh(rho)
    assert float(ev.min()) > -1e-12 and float(ev.max()) < 1 + 1e-12
    if pure:  # a projector on n orbitals
        torch.testing.assert_close(rho @ rho, rho, atol=1e-12, rtol=0)


def test_random_density_matrix_mixed_is_mixed_and_seeded():
    g = lambda: torch.Generator().manual_seed(11)  # noqa: E731
    rho = random_density_matrix(6, 3, (4,), g(), pure=False)
    ev = torch.linalg.eigvalsh(rho)
    assert float(((ev > 1e-6) & (ev < 1 - 1e-6)).sum()) > 0  # not a projector
    torch.testing.assert_close(random_density_matrix(6, 3, (4,), g(), pure=False), rho, rtol=0, atol=0)


def test_random_density_matrix_rejects_impossible_filling():
    with pytest.raises(ValueError, match="n_electrons"):
        random_density_matrix(4, 5)
    with pytest.raises(ValueError, match="n_electrons"):
        random_density_matrix(4, -1)


@SETTINGS
@given(L=st.integers(1, 6), batch=st.lists(st.integers(1, 3), max_size=2).map(tuple), seed=st.integers(0, 2**31))
def test_random_unitary_is_unitary(L, batch, seed):
    U = random_unitary(L, batch, torch.Generator().manual_seed(seed))
    assert U.shape == (*batch, L, L) and U.dtype == torch.complex128
    eye = torch.eye(L, dtype=torch.complex128).expand(*batch, L, L)
    torch.testing.assert_close(U @ U.mH, eye, atol=1e-13, rtol=0)
    torch.testing.assert_close(U.mH @ U, eye, atol=1e-13, rtol=0)
    U2 = random_unitary(L, batch, torch.Generator().manual_seed(seed))
    assert torch.equal(U, U2)


def test_random_state():
    toy = ToySystem(L=4)
    s = random_state(toy, batch=(3,), seed=2)
    assert s.names == ("X", "V", "rho") and s.batch_shape == (3,) and s.dtype == torch.float64
    torch.testing.assert_close(trace_of(s.rho).real, torch.full((3,), 2.0, dtype=torch.float64))
    assert s.allclose(random_state(toy, batch=(3,), seed=2), rtol=0, atol=0)
    assert not s.allclose(random_state(toy, batch=(3,), seed=3))
    assert float(trace_of(random_state(toy, n_electrons=1).rho).real[0]) == pytest.approx(1.0)


def test_small_helpers():
    assert observed_order([1.0, 1 / 16, 1 / 256]) == pytest.approx([4.0, 4.0])
    assert observed_order([9.0, 1.0], ratio=3.0) == pytest.approx([2.0])
    m = torch.tensor([[1.0, 2.0 + 1j], [2.0 - 1j, 3.0]], dtype=torch.complex128)
    assert hermiticity_error(m) == 0.0
    assert hermiticity_error(m + 0.5j * torch.eye(2)) == pytest.approx(1.0)
    assert complex(trace_of(m)) == 4.0


def test_kit_skips_scenarios_whose_required_arguments_are_not_given():
    """A scenario such as `from_arrays(X, V, rho)` needs user data: skipped, not a crash."""
    from toy_system import ToySystem

    from qcsurrogate import scenario
    from qcsurrogate.testing import runnable_scenarios

    class WithUserState(ToySystem):
        name = "toy-with-user-state"

        @scenario
        def given(self, state):
            """Start from a user-given state."""
            return state

    system = WithUserState(L=4)
    assert "given" not in runnable_scenarios(system, None)
    s0 = system.initial_state("random_start", seed=0, n_traj=1)
    assert "given" in runnable_scenarios(system, {"given": {"state": s0}})
    assert any(c.startswith("rk4_order[given]") for c in testing.check_system(system, {"given": s0}, n_steps=20, dt=0.05))


def test_state_does_not_alias_numpy_input():
    import numpy as np

    from qcsurrogate import State

    rho = np.eye(2, dtype=np.complex128) * 0.5
    q = np.zeros(2)
    s = State({"Q": q}, rho)
    rho[0, 0] = 7.0
    q[0] = 3.0
    assert float(s.rho[0, 0].real) == 0.5 and float(s["Q"][0]) == 0.0
