"""The conformance kit at its edges: exact tolerances, defaults, messages and the checks' own logic
(driven by systems broken by a known, small amount, or by stand-ins for the measured quantities)."""

from __future__ import annotations

import os

import re

import pytest
import torch
from toy_system import BrokenToySlightlyNonHermitian, BrokenToyTraceLeak, ScalarLinear, ToySystem

from qcsurrogate import testing
from qcsurrogate.graph import DependencyGraph
from qcsurrogate.solvers import simulate
from qcsurrogate.state import State
from qcsurrogate.system import scenario
from qcsurrogate.testing import (
    CheckSkipped,
    ConformanceSkipWarning,
    Tolerances,
    check_batch_equivalence,
    check_energy_drift_order,
    check_hermiticity_and_trace,
    check_rhs_real_matches_rhs,
    check_rhs_shapes_dtypes,
    check_rk4_order,
    check_scenarios_deterministic,
    check_system,
    check_von_neumann_generator,
    effective_hamiltonian,
    hermiticity_error,
    iter_checks,
    observed_order,
    random_density_matrix,
    random_state,
    trace_of,
)

FAST = {"dt": 0.2, "n_steps": 20}
HINT = (
    "; cannot build H = dE/drho to compare rhs with -i[H, rho]. Make energy differentiable in torch or give "
    "the system a one_body_hamiltonian(state) method returning H"
)


