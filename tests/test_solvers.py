"""Fixed-step solvers and `simulate`: convergence orders, output layout, streaming, validation."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_system import ScalarLinear, ToySystem, ToySystemReal

from qcsurrogate.solvers import EULER, MIDPOINT, RK4, SOLVERS, ExplicitRK, _progress, get_solver, simulate
from qcsurrogate.state import State
from qcsurrogate.testing import observed_order, random_density_matrix

SETTINGS = settings(deadline=None, max_examples=15)


class ListSink:
    """A TrajectorySink that keeps every chunk it is handed."""

    def __init__(self) -> None:
        self.chunks: list[State] = []

    def append(self, chunk: State) -> None:
        self.chunks.append(chunk)


def max_err(a: State, b: State) -> float:
    return max(float((a[v] - b[v]).abs().amax()) for v in a.names)


def linear_state(L: int = 3, batch: tuple[int, ...] = (2,)) -> State:
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(*batch, L, dtype=torch.float64, generator=gen)
    rho = random_density_matrix(L, 1, batch, gen, pure=False)
    return State({"X": X}, rho)


# -- the methods -------------------------------------------------------------------------------------
def test_solver_table():
    assert set(SOLVERS) == {"euler", "midpoint", "rk4"}
    assert [get_solver(n).order for n in ("euler", "midpoint", "rk4")] == [1, 2, 4]
    assert get_solver(RK4) is RK4
    with pytest.raises(ValueError, match=r"unknown solver 'rk5'.*\['euler', 'midpoint', 'rk4'\]"):
        get_solver("rk5")
    for m in SOLVERS.values():  # consistent tableaux: weights sum to one, one row per stage
        assert abs(sum(m.b) - 1.0) < 1e-15 and len(m.a) == len(m.b)


def test_single_steps_on_linear_ode():
    """One step of each method on dX/dt = lam X is the method's Taylor polynomial of exp(lam dt)."""
    system = ScalarLinear(L=2, lam=-0.8)
    s = linear_state(L=2)
    z = -0.8 * 0.1
    expected = {EULER: 1 + z, MIDPOINT: 1 + z + z**2 / 2, RK4: 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24}
    for method, growth in expected.items():
        out = method.step(system.rhs, s, 0.1)
        torch.testing.assert_close(out["X"], s["X"] * growth, rtol=1e-14, atol=0)


def test_step_tuple_matches_step(toy, toy_state):
    def f(y):
        d = toy.rhs(State._raw({"X": y[0], "V": y[1]}, y[2]))
        return (d["X"], d["V"], d.rho)

    for method in SOLVERS.values():
        a = method.step(toy.rhs, toy_state, 0.05)
        b = method.step_tuple(f, (toy_state["X"], toy_state["V"], toy_state.rho), 0.05)
        assert a.allclose(State._raw({"X": b[0], "V": b[1]}, b[2]), rtol=1e-14, atol=1e-15)


def test_custom_tableau():
    heun = ExplicitRK("heun", 2, ((), (1.0,)), (0.5, 0.5))
    system, s = ScalarLinear(), linear_state()
    errs = []
    for n in (20, 40, 80):
        y = simulate(system, s, 1.0 / n, n, save_every=n, solver=heun).index(-1)
        errs.append(max_err(y, system.exact(s, 1.0)))
    assert all(1.8 < o < 2.2 for o in observed_order(errs)), errs


# -- convergence orders ------------------------------------------------------------------------------
ORDER_WINDOWS = {"euler": (0.85, 1.2), "midpoint": (1.8, 2.25), "rk4": (3.7, 4.4)}


@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
def test_convergence_order_scalar_linear_exact(solver):
    system, s = ScalarLinear(L=4, lam=-0.8), linear_state(L=4)
    T = 2.0
    exact = system.exact(s, T)
    errs = []
    for n in (16, 32, 64):
        y = simulate(system, s, T / n, n, save_every=n, solver=solver).index(-1)
        errs.append(max_err(y, exact))
    lo, hi = ORDER_WINDOWS[solver]
    orders = observed_order(errs)
    assert all(lo < o < hi for o in orders), (errs, orders)


@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
def test_convergence_order_toy(solver, toy, toy_state):
    T = 1.0
    ref = simulate(toy, toy_state, T / 1024, 1024, save_every=1024).index(-1)  # RK4, error ~1e-14
    ns = (40, 80, 160) if solver == "euler" else (10, 20, 40)
    errs = [max_err(simulate(toy, toy_state, T / n, n, save_every=n, solver=solver).index(-1), ref) for n in ns]
    lo, hi = ORDER_WINDOWS[solver]
    orders = observed_order(errs)
    assert all(lo < o < hi for o in orders), (errs, orders)


