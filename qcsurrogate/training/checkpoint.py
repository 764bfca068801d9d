"""Checkpoints without pickle: weights and optimizer tensors in safetensors, everything else in JSON.

A checkpoint is a directory `step-XXXXXXXX/` holding `model.safetensors`, `optimizer.safetensors`
and `meta.json`; it is built under a temporary name and renamed into place, and `latest.json` (written
atomically) names the newest complete one. A killed run therefore never leaves a half checkpoint
that `--resume` could pick up.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .. import __version__
from ..artifacts import ArtifactError, CheckpointMeta, LatestPointer, ModelSpec, read_json, read_safetensors
from ..atomic import atomic_path, atomic_write_json
from ..registry import RegistryError, get_surrogate_class
from ..surrogate.base import Surrogate

LATEST = "latest.json"
_LEGACY_RNG = "rng.torch"
"""Key of the torch RNG state that checkpoints of earlier versions stored in `optimizer.safetensors`."""


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            key = f"state.{pid}.{name}"
            if isinstance(v, torch.Tensor):
                tensors[key] = v.detach().cpu().contiguous()
            else:
                scalars[key] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_model(model: Surrogate, directory: Path, extra: dict[str, Any] | None = None) -> None:
    """Weights (`model.safetensors`) and the JSON spec that rebuilds the model (`model.json`)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"qcsurrogate": __version__})
    atomic_write_json(directory / "model.json", {**model.spec(), "qcsurrogate_version": __version__, **(extra or {})})


def load_model(
    directory: str | os.PathLike[str], device: str | torch.device = "cpu", compile: bool = False, system: Any = None,
) -> Surrogate:
    """Rebuild a surrogate from `model.json` + `model.safetensors` (no code execution, no pickle).

    `system` (the System it was trained on) sets up constraints that need its equations
    (`model.conserve_energy`); without it such a model refuses to step.

    `compile=True` makes the model's `rollout` use its compiled inference step by default
    (`Surrogate.inference_step`): equal to the eager rollout to round-off, not bit for bit."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(directory, "is not a model directory (it should hold model.json and model.safetensors)")
    model = model_from_spec(directory / "model.json")
    model.load_state_dict(read_safetensors(directory / "model.safetensors", model.state_dict(), "the weights model.json describes"))
    model.rollout_compile = compile
    if system is not None:
        model.attach_system(system)
    return model.to(device).eval()


def model_from_spec(path: Path) -> Surrogate:
    """The (untrained) surrogate a `model.json` describes; a file that cannot describe one is an ArtifactError."""
    spec = read_json(path, ModelSpec)
    try:
        cls = get_surrogate_class(spec.surrogate)
        return cls.from_spec(spec.model_dump())
    except (KeyError, TypeError, ValueError, RegistryError) as err:  # pydantic's ValidationError is a ValueError
        raise ArtifactError(path, f"does not describe a '{spec.surrogate}' model: {err}") from None


def save_checkpoint(
    root: Path,
    step: int,
    model: Surrogate,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write `root/step-XXXXXXXX/` atomically, point `latest.json` at it, keep the newest `keep`."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = root / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model, tmp)
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    meta = {
        "step": step,
        "optimizer": opt_meta,
        "qcsurrogate_version": __version__,
        **state,
    }
    atomic_write_json(tmp / "meta.json", meta)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_json(root / LATEST, {"step": step, "path": name})
    old = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint `latest.json` names (None when there is no `latest.json`). A pointer that is damaged
    or names a checkpoint that is not there is an ArtifactError: resuming must never quietly start over."""
    pointer = root / LATEST
    if not pointer.exists():
        return None
    latest = read_json(pointer, LatestPointer)
    path = root / latest.path
    if not (path / "meta.json").is_file():
        raise ArtifactError(pointer, f"names checkpoint {latest.path}, which is not there (complete checkpoints: "
                                     f"{', '.join(sorted(p.name for p in root.glob('step-*') if (p / 'meta.json').is_file())) or 'none'})")
    return path


def load_checkpoint(path: Path, model: Surrogate, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights and optimizer in place; return the JSON metadata.

    There is no LR scheduler to restore: `Trainer` sets each step's learning rate from
    `learning_rate(step, cfg)`. (Checkpoints of earlier versions carry `"scheduler": null`; ignored.)

    The process's RNG is neither saved nor restored: `Trainer.train_step` reseeds torch from
    `(seed, step)` before any draw, so a saved RNG state could never reach training. Checkpoints
    written by earlier versions carry one (`rng.torch`); it is ignored.

    Every file is checked before anything is changed: a damaged checkpoint leaves `model` and
    `optimizer` as they were and raises ArtifactError naming the file.
    """
    meta = read_json(path / "meta.json", CheckpointMeta)
    weights = read_safetensors(path / "model.safetensors", model.state_dict(), "the weights of this model")
    tensors = read_safetensors(path / "optimizer.safetensors")
    tensors.pop(_LEGACY_RNG, None)
    try:
        state = _unflatten_optimizer(tensors, meta.optimizer.model_dump())
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for pid, entries in state["state"].items():
            for name, value in entries.items():  # moments have their parameter's shape; torch would notice late
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != params[pid].shape:
                    raise ValueError(f"state {pid}.{name} has shape {tuple(value.shape)}, its parameter "
                                     f"{tuple(params[pid].shape)}")
        optimizer.load_state_dict(state)  # checks the groups before it sets anything
    except (KeyError, ValueError, IndexError, TypeError) as err:
        raise ArtifactError(path / "optimizer.safetensors", f"does not fit this model's optimizer: {err}") from None
    model.load_state_dict(weights)  # names and shapes were checked above
    return meta.model_dump()
