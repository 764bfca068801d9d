"""Checkpoints without pickle: weights and optimizer tensors in safetensors, everything else in JSON.

A checkpoint is a directory `step-XXXXXXXX/` holding `model.safetensors`, `optimizer.safetensors`
and `meta.json`; it is built under a temporary name and renamed into place, and `latest.json` (written
atomically) names the newest complete one. A killed run therefore never leaves a half checkpoint
that `--resume` could pick up.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..atomic import atomic_write_json
from ..registry import get_surrogate_class
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
    save_file(tensors, str(directory / "model.safetensors"), metadata={"qcsurrogate": __version__})
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
    spec = json.loads((directory / "model.json").read_text())
    cls = get_surrogate_class(spec["surrogate"])
    model = cls.from_spec(spec)
    model.load_state_dict(load_file(str(directory / "model.safetensors"), device="cpu"))
    model.rollout_compile = compile
    if system is not None:
        model.attach_system(system)
    return model.to(device).eval()


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
    pointer = root / LATEST
    if not pointer.exists():
        return None
    path = root / json.loads(pointer.read_text())["path"]
    return path if (path / "meta.json").exists() else None


def load_checkpoint(path: Path, model: Surrogate, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights and optimizer in place; return the JSON metadata.

    There is no LR scheduler to restore: `Trainer` sets each step's learning rate from
    `learning_rate(step, cfg)`. (Checkpoints of earlier versions carry `"scheduler": null`; ignored.)

    The process's RNG is neither saved nor restored: `Trainer.train_step` reseeds torch from
    `(seed, step)` before any draw, so a saved RNG state could never reach training. Checkpoints
    written by earlier versions carry one (`rng.torch`); it is ignored.
    """
    meta = json.loads((path / "meta.json").read_text())
    model.load_state_dict(load_file(str(path / "model.safetensors"), device="cpu"))
    tensors = load_file(str(path / "optimizer.safetensors"), device="cpu")
    tensors.pop(_LEGACY_RNG, None)
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    return meta
