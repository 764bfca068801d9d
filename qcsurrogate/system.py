"""The abstract hybrid quantum-classical `System`: the equation, kept apart from any solver.

A System knows its parameters (a pydantic model), its exact right-hand side and energy, its named
initial-state scenarios and its variable dependency graph. It knows nothing of solvers, files or
networks: those live in the core and read the System through this interface.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, get_type_hints

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .graph import DependencyGraph
from .observables import Observable, default_observables
from .state import State

Boundary = Literal["periodic", "open"]

F = TypeVar("F", bound=Callable[..., State])


class SystemParams(BaseModel):
    """Base for System parameter models: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    L: int


class ConfigError(ValueError):
    """A configuration or parameter error, with the offending key named."""


def format_validation_error(err: ValidationError, where: str) -> str:
    lines = [f"invalid {where}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ArgumentProblem:
    """One bad scenario argument: where (its name, then any index inside it), what is wrong, the value."""

    loc: tuple[str | int, ...]
    msg: str
    kind: str
    """pydantic's error type (e.g. 'missing', 'greater_than_equal'), or 'unknown_argument'."""
    input: Any = None


class ScenarioArgumentError(ConfigError):
    """A scenario's keyword arguments do not fit its signature: every problem, each at its argument."""

    def __init__(self, system: str, scenario: str, problems: Sequence[ArgumentProblem]) -> None:
        self.system, self.scenario, self.problems = system, scenario, tuple(problems)
        lines = [f"invalid arguments for scenario '{scenario}' of system '{system}':"]
        lines += [f"  {'.'.join(str(part) for part in p.loc)}: {p.msg}" for p in self.problems]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (e.g. raised in a worker process) despite its signature
        return type(self), (self.system, self.scenario, self.problems)

    @property
    def only_missing(self) -> bool:
        """True when the only problem is required arguments not given (the kit then skips the scenario)."""
        return all(p.kind == "missing" for p in self.problems)


def _did_you_mean(word: str, options: Iterable[Any]) -> str:
    """`" (did you mean 'x'?)"` for the closest of `options`, or `""`."""
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _annotations(fn: Callable[..., Any], params: Sequence[inspect.Parameter]) -> dict[str, Any]:
    """Each parameter's type, resolved; one that cannot be resolved at run time (e.g. a name imported
    only under TYPE_CHECKING) is taken as `Any` rather than making the whole scenario unusable."""
    try:
        hints = get_type_hints(fn, include_extras=True)
        return {p.name: hints.get(p.name, Any) for p in params}
    except Exception:  # noqa: BLE001 - resolve the parameters one by one, as get_type_hints would
        return {p.name: _resolve_one(fn, p.annotation) for p in params}


def _resolve_one(fn: Callable[..., Any], annotation: Any) -> Any:
    if annotation is inspect.Parameter.empty:
        return Any
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(fn, "__globals__", {}))  # what typing.get_type_hints does
    except Exception:  # noqa: BLE001
        return Any


