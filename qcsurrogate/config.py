"""Typed, strict YAML configuration (pydantic v2).

Every model forbids unknown keys, so a typo is an error naming the key (with a suggestion) and
the file, never a silently ignored setting. The pieces compose:

- `SystemConfig` (which System, with which parameters, validated by the System's own `Params`),
  `ScenarioConfig` (initial state) and `SimulationConfig` (time stepping, precision, device) are
  grouped as `DataConfig`, the reusable "where the ground truth comes from" block (the `data:`
  section of a training run config).
- `SimulateConfig` is `DataConfig` plus an `output` block: the config of ``qcsurrogate simulate``.

`load_yaml(path, Model)` loads any of them (or any later model) with the same error reporting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .system import ConfigError, ScenarioArgumentError, System, _did_you_mean, validate_scenario_kwargs

__all__ = [
    "ConfigError",
    "DataConfig",
    "OutputConfig",
    "ScenarioConfig",
    "SimulateConfig",
    "SimulationConfig",
    "StrictModel",
    "SystemConfig",
    "format_config_error",
    "load_simulate_config",
    "load_yaml",
    "parse_config",
]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors; assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _custom(kind: str, msg: str) -> PydanticCustomError:
    # The message goes through the context so braces in it are never read as placeholders.
    return PydanticCustomError(kind, "{msg}", {"msg": msg})


def _system_class(name: str) -> type[System]:
    from .registry import get_system_class

    return get_system_class(name)


# ------------------------------------------------------------------------------------------------
# The data block: system, scenario, simulation
# ------------------------------------------------------------------------------------------------
class SystemConfig(StrictModel):
    """Which System to simulate, by registered name, and its parameters."""

    name: str = Field(description="registered system name, e.g. 'holstein' (see `qcsurrogate plugins`)")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="the System's parameters; validated by the System's own Params model when loaded",
    )

    @field_validator("name")
    @classmethod
    def _known_system(cls, name: str) -> str:
        from .registry import RegistryError

        try:
            _system_class(name)
        except RegistryError as err:
            raise _custom("unknown_system", str(err)) from None
        return name

    @field_validator("params")
    @classmethod
    def _valid_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if name is None:  # the name was already reported as invalid
            return params
        # A ValidationError raised here is reported with its locations under `params`.
        _system_class(name).Params.model_validate(params)
        return params

    def build(self) -> System:
        """The configured System instance."""
        return _system_class(self.name)(**self.params)


class ScenarioConfig(StrictModel):
    """The named initial-state scenario of the System and its keyword arguments (seeds included)."""

    name: str = Field(description="scenario name, a @scenario method of the System, e.g. 'shallow_quench'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the scenario")

    def initial_state(self, system: System):  # -> State
        return system.initial_state(self.name, **self.kwargs)


Precision = Literal["float64", "float32"]


def _integer_ratio(value: float, dt: float) -> int | None:
    """`value / dt` when it is an integer to round-off, else None."""
    k = round(value / dt)
    return k if k >= 0 and abs(k * dt - value) <= 1e-9 * max(abs(value), dt) else None


class SimulationConfig(StrictModel):
    """Fixed-step integration of the ground truth (always computed in float64).

    The stored snapshots are the surrogate's model step apart: give it in time units (`model_step`,
    a multiple of `dt`) or as a count of integration steps (`save_every`); the length as integration
    steps (`n_steps`) or model steps (`n_model_steps`). `discard` integrates a transient first and
    stores from t = discard on. The resolved `save_every` and `n_steps` are what is recorded.
    """

    dt: float = Field(gt=0, allow_inf_nan=False, description="time step in units of hbar/t (t: the hopping amplitude)")
    n_steps: int = Field(ge=1, description="number of stored-window time steps; total time n_steps * dt (units hbar/t)")
    save_every: int = Field(default=1, ge=1, description="keep every k-th step (n_steps must be a multiple)")
    model_step: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="time between stored snapshots (the surrogate's step), hbar/t; a multiple of dt; sets save_every",
    )
    n_model_steps: int | None = Field(default=None, ge=1, description="stored snapshots after the first; sets n_steps")
    discard: float = Field(
        default=0.0, ge=0, allow_inf_nan=False,
        description="transient integrated before the first stored snapshot (hbar/t, a multiple of dt); t0 = discard",
    )
    solver: Literal["rk4", "midpoint", "euler"] = Field(default="rk4", description="explicit Runge-Kutta method")
    precision: Precision = Field(
        default="float64",
        description="storage precision of the trajectory: float64 (complex128 rho) or float32 (complex64 rho)",
    )
    device: str = Field(default="cpu", description="torch device for the integration: 'cpu', 'cuda', 'cuda:0', or "
                        "'auto' (a GPU when there is one; the ground truth stays float64 there)")
    compile: Literal["auto"] | bool = Field(
        default="auto",
        description="fuse each step with torch.compile: auto (when the run is long enough to repay the tracing), "
        "true or false",
    )
    threads: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
        default="auto", description="torch CPU threads per process: auto (1 on CPU: one process per core instead)",
    )
    processes: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
        default="auto",
        description="worker processes, each integrating its shards of the trajectories: auto (one per core, "
        "capped by the trajectories and by the work)",
    )
    shards: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
        default="auto",
        description="files the trajectories are split into (OUT.shards/), the unit of resuming: auto (a few "
        "minutes of work each, at least one per process; 1 for a short run)",
    )

    EXECUTION_ONLY: ClassVar[tuple[str, ...]] = ("threads", "processes", "shards")
    """Options that change how the data are computed, not what they are: not part of the data's identity."""

    def identity(self) -> dict[str, Any]:
        """The settings that define the data (the data stage's input and the data file's name).

        The execution-only options are left out, and `compile` is recorded as it was before `auto`
        existed (a bool that was False unless set), so configs keep the identity they had: auto and
        false are the same data (equal to round-off, like every compile choice), an explicit true keeps
        the identity it was recorded with."""
        data = self.model_dump(mode="json")
        for key in self.EXECUTION_ONLY:
            data.pop(key, None)
        data["compile"] = self.compile is True
        return data

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        import torch

        if device == "auto":
            return device
        try:
            torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise _custom("invalid_device", f"'{device}' is not a torch device (try 'auto', 'cpu', 'cuda', 'cuda:0')") from None
        return device

    @property
    def compute_device(self) -> str:
        """The device the integration runs on: `auto` is a GPU when there is one, else the CPU."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @model_validator(mode="before")
    @classmethod
    def _resolve_model_step(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("dt"), (int, float)) or data["dt"] <= 0:
            return data  # field validation reports it
        data = dict(data)
        dt = float(data["dt"])
        errors: list[InitErrorDetails] = []

        def fail(loc: str, msg: str) -> None:
            errors.append(InitErrorDetails(type=_custom("model_step", msg), loc=(loc,), input=data.get(loc)))

        step = data.get("model_step")
        if isinstance(step, (int, float)) and step > 0:
            k = _integer_ratio(float(step), dt)
            if not k:
                fail("model_step", f"model_step ({step}) must be a positive integer multiple of dt ({dt})")
            elif "save_every" in data and data["save_every"] != k:
                fail("save_every", f"save_every ({data['save_every']}) contradicts model_step / dt = {k}; give one of them")
            else:
                data["save_every"] = k
        n_model = data.get("n_model_steps")
        if isinstance(n_model, int) and n_model >= 1 and not errors:
            n = n_model * int(data.get("save_every", 1))
            if "n_steps" in data and data["n_steps"] != n:
                fail("n_steps", f"n_steps ({data['n_steps']}) contradicts n_model_steps x save_every = {n}; give one")
            else:
                data["n_steps"] = n
        discard = data.get("discard")
        if isinstance(discard, (int, float)) and discard > 0 and _integer_ratio(float(discard), dt) is None:
            fail("discard", f"discard ({discard}) must be an integer multiple of dt ({dt})")
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data

    @model_validator(mode="after")
    def _multiple(self) -> SimulationConfig:
        if self.n_steps % self.save_every:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [InitErrorDetails(
                    type=_custom("not_multiple", f"n_steps ({self.n_steps}) must be a multiple of save_every "
                                                 f"({self.save_every})"),
                    loc=("n_steps",), input=self.n_steps)],
            )
        return self

    @property
    def n_snapshots(self) -> int:
        """Snapshots saved, t = 0 included."""
        return self.n_steps // self.save_every + 1

    @property
    def duration(self) -> float:
        """Length of the stored window (after the discarded transient)."""
        return self.n_steps * self.dt

    @property
    def discard_steps(self) -> int:
        return _integer_ratio(self.discard, self.dt) or 0

    @property
    def step(self) -> float:
        """The time between stored snapshots: the surrogate's model step."""
        return self.save_every * self.dt