def test_toy_rhs_is_von_neumann(toy, toy_state):
    """The fixture's unrolled rhs is -i[h(X), rho] with the dense Hamiltonian, and Hamilton's equations."""
    d = toy.rhs(toy_state)
    h = toy.hamiltonian(toy_state["X"])
    torch.testing.assert_close(d.rho, -1j * (h @ toy_state.rho - toy_state.rho @ h), rtol=1e-14, atol=1e-14)
    assert torch.equal(d["X"], toy_state["V"])
    # dV/dt = -dE/dX, checked by a central finite difference of the energy
    eps = 1e-6
    for i in range(toy.L):
        bump = torch.zeros(toy.L, dtype=torch.float64)
        bump[i] = eps
        plus = State._raw({"X": toy_state["X"] + bump, "V": toy_state["V"]}, toy_state.rho)
        minus = State._raw({"X": toy_state["X"] - bump, "V": toy_state["V"]}, toy_state.rho)
        dE = (toy.energy(plus) - toy.energy(minus)) / (2 * eps)
        torch.testing.assert_close(d["V"][:, i], -dE, rtol=1e-7, atol=1e-8)


def test_rk4_conserves_toy_invariants(toy, toy_state):
    traj = simulate(toy, toy_state, 0.05, 200, save_every=20)
    e = toy.energy(traj)
    assert e.shape == (11, 2)
    assert float((e - e[0]).abs().amax()) < 5e-6
    tr = torch.diagonal(traj.rho, dim1=-2, dim2=-1).sum(-1)
    assert float((tr - 3).abs().amax()) < 1e-12
    assert float((traj.rho - traj.rho.mH).abs().amax()) < 1e-12


# -- simulate: layout --------------------------------------------------------------------------------
@pytest.mark.parametrize(("n_steps", "save_every"), [(0, 1), (1, 1), (12, 3), (12, 12), (10, 2)])
def test_simulate_output_shape(toy, toy_state, n_steps, save_every):
    traj = simulate(toy, toy_state, 0.05, n_steps, save_every)
    n_saved = n_steps // save_every + 1
    assert traj.batch_shape == torch.Size([n_saved, 2])
    assert traj["X"].shape == (n_saved, 2, toy.L) and traj.rho.shape == (n_saved, 2, toy.L, toy.L)
    assert traj.index(0).allclose(toy_state, rtol=0, atol=0)  # t = 0 is included, untouched
    if n_steps:
        last = simulate(toy, toy_state, 0.05, n_steps, n_steps).index(-1)
        assert traj.index(-1).allclose(last, rtol=0, atol=0)


def test_simulate_does_not_modify_input(toy, toy_state):
    before = toy_state.clone()
    simulate(toy, toy_state, 0.05, 5)
    assert toy_state.allclose(before, rtol=0, atol=0)


@SETTINGS
@given(k=st.integers(1, 4), m=st.integers(0, 4), solver=st.sampled_from(sorted(SOLVERS)))
def test_save_every_subsamples_exactly(k, m, solver):
    toy = ToySystem(L=4)
    s0 = toy.initial_state("random_start", seed=1, n_traj=2)
    n = k * m
    every_1 = simulate(toy, s0, 0.07, n, 1, solver=solver)
    every_k = simulate(toy, s0, 0.07, n, k, solver=solver)
    assert every_k.batch_shape[0] == m + 1
    assert every_k.allclose(every_1.index(slice(None, None, k)), rtol=0, atol=0)


@SETTINGS
@given(n_saved=st.integers(1, 9), save_every=st.integers(1, 3), chunk_size=st.integers(1, 5))
def test_sink_streaming_matches_memory(n_saved, save_every, chunk_size):
    toy = ToySystem(L=4)
    s0 = toy.initial_state("random_start", seed=2, n_traj=2)
    n_steps = (n_saved - 1) * save_every
    full = simulate(toy, s0, 0.05, n_steps, save_every)
    sink = ListSink()
    final = simulate(toy, s0, 0.05, n_steps, save_every, sink=sink, chunk_size=chunk_size)
    sizes = [int(c.batch_shape[0]) for c in sink.chunks]
    assert sum(sizes) == n_saved
    assert all(sz == chunk_size for sz in sizes[:-1]) and 1 <= sizes[-1] <= chunk_size
    assert State.cat(sink.chunks).allclose(full, rtol=0, atol=0)
    assert final.batch_shape == s0.batch_shape  # with a sink only the final state comes back
    assert final.allclose(full.index(-1), rtol=0, atol=0)


def test_sink_chunk_sizes_example(toy, toy_state):
    sink = ListSink()
    simulate(toy, toy_state, 0.05, 10, sink=sink, chunk_size=4)
    assert [int(c.batch_shape[0]) for c in sink.chunks] == [4, 4, 3]


