"""Compiled steppers are cached: repeated `simulate(..., compile=True)` calls trace once, and the
cache never hands a stepper to a call it was not built for (other params, dt, dtype, shape, system)."""

from __future__ import annotations

import pytest
import torch
from toy_system import ToySystemReal

from qcsurrogate import solvers
from qcsurrogate.solvers import RK4, _compiled_stepper, simulate


@pytest.fixture(autouse=True)
def empty_cache():
    solvers._STEPPER_CACHE.clear()
    yield
    solvers._STEPPER_CACHE.clear()


def _dynamo_graphs() -> int:
    """Graphs dynamo has traced so far in this process (each trace of a compiled function adds one)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@pytest.mark.dynamo
def test_cache_key_distinguishes_what_was_compiled():
    """Building a stepper does not compile (torch.compile is lazy), so the key logic is cheap to test."""
    toy = ToySystemReal(L=4)
    s = toy.initial_state("random_start", seed=0, n_traj=2)
    a = _compiled_stepper(toy, RK4, 0.05, s)
    assert _compiled_stepper(toy, RK4, 0.05, s) is a
    assert _compiled_stepper(toy, RK4, 0.05, s.to(dtype=torch.float64)) is a  # an equal layout, another State
    others = [
        _compiled_stepper(toy, RK4, 0.1, s),  # dt
        _compiled_stepper(toy, solvers.MIDPOINT, 0.05, s),  # solver
        _compiled_stepper(toy, RK4, 0.05, s.to(dtype=torch.float32)),  # dtype
        _compiled_stepper(toy, RK4, 0.05, toy.initial_state("random_start", seed=0, n_traj=3)),  # shape
        _compiled_stepper(toy, RK4, 0.05, s, steps_per_call=2),  # unrolling
        _compiled_stepper(ToySystemReal(L=4), RK4, 0.05, s),  # another system, even with equal params
        _compiled_stepper(ToySystemReal(L=4, c=0.3), RK4, 0.05, s),  # other params
    ]
    assert len({id(x) for x in [a, *others]}) == 1 + len(others)
    # Each stepper traces its own copy of the code object, so dynamo caches (and its recompile limit
    # of 8 per code object, a hard error with fullgraph=True) are per stepper, not shared.
    codes = {id(x.step._torchdynamo_orig_callable.__code__) for x in [a, *others]}
    assert len(codes) == 1 + len(others)


def test_same_system_new_params_is_not_stale():
    toy = ToySystemReal(L=4)
    s = toy.initial_state("random_start", seed=0, n_traj=2)
    a = _compiled_stepper(toy, RK4, 0.05, s)
    toy.params = toy.Params(L=4, c=0.3)  # replaced in place: the old trace would use the old c
    assert _compiled_stepper(toy, RK4, 0.05, s) is not a


def test_cache_is_bounded():
    toy = ToySystemReal(L=4)
    s = toy.initial_state("random_start", seed=0, n_traj=2)
    first = _compiled_stepper(toy, RK4, 0.01, s)
    for i in range(solvers._STEPPER_CACHE_SIZE + 5):
        _compiled_stepper(toy, RK4, 0.02 + 0.001 * i, s)
    assert len(solvers._STEPPER_CACHE) == solvers._STEPPER_CACHE_SIZE
    assert _compiled_stepper(toy, RK4, 0.01, s) is not first  # evicted, rebuilt


def test_steps_per_call_validation():
    toy = ToySystemReal(L=4)
    s = toy.initial_state("random_start", seed=0, n_traj=2)
    with pytest.raises(ValueError, match="must divide save_every"):
        simulate(toy, s, 0.05, 6, 3, compile=True, steps_per_call=2)
    with pytest.raises(ValueError, match="integer >= 1"):
        simulate(toy, s, 0.05, 6, 3, compile=True, steps_per_call=0)
    # Ignored without compile (eager has nothing to unroll).
    assert simulate(toy, s, 0.05, 6, 3, steps_per_call=2).batch_shape[0] == 3


@pytest.mark.slow
@pytest.mark.dynamo
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch inductor internals
def test_second_simulate_does_not_recompile():
    """One compile (~10-20 s): the second call reuses the stepper and dynamo traces no new graph."""
    toy = ToySystemReal(L=3)
    s0 = toy.initial_state("random_start", seed=1, n_traj=1)
    graphs0 = _dynamo_graphs()
    first = simulate(toy, s0, 0.05, 4, 2, compile=True)
    assert _dynamo_graphs() == graphs0 + 1, "the trace counter does not count traces: the test would be vacuous"
    assert len(solvers._STEPPER_CACHE) == 1
    (stepper,) = solvers._STEPPER_CACHE.values()
    graphs, calls = _dynamo_graphs(), stepper.n_calls
    assert calls == 4

    second = simulate(toy, s0, 0.05, 4, 2, compile=True)
    assert solvers._STEPPER_CACHE.get(next(iter(solvers._STEPPER_CACHE))) is stepper
    assert len(solvers._STEPPER_CACHE) == 1
    assert stepper.n_calls == calls + 4
    assert _dynamo_graphs() == graphs, "the second simulate call traced again"
    assert second.allclose(first, rtol=0, atol=0)
    eager = simulate(toy, s0, 0.05, 4, 2)
    assert second.allclose(eager, rtol=1e-12, atol=1e-12)