class DataConfig(StrictModel):
    """Where ground-truth trajectories come from: system, initial-state scenario, integration."""

    system: SystemConfig
    scenario: ScenarioConfig
    simulation: SimulationConfig

    @model_validator(mode="after")
    def _scenario_exists(self) -> DataConfig:
        cls = _system_class(self.system.name)
        scenarios = cls.scenarios()
        errors: list[InitErrorDetails] = []

        def fail(loc: tuple[Any, ...], value: Any, msg: str, kind: str = "invalid_scenario") -> None:
            errors.append(InitErrorDetails(type=_custom(kind, msg), loc=loc, input=value))

        if self.scenario.name not in scenarios:
            hint = _did_you_mean(self.scenario.name, scenarios)
            fail(("scenario", "name"), self.scenario.name,
                 f"system '{self.system.name}' has no scenario '{self.scenario.name}'{hint}; "
                 f"available: {sorted(scenarios)}")
        else:
            given = self.scenario.kwargs
            try:
                resolved = validate_scenario_kwargs(cls, self.scenario.name, given)
            except ScenarioArgumentError as err:
                for p in err.problems:
                    kind = "invalid_scenario" if p.kind == "unknown_argument" else "scenario_argument"
                    fail(("scenario", "kwargs", *p.loc), p.input, p.msg, kind)
            else:
                # The given keys only (defaults stay implicit); compared by identity, as values may be tensors.
                coerced = {k: resolved[k] for k in given}
                if any(coerced[k] is not given[k] for k in given):
                    self.scenario.kwargs = coerced  # e.g. YAML's string '1e-4' for a float argument
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def identity(self) -> dict[str, Any]:
        """What defines the data (see `SimulationConfig.identity`): the dump, simulation by its identity."""
        data = self.model_dump(mode="json", include={"system", "scenario"})
        data["simulation"] = self.simulation.identity()
        return data

    def build_system(self) -> System:
        return self.system.build()

    def initial_state(self, system: System | None = None):  # -> State
        return self.scenario.initial_state(system if system is not None else self.build_system())