def test_sink_default_chunk_size_is_256():
    system, sink = ScalarLinear(L=2), ListSink()
    simulate(system, linear_state(L=2), 0.01, 300, sink=sink)
    assert [int(c.batch_shape[0]) for c in sink.chunks] == [256, 45]


def test_chunk_size_is_ignored_without_sink(toy, toy_state):
    traj = simulate(toy, toy_state, 0.05, 6, 2, chunk_size=1)
    assert traj.allclose(simulate(toy, toy_state, 0.05, 6, 2), rtol=0, atol=0)


# -- simulate: validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dt": 0.0}, "dt must be a positive finite number"),
        ({"dt": -0.1}, "dt must be a positive finite number"),
        ({"dt": float("nan")}, "dt must be a positive finite number"),
        ({"dt": float("inf")}, "dt must be a positive finite number"),
        ({"n_steps": -1}, "n_steps >= 0"),
        ({"save_every": 0}, "save_every >= 1"),
        ({"n_steps": 10, "save_every": 3}, r"n_steps \(10\) must be a multiple of save_every \(3\)"),
        ({"chunk_size": 0}, "^chunk_size must be >= 1$"),
        ({"solver": "rk5"}, "unknown solver"),
    ],
)
def test_simulate_validation(toy, toy_state, kwargs, match):
    args = {"dt": 0.1, "n_steps": 4, "save_every": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        simulate(toy, toy_state, args.pop("dt"), args.pop("n_steps"), args.pop("save_every"), **args)


def test_simulate_missing_fields(toy, toy_state):
    partial = State({"X": toy_state["X"]}, toy_state.rho)
    with pytest.raises(ValueError, match=r"state lacks field\(s\) \['V'\] required by system 'toy'"):
        simulate(toy, partial, 0.1, 4)


# -- simulate: batches, dtypes, devices --------------------------------------------------------------
def test_batch_matches_single(toy):
    batch = toy.initial_state("random_start", seed=4, n_traj=3)
    traj = simulate(toy, batch, 0.05, 20, 5)
    for i in range(3):
        one = simulate(toy, batch.index(i), 0.05, 20, 5)
        assert one.batch_shape == torch.Size([5])
        assert one.allclose(traj.index((slice(None), i)), rtol=1e-12, atol=1e-13)


def test_nested_batch_shape(toy):
    s = toy.initial_state("random_start", seed=5, n_traj=4)
    nested = s.map(lambda t: t.reshape(2, 2, *t.shape[1:]))
    traj = simulate(toy, nested, 0.05, 4, 2)
    assert traj.batch_shape == torch.Size([3, 2, 2])
    flat = simulate(toy, s, 0.05, 4, 2)
    assert traj.map(lambda t: t.reshape(3, 4, *t.shape[3:])).allclose(flat, rtol=1e-12, atol=1e-13)


def test_float32_option(toy, toy_state):
    traj64 = simulate(toy, toy_state, 0.05, 20, 10)
    traj32 = simulate(toy, toy_state, 0.05, 20, 10, dtype=torch.float32)
    assert traj32["X"].dtype == torch.float32 and traj32.rho.dtype == torch.complex64
    assert traj32.dtype == torch.float32
    assert traj32.to(dtype=torch.float64).allclose(traj64, rtol=1e-4, atol=1e-5)
    assert not traj32.to(dtype=torch.float64).allclose(traj64, rtol=0, atol=1e-12)  # really single precision
    s32 = toy_state.to(dtype=torch.float32)  # a float32 state stays float32 without asking
    assert simulate(toy, s32, 0.05, 2).dtype == torch.float32
    assert simulate(toy, s32, 0.05, 2, dtype=torch.float64).dtype == torch.float64


def test_device_argument(toy, toy_state):
    traj = simulate(toy, toy_state, 0.05, 4, device="cpu")
    assert traj.device == torch.device("cpu")
    assert traj.allclose(simulate(toy, toy_state, 0.05, 4), rtol=0, atol=0)
    # Another device than the state's (the meta device computes shapes only): the run happens there.
    meta = simulate(toy, toy_state, 0.05, 4, 2, device="meta")
    assert meta.device == torch.device("meta") and meta.batch_shape == torch.Size([3, 2])
    assert meta.rho.dtype == torch.complex128


def test_progress_bar(toy, toy_state, capsys):
    a = simulate(toy, toy_state, 0.05, 70, 10, progress=True)
    err = capsys.readouterr().err
    assert "toy rk4" in err and "70" in err
    assert a.allclose(simulate(toy, toy_state, 0.05, 70, 10, progress=False), rtol=0, atol=0)


@pytest.fixture
def fake_bars(monkeypatch):
    """tqdm replaced by a recorder: the bars simulate opens, with their arguments, updates and closing."""
    import tqdm.auto

    bars = []

    class FakeBar:
        def __init__(self, **kwargs) -> None:
            self.kwargs, self.n, self.updates, self.closed = kwargs, 0, [], False
            bars.append(self)

        def update(self, k: int) -> None:
            self.updates.append(k)
            self.n += k

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    return bars


@pytest.mark.parametrize(("n_steps", "updates"), [(10, [10]), (64, [64]), (200, [64, 64, 64, 8])])
def test_progress_bar_counts_steps_in_batches(fake_bars, n_steps, updates):
    """The bar counts steps out of n_steps, advanced 64 steps at a time (a tqdm call per step would
    cost more than a small system's step) and then up to exactly n_steps; it is closed at the end."""
    simulate(ScalarLinear(L=2), linear_state(L=2), 0.01, n_steps, 2, progress=True)
    (bar,) = fake_bars
    assert bar.kwargs == {"total": n_steps, "desc": "scalar-linear rk4", "unit": "step", "dynamic_ncols": True}
    assert bar.updates == updates
    assert bar.closed


def test_progress_bar_closed_when_a_step_fails(fake_bars):
    class Exploding(ScalarLinear):
        def rhs(self, state):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        simulate(Exploding(L=2), linear_state(L=2), 0.01, 4, progress=True)
    (bar,) = fake_bars
    assert bar.closed and bar.updates == []


def test_progress_default_is_long_runs_on_a_terminal(fake_bars, monkeypatch):
    """progress=None shows a bar only for runs of at least 2000 steps and only on a terminal;
    True and False force it on or off."""
    class Terminal:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr(sys, "stderr", Terminal(True))
    assert _progress(2000, None, "run") is not None and fake_bars[-1].kwargs["total"] == 2000
    assert _progress(1999, None, "run") is None
    assert _progress(10**6, False, "run") is None
    assert _progress(1, True, "run") is not None
    n_bars = len(fake_bars)
    simulate(ScalarLinear(L=2), linear_state(L=2), 0.01, 2000, 2000)  # progress left at its default
    assert len(fake_bars) == n_bars + 1 and fake_bars[-1].updates[-1] == 2000 - 31 * 64
    monkeypatch.setattr(sys, "stderr", Terminal(False))
    assert _progress(10**6, None, "run") is None
    assert _progress(1, True, "run") is not None


def test_no_autograd_graph_is_built(toy, toy_state):
    s = State._raw({k: v.clone().requires_grad_() for k, v in toy_state.fields.items()}, toy_state.rho)
    traj = simulate(toy, s, 0.05, 3)
    assert not traj.index(-1)["X"].requires_grad


def test_scalar_linear_matches_numpy_exponential():
    """Sanity of the fixture used for the order tests: the exact solution solves the ODE."""
    system, s = ScalarLinear(L=3, lam=0.5), linear_state(L=3)
    t = 0.3
    np.testing.assert_allclose(system.exact(s, t)["X"].numpy(), s["X"].numpy() * np.exp(0.5 * t), rtol=1e-15)
    h = 1e-6
    fd = (system.exact(s, t + h) - system.exact(s, t - h)) / (2 * h)
    assert fd.allclose(system.rhs(system.exact(s, t)), rtol=1e-7, atol=1e-8)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch inductor internals
def test_compiled_matches_eager():
    """torch.compile over the System's real-arithmetic rhs gives the eager complex trajectory."""
    toy = ToySystemReal(L=4)
    s0 = toy.initial_state("random_start", seed=6, n_traj=2)
    eager = simulate(toy, s0, 0.05, 8, 2)
    compiled = simulate(toy, s0, 0.05, 8, 2, compile=True)
    assert compiled.batch_shape == eager.batch_shape
    assert compiled.rho.dtype == torch.complex128
    assert compiled.allclose(eager, rtol=1e-12, atol=1e-12), max_err(compiled, eager)


def test_an_integration_that_blows_up_stops_with_the_first_bad_snapshot():
    from toy_system import ToySystem

    from qcsurrogate.state import NonFiniteError

    system = ToySystem(L=4)
    s0 = system.initial_state("random_start", seed=0, n_traj=2)
    with pytest.raises(NonFiniteError, match=r"^the integration became non-finite by step \d+ \(t = [0-9.]+ after the "
                                             r"start\) in .*: dt = 40 is probably beyond rk4's stability; try a smaller dt$"):
        simulate(system, s0, 40.0, 60)
    assert torch.isfinite(simulate(system, s0, 0.05, 60).rho.abs()).all()  # a stable step passes the check
