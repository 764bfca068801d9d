"""The kit's `graph_matches_rhs` check and its pytest helper `parametrize_with_checks`."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from toy_system import (
    BrokenToyFriction,
    BrokenToyHiddenInput,
    BrokenToyHiddenView,
    ToySystem,
    ToyUnusedInput,
)

from qcsurrogate import State, scenario
from qcsurrogate.graph import get_view
from qcsurrogate.testing import (
    Tolerances,
    UnusedDependencyWarning,
    _blind_directions,
    _perturbation_basis,
    check_graph_matches_rhs,
    check_system,
    iter_checks,
    parametrize_with_checks,
    random_state,
    system_id,
)

FAST = {"dt": 0.2, "n_steps": 20}


def _states(system) -> dict[str, State]:
    return {"start": system.initial_state("random_start", seed=1, n_traj=2), "rest": system.initial_state("at_rest")}


def _graph_check(system, tol: Tolerances | None = None) -> None:
    states = _states(system)
    check_graph_matches_rhs(system, next(iter(states.values())), tol=tol or Tolerances(), states=states)


# -- graph_matches_rhs -------------------------------------------------------------------------------
def test_a_graph_read_off_the_equations_passes_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedDependencyWarning)
        _graph_check(ToySystem(L=5))
        _graph_check(ToySystem(L=4, boundary="open"))


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (BrokenToyHiddenInput, "dX/dt depends on rho, which the graph does not declare as an input of X"),
        (BrokenToyFriction, "dV/dt depends on V, which the graph does not declare as an input of V"),
        (BrokenToyHiddenView, ("dV/dt depends on rho, beyond its declared diagonal(rho) (perturbed where those "
                               "views see nothing)")),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_an_undeclared_dependency_fails_naming_target_and_source(cls, message):
    with pytest.raises(AssertionError) as info:
        _graph_check(cls(L=4))
    lines = str(info.value).splitlines()
    assert lines[0] == "rhs depends on inputs the graph does not declare:"
    assert len(lines) == 3 and lines[1].strip().startswith(message), lines  # that one, and nothing else
    assert re.search(r"response \d\.\d{3}e[-+]\d+ on state '(start\[[01]\]|rest)'$", lines[1])
    assert lines[2].strip() == WHERE_TO_LOOK  # and where to fix it


WHERE_TO_LOOK = ("Declare each dependency in the system's graph (through a view that sees what rhs reads: 'matrix' "
                 "sees all of rho) or remove it from rhs")


def test_the_undeclared_dependency_is_reported_by_check_system():
    system = BrokenToyHiddenInput(L=4)
    with pytest.raises(AssertionError, match=r"graph_matches_rhs: rhs depends on inputs the graph does not declare"):
        check_system(system, _states(system), **FAST)


def test_a_coupling_below_the_tolerance_is_not_a_dependency():
    """The tolerance is relative to the derivative's largest response (floored at 1): a 1e-9 coupling
    passes the default 1e-7 and fails 1e-11."""

    class Faint(BrokenToyHiddenInput):
        def rhs(self, state: State) -> State:
            d = ToySystem.rhs(self, state)
            d.fields["X"] = d.fields["X"] + 1e-9 * (self.occupations(state.rho) - 0.5)
            return d

    _graph_check(Faint(L=4))
    with pytest.raises(AssertionError, match="dX/dt depends on rho"):
        _graph_check(Faint(L=4), Tolerances(dependency=1e-11))


def test_a_declared_but_unused_input_warns_and_does_not_fail():
    with pytest.warns(UnusedDependencyWarning, match=r"dX/dt never responded to its declared input bond_imag\(rho\) "
                                                     r"on the test states \['rest', 'start'\]") as rec:
        _graph_check(ToyUnusedInput(L=4))
    assert len(rec) == 1  # the other inputs are all used


def test_an_input_used_only_away_from_the_test_states_warns():
    """At rest with a diagonal rho, drho/dt does not respond to X ([diag(X), rho] = 0): declared inputs are
    judged over all the test states, so a single such state is enough to warn."""
    system = ToySystem(L=4)
    z = torch.zeros(4, dtype=torch.float64)
    diagonal_rho = State({"X": z, "V": z.clone()}, torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0])))
    with pytest.warns(UnusedDependencyWarning, match=r"drho/dt never responded to its declared input X"):
        check_graph_matches_rhs(system, diagonal_rho, tol=Tolerances(), states={"diag": diagonal_rho})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedDependencyWarning)
        both = {"diag": diagonal_rho, "random": random_state(system)}
        check_graph_matches_rhs(system, diagonal_rho, tol=Tolerances(), states=both)


@pytest.mark.parametrize(("views", "dimension"), [([], 16), (["diagonal"], 12), (["diagonal", "bond_real"], 8),
                                                  (["matrix"], 0)])
def test_blind_directions_are_what_the_views_cannot_see(views, dimension):
    rho = random_state(ToySystem(L=4), batch=()).rho
    basis = _perturbation_basis(rho)
    assert basis.shape == (16, 4, 4) and all(torch.equal(b, b.mH) for b in basis)  # Hermitian perturbations
    null = _blind_directions([get_view(v) for v in views], rho, basis)
    assert null.shape == (16, dimension)
    for v in views:
        for p in null.T:  # every blind direction is invisible to every view, to round-off
            assert float(get_view(v)(torch.tensordot(p.to(basis.dtype), basis, dims=1)).abs().max()) < 1e-12


# -- parametrize_with_checks -------------------------------------------------------------------------
HIDDEN_REASON = "dX/dt reads the occupations, which the graph does not declare"


def _expected(system) -> dict[str, str]:
    if isinstance(system, BrokenToyHiddenInput):  # the extra force also breaks energy conservation
        return {"graph_matches_rhs": HIDDEN_REASON,
                "energy_drift_order": "the extra force does work: energy is not conserved"}
    return {}


@parametrize_with_checks(
    [ToySystem(L=4), BrokenToyHiddenInput(L=4)],
    expected_failed_checks=_expected,
    states=lambda system: {"s": random_state(system, batch=(2,), seed=2)},
    **FAST,
)
def test_parametrize_with_checks_runs_each_check(system, check):
    """One case per (system, check); the broken toy's two failures are strict xfails, so the suite fails
    if either starts to pass."""
    check()


def test_parametrize_with_checks_ids_and_marks():
    mark = parametrize_with_checks([ToySystem(L=4), BrokenToyHiddenInput(L=4, c=0.5)], expected_failed_checks=_expected)
    argnames, params = mark.args
    assert argnames == ("system", "check")
    ids = [p.id for p in params]
    n_checks = len(list(iter_checks(ToySystem(L=4))))
    assert len(ids) == len(set(ids)) == 2 * n_checks
    assert "toy(L=4)-rk4_order[random]" in ids and "toy-broken-hidden-input(L=4,c=0.5)-graph_matches_rhs" in ids
    xfails = {p.id: p.marks[0] for p in params if p.marks}
    assert set(xfails) == {"toy-broken-hidden-input(L=4,c=0.5)-graph_matches_rhs"} | {
        f"toy-broken-hidden-input(L=4,c=0.5)-energy_drift_order[{s}]" for s in ("at_rest", "random_start", "random")
    }
    m = xfails["toy-broken-hidden-input(L=4,c=0.5)-graph_matches_rhs"]
    assert m.name == "xfail" and m.kwargs == {"strict": True, "raises": AssertionError, "reason": HIDDEN_REASON}
    for p in params:
        assert isinstance(p.values[0], ToySystem) and callable(p.values[1])


def test_expected_failures_by_check_id_and_unknown_keys():
    one = parametrize_with_checks([ToySystem(L=4)], expected_failed_checks={"rk4_order[random]": "why"})
    assert [p.id for p in one.args[1] if p.marks] == ["toy(L=4)-rk4_order[random]"]
    with pytest.raises(ValueError, match=r"names unknown checks \['rk4_ordr'\]"):
        parametrize_with_checks([ToySystem(L=4)], expected_failed_checks={"rk4_ordr": "typo"})


def test_collecting_builds_no_state():
    calls = []

    class Counting(ToySystem):
        @scenario
        def counted(self) -> State:
            """Counts its calls."""
            calls.append(1)
            return self.at_rest()

    mark = parametrize_with_checks([Counting(L=4)], **FAST)
    assert calls == [] and any(p.id.endswith("rk4_order[counted]") for p in mark.args[1])
    run = next(p.values[1] for p in mark.args[1] if p.id.endswith("rhs_shapes_dtypes[counted]"))
    run()
    run()
    assert calls == [1]  # built once, on first use


def test_system_id_shows_the_parameters_that_differ_from_their_defaults():
    assert system_id(ToySystem()) == "toy()"
    assert system_id(ToySystem(L=6, c=0.2, boundary="open")) == "toy(c=0.2,boundary=open)"