def no_skip(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except CheckSkipped as why:
        pytest.fail(f"unexpectedly skipped: {why}")


def batched_at_rest(system, seed=0, batch=2):
    """Random displacements, zero velocities (so dX/dt = V is exactly zero), a random pure rho."""
    g = torch.Generator().manual_seed(seed)
    L = system.L
    X = torch.randn(batch, L, dtype=torch.float64, generator=g)
    return State({"X": X, "V": torch.zeros(batch, L)}, random_density_matrix(L, L // 2, (batch,), g))


# -- random helpers ----------------------------------------------------------------------------------
def test_random_state_defaults():
    """Two states, seed 0, fields ~ N(0, 0.3) drawn in full float64 precision, a pure half-filled rho."""
    toy = ToySystem(L=4)
    s = random_state(toy)
    assert s.batch_shape == (2,)
    assert s.allclose(random_state(toy, batch=(2,), seed=0), rtol=0, atol=0)
    torch.testing.assert_close(s.rho @ s.rho, s.rho, atol=1e-12, rtol=0)  # a projector
    torch.testing.assert_close(trace_of(s.rho).real, torch.full((2,), 2.0, dtype=torch.float64))
    big = random_state(ToySystem(L=50), batch=(400,))
    for name in ("X", "V"):
        x = big[name]
        assert abs(float(x.std()) - 0.3) < 0.01 and abs(float(x.mean())) < 0.01
        assert not torch.equal(x, x.float().double())  # not single-precision numbers in disguise


def test_random_density_matrix_default_is_pure_and_bands_edges():
    rho = random_density_matrix(5, 2, (3,), torch.Generator().manual_seed(4))
    torch.testing.assert_close(rho @ rho, rho, atol=1e-12, rtol=0)
    assert float(random_density_matrix(3, 0).abs().max()) == 0.0  # empty band
    torch.testing.assert_close(random_density_matrix(3, 3), torch.eye(3, dtype=torch.complex128), atol=1e-14, rtol=0)
    torch.testing.assert_close(random_density_matrix(3, 3, pure=False), torch.eye(3, dtype=torch.complex128),
                               atol=1e-14, rtol=0)


def test_mixed_occupations_cover_zero_to_one_at_half_filling():
    """'Random occupations in [0, 1]': over many draws they reach close to both ends, not a narrow band."""
    rho = random_density_matrix(6, 3, (200,), torch.Generator().manual_seed(0), pure=False)
    ev = torch.linalg.eigvalsh(rho)
    assert float(ev.min()) < 0.05 and float(ev.max()) > 0.95
    assert float(ev.min()) > -1e-12 and float(ev.max()) < 1 + 1e-12


# -- iter_checks / check_system plumbing -------------------------------------------------------------
class WithUserState(ToySystem):
    name = "toy-with-user-state"

    @scenario
    def given(self, state):
        """Start from a user-given state."""
        return state


def test_default_states_use_scenario_kwargs():
    system = WithUserState(L=4)
    s0 = system.initial_state("random_start", seed=0, n_traj=3)
    checks = dict(iter_checks(system, scenario_kwargs={"given": {"state": s0}}, **FAST))
    assert {"rk4_order[given]", "rk4_order[random_start]", "rk4_order[random]"} <= set(checks)
    assert "rk4_order[given]" not in dict(iter_checks(system, **FAST))


def test_default_step_length_and_tolerances(monkeypatch):
    seen = []
    monkeypatch.setattr(testing, "CHECKS", {"spy": lambda system, state, **kw: seen.append(kw)})
    toy = ToySystem(L=4)
    states = {"s": toy.initial_state("at_rest")}
    assert check_system(toy, states) == ["spy"]
    assert seen == [{"dt": 0.1, "n_steps": 100, "tol": Tolerances(), "scenario_kwargs": None, "states": states}]


def test_skip_warning_points_at_the_caller_and_lists_every_skip():
    system = DetachedEnergy(L=4)
    s = system.initial_state("at_rest")
    with pytest.warns(ConformanceSkipWarning) as rec:
        check_system(system, {"a": s, "b": s}, **FAST)
    (w,) = [r for r in rec if issubclass(r.category, ConformanceSkipWarning)]
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampoline adds a frame between caller and kit
        assert w.filename == __file__
    lines = str(w.message).splitlines()
    assert lines[0] == f"2 conformance check(s) skipped for {system!r}:"
    reason = "energy(state) is not connected to rho in torch's autograd graph" + HINT
    assert lines[1:] == [f"von_neumann_generator[a]: {reason}", f"von_neumann_generator[b]: {reason}"]


# -- rhs_shapes_dtypes --------------------------------------------------------------------------------
class ExtraField(ToySystem):
    def rhs(self, state):
        d = super().rhs(state)
        d.fields["Z"] = d.fields["X"]
        return d


class ShortV(ToySystem):
    def rhs(self, state):
        d = super().rhs(state)
        d.fields["V"] = d.fields["V"][..., :-1]
        return d


class NanImag(ToySystem):
    """A NaN hidden in the imaginary part of drho/dt only."""

    def rhs(self, state):
        d = super().rhs(state)
        d.rho = d.rho.clone()
        d.rho[..., 0, 1] = complex(0.0, float("nan"))
        return d


class SummedEnergy(ToySystem):
    def energy(self, state):
        return super().energy(state).sum()


class ComplexEnergy(ToySystem):
    def energy(self, state):
        return super().energy(state).to(torch.complex128)


class NoVInGraph(ToySystem):
    @property
    def graph(self):
        return DependencyGraph({"X": ["X"], "rho": ["X", "rho"]})


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (ExtraField, "rhs returned fields ['X', 'V', 'Z'], state has ['X', 'V']"),
        (ShortV, "dV/dt has shape (2, 3), V has (2, 4)"),
        (NanImag, "drho/dt is not finite"),
        (SummedEnergy, "energy shape () != batch shape (2,)"),
        (ComplexEnergy, "energy must be real"),
        (NoVInGraph, "graph variables ('X', 'rho') != ('X', 'V', 'rho')"),
    ],
)
def test_rhs_shapes_dtypes_failures(cls, message):
    system = cls(L=4)
    with pytest.raises(AssertionError, match="^" + re.escape(message) + "$"):
        check_rhs_shapes_dtypes(system, batched_at_rest(system))


# -- rhs_real -----------------------------------------------------------------------------------------
class RhsRealOff(ToySystem):
    """rhs_real's dX/dt off by `offset` (dX/dt = V = 0 here, so the disagreement is exactly `offset`)."""

    offset = 0.0

    def rhs_real(self, fields, rho_re, rho_im):
        df, dre, dim = super().rhs_real(fields, rho_re, rho_im)
        return {**df, "X": df["X"] + self.offset}, dre, dim


@pytest.mark.parametrize(("offset", "ok"), [(1e-9, False), (1e-12, False), (5e-13, True)])
def test_rhs_real_tolerance_is_below_1e12(offset, ok):
    system = RhsRealOff(L=4)
    system.offset = offset
    state = batched_at_rest(system)
    if ok:
        check_rhs_real_matches_rhs(system, state)
    else:
        with pytest.raises(AssertionError, match=re.escape(f"rhs_real and rhs disagree by {offset:.3e}")):
            check_rhs_real_matches_rhs(system, state)


# -- batch_equivalence -----------------------------------------------------------------------------
class BatchOff(ToySystem):
    """Batched calls are off by a small amount: dV/dt relative, dX/dt absolute, or the energy."""

    rel = 0.0
    add = 0.0
    e_off = 0.0

    def rhs(self, state):
        d = super().rhs(state)
        if state.batch_shape:
            d.fields["V"] = d.fields["V"] * (1.0 + self.rel)
            d.fields["X"] = d.fields["X"] + self.add
        return d

    def energy(self, state):
        e = super().energy(state)
        return e + self.e_off if state.batch_shape else e


@pytest.mark.parametrize(
    ("attr", "value", "message"),
    [
        ("rel", 1e-11, "batched rhs differs from single rhs at 0"),  # relative 1e-11 > rtol 1e-12
        ("add", 5e-13, "batched rhs differs from single rhs at 0"),  # on an exact zero: > atol 1e-13
        ("e_off", 1e-9, "batched energy differs"),
    ],
)
def test_batch_equivalence_sees_small_differences(attr, value, message):
    system = BatchOff(L=4)
    state = batched_at_rest(system)
    check_batch_equivalence(system, state)  # unperturbed: passes
    setattr(system, attr, value)
    with pytest.raises(AssertionError, match="^" + re.escape(message) + "$"):
        check_batch_equivalence(system, state)


# -- hermiticity_and_trace ------------------------------------------------------------------------
def test_zero_tolerances_accept_exact_conservation():
    """A tolerance of 0 demands exactness, and a rho that does not move at all meets it."""
    system = ScalarLinear()
    rho = torch.diag(torch.tensor([1.0, 0.0, 0.0])).to(torch.complex128)  # diagonal: a fixed point
    state = State({"X": torch.ones(3)}, rho)
    exact = Tolerances(hermiticity=0.0, trace=0.0)
    check_hermiticity_and_trace(system, state, tol=exact, **FAST)
    traj = simulate(system, state, FAST["dt"], FAST["n_steps"])
    assert hermiticity_error(traj.rho) == 0.0 and bool((trace_of(traj.rho) == 1.0).all())


def _run_herm(system, state):
    traj = simulate(system, state, FAST["dt"], FAST["n_steps"])  # every step
    return hermiticity_error(traj.rho), float(traj.rho.abs().amax())


@pytest.mark.parametrize(("gamma", "rho_scale", "ok"), [(1.1e-12, 1.0, False), (3e-13, 10.0, True)])
def test_hermiticity_tolerance_relative_to_the_largest_rho_entry_floored_at_one(gamma, rho_scale, ok):
    """1e-12 * max(1, max |rho_ij|): an error ~1.7e-12 fails for a physical rho; ~5e-12 passes when rho's
    entries reach ~10 (an unnormalised rho)."""

    class Faint(BrokenToySlightlyNonHermitian):
        pass

    Faint.gamma = gamma
    system = Faint(L=8)
    s0 = random_state(system, batch=(1,), seed=3)
    state = State(dict(s0.fields), rho_scale * s0.rho)
    herm, rho_max = _run_herm(system, state)
    bound = 1e-12 * max(1.0, rho_max)
    if ok:
        assert 2e-12 < herm < 0.8 * bound  # above the unscaled tolerance, below the scaled one
        check_hermiticity_and_trace(system, state, tol=Tolerances(), **FAST)
    else:
        assert rho_max <= 1.0 and 1.2 * bound < herm < 2e-12  # caught, though below twice the tolerance
        with pytest.raises(AssertionError, match="rho lost Hermiticity"):
            check_hermiticity_and_trace(system, state, tol=Tolerances(), **FAST)


@pytest.mark.parametrize(("L", "n_el", "gamma", "ok"), [(4, 1, 4e-13, False), (4, 1, 2.6e-13, False), (8, 4, 1.2e-13, True)])
def test_trace_tolerance_relative_to_the_electron_number_floored_at_one(L, n_el, gamma, ok):
    """A leak of ~1.6e-12 or ~1.04e-12 (4% over the tolerance) electron fails with one electron; ~1.9e-12
    with four electrons passes (relative drift ~5e-13)."""

    class Leak(BrokenToyTraceLeak):
        pass

    Leak.gamma = gamma
    system = Leak(L=L)
    state = random_state(system, batch=(1,), seed=2, n_electrons=n_el)
    tr = trace_of(simulate(system, state, FAST["dt"], FAST["n_steps"]).rho)
    drift = float((tr - tr[0]).abs().amax())
    rel = drift / max(1.0, float(tr[0].abs().amax()))
    if ok:
        assert drift > 1.5e-12 and rel < 0.8e-12
        check_hermiticity_and_trace(system, state, tol=Tolerances(), **FAST)
    else:
        assert 1e-12 < rel < 2e-12
        with pytest.raises(AssertionError, match="trace of rho drifted"):
            check_hermiticity_and_trace(system, state, tol=Tolerances(), **FAST)


# -- effective_hamiltonian: the hook -----------------------------------------------------------------
class Hooked(ToySystem):
    """A hook returning h(X) plus `extra` (a function of the state), in whatever form `form` makes it."""

    extra = None
    form = staticmethod(lambda H: H)

    def one_body_hamiltonian(self, state):
        H = self.hamiltonian(state["X"])
        if self.extra is not None:
            H = H + self.extra(state)
        return self.form(H)


def test_hook_may_return_a_real_numpy_array():
    system = Hooked(L=4)
    system.form = lambda H: H.real.numpy()  # h(X) is real here
    state = random_state(system)
    H, source = no_skip(effective_hamiltonian, system, state)
    assert source == "H from the system's one_body_hamiltonian(state)"
    assert H.dtype == torch.complex128
    no_skip(check_von_neumann_generator, system, state, tol=Tolerances())


def test_hook_of_the_wrong_shape_is_reported():
    system = Hooked(L=4)
    system.form = lambda H: H[0]  # one H for a batch of two
    with pytest.raises(AssertionError, match=re.escape("one_body_hamiltonian(state) has shape (4, 4), rho has (2, 4, 4)")):
        effective_hamiltonian(system, random_state(system))


def _asym(delta):
    def extra(state):
        E = torch.zeros(4, 4, dtype=torch.complex128)
        E[0, 2] = delta  # a non-bond entry: (H - H^H)[0, 2] = delta exactly
        return E

    return extra


@pytest.mark.parametrize(
    ("t", "delta", "ok"),
    [(1.0, 1e-12, True), (1.0, 1.5e-12, False), (10.0, 5e-12, True), (10.0, 2e-11, False)],
)
def test_hook_hermiticity_tolerance_is_1e12_relative_to_H_floored_at_one(t, delta, ok):
    system = Hooked(L=4, t=t)
    system.extra = _asym(delta)
    state = system.initial_state("at_rest")  # X = 0: max |H| = t
    if ok:
        H, _ = effective_hamiltonian(system, state)
        assert hermiticity_error(H) == delta
    else:
        with pytest.raises(AssertionError, match=re.escape(f"is not Hermitian (max |H - H^H| = {delta:.3e})")):
            effective_hamiltonian(system, state)


# -- effective_hamiltonian: autograd and why it may not run ------------------------------------------
class DetachedEnergy(ToySystem):
    def energy(self, state):
        return super().energy(state.map(torch.Tensor.detach))


class RaisingEnergy(ToySystem):
    def energy(self, state):
        raise ValueError("no torch here")


class RhoFreeEnergy(ToySystem):
    """Differentiable, but only in a parameter of its own: rho plays no part."""

    def __init__(self, **params):
        super().__init__(**params)
        self.k = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)

    def energy(self, state):
        return 0.5 * self.k * (state["V"] ** 2).sum(-1)


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        (DetachedEnergy, "energy(state) is not connected to rho in torch's autograd graph"),
        (RaisingEnergy, "autograd through energy(state) failed (ValueError: no torch here)"),
        (RhoFreeEnergy, "autograd gives no gradient of energy(state) with respect to rho"),
    ],
)
def test_skip_reasons_in_full(cls, reason):
    system = cls(L=4)
    with pytest.raises(CheckSkipped) as info:
        effective_hamiltonian(system, random_state(system))
    assert str(info.value) == reason + HINT


