"""The abstract hybrid quantum-classical `System`: the equation, kept apart from any solver.

A System knows its parameters (a pydantic model), its exact right-hand side and energy, its named
initial-state scenarios and its variable dependency graph. It knows nothing of solvers, files or
networks: those live in the core and read the System through this interface.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

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


def scenario(fn: F) -> F:
    """Mark a System method as a named initial-state scenario (its name is the method's name)."""
    fn.__qcs_scenario__ = True  # type: ignore[attr-defined]
    return fn


class System(ABC):
    """A hybrid system: real fields plus a density matrix, with an exact time derivative.

    Subclasses set `name`, `Params`, `field_names`, and implement `rhs`, `energy` and `graph`.
    Scenarios are methods decorated with `@scenario` returning a `State`.
    """

    name: ClassVar[str]
    Params: ClassVar[type[SystemParams]] = SystemParams
    field_names: ClassVar[tuple[str, ...]]

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"parameters for system '{self.name}'")) from None

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
            if getattr(member, "__qcs_scenario__", False):
                out[name] = (inspect.getdoc(member) or "").splitlines()[0] if inspect.getdoc(member) else ""
        return out

    def initial_state(self, scenario_name: str, **kwargs: Any) -> State:
        """Build the initial state of a named scenario, e.g. `initial_state("deep_quench", n_traj=8, seed=0)`."""
        if scenario_name not in self.scenarios():
            raise KeyError(
                f"system '{self.name}' has no scenario '{scenario_name}'; available: {sorted(self.scenarios())}"
            )
        fn = getattr(self, scenario_name)
        sig = inspect.signature(fn)
        unknown = [k for k in kwargs if k not in sig.parameters]
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            raise ConfigError(
                f"scenario '{scenario_name}' of system '{self.name}' got unknown argument(s) {unknown}; "
                f"it accepts {[p for p in sig.parameters]}"
            )
        return fn(**kwargs)

    # -- convenience ----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity: name, parameters, graph."""
        return {"system": self.name, "params": self.params.model_dump(), "graph": self.graph.to_dict()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"
