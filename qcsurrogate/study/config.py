"""The study file: a base run config, what to vary, the seeds, what to tabulate and whether to time it.

A study is a product of axes, each a list of named sets of overrides of the base run config:
`cases` (named variants), one axis per `sweep` key, one `zip` axis (paired values) and the seeds.
Overrides are given by dotted path (`model.width`, `data.simulation.model_step`) and applied to the
base *as written* (not to its defaults), in the order base, `set`, case, sweep, zip, seed; a value
replaces whatever was at its path (a mapping replaces a whole section).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..config import StrictModel, parse_config, read_yaml
from ..system import ConfigError

DEFAULT_SEED_FIELDS = ("training.seed",)
"""Where a study's seed goes by default: the training seed (weight initialisation and batch order), so the
spread over seeds is the spread of training alone, on the same data and split."""


def check_path(path: str) -> str:
    """A dotted path `a.b.c` of mapping keys (no empty parts, no list indices)."""
    parts = path.split(".")
    if not path or any(not p.strip() or p != p.strip() for p in parts):
        raise ValueError(f"'{path}' is not a dotted path of config keys (e.g. model.width)")
    return path


def same_value(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _no_duplicates(values: list[Any], what: str) -> None:
    for i, v in enumerate(values):
        if any(same_value(v, w) for w in values[:i]):
            raise ValueError(f"{what} lists {v!r} twice")


class MetricsConfig(StrictModel):
    """Which numbers of each run's metrics.json become table columns (see docs/studies.md, "The table")."""

    rollout_steps: list[int] = Field(
        default_factory=lambda: [1, 10, 100],
        description="RMSE after these model steps (columns rmse_<var>@k=K; empty beyond the evaluated window)")
    rollout_times: list[float] = Field(
        default_factory=list,
        description="RMSE at these physical times, hbar/t (columns rmse_<var>@t=T): compares points of "
                    "different model steps at the same time; empty unless T is a whole number of model steps")
    variables: list[str] = Field(
        default_factory=lambda: ["total"],
        description="RMSE of which variables: 'total' and/or field names (X, Q, rho, ...)")
    plot: list[str] | None = Field(
        None, description="table columns drawn against each swept value (default: the next-step and rollout RMSEs "
                          "of the first variable)")

    @field_validator("rollout_steps")
    @classmethod
    def _positive_steps(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("rollout_steps must be model step counts >= 1")
        return v

    @field_validator("rollout_times")
    @classmethod
    def _positive_times(cls, v: list[float]) -> list[float]:
        if any(not t > 0 for t in v):
            raise ValueError("rollout_times must be times > 0 (hbar/t)")
        return v

    @field_validator("variables")
    @classmethod
    def _some_variables(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("variables must name at least one of 'total' or a field")
        return v


class CostConfig(StrictModel):
    """Time one surrogate step against the exact solver for the same physical time (study 2's cost axis)."""

    measure: bool = Field(False, description="measure the cost of every trained predictor of every point")
    batch: int = Field(64, ge=1, description="states advanced together, for the surrogate and the solver alike")
    repeats: int = Field(5, ge=1, le=100, description="timings per method; the median is reported")
    min_time: float = Field(0.05, gt=0.0, le=10.0, description="seconds each timing lasts at least (calls repeated)")
    metric: str | None = Field(
        None, description="the error drawn against the cost (default: the first rollout_times column, else the "
                          "next-step RMSE)")


class StudyConfig(StrictModel):
    """A sweep of run configs: every point is an ordinary run directory under `output_dir/points/`."""

    name: str = Field(min_length=1)
    description: str = ""
    output_dir: Path = Field(description="study directory (overridable with --output); relative to the working directory")
    base: Path | dict[str, Any] = Field(
        description="the run config every point starts from: a YAML file (relative to the study file) or a mapping")
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="dotted path -> value applied to the base for every point (e.g. the CPU reductions)")
    cases: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named variants, each a mapping dotted path -> value (one axis)")
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict, description="dotted path -> list of values; the points are the product over keys")
    zip: dict[str, list[Any]] = Field(
        default_factory=dict, description="dotted path -> list of values, paired element by element (one axis)")
    seeds: list[int] = Field(default_factory=lambda: [0], description="repeats; each point runs once per seed")
    seed_fields: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SEED_FIELDS), description="dotted paths each seed is written to")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    cost: CostConfig = Field(default_factory=CostConfig)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if "/" in v or os.sep in v:
            raise ValueError("name must not contain a path separator")
        return v

    @field_validator("set", "sweep", "zip")
    @classmethod
    def _paths(cls, v: dict[str, Any]) -> dict[str, Any]:
        for p in v:
            check_path(p)
        return v

    @field_validator("cases")
    @classmethod
    def _case_paths(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, overrides in v.items():
            if not str(name).strip():
                raise ValueError("a case needs a name")
            for p in overrides:
                check_path(p)
        return v

    @field_validator("seed_fields")
    @classmethod
    def _seed_paths(cls, v: list[str]) -> list[str]:
        for p in v:
            check_path(p)
        _no_duplicates(v, "seed_fields")
        return v

    @field_validator("sweep")
    @classmethod
    def _sweep_values(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"sweep: '{key}' has no values")
            _no_duplicates(values, f"sweep '{key}'")
        return v

    @field_validator("zip")
    @classmethod
    def _zip_values(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        lengths = {k: len(vals) for k, vals in v.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"zip: every list must have the same length, got {lengths}")
        if v:
            first = next(iter(v))
            if not v[first]:
                raise ValueError("zip: the lists are empty")
            _no_duplicates(v[first], f"zip '{first}' (its values name the points)")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("seeds must list at least one seed")
        _no_duplicates(v, "seeds")
        return v

    @model_validator(mode="after")
    def _each_path_varied_once(self) -> StudyConfig:
        """A path varied by two axes (or by an axis and the seed) would make the later silently win."""
        owners: dict[str, str] = {}
        case_paths = {p for overrides in self.cases.values() for p in overrides}
        for where, paths in (("cases", case_paths), ("sweep", self.sweep), ("zip", self.zip),
                             ("seed_fields", self.seed_fields)):
            for p in paths:
                for q, owner in owners.items():
                    if p == q or p.startswith(q + ".") or q.startswith(p + "."):
                        raise ValueError(f"'{p}' ({where}) and '{q}' ({owner}) vary the same setting; vary it in one place")
            for p in paths:
                owners[p] = where
        return self


def load_study(path: str | os.PathLike[str]) -> tuple[StudyConfig, dict[str, Any], str]:
    """The study config, its base run config as written (a mapping) and the base's source, for messages."""
    path = Path(path)
    study = parse_config(read_yaml(path), StudyConfig, source=str(path))
    if isinstance(study.base, dict):
        return study, study.base, f"{path} (inline base)"
    base_path = study.base if study.base.is_absolute() else path.parent / study.base
    if not base_path.exists():
        raise FileNotFoundError(f"{path}: base run config not found: {base_path}")
    base = read_yaml(base_path)
    if not isinstance(base, dict):
        raise ConfigError(f"{base_path}: a run config must be a mapping of keys, got {type(base).__name__}")
    return study, base, str(base_path)