def test_autograd_source_phrase():
    system = ToySystem(L=4)
    _, source = no_skip(effective_hamiltonian, system, random_state(system))
    assert source == "H = dE/drho (the Hermitian part of autograd's gradient of energy)"


# -- von_neumann_generator -----------------------------------------------------------------------
class Mismatched(ToySystem):
    """drho/dt's coupling is 1e-7 (relative) off the energy's."""

    def rhs(self, state):
        d = super().rhs(state)
        X = state["X"]
        d.rho = d.rho + (1j * 1e-7 * self.params.c) * (X.unsqueeze(-1) - X.unsqueeze(-2)) * state.rho
        return d


@pytest.mark.parametrize("s", [1e-4, 1.0, 1e2])
def test_generator_check_is_invariant_under_scaling_rho(s):
    """rho -> s rho scales drho/dt and -i[H, rho] alike: the verdict does not depend on s."""
    for cls, ok in ((ToySystem, True), (Mismatched, False)):
        system = cls(L=4)
        s0 = random_state(system, scale=1.0)
        state = State(dict(s0.fields), s * s0.rho)
        if ok:
            no_skip(check_von_neumann_generator, system, state, tol=Tolerances())
        else:
            with pytest.raises(AssertionError, match="not generated by the energy's one-body Hamiltonian"):
                no_skip(check_von_neumann_generator, system, state, tol=Tolerances())