# ------------------------------------------------------------------------------------------------
# `qcsurrogate simulate`
# ------------------------------------------------------------------------------------------------
class OutputConfig(StrictModel):
    """Where and how the trajectory file is written (a bare string is taken as `path`)."""

    path: Path = Field(description="output HDF5 file; relative paths are relative to the working directory")
    compression: Literal["gzip", "lzf"] | None = Field(default=None, description="HDF5 compression filter")
    compression_level: int | None = Field(default=None, ge=0, le=9, description="gzip level (default 4)")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, (str, os.PathLike)):
            return {"path": value}
        return value

    @model_validator(mode="after")
    def _level_needs_gzip(self) -> OutputConfig:
        if self.compression_level is not None and self.compression != "gzip":
            raise ValueError("compression_level needs compression: gzip")
        return self


class SimulateConfig(DataConfig):
    """The config of ``qcsurrogate simulate``: a data block plus the output file."""

    output: OutputConfig


# ------------------------------------------------------------------------------------------------
# Loading and error reporting
# ------------------------------------------------------------------------------------------------
def _unwrap(annotation: Any) -> Any:
    """The BaseModel class inside `X`, `X | None`, `Optional[X]`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _unwrap(arg)
            if found is not None:
                return found
    return None


def _allowed_keys(model_cls: type[BaseModel], data: Any, loc: tuple[Any, ...]) -> list[str] | None:
    """The keys allowed at the mapping that holds `loc[-1]`, walking models (and System Params)."""
    cur: Any = model_cls
    node = data
    for part in loc[:-1]:
        if cur is None:
            return None
        fields = cur.model_fields
        if part not in fields:
            return None
        nxt = _unwrap(fields[part].annotation)
        if nxt is None and issubclass(cur, SystemConfig) and part == "params" and isinstance(node, Mapping):
            try:
                nxt = _system_class(str(node.get("name"))).Params
            except Exception:  # noqa: BLE001 - suggestions are best effort
                return None
        node = node.get(part) if isinstance(node, Mapping) else None
        if nxt is not None and nxt.__name__ == "SurrogateConfig":  # `model:` is chosen by its name
            from .surrogate.base import DEFAULT_SURROGATE, surrogate_config_class

            try:
                nxt = surrogate_config_class(str(node.get("name", DEFAULT_SURROGATE)) if isinstance(node, Mapping)
                                             else DEFAULT_SURROGATE)
            except Exception:  # noqa: BLE001 - suggestions are best effort
                return None
        cur = nxt
    if cur is None:
        return None
    return list(cur.model_fields)


def format_config_error(err: ValidationError, source: str, model_cls: type[BaseModel] | None = None,
                        data: Any = None, prefix: str = "") -> str:
    """One line per problem, `location: message`, under a header naming the file."""
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in (*((prefix,) if prefix else ()), *loc)) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
            if model_cls is not None and loc:
                allowed = _allowed_keys(model_cls, data, loc)
                if allowed is not None:
                    msg += f"{_did_you_mean(loc[-1], allowed)}; allowed keys: {', '.join(allowed)}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"].startswith("value_error") and msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, model_cls: type[M], *, source: str = "<config>") -> M:
    """Validate already-parsed data (a dict) against `model_cls`, raising ConfigError."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"invalid configuration in {source}: the top level must be a mapping of keys, "
                          f"got {type(data).__name__}")
    try:
        return model_cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_config_error(err, source, model_cls, data)) from None


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """`yaml.safe_load` of a file, with YAML syntax errors turned into ConfigError naming the line."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file not found: {p}")
    if p.is_dir():
        raise ConfigError(f"{p} is a directory, not a YAML config file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p} is not UTF-8 text ({err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{p}: YAML syntax error{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{p} is empty")
    return data


def load_yaml(path: str | os.PathLike[str], model_cls: type[M]) -> M:
    """Load a YAML file into any pydantic config model; ConfigError names the file and each bad key."""
    return parse_config(read_yaml(path), model_cls, source=str(path))


def load_simulate_config(path: str | os.PathLike[str]) -> SimulateConfig:
    return load_yaml(path, SimulateConfig)
