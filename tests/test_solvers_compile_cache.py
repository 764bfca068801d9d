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


@pytest.fixture
def compile_calls(monkeypatch):
    """torch.compile replaced by a recorder that hands the function back uncompiled: building and calling
    steppers is then cheap and the same with or without TORCHDYNAMO_DISABLE, and the test sees which
    function was handed to the compiler."""
    calls = []

    def fake_compile(fn, **kwargs):
        calls.append((fn, kwargs))
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    return calls


def test_cache_key_distinguishes_what_was_compiled(compile_calls):
    toy = ToySystemReal(L=4)
    s = toy.initial_state("random_start", seed=0, n_traj=2)
    a = _compiled_stepper(toy, RK4, 0.05, s)
    assert _compiled_stepper(toy, RK4, 0.05, s) is a
    assert _compiled_stepper(toy, RK4, 0.05, s.to(dtype=torch.float64)) is a  # an equal layout, another State
    others = [
        _compiled_stepper(toy, RK4, 0.1, s),  # dt
        _compiled_stepper(toy, solvers.MIDPOINT, 0.05, s),  # solver
        _compiled_stepper(toy, RK4, 0.05, s.to(dtype=torch.float32)),  # dtype
        _compiled_stepper(toy, RK4, 0.05, s.to(device="meta")),  # device
        _compiled_stepper(toy, RK4, 0.05, toy.initial_state("random_start", seed=0, n_traj=3)),  # shape
        _compiled_stepper(toy, RK4, 0.05, s, steps_per_call=2),  # unrolling
        _compiled_stepper(ToySystemReal(L=4), RK4, 0.05, s),  # another system, even with equal params
        _compiled_stepper(ToySystemReal(L=4, c=0.3), RK4, 0.05, s),  # other params
    ]
    assert len({id(x) for x in [a, *others]}) == 1 + len(others)
    # One build per stepper (a cache hit builds nothing), each stepper handing the compiler the
    # function it calls.
    assert [fn for fn, _ in compile_calls] == [x.step for x in [a, *others]]
    # Each stepper traces its own copy of the code object, so dynamo caches (and its recompile limit
    # of 8 per code object, a hard error with fullgraph=True) are per stepper, not shared.
    codes = {id(x.step.__code__) for x in [a, *others]}
    assert len(codes) == 1 + len(others)


def test_systems_with_equal_params_do_not_evict_each_other(compile_calls):
    """Two live systems with equal params alternate (e.g. two copies in a sweep): both stay cached."""
    one, two = ToySystemReal(L=4), ToySystemReal(L=4)
    s = one.initial_state("random_start", seed=0, n_traj=2)
    a, b = _compiled_stepper(one, RK4, 0.05, s), _compiled_stepper(two, RK4, 0.05, s)
    assert a is not b and a.system is one and b.system is two
    assert _compiled_stepper(one, RK4, 0.05, s) is a
    assert _compiled_stepper(two, RK4, 0.05, s) is b
    assert len(compile_calls) == 2


def test_compiles_whole_graph_with_static_shapes(compile_calls):
    """fullgraph=True: an rhs_real that breaks the graph fails loudly instead of silently running as slow
    partial graphs; dynamic=False: each stepper serves one shape (the key holds it), so kernels are
    specialised to it."""
    toy = ToySystemReal(L=4)
    stepper = _compiled_stepper(toy, RK4, 0.05, toy.initial_state("random_start", seed=0, n_traj=2))
    ((fn, kwargs),) = compile_calls
    assert fn is stepper.step
    assert kwargs == {"dynamic": False, "fullgraph": True}


class GraphBreakingToy(ToySystemReal):
    name = "toy-graph-break"

    def rhs_real(self, fields, rho_re, rho_im):
        torch._dynamo.graph_break()
        return super().rhs_real(fields, rho_re, rho_im)


@pytest.mark.dynamo
def test_graph_break_in_rhs_real_is_an_error():
    """The behaviour fullgraph=True buys: no silent fallback to Python between partial graphs."""
    toy = GraphBreakingToy(L=3)
    s0 = toy.initial_state("random_start", seed=1, n_traj=1)
    with pytest.raises(torch._dynamo.exc.Unsupported):
        simulate(toy, s0, 0.05, 2, 2, compile=True)


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
    kept = _compiled_stepper(toy, RK4, 0.015, s)
    for i in range(solvers._STEPPER_CACHE_SIZE + 5):
        _compiled_stepper(toy, RK4, 0.02 + 0.001 * i, s)
        assert _compiled_stepper(toy, RK4, 0.015, s) is kept  # used all along: never the least recent
    assert len(solvers._STEPPER_CACHE) == solvers._STEPPER_CACHE_SIZE
    assert _compiled_stepper(toy, RK4, 0.01, s) is not first  # evicted, rebuilt


def test_steps_per_call_validation():
    toy = ToySystemReal(L=4)
    s = toy.initial_state("random_start", seed=0, n_traj=2)
    with pytest.raises(ValueError, match="must divide save_every"):
        simulate(toy, s, 0.05, 6, 3, compile=True, steps_per_call=2)
    for bad in (0, -1, 1.0, 2.5, True, "3"):
        with pytest.raises(ValueError, match=r"^steps_per_call must be an integer >= 1, got "):
            simulate(toy, s, 0.05, 6, 3, compile=True, steps_per_call=bad)
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