def test_generator_check_passes_on_stationary_and_empty_states():
    """A rho commuting with h (drho/dt = 0 up to round-off) and rho = 0 (no electrons) both pass."""
    system = ToySystem(L=6)
    s0 = random_state(system, scale=1.0)
    _, U = torch.linalg.eigh(system.hamiltonian(s0["X"]))
    P = U[..., :3] @ U[..., :3].mH
    stationary = State(dict(s0.fields), P)
    assert float(system.rhs(stationary).rho.abs().amax()) < 1e-13
    no_skip(check_von_neumann_generator, system, stationary, tol=Tolerances())
    empty = random_state(system, n_electrons=0)
    assert float(empty.rho.abs().amax()) == 0.0
    no_skip(check_von_neumann_generator, system, empty, tol=Tolerances())


# -- energy_drift_order: the measured drifts stood in for ----------------------------------------
def _drift_stand_in(monkeypatch, fn):
    calls = []

    def fake(system, state, dt, T):
        calls.append((dt, T))
        return fn(dt)

    monkeypatch.setattr(testing, "_energy_drift", fake)
    return calls


@pytest.mark.parametrize(("p", "ok"), [(1, False), (2, False), (3, False), (4, True), (5, True)])
def test_energy_drift_order_follows_the_power_of_dt(monkeypatch, p, ok):
    toy = ToySystem(L=4)
    state = toy.initial_state("at_rest")
    calls = _drift_stand_in(monkeypatch, lambda dt: 1e3 * dt**p)
    run = lambda: check_energy_drift_order(toy, state, dt=0.1, n_steps=40, tol=Tolerances())  # noqa: E731
    if ok:
        run()
    else:
        with pytest.raises(AssertionError) as info:
            run()
        m = re.fullmatch(r"energy drift \[(.*)\] at dt=0\.1, dt/2, dt/4 falls with order \[(.*)\]; expected ~4 \(RK4\): "
                         r"dE/dt = <grad energy, rhs> is at most .* along the trajectory \(round-off\), .*", str(info.value))
        assert m, str(info.value)
        drifts = [float(x) for x in m.group(1).split(",")]
        orders = [float(x) for x in m.group(2).split(",")]
        assert drifts == pytest.approx([1e3 * 0.1**p, 1e3 * 0.05**p, 1e3 * 0.025**p])
        assert orders == pytest.approx([p, p])
    assert [dt for dt, _ in calls] == pytest.approx([0.1, 0.05, 0.025])
    assert [T for _, T in calls] == pytest.approx([4.0] * 3)


