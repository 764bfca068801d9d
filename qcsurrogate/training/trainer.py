"""Training loop: Eq. (11) with exact derivatives, AdamW, warm-up + cosine, clipping, exact resume.

Every random draw of step `s` (batch order, dropout, noise) is seeded from `(seed, s)`, so a run
resumed from a checkpoint reproduces the uninterrupted run bit for bit on the same machine.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..artifacts import ModelSpec, read_json
from ..atomic import atomic_write_json, atomic_write_text
from ..surrogate.base import Surrogate
from ..state import NonFiniteError, State, nonfinite_variables
from ..system import ConfigError, System
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_model
from .data import WindowSampler
from .objective import LEGACY_KEYS, Objective, ObjectiveConfig, upgrade_legacy_objective


OPERATIONAL_FIELDS = frozenset({"threads", "progress", "log_every", "val_every", "checkpoint_every", "keep_checkpoints"})
"""Training settings that change how a run is watched or saved, never the weights it produces."""


class TrainConfig(BaseModel):
    """Optimisation settings (steps are optimizer steps; learning rates per step)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(2000, ge=1, description="optimizer steps")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0, description="final lr as a fraction of lr (cosine decay)")
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(1e-4, ge=0.0)
    grad_clip: float = Field(1.0, gt=0.0, description="max global gradient norm")
    objective: ObjectiveConfig = Field(
        default_factory=ObjectiveConfig, description="what is minimised: derivative weight, unroll curriculum, noise"
    )
    seed: int = 0
    log_every: int = Field(50, ge=1)
    val_every: int = Field(500, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    progress: bool | None = None

    def identity(self) -> dict[str, Any]:
        """The settings that determine the trained weights (what a checkpoint must agree on to resume)."""
        return _identity(self.model_dump(mode="json"))

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and any(k in data for k in LEGACY_KEYS):
            raise ValidationError.from_exception_data(cls.__name__, [
                InitErrorDetails(
                    type=PydanticCustomError("moved_key", "{msg}", {"msg": f"moved to {LEGACY_KEYS[k]}"}), loc=(k,), input=data[k]
                )
                for k in LEGACY_KEYS if k in data
            ])
        return data

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainConfig:
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be smaller than steps ({self.steps})")
        return self


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from 0, then cosine decay to `min_lr_ratio * lr`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def same_train_config(saved: Any, cfg: TrainConfig) -> bool:
    """Whether a recorded `train_config` (a checkpoint's `meta.json`, as JSON) is `cfg`.

    Records written before the objective block existed (`derivative_weight`, `noise_std`, `rollout`
    at the top level) are read in today's layout first, so their runs still resume."""
    if not isinstance(saved, Mapping):
        return False
    return _identity(upgrade_legacy_objective(dict(saved))) == cfg.identity()


def _identity(dumped: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dumped.items() if k not in OPERATIONAL_FIELDS}


class StopRequests:
    """While training, SIGINT and SIGTERM ask the loop to stop after the step in flight instead of killing it
    mid-update; a second Ctrl-C interrupts at once. Only in the main thread (where Python delivers signals)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored on purpose (nohup, a background job)
                    self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _world() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed process group, else (0, 1)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass(frozen=True)
class TrainingFiles:
    """Where a training writes: the trained model, its checkpoints, its per-step log and its summary.

    `TrainingFiles.under(root)` is the conventional layout inside one directory; a run directory's
    `RunLayout` decides the root of each model it trains."""

    model: Path
    checkpoints: Path
    log: Path
    summary: Path

    @classmethod
    def under(cls, root: str | os.PathLike[str]) -> TrainingFiles:
        root = Path(root)
        return cls(root / "model", root / "checkpoints", root / "train_log.jsonl", root / "train_summary.json")


class Trainer:
    """Fits a surrogate to windows of trajectories of one System.

    Under `torchrun` (an initialised process group) every rank draws the same global batch order and
    reads only its own slots of it (`rank, rank + world, ...`; split by batch slot, so any source, in
    memory or lazy, gives each rank the same samples), and gradients are averaged across ranks before each step (data parallelism; the update
    equals single-process training on the global batch). Only rank 0 logs and writes files.
    """

    def __init__(
        self,
        model: Surrogate,
        system: System,
        train: WindowSampler,
        val: WindowSampler | None,
        cfg: TrainConfig,
        out: str | os.PathLike[str] | TrainingFiles,
        log: Callable[[str], None] = lambda s: None,
        inputs: Mapping[str, str] | None = None,
    ) -> None:
        self.model, self.system, self.train_data, self.val_data, self.cfg = model, system, train, val, cfg
        self.files = out if isinstance(out, TrainingFiles) else TrainingFiles.under(out)
        self.inputs = dict(inputs or {})  # digests of what the training is made from, stored with what it writes
        self.ckpt_dir = self.files.checkpoints
        self.log = log
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            (no_decay if n.endswith("bias") or n.endswith("bias_im") else decay).append(p)
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=(0.9, 0.999),
        )
        self.rank, self.world = _world()
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {self.world} distributed ranks")
        self.objective = Objective(cfg.objective, cfg.steps, system.rhs)
        if train.max_window < self.objective.max_window:
            raise ValueError(f"the training sampler's windows ({train.max_window} steps) are shorter than the "
                             f"objective's longest unroll ({self.objective.max_window})")
        self.step = 0
        self._saved_step: int | None = None  # the step of the newest checkpoint this run wrote
        self.history: list[dict[str, Any]] = []
        self.time_data = 0.0  # batch assembly and exact-derivative targets, inside train_step

    # -- one optimisation step ---------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        torch.manual_seed(cfg.seed * 7919 + self.step)  # dropout / noise draws for this step
        k = self.objective.unroll_length(self.step)
        t0 = time.perf_counter()
        # this rank's slots of the global batch, read by this rank alone (the whole batch in one process)
        window = self.train_data.batch(self.step, cfg.batch_size, k, shard=(self.rank, self.world))
        self.time_data += time.perf_counter() - t0
        lr = learning_rate(self.step, cfg)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.model.train()
        loss, parts, target_seconds = self.objective.window_loss(self.model, window)
        self.time_data += target_seconds
        if not math.isfinite(float(loss.detach())):
            self._diverged("the loss", window, parts)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            self._average_gradients()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if not math.isfinite(float(gnorm)):
            bad = [n for n, p in self.model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
            self._diverged(f"the gradient of {len(bad)} parameter tensors ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})",
                           window, parts)
        self.opt.step()
        self.step += 1
        return {"step": self.step, "loss": float(loss.detach()), "lr": lr, "grad_norm": float(gnorm), "unroll": k, **parts}

    def _diverged(self, what: str, window: list[State], parts: Mapping[str, float]) -> None:
        """Stop before the optimizer applies a non-finite update: the weights stay those of the last step,
        and the last checkpoint is kept. Says whether the data or the model went wrong."""
        step = self.step + 1
        bad_data = sorted({name for j, s in enumerate(window) for name in nonfinite_variables(s)})
        where = (f"the training data holds non-finite values in {', '.join(bad_data)} (check the trajectory file)"
                 if bad_data else "the data of this batch is finite, so the model diverged (a lower learning rate, "
                 "gradient clipping or float64 may help)")
        terms = ", ".join(f"{k} {v:.3g}" for k, v in parts.items() if not math.isfinite(v))
        last = latest_checkpoint(self.ckpt_dir) if self.ckpt_dir.exists() else None
        kept = f"the last checkpoint, {last.name}, is kept" if last else "no checkpoint was written yet"
        raise NonFiniteError(f"training stopped at optimizer step {step}: {what} is not finite"
                             + (f" ({terms})" if terms else "") + f"; {where}; {kept}")

    def _average_gradients(self) -> None:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    @torch.no_grad()
    def validate(self, max_pairs: int = 2048) -> float:
        if self.val_data is None:
            return float("nan")
        self.model.eval()
        cur, nxt = self.val_data.all_pairs(stride=max(1, (self.val_data.size // max_pairs)))
        return self.objective.pair_loss(self.model, cur, nxt)

    # -- the loop ---------------------------------------------------------------------------------
    def _same_trained_model(self, saved: Any) -> bool:
        """Whether a checkpoint's model config trains the same weights (inference-only options may differ)."""
        try:
            return type(self.model.config).model_validate(saved).training_identity() == self.model.config.training_identity()
        except (ValidationError, TypeError):
            return False

    def resume(self) -> bool:
        path = latest_checkpoint(self.ckpt_dir)
        if path is None:
            return False
        saved_model = read_json(path / "model.json", ModelSpec).model_dump()
        if saved_model.get("surrogate") != self.model.name or not self._same_trained_model(saved_model.get("config")):
            raise ConfigError(
                f"checkpoint {path} holds a different model ({saved_model.get('surrogate')}, "
                f"{saved_model.get('config')}); refusing to resume. Use `--no-resume` or another --output"
            )
        meta = load_checkpoint(path, self.model, self.opt)
        if not same_train_config(meta.get("train_config"), self.cfg):
            raise ConfigError(
                f"checkpoint {path} was written with a different training config; refusing to resume. "
                "Train from scratch with `--no-resume` (run) / without `--resume` (train), or use another --output"
            )
        self.step = int(meta["step"])
        self.history = meta.get("history", [])
        if self.rank == 0:  # the log may run past the checkpoint (a kill between two): keep what it saved
            atomic_write_text(self.files.log, "".join(json.dumps(rec) + "\n" for rec in self.history))
        self.log(f"resumed from {path} at step {self.step}")
        return True

    def _stop_asked(self, stop: StopRequests) -> bool:
        """Whether any rank was asked to stop: all ranks agree, so they stop after the same step."""
        asked = stop.signal is not None
        if self.world > 1:
            flag = torch.tensor([1.0 if asked else 0.0], device=self.model.device)  # NCCL reduces GPU tensors only
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            asked = bool(flag.item())
        return asked

    def _stop(self, signum: int) -> None:
        """A stop was asked for (Ctrl-C, SIGTERM): the step in flight has finished; save it and leave."""
        if self._saved_step != self.step:
            self.checkpoint()
        name = signal.Signals(signum).name
        self.log(f"{name} received: stopped after step {self.step} of {self.cfg.steps} and saved a checkpoint there; "
                 "run the same command again to resume")
        raise KeyboardInterrupt(name)

    def checkpoint(self) -> None:
        if self.rank != 0:
            return
        save_checkpoint(
            self.ckpt_dir, self.step, self.model, self.opt,
            {"train_config": self.cfg.model_dump(mode="json"), "history": self.history,
             **({"inputs": self.inputs} if self.inputs else {})},
            keep=self.cfg.keep_checkpoints,
        )

    def fit(self, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
        """Train to `cfg.steps` (or only until `stop_after` steps, to simulate an interrupted run).

        Returns a summary: `steps` (reached), `steps_run` (by this call), `already_complete` (resumed
        from a finished run: nothing trained), `final` (the last logged record), `wall_s`,
        `samples_per_s` and `outside_model_fraction` (both None when no step ran), `n_parameters`.
        A finished run that already has its model and `train_summary.json` keeps them untouched."""
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        metrics_path = self.files.log
        if not (resume and self.resume()) and self.rank == 0:
            # a fresh start: stale checkpoints or logs of an earlier run must not mix with this one
            shutil.rmtree(self.ckpt_dir, ignore_errors=True)
            metrics_path.unlink(missing_ok=True)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        bar = None
        main = self.rank == 0
        if main and (cfg.progress or (cfg.progress is None and sys.stderr.isatty())):
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        first_step = self.step
        t_step = 0.0
        self.time_data = 0.0
        t_start = time.perf_counter()
        samples = 0
        last: dict[str, Any] = {}
        end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
        with open(metrics_path if main else os.devnull, "a") as logf, StopRequests() as stop:
            while self.step < end:
                if self._stop_asked(stop):
                    self._stop(stop.signal or signal.SIGTERM)
                t0 = time.perf_counter()
                rec = self.train_step()
                t_step += time.perf_counter() - t0
                samples += cfg.batch_size * rec["unroll"]
                if self.step % cfg.log_every == 0 or self.step == end:
                    elapsed = time.perf_counter() - t_start
                    rec["samples_per_s"] = samples / max(elapsed, 1e-9)
                    if main and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                        rec["val_loss"] = self.validate()
                    self.history.append(rec)
                    logf.write(json.dumps(rec) + "\n")
                    logf.flush()
                    last = rec
                    msg = f"loss={rec['loss']:.3e} lr={rec['lr']:.1e} k={rec['unroll']} {rec['samples_per_s']:.0f} samples/s"
                    if "val_loss" in rec:
                        msg += f" val_loss={rec['val_loss']:.3e}"
                    if bar is not None:
                        bar.set_postfix_str(msg)
                    if main and (bar is None or "val_loss" in rec):  # with a bar, only validation lines
                        self.log(f"step {self.step}/{cfg.steps} {msg}")
                if bar is not None:
                    bar.update(1)
                if self.step % cfg.checkpoint_every == 0 or self.step == end:
                    self.checkpoint()
                    self._saved_step = self.step
            if self._stop_asked(stop) and self.step < cfg.steps:
                self._stop(stop.signal or signal.SIGTERM)
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - t_start
        steps_run = self.step - first_step
        summary = {
            "steps": self.step,
            "steps_run": steps_run,
            # resumed at the last step: nothing was trained, there is no throughput to report
            "already_complete": steps_run == 0 and self.step >= cfg.steps,
            "final": last or (self.history[-1] if self.history else {}),
            "wall_s": wall,
            # share of wall time outside forward/backward/optimizer: data, targets, logging, checkpoints
            "outside_model_fraction": 1 - (t_step - self.time_data) / max(wall, 1e-9) if steps_run else None,
            "samples_per_s": samples / max(wall, 1e-9) if steps_run else None,
            "n_parameters": self.model.n_parameters(),
        }
        model_dir = self.files.model
        saved = (model_dir / "model.safetensors").exists() and self.files.summary.exists()
        if self.step >= cfg.steps and main and (steps_run or not saved):
            save_model(self.model, model_dir, extra={"train_summary": summary, **({"inputs": self.inputs} if self.inputs else {})})
            atomic_write_json(self.files.summary, summary)
        return summary
