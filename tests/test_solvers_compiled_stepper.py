"""The compiled stepper's own arithmetic: one call is `steps_per_call` RK steps of the eager solver, for
any number of classical fields, and `n_calls` counts the calls.

torch.compile is replaced by the identity here, so these tests check the function handed to the
compiler (run eagerly, as in the mutation run); `test_compiled_matches_eager` checks a real compile.
"""

from __future__ import annotations

import pytest
import torch
from toy_system import ScalarLinear, ToySystem, ToySystemReal

from qcsurrogate import solvers
from qcsurrogate.solvers import MIDPOINT, RK4, _compiled_stepper, simulate
from qcsurrogate.state import State
from qcsurrogate.testing import random_density_matrix


@pytest.fixture(autouse=True)
def eager_compile(monkeypatch):
    """torch.compile hands the function back uncompiled; the stepper cache starts and ends empty."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    solvers._STEPPER_CACHE.clear()
    yield
    solvers._STEPPER_CACHE.clear()


class ToyWithMemory(ToySystem):
    """The toy plus a third field `A` that relaxes towards the displacement, `dA/dt = 0.5 X - 0.2 A`
    (a System with three fields; rhs_real is the default one, through rhs)."""

    name = "toy-memory"
    field_names = ("X", "V", "A")

    def rhs(self, state: State) -> State:
        d = super().rhs(state)
        d.fields["A"] = 0.5 * state["X"] - 0.2 * state["A"]
        return d


def _linear_state() -> State:
    gen = torch.Generator().manual_seed(5)
    return State({"X": torch.randn(2, 3, dtype=torch.float64, generator=gen)}, random_density_matrix(3, 1, (2,), gen))


def _memory_state() -> State:
    s = ToySystem(L=4).initial_state("random_start", seed=2, n_traj=2)
    A = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    return State({"X": s["X"], "V": s["V"], "A": A}, s.rho)


CASES = {
    "one field": (lambda: ScalarLinear(L=3), _linear_state),
    "two fields": (lambda: ToySystemReal(L=4), lambda: ToySystemReal(L=4).initial_state("random_start", seed=2)),
    "three fields": (lambda: ToyWithMemory(L=4), _memory_state),
}


def _eager_steps(system, method, y: State, dt: float, k: int) -> State:
    for _ in range(k):
        y = method.step(system.rhs, y, dt)
    return y


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("method", [RK4, MIDPOINT], ids=lambda m: m.name)
def test_one_call_is_steps_per_call_eager_steps(case, k, method):
    make_system, make_state = CASES[case]
    system, y = make_system(), make_state()
    stepper = _compiled_stepper(system, method, 0.07, y, k)
    assert stepper.steps_per_call == k
    out = stepper(y)
    assert out.names == y.names
    assert out.fields["X"].shape == y.fields["X"].shape and out.rho.shape == y.rho.shape
    assert out.rho.dtype == torch.complex128
    expected = _eager_steps(system, method, y, 0.07, k)
    assert out.allclose(expected, rtol=1e-12, atol=1e-13)
    assert not out.allclose(_eager_steps(system, method, y, 0.07, k + 1), rtol=1e-6, atol=1e-8)


def test_default_is_one_step_per_call():
    toy = ToySystemReal(L=4)
    y = toy.initial_state("random_start", seed=3)
    stepper = _compiled_stepper(toy, RK4, 0.05, y)
    assert stepper.steps_per_call == 1
    assert stepper(y).allclose(RK4.step(toy.rhs, y, 0.05), rtol=1e-12, atol=1e-13)


def test_n_calls_counts_calls():
    toy = ToySystemReal(L=4)
    s0 = toy.initial_state("random_start", seed=4)
    out = simulate(toy, s0, 0.05, 12, 4, compile=True, steps_per_call=2)
    (stepper,) = solvers._STEPPER_CACHE.values()
    assert stepper.n_calls == 6  # 12 steps, 2 per call
    assert out.allclose(simulate(toy, s0, 0.05, 12, 4), rtol=1e-12, atol=1e-13)
    fresh = _compiled_stepper(toy, RK4, 0.1, s0)
    assert fresh.n_calls == 0
    y = s0
    for n in range(1, 4):
        y = fresh(y)
        assert fresh.n_calls == n


def test_compile_is_off_by_default():
    toy = ToySystemReal(L=4)
    s0 = toy.initial_state("random_start", seed=4)
    simulate(toy, s0, 0.05, 4, 2)
    assert not solvers._STEPPER_CACHE  # nothing was built for compiling
    simulate(toy, s0, 0.05, 4, 2, compile=True)
    assert len(solvers._STEPPER_CACHE) == 1


def test_compiled_default_is_one_step_per_call():
    """Without steps_per_call any save_every works under compile, one step per compiled call."""
    toy = ToySystemReal(L=4)
    s0 = toy.initial_state("random_start", seed=4)
    out = simulate(toy, s0, 0.05, 9, 3, compile=True)
    (stepper,) = solvers._STEPPER_CACHE.values()
    assert stepper.steps_per_call == 1 and stepper.n_calls == 9
    assert out.allclose(simulate(toy, s0, 0.05, 9, 3), rtol=1e-12, atol=1e-13)