def _floor(system, state, n_steps):
    return 1e-13 * max(1.0, float(system.energy(state).abs().amax())) * n_steps * 4


@pytest.mark.parametrize(
    ("factors", "ok"),
    [
        ([5.0, 5.0 / 16, 5.0 / 256], True),  # fourth order, reaching round-off after one halving
        ([1e6, 1e6 / 16, 1e6 / 256], True),  # fourth order, well measured
        ([0.5, 0.3, 0.2], True),  # below the floor from the start: nothing to measure
        ([5.0, 2.5, 1.25], False),  # first order, all above the floor
        ([1e6, 1e6, 1e6], False),  # no convergence at all
        ([1e6, 5e5, 0.5], True),  # reaches round-off at the finest step: no evidence against RK4
        ([0.5, 2.0, 2.0], True),  # below the floor at the coarsest step: nothing to measure
        ([1.0, 2.0, 2.0], False),  # at the floor, and finer steps drift more: measured, and bad
        ([2.0, 2.0, 0.5], True),  # the finest drift is at the floor: no evidence against RK4
        ([1e6, 5e5, 5e5 / 16], True),  # fourth order between the finer pair
    ],
)
@pytest.mark.parametrize("hot", [False, True])  # |E| below 1, and far above it (the floor scales with it)
def test_energy_drift_order_near_floor_more(monkeypatch, factors, ok, hot):
    toy = ToySystem(L=4)
    state = toy.initial_state("random_start", sigma=3.0) if hot else toy.initial_state("at_rest")
    assert (float(toy.energy(state).abs().amax()) > 10) == hot
    f = _floor(toy, state, 40)
    drifts = iter([x * f for x in factors])
    monkeypatch.setattr(testing, "_energy_drift", lambda *a, **k: next(drifts))
    run = lambda: check_energy_drift_order(toy, state, dt=0.1, n_steps=40, tol=Tolerances())  # noqa: E731
    if ok:
        run()
    else:
        with pytest.raises(AssertionError, match="expected ~4"):
            run()