class ScenarioArguments:
    """How one scenario's keyword arguments are checked: a pydantic model built (once, on first use,
    so annotations may name classes defined later in the module) from the method's signature.

    Every path into a scenario goes through `validate`: calling the method, `System.initial_state`,
    the YAML config loader, the trajectory writer's record of the arguments and the conformance kit.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        params = list(inspect.signature(fn).parameters.values())[1:]  # without self
        bad = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL)]
        if bad:
            raise TypeError(f"scenario {fn.__qualname__}: arguments {bad} cannot be given by keyword (scenarios are "
                            "called with keyword arguments, e.g. from YAML)")
        self.fn = fn
        self.params = [p for p in params if p.kind is not p.VAR_KEYWORD]
        self.names = [p.name for p in self.params]
        self.open = len(self.params) < len(params)
        """True when the scenario takes `**kwargs`: arguments it does not name are passed on unchecked."""

    @functools.cached_property
    def model(self) -> type[BaseModel]:
        # Fields get neutral names and the arguments' names as aliases, so an argument may be called
        # anything (even 'model_config' or 'copy') without clashing with BaseModel's own attributes.
        types = _annotations(self.fn, self.params)
        fields: dict[str, Any] = {
            f"a{i}": (types[p.name], Field(... if p.default is p.empty else p.default, alias=p.name))
            for i, p in enumerate(self.params)
        }
        config = ConfigDict(arbitrary_types_allowed=True, extra="ignore")
        return create_model(f"{self.fn.__qualname__}.arguments", __config__=config, **fields)

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Positional arguments of a direct call, by name, merged with the keyword ones."""
        if len(args) > len(self.names):
            raise TypeError(f"{self.fn.__qualname__}() takes at most {len(self.names)} positional arguments "
                            f"besides self, got {len(args)}")
        given = dict(zip(self.names, args))
        twice = sorted(set(given) & set(kwargs))
        if twice:
            raise TypeError(f"{self.fn.__qualname__}() got multiple values for {twice}")
        return {**given, **kwargs}

    def validate(self, system: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments coerced to their annotations, defaults filled in; `ScenarioArgumentError` otherwise."""
        scenario = self.fn.__name__
        problems: list[ArgumentProblem] = []
        extra = {k: v for k, v in kwargs.items() if k not in self.names}
        if extra and not self.open:
            problems += [
                ArgumentProblem((k,), f"scenario '{scenario}' has no argument '{k}'{_did_you_mean(k, self.names)}; "
                                      f"it accepts {self.names}", "unknown_argument", v)
                for k, v in extra.items()
            ]
        try:
            parsed = self.model.model_validate({k: v for k, v in kwargs.items() if k in self.names})
        except ValidationError as err:
            problems += [ArgumentProblem(tuple(e["loc"]), e["msg"], e["type"], e.get("input"))
                         for e in err.errors(include_url=False)]
        if problems:
            raise ScenarioArgumentError(system, scenario, problems)
        return {**{name: getattr(parsed, f"a{i}") for i, name in enumerate(self.names)}, **extra}


def scenario(fn: F) -> F:
    """Mark a System method as a named initial-state scenario (its name is the method's name).

    Its arguments are validated against the signature's annotations on every call, as pydantic does
    in lax mode: `'1e-4'` becomes `1e-4` for a `float`, `3.0` becomes `3` for an `int`, and
    `Annotated[int, Field(ge=1)]` adds a constraint. A bad or unknown argument raises a
    `ScenarioArgumentError` (a `ConfigError`) naming it, so the body only checks what depends on
    the system (e.g. `n_electrons <= L`).
    """
    spec = ScenarioArguments(fn)

    @functools.wraps(fn)
    def validated(self: System, *args: Any, **kwargs: Any) -> State:
        return fn(self, **spec.validate(getattr(self, "name", type(self).__name__), spec.bind(args, kwargs)))

    validated.__qcs_scenario__ = spec  # type: ignore[attr-defined]
    return validated  # type: ignore[return-value]


def scenario_arguments(system: type[System] | System, name: str) -> ScenarioArguments:
    """The argument spec of scenario `name`; a `KeyError` naming the available ones if there is none."""
    cls = system if isinstance(system, type) else type(system)
    spec = getattr(getattr(cls, name, None), "__qcs_scenario__", None)
    if not isinstance(spec, ScenarioArguments):
        available = sorted(cls.scenarios())
        raise KeyError(f"system '{getattr(cls, 'name', cls.__name__)}' has no scenario '{name}'"
                       f"{_did_you_mean(name, available)}; available: {available}")
    return spec


def validate_scenario_kwargs(system: type[System] | System, name: str, kwargs: Mapping[str, Any] | None = None
                             ) -> dict[str, Any]:
    """Scenario `name`'s keyword arguments as the scenario will receive them: coerced to the signature's
    annotations, defaults filled in. Raises `KeyError` for an unknown scenario and `ScenarioArgumentError`
    (every problem, located at its argument) for bad arguments."""
    cls = system if isinstance(system, type) else type(system)
    return scenario_arguments(cls, name).validate(getattr(cls, "name", cls.__name__), dict(kwargs or {}))


class System(ABC):
    """A hybrid system: real fields plus a density matrix, with an exact time derivative.

    Subclasses set `name`, `Params`, `field_names`, and implement `rhs`, `energy` and `graph`.
    Scenarios are methods decorated with `@scenario` returning a `State`. Optional: `orbitals` (an
    internal index on rho), `vector_fields` (site fields that are components of one vector) and
    `invariants` (conserved quantities the conformance kit checks).
    """

    name: ClassVar[str]
    Params: ClassVar[type[SystemParams]] = SystemParams
    field_names: ClassVar[tuple[str, ...]]
    orbitals: ClassVar[int] = 1
    """Orbitals per site `d`: rho is `(L*d) x (L*d)`, site-major (row `i*d + a`); 2 for spin-1/2 electrons."""
    vector_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Vectors on the sites, each named by its component fields, e.g. `{"S": ("Sx", "Sy", "Sz")}`.

    The components are ordinary site fields (stored, normalised and learned like any other); the
    grouping tells the core they form one vector (figures show its length, observables its structure
    factor summed over components)."""

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"parameters for system '{self.name}'")) from None
        if not isinstance(self.orbitals, int) or self.orbitals < 1:
            raise TypeError(f"{type(self).__name__}.orbitals must be a positive int, got {self.orbitals!r}")
        for vector, components in self.vector_fields.items():
            unknown = [c for c in components if c not in self.field_names]
            if unknown or len(components) < 2:
                raise TypeError(f"{type(self).__name__}.vector_fields['{vector}'] = {components!r}: a vector needs at least "
                                f"two components, each one of field_names {self.field_names}")

    def invariants(self, state: State) -> dict[str, torch.Tensor]:
        """Quantities the exact dynamics conserves besides the energy and `Tr rho`, by name, each shaped
        `(*batch, ...)` (e.g. spin lengths `(*batch, L)`, a total magnetisation `(*batch,)`).

        The conformance kit checks that RK4 keeps each one: exactly for a linear invariant, with a
        drift falling as dt^4 otherwise. The default declares none."""
        return {}

    # -- the equation -------------------------------------------------------------------------
    @abstractmethod
    def rhs(self, state: State) -> State:
        """The exact time derivative d(state)/dt, batched over leading axes."""

    @abstractmethod
    def energy(self, state: State) -> torch.Tensor:
        """The conserved total energy, shaped like the batch."""

    @property
    @abstractmethod
    def graph(self) -> DependencyGraph:
        """Which variables (through which views) drive each variable's derivative."""

    @property
    def boundary(self) -> Boundary:
        """Boundary condition of the lattice; surrogates pad accordingly."""
        return getattr(self.params, "boundary", "periodic")

    @property
    def L(self) -> int:
        return self.params.L

    def rhs_real(
        self, fields: dict[str, torch.Tensor], rho_re: torch.Tensor, rho_im: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The same derivative in real arithmetic (rho split in real and imaginary parts).

        Compiled solvers use it because code generators fuse real kernels but not complex ones.
        The default goes through `rhs`; override it for speed and derive `rhs` from it.
        """
        d = self.rhs(State._raw(dict(fields), torch.complex(rho_re, rho_im)))
        return d.fields, d.rho.real, d.rho.imag

    # -- observables ----------------------------------------------------------------------------
    def observables(self) -> tuple[Observable, ...]:
        """The named physical observables that diagnostics and figures report (see `qcsurrogate.observables`).

        The default is the static structure factor `S_<field>(q)` of every classical field over
        q = 2 pi k / L, k = 0 .. L // 2: honest for any 1D lattice, but not an order parameter.
        Override it to declare the System's own (and return the defaults too if they are wanted).
        """
        return default_observables(self)

    # -- scenarios ------------------------------------------------------------------------------
    @classmethod
    def scenarios(cls) -> dict[str, str]:
        """Scenario names with the first line of their docstrings."""
        out = {}
        for name, member in inspect.getmembers(cls):
            if isinstance(getattr(member, "__qcs_scenario__", None), ScenarioArguments):
                doc = inspect.getdoc(member)
                out[name] = doc.splitlines()[0] if doc else ""
        return out

    def initial_state(self, scenario_name: str, **kwargs: Any) -> State:
        """Build the initial state of a named scenario, e.g. `initial_state("deep_quench", n_traj=8, seed=0)`.

        Raises `KeyError` for an unknown scenario and `ScenarioArgumentError` for bad arguments.
        """
        scenario_arguments(self, scenario_name)
        return getattr(self, scenario_name)(**kwargs)  # @scenario validates the arguments

    @scenario
    def from_file(
        self,
        path: str,
        index: int = -1,
        time: float | None = None,
        trajectories: list[int] | None = None,
    ) -> State:
        """States read from one snapshot of a trajectory file of this system, batch (n_traj,).

        Any state the framework stored can start a run: a later time of an earlier run (`index` of the
        snapshot, default the last, or the snapshot at exactly `time`, hbar/t), all its trajectories or the listed
        ones. The file must come from this system with the same L; other parameters may differ (a
        quench from a stored state). States are returned in float64 / complex128.
        """
        from .io import open_trajectory

        with open_trajectory(path) as tr:
            if (tr.system_name != self.name or tr.L != self.L or tuple(tr.field_names) != tuple(self.field_names)
                    or tr.orbitals != self.orbitals):
                raise ConfigError(f"{path} holds system '{tr.system_name}' with L={tr.L}, {tr.orbitals} orbital(s) per "
                                  f"site, fields {tr.field_names}; this is '{self.name}' with L={self.L}, "
                                  f"{self.orbitals} orbital(s) per site, fields {list(self.field_names)}")
            if time is not None:
                times = tr.times
                index = int(abs(times - time).argmin())
                if abs(times[index] - time) > 1e-6 * tr.dt * tr.save_every:
                    raise ConfigError(f"{path} has no snapshot at t={time} (snapshots every {tr.dt * tr.save_every:g} "
                                      f"from t={times[0]:g} to {times[-1]:g})")
            if not -tr.n_time <= index < tr.n_time:
                raise ConfigError(f"{path} has {tr.n_time} snapshots; index {index} is out of range")
            sel = list(range(tr.n_traj)) if trajectories is None else list(trajectories)
            if any(not 0 <= i < tr.n_traj for i in sel) or not sel:
                raise ConfigError(f"{path} has {tr.n_traj} trajectories; cannot take {trajectories}")
            return tr.state(sel, index)

    # -- convenience ----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity: name, parameters, graph."""
        return {"system": self.name, "params": self.params.model_dump(), "graph": self.graph.to_dict()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"
