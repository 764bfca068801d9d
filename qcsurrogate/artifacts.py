"""Reading the files qcsurrogate writes back in, checked at the boundary: JSON through pydantic models,
safetensors against the tensors the reader expects, and pickles recognised and refused by name.

A damaged or foreign file gives one `ArtifactError` naming the file and what is wrong (the CLI prints it
and exits 2), never a traceback from deep inside json, safetensors or torch.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["ArtifactError", "CheckpointMeta", "LatestPointer", "LedgerFile", "ModelSpec", "NormalizationFile", "SplitFile",
           "read_json", "read_safetensors"]

M = TypeVar("M", bound=BaseModel)

PICKLE_PROTOCOL_BYTE = 0x80  # protocols 2 and later start with PROTO
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container (holding a pickle)
MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


class ArtifactError(ValueError):
    """A file qcsurrogate reads is missing, damaged or not what it should be; the message names it."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class _Lenient(BaseModel):
    """Files of later versions may add keys: the keys read must be there and of the right type."""

    model_config = ConfigDict(extra="allow")


class ModelSpec(_Lenient):
    """`model.json`: what rebuilds a surrogate (the weights are in `model.safetensors`)."""

    surrogate: str = Field(min_length=1)
    graph: dict[str, list[Any]]
    boundary: str
    config: dict[str, Any]
    normalization: dict[str, Any]


class OptimizerMeta(_Lenient):
    param_groups: list[dict[str, Any]]
    scalars: dict[str, Any]


class CheckpointMeta(_Lenient):
    """A checkpoint's `meta.json`."""

    step: int = Field(ge=0)
    optimizer: OptimizerMeta


class LatestPointer(_Lenient):
    """`latest.json`: the newest complete checkpoint."""

    step: int = Field(ge=0)
    path: str = Field(pattern=r"^step-\d{8}$")


class SplitFile(_Lenient):
    """A run's `split.json`: trajectory indices by role."""

    train: list[int] = Field(min_length=1)
    val: list[int]
    test: list[int]
    memorized: bool = False


class NormalizationFile(_Lenient):
    """A run's `normalization.json`."""

    normalization: dict[str, Any]


class LedgerFile(_Lenient):
    """A run's `stages.json`: what each stage was made from."""

    version: int
    stages: dict[str, dict[str, Any]]


def _pickle_kind(head: bytes) -> str | None:
    if head[:4] == ZIP_MAGIC:
        return "a zip archive (torch.save writes pickles in one)"
    if len(head) >= 2 and head[0] == PICKLE_PROTOCOL_BYTE and 2 <= head[1] <= 5:
        return f"a pickle (protocol {head[1]})"
    return None


def refuse_pickle(path: Path, head: bytes, expected: str) -> None:
    kind = _pickle_kind(head)
    if kind is not None:
        raise ArtifactError(path, f"is {kind}, not {expected}; qcsurrogate never unpickles files (loading a pickle "
                                  "can run arbitrary code), so it is refused")


def _errors(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors())


def read_json(path: str | os.PathLike[str], schema: type[M] | None = None) -> Any:
    """The JSON document at `path`, validated by `schema` when given (returns the model then)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(path, "is missing") from None
    except IsADirectoryError:
        raise ArtifactError(path, "is a directory, not a JSON file") from None
    refuse_pickle(path, raw[:4], "JSON")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ArtifactError(path, "is not JSON (not even UTF-8 text)") from None
    except json.JSONDecodeError as err:
        what = "is empty" if not raw.strip() else f"is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        raise ArtifactError(path, what + "; the file is damaged or truncated") from None
    if schema is None:
        return data
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise ArtifactError(path, f"is not a valid {schema.__name__}: {_errors(err)}") from None


def safetensors_header(path: Path) -> dict[str, Any]:
    """Parse and check a safetensors header without trusting it: sizes, JSON, offsets inside the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            refuse_pickle(path, head, "a safetensors file")
            if size < 8:
                raise ArtifactError(path, f"is {size} bytes long, too short for a safetensors file (truncated?)")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER, size - 8):
                raise ArtifactError(path, f"is not a safetensors file or is truncated (its header claims {n} bytes, "
                                          f"the file has {size})")
            header_bytes = f.read(n)
    except FileNotFoundError:
        raise ArtifactError(path, "is missing") from None
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ArtifactError(path, f"has a damaged safetensors header ({err})") from None
    if not isinstance(header, dict):
        raise ArtifactError(path, "has a damaged safetensors header (it is not a JSON object)")
    data_size = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = (int(x) for x in info["data_offsets"])
            shape = [int(d) for d in info["shape"]]
            str(info["dtype"])
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(path, f"has a damaged safetensors header (entry '{name}')") from None
        if not 0 <= start <= end <= data_size:
            raise ArtifactError(path, f"is truncated: tensor '{name}' ends at byte {end} of a {data_size}-byte data section")
        if any(d < 0 for d in shape):
            raise ArtifactError(path, f"has a damaged safetensors header (tensor '{name}' has shape {shape})")
    return header


def read_safetensors(path: str | os.PathLike[str], expected: Mapping[str, torch.Tensor] | None = None,
                     what: str = "the tensors expected") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file on the CPU; with `expected` (e.g. a model's `state_dict()`), the
    names, shapes and dtypes must match it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    header = safetensors_header(path)
    if expected is not None:
        problems = tensor_mismatches(header, expected)
        if problems:
            raise ArtifactError(path, f"does not hold {what}: " + "; ".join(problems))
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, RuntimeError, ValueError) as err:
        raise ArtifactError(path, f"could not be read as safetensors: {err}") from None


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool, "C64": torch.complex64}


def tensor_mismatches(header: Mapping[str, Any], expected: Mapping[str, torch.Tensor], limit: int = 4) -> list[str]:
    """What differs between a safetensors header and the expected tensors (empty when they match)."""
    have = {k: v for k, v in header.items() if k != "__metadata__"}
    out = []
    missing = sorted(set(expected) - set(have))
    extra = sorted(set(have) - set(expected))
    if missing:
        out.append(f"{len(missing)} missing ({', '.join(missing[:limit])}{', ...' if len(missing) > limit else ''})")
    if extra:
        out.append(f"{len(extra)} unexpected ({', '.join(extra[:limit])}{', ...' if len(extra) > limit else ''})")
    wrong = []
    for k in sorted(set(have) & set(expected)):
        want = expected[k]
        shape, dtype = list(have[k]["shape"]), _DTYPES.get(str(have[k]["dtype"]))
        if shape != list(want.shape) or dtype != want.dtype:
            wrong.append(f"{k}: {tuple(shape)} {have[k]['dtype']}, expected {tuple(want.shape)} {want.dtype}")
    if wrong:
        out.append(f"{len(wrong)} of another shape or type ({'; '.join(wrong[:limit])}{'; ...' if len(wrong) > limit else ''})")
    return out