def test_energy_order_min_is_inclusive(monkeypatch):
    toy = ToySystem(L=4)
    state = toy.initial_state("at_rest")
    values = [1e3, 1e3 / 16, 1e3 / 32]  # orders ~4, then 1
    monkeypatch.setattr(testing, "_energy_drift", lambda *a, **k: values.pop(0))
    first = observed_order(list(values))[0]
    check_energy_drift_order(toy, state, dt=0.1, n_steps=40, tol=Tolerances(energy_order_min=first))


# -- rk4_order: the final states stood in for ------------------------------------------------------
def _final_states_stand_in(monkeypatch, n_steps, errors):
    """simulate(...) returns [state0, state0 + e] with e = errors[n // n_steps] (0 for the 16x reference)."""
    table = {n_steps * k: e for k, e in zip((1, 2, 4), errors)} | {16 * n_steps: 0.0}

    def fake(system, state, dt, n, save_every=1):
        assert save_every == n and dt * n == pytest.approx(0.1 * n_steps)
        e = table[n]
        return State.stack([state, state.map(lambda t: t + e)])

    monkeypatch.setattr(testing, "simulate", fake)


def _zero_state():
    return State({"X": torch.zeros(2, 3)}, torch.zeros(2, 3, 3, dtype=torch.complex128))


@pytest.mark.parametrize(
    ("errors", "window", "ok"),
    [
        ([1e-3, 1e-3 / 16, 1e-3 / 256], None, True),
        ([1e-3, 1e-3 / 4, 1e-3 / 16], None, False),  # second order
        ([1e-3, 1e-3 / 64, 1e-3 / 4096], None, False),  # sixth order: not RK4 either
        ([1e-3, 1e-3 / 16, 1e-3 / 32], None, True),  # fourth order on the coarse pair
        ([1e-3, 1e-3 / 2, 1e-3 / 32], None, True),  # fourth order on the fine pair
        ([5e-12, 2.5e-12, 1.25e-12], None, True),  # below 1e-11: too slow to measure
        ([1e-11, 5e-12, 2.5e-12], None, False),  # at 1e-11: measured (first order)
        ([1.5e-11, 7.5e-12, 3.75e-12], None, False),
        ([1e-6, 5e-7, 2.5e-7], None, False),
        ([1e-3, 1e-3 / 2, 1e-3 / 32], "fine-lo", True),  # the window's edges are inclusive
        ([1e-3, 1e-3 / 2, 1e-3 / 32], "fine-hi", True),
        ([1e-3, 1e-3 / 16, 1e-3 / 32], "coarse-lo", True),
        ([1e-3, 1e-3 / 16, 1e-3 / 32], "coarse-hi", True),
    ],
)
def test_rk4_order_logic(monkeypatch, errors, window, ok):
    _final_states_stand_in(monkeypatch, 10, errors)
    orders = observed_order(errors)
    tol = Tolerances()
    if window is not None:
        o = orders[-1] if window.startswith("fine") else orders[0]
        tol = Tolerances(order_window=(o, 10.0) if window.endswith("lo") else (3.0, o))
    run = lambda: check_rk4_order(ScalarLinear(), _zero_state(), dt=0.1, n_steps=10, tol=tol)  # noqa: E731
    if ok:
        run()
    else:
        with pytest.raises(AssertionError) as info:
            run()
        assert str(info.value) == f"RK4 global errors {errors} give orders {orders}, expected ~4"


