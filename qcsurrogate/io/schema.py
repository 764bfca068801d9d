"""The trajectory file schema: names, version, dtypes and the JSON helpers both sides share.

See docs/trajectory-format.md for the documented layout. Everything a reader relies on is
named here once so the writer and the reader cannot drift apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

SCHEMA_NAME = "qcsurrogate.trajectory"
SCHEMA_VERSION = 1
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"
"""Value of the root attribute `qcsurrogate_schema`."""

SCHEMA_ATTR = "qcsurrogate_schema"

FIELDS_GROUP = "fields"
RHO_DATASET = "rho"
TIME_DATASET = "time"

Precision = Literal["float64", "float32"]
PRECISIONS: dict[str, tuple[np.dtype, np.dtype]] = {
    "float64": (np.dtype("float64"), np.dtype("complex128")),
    "float32": (np.dtype("float32"), np.dtype("complex64")),
}
COMPRESSIONS = (None, "gzip", "lzf")

TIME_UNITS = "hbar/t"
"""Time is measured in units of hbar / t, t the hopping amplitude (so dt = 0.08 means 0.08 hbar/t)."""

# Root attributes every version-1 file has, with the Python type they decode to.
REQUIRED_ATTRS: dict[str, type | tuple[type, ...]] = {
    SCHEMA_ATTR: str,
    "system": str,
    "system_class": str,
    "params": dict,
    "graph": dict,
    "boundary": str,
    "L": int,
    "field_names": list,
    "variables": list,
    "n_trajectories": int,
    "n_time": int,
    "batch_shape": list,
    "dt": float,
    "save_every": int,
    "n_steps": int,
    "t0": float,
    "time_units": str,
    "solver": str,
    "scenario": str,
    "scenario_kwargs": dict,
    "simulation_options": dict,
    "precision": str,
    "compute_precision": str,
    "versions": dict,
    "created": str,
    "extra": dict,
}

OPTIONAL_ATTRS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "orbitals": (int, 1),
}
"""Root attributes added after version 1 was first written, with their type and the value a file
without them means (`orbitals`: one orbital per site, rho `(L, L)`)."""

JSON_ATTRS = frozenset(
    {"params", "graph", "field_names", "variables", "batch_shape", "scenario_kwargs", "simulation_options",
     "versions", "extra"}
)
"""Root attributes stored as JSON text (UTF-8 strings) and decoded by the reader."""


class TrajectoryFormatError(ValueError):
    """A file is not a valid qcsurrogate trajectory (foreign, corrupted, truncated, wrong version)."""


def to_jsonable(obj: Any, *, where: str = "value", lenient: bool = False) -> Any:
    """Plain JSON types from numpy/torch scalars, tuples, paths and nested containers.

    Raises TypeError naming `where` for anything else, unless `lenient` (then its repr is kept).
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = to_jsonable(v, where=f"{where}.{k}", lenient=lenient)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, where=f"{where}[{i}]", lenient=lenient) for i, v in enumerate(obj)]
    try:  # torch scalars / 0-d tensors without importing torch here
        if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
            return to_jsonable(obj.item(), where=where, lenient=lenient)
    except Exception:  # noqa: BLE001
        pass
    if hasattr(obj, "__fspath__"):
        return str(obj)
    if lenient:
        return repr(obj)
    raise TypeError(f"{where}: {type(obj).__name__} {obj!r} is not JSON-serialisable")


def dumps(obj: Any, *, where: str = "value", lenient: bool = False) -> str:
    return json.dumps(to_jsonable(obj, where=where, lenient=lenient), sort_keys=False, allow_nan=True)


def decode_attr(name: str, value: Any) -> Any:
    """A root attribute as a plain Python value (JSON decoded, numpy scalars unwrapped)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if name in JSON_ATTRS:
        if not isinstance(value, str):
            raise TrajectoryFormatError(f"attribute '{name}' should be JSON text, found {type(value).__name__}")
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise TrajectoryFormatError(f"attribute '{name}' is not valid JSON ({err})") from None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def check_attr_type(name: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    """Coerce int -> float where a float is expected; raise TrajectoryFormatError on a wrong type."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is int and isinstance(value, bool):
        raise TrajectoryFormatError(f"attribute '{name}' should be an integer, found {value!r}")
    if not isinstance(value, expected):
        exp = expected.__name__ if isinstance(expected, type) else "/".join(t.__name__ for t in expected)
        raise TrajectoryFormatError(f"attribute '{name}' should be {exp}, found {type(value).__name__} {value!r}")
    if expected is float and not math.isfinite(value):
        raise TrajectoryFormatError(f"attribute '{name}' is not finite: {value!r}")
    return value


def graph_label(graph: Mapping[str, Any]) -> str:
    """'Q <- P; P <- Q, diagonal(rho); rho <- Q, rho' from the JSON graph, without needing its views."""
    parts = []
    for target, deps in graph.items():
        labels = [src if view in ("identity", "matrix") else f"{view}({src})" for src, view in deps]
        parts.append(f"{target} <- {', '.join(labels)}")
    return "; ".join(parts)
