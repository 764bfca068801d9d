"""`@scenario` validates arguments in one place: direct calls, `initial_state`, the config loader, the
trajectory writer and the conformance kit all go through `validate_scenario_kwargs`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import pytest
import torch
from pydantic import Field
from toy_system import ToySystem

from qcsurrogate import ScenarioArgumentError, State, scenario, validate_scenario_kwargs
from qcsurrogate.io import resolve_scenario_kwargs
from qcsurrogate.testing import runnable_scenarios

if TYPE_CHECKING:
    from collections import OrderedDict as OnlyForTypeCheckers


class Scenarios(ToySystem):
    name = "toy-scenarios"

    @scenario
    def sized(self, n: Annotated[int, Field(ge=1)] = 1, scale: float = 1.0, tags: list[int] | None = None) -> State:
        """Records what it received."""
        self.received = {"n": n, "scale": scale, "tags": tags}
        return self.at_rest()

    @scenario
    def later(self, marker: Marker | None = None) -> State:
        """Annotated with a class defined after this one: resolved on first use."""
        self.received = {"marker": marker}
        return self.at_rest()

    @scenario
    def unresolvable(self, x: OnlyForTypeCheckers | None = None) -> State:
        """An annotation that exists only for type checkers is not checked at run time."""
        self.received = {"x": x}
        return self.at_rest()

    @scenario
    def open_ended(self, a: int = 1, **extra) -> State:
        """Passes unnamed arguments on unchecked."""
        self.received = {"a": a, **extra}
        return self.at_rest()


class Marker:
    pass


def test_direct_calls_are_validated_and_coerced():
    s = Scenarios(L=4)
    s.sized(n="3", scale="1e-4")
    assert s.received == {"n": 3, "scale": 1e-4, "tags": None}
    assert type(s.received["n"]) is int and type(s.received["scale"]) is float
    s.sized(2, 0.5)  # positional arguments are bound by name first
    assert s.received == {"n": 2, "scale": 0.5, "tags": None}
    with pytest.raises(ScenarioArgumentError, match=r"n: Input should be greater than or equal to 1"):
        s.sized(n=0)
    with pytest.raises(TypeError, match="at most 3 positional arguments"):
        s.sized(1, 2.0, None, 4)
    with pytest.raises(TypeError, match=r"multiple values for \['n'\]"):
        s.sized(1, n=2)


def test_every_problem_is_reported_at_its_argument():
    with pytest.raises(ScenarioArgumentError) as info:
        Scenarios(L=4).initial_state("sized", n=0, tags=[1, "x"], scal=2.0)
    err = info.value
    assert (err.system, err.scenario) == ("toy-scenarios", "sized")
    assert {p.loc: p.kind for p in err.problems} == {
        ("scal",): "unknown_argument", ("n",): "greater_than_equal", ("tags", 1): "int_parsing",
    }
    assert str(err).splitlines()[0] == "invalid arguments for scenario 'sized' of system 'toy-scenarios':"
    assert ("  scal: scenario 'sized' has no argument 'scal' (did you mean 'scale'?); "
            "it accepts ['n', 'scale', 'tags']") in str(err)
    assert "  tags.1: Input should be a valid integer" in str(err)
    assert not err.only_missing


def test_annotations_resolve_late_or_fall_back_to_any():
    s = Scenarios(L=4)
    s.later(marker=Marker())
    assert isinstance(s.received["marker"], Marker)
    with pytest.raises(ScenarioArgumentError, match="marker: Input should be an instance of Marker"):
        s.later(marker=3)
    anything = object()
    s.unresolvable(x=anything)  # not checkable at run time: passed through
    assert s.received["x"] is anything


def test_open_scenarios_pass_unnamed_arguments_on():
    s = Scenarios(L=4)
    s.open_ended(a="2", b=[1, 2])
    assert s.received == {"a": 2, "b": [1, 2]}
    assert validate_scenario_kwargs(s, "open_ended", {"z": 1}) == {"a": 1, "z": 1}


def test_scenarios_must_take_keyword_arguments():
    with pytest.raises(TypeError, match=r"arguments \['rest'\] cannot be given by keyword"):
        scenario(lambda self, *rest: None)
    with pytest.raises(TypeError, match=r"arguments \['a'\] cannot be given by keyword"):
        scenario(lambda self, a, /: None)


def test_validate_scenario_kwargs_fills_defaults_for_class_and_instance():
    expected = {"n": 2, "scale": 1.0, "tags": None}
    assert validate_scenario_kwargs(Scenarios, "sized", {"n": 2.0}) == expected
    assert validate_scenario_kwargs(Scenarios(L=4), "sized", {"n": 2.0}) == expected
    with pytest.raises(KeyError, match=r"no scenario 'size' \(did you mean 'sized'\?\); available: \["):
        validate_scenario_kwargs(Scenarios, "size")
    with pytest.raises(KeyError, match="no scenario 'describe'"):  # a method, but not a scenario
        validate_scenario_kwargs(Scenarios, "describe")


def test_the_writer_and_the_kit_use_the_same_validation():
    s = Scenarios(L=4)
    assert resolve_scenario_kwargs(s, "sized", {"n": "4"}) == {"n": 4, "scale": 1.0, "tags": None}
    with pytest.raises(ScenarioArgumentError, match="n: Input should be greater than or equal to 1"):
        resolve_scenario_kwargs(s, "sized", {"n": 0})
    assert runnable_scenarios(s, {"sized": {"n": 2}})["sized"] == {"n": 2}
    with pytest.raises(ScenarioArgumentError, match="n: Input should be greater than or equal to 1"):
        runnable_scenarios(s, {"sized": {"n": 0}})  # the test's mistake: raised, not skipped


def test_missing_required_arguments_only_skip_in_the_kit():
    class NeedsState(ToySystem):
        @scenario
        def given(self, state: State, scale: float = 1.0) -> State:
            """From a user state."""
            return state

    system = NeedsState(L=4)
    with pytest.raises(ScenarioArgumentError) as info:
        validate_scenario_kwargs(system, "given", {})
    assert info.value.only_missing and info.value.problems[0].loc == ("state",)
    assert "given" not in runnable_scenarios(system, None)
    s0 = system.initial_state("at_rest")
    assert system.initial_state("given", state=s0) is s0
    with pytest.raises(ScenarioArgumentError, match="state: Input should be an instance of State"):
        system.initial_state("given", state=torch.zeros(4))