# -- scenarios_deterministic ----------------------------------------------------------------------
def _rho(diag, off=0.0):
    rho = torch.diag(torch.tensor(diag, dtype=torch.float64)).to(torch.complex128)
    rho[0, 1] = off  # upper triangle only
    return rho


class OddScenarios(ToySystem):
    name = "toy-odd-scenarios"

    @scenario
    def noisy(self, amplitude):
        """Drawn from the global RNG at the given amplitude."""
        return State({"X": 1.0 + amplitude * torch.randn(4, dtype=torch.float64), "V": torch.zeros(4)}, _rho([1, 1, 0, 0]))

    @scenario
    def given_rho(self, diag, off=0.0):
        """rho diagonal as given, with one upper off-diagonal entry."""
        return State({"X": torch.zeros(4), "V": torch.zeros(4)}, _rho(diag, off))


def _scenario_check(system, **scenario_kwargs):
    state = system.initial_state("at_rest")
    check_scenarios_deterministic(system, state, scenario_kwargs=scenario_kwargs)


def test_scenario_with_required_arguments_is_checked_with_them():
    system = OddScenarios(L=4)
    for amplitude in (1.0, 1e-13):  # even a 1e-13 difference is non-determinism
        with pytest.raises(AssertionError, match=re.escape(f"scenario 'noisy' is not deterministic for {{'amplitude': {amplitude}}}")):
            check_scenarios_deterministic(system, system.initial_state("at_rest"),
                                          scenario_kwargs={"noisy": {"amplitude": amplitude}})
    # the same through check_system, which hands scenario_kwargs on
    with pytest.raises(AssertionError, match=r"scenarios_deterministic: scenario 'noisy' is not deterministic"):
        check_system(system, {"s": system.initial_state("at_rest")}, scenario_kwargs={"noisy": {"amplitude": 1.0}},
                     **FAST)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"diag": [1.0, 1.0, 0.0, 0.0], "off": 5e-13}, None),
        ({"diag": [1.0, 1.0, 0.0, 0.0], "off": 1e-12}, "scenario 'given_rho' gives a non-Hermitian rho (1.000e-12)"),
        ({"diag": [1.0, 1.0, 0.0, 0.0], "off": 1e-6}, "scenario 'given_rho' gives a non-Hermitian rho (1.000e-06)"),
        ({"diag": [1.5, 1.0, 0.0, 0.0]}, "scenario 'given_rho' gives rho with eigenvalues outside [0, 1]: [0.0, 1.5]"),
        ({"diag": [-0.5, 1.0, 0.0, 0.0]}, "scenario 'given_rho' gives rho with eigenvalues outside [0, 1]: [-0.5, 1.0]"),
        ({"diag": [-1e-10, 1.0, 0.0, 0.0]}, "scenario 'given_rho' gives rho with eigenvalues outside [0, 1]: [-1e-10, 1.0]"),
        ({"diag": [-0.5e-10, 1.0, 1 + 0.5e-10, 0.0]}, None),
        ({"diag": [0.0, 1.0, 1 + 1e-10, 0.0]}, f"scenario 'given_rho' gives rho with eigenvalues outside [0, 1]: [0.0, {1 + 1e-10}]"),
    ],
)
def test_scenario_rho_must_be_hermitian_with_occupations_in_0_1(kw, message):
    system = OddScenarios(L=4)
    if message is None:
        _scenario_check(system, given_rho=kw)
    else:
        with pytest.raises(AssertionError, match="^" + re.escape(message) + "$"):
            _scenario_check(system, given_rho=kw)


def test_scenario_fields_must_be_float64():
    class F32(ToySystem):
        @scenario
        def single_fields(self):
            """Fields in float32, rho in complex128."""
            f32 = torch.zeros(4, dtype=torch.float32)
            return State._raw({"X": f32, "V": f32.clone()}, _rho([1, 1, 0, 0]))

    system = F32(L=4)
    with pytest.raises(AssertionError, match=re.escape(
            "scenario 'single_fields' is not float64/complex128: fields ['torch.float32'], rho torch.complex128")):
        check_scenarios_deterministic(system, system.initial_state("at_rest"), scenario_kwargs=None)
