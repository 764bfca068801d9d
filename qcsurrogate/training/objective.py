"""The training objective, Eq. (11) of the paper plus its extensions, as one object.

`ObjectiveConfig` (the `training.objective:` block) holds everything that defines what is minimised:
the weight of the derivative term, the unroll curriculum of multi-step training, and input-noise
injection. `Objective` computes the loss of one window of states for a given optimizer step; the
`Trainer` only draws windows and steps the optimizer.

For a window `y_0, ..., y_k` (k = the step's unroll length) the loss is

    sum_{j < k} w**j * loss_j / k,   loss_j = surrogate.loss(x_j, rhs(x_j), y_{j+1}, derivative_weight)

where `x_0` is `y_0` (plus noise when `noise_std > 0`) and `x_j` is the model's own prediction of
step j - 1, kept in the autograd graph (backpropagation through time). With k = 1, no noise and
derivative weight 1 this is exactly the paper's Eq. (11).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..state import RHO, State
from ..surrogate.base import Surrogate


class UnrollCurriculum(BaseModel):
    """Multi-step (unrolled) training: a curriculum that raises the unroll length k over training."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(1, ge=1, le=256, description="largest unroll length k (1 = one-step training, the paper)")
    start_fraction: float = Field(
        0.5, ge=0.0, le=1.0,
        description="fraction of training done with k = 1 first; the rest ramps k = 2..max_steps in equal shares",
    )
    step_weight: float = Field(1.0, gt=0.0, le=1.0, description="weight of the j-th unrolled step: step_weight**j")

    def length(self, step: int, total_steps: int) -> int:
        """The unroll length k of optimizer step `step` (0-based) of `total_steps`.

        k = 1 for the first `round(start_fraction * total_steps)` steps; the remaining steps are cut
        into `max_steps - 1` consecutive shares, equal to within one step, with k = 2, 3, ...,
        max_steps, so the last step always uses `max_steps` (when fewer steps remain than lengths,
        some lengths are skipped, never the last). `start_fraction = 0` starts the ramp at k = 2;
        `1` never unrolls.
        """
        n_one = round(self.start_fraction * total_steps)
        rest = total_steps - n_one
        if self.max_steps == 1 or step < n_one or rest <= 0:
            return 1
        i = min(step - n_one, rest - 1)  # position within the ramp, 0 .. rest - 1
        # share j (k = 2 + j) holds the positions i with j < (i + 1) * (max_steps - 1) / rest <= j + 1
        return 2 + ((i + 1) * (self.max_steps - 1) - 1) // rest


class ObjectiveConfig(BaseModel):
    """What training minimises: Eq. (11) with a derivative weight, unrolled steps and input noise."""

    model_config = ConfigDict(extra="forbid")

    derivative_weight: float = Field(1.0, ge=0.0, description="weight of Eq. (11)'s derivative term")
    noise_std: float = Field(0.0, ge=0.0, description="input noise injection, in units of each input's std")
    unroll: UnrollCurriculum = Field(default_factory=UnrollCurriculum)


LEGACY_KEYS = {
    "derivative_weight": "training.objective.derivative_weight",
    "noise_std": "training.objective.noise_std",
    "rollout": "training.objective.unroll (its weight_decay_per_step is now step_weight)",
}
"""Keys of `training:` that moved into `training.objective:`, with their new place."""


def upgrade_legacy_objective(train_config: dict[str, Any]) -> dict[str, Any]:
    """A `training:` mapping written before the objective block (e.g. a checkpoint's `train_config`),
    rewritten with `derivative_weight`, `noise_std` and `rollout` moved into `objective`.
    Mappings without those keys are returned unchanged."""
    if not any(k in train_config for k in LEGACY_KEYS):
        return train_config
    out = {k: v for k, v in train_config.items() if k not in LEGACY_KEYS}
    objective: dict[str, Any] = dict(out.get("objective") or {})
    for key in ("derivative_weight", "noise_std"):
        if key in train_config:
            objective[key] = train_config[key]
    if "rollout" in train_config:
        unroll = dict(train_config["rollout"] or {})
        if "weight_decay_per_step" in unroll:
            unroll["step_weight"] = unroll.pop("weight_decay_per_step")
        objective["unroll"] = unroll
    out["objective"] = ObjectiveConfig.model_validate(objective).model_dump(mode="json")
    return out


def perturb(state: State, input_std: dict[str, tuple[Any, float]], std: float) -> State:
    """Gaussian noise of `std` times each variable's input std (`Normalization.inputs`); rho stays Hermitian."""
    fields = {}
    for k, v in state.fields.items():
        s = input_std.get(f"{k}:identity", (0.0, 1.0))[1]
        fields[k] = v + std * s * torch.randn_like(v)
    s = input_std.get(f"{RHO}:matrix", (0.0, 1.0))[1]
    z = torch.randn_like(state.rho)
    rho = state.rho + std * s * 0.5 * (z + z.mH)
    return State._raw(fields, rho)


class WindowLoss(NamedTuple):
    total: torch.Tensor
    """the loss to backpropagate (scalar, in the model's dtype)"""
    parts: dict[str, float]
    """each logged part (`step:X`, `deriv:X`) with the weight it carries in `total`"""
    target_seconds: float
    """wall time spent on the exact-derivative targets (data work, not model work)"""


class Objective:
    """Eq. (11) over a window, with the unroll curriculum and noise of an `ObjectiveConfig`.

    `rhs` gives the exact time derivative of a float64 state (the System's `rhs`); `total_steps`
    is the length of training, which places the unroll curriculum.
    """

    def __init__(self, config: ObjectiveConfig, total_steps: int, rhs: Callable[[State], State]) -> None:
        self.config = config
        self.total_steps = total_steps
        self.rhs = rhs

    @property
    def max_window(self) -> int:
        """The longest window (in steps) any optimizer step asks for: what the sampler must provide."""
        return self.config.unroll.max_steps

    def unroll_length(self, step: int) -> int:
        """The number of unrolled steps k of optimizer step `step` (0-based)."""
        return self.config.unroll.length(step, self.total_steps)

    def window_loss(self, model: Surrogate, window: list[State]) -> WindowLoss:
        """The objective of one batch unrolled over `k = len(window) - 1` steps: `sum_j w**j * loss_j / k`.

        Step j starts from the model's own prediction of step j - 1 (not the true state), and the
        chain is not detached: gradients flow back through every earlier prediction. Each part
        is logged with the same weight `w**j / k`, so the logged total is the weighted sum of
        the logged parts, as for one step. Noise (if any) is drawn from torch's global RNG.
        """
        cfg = self.config
        k = len(window) - 1
        cur = model.prepare(window[0])
        if cfg.noise_std > 0:
            cur = perturb(cur, model.normalization.inputs, cfg.noise_std)
        total = torch.zeros((), dtype=model.dtype, device=model.device)
        parts: dict[str, float] = {}
        target_seconds = 0.0
        for j in range(k):
            t0 = time.perf_counter()
            with torch.no_grad():  # exact derivative target, at whatever state the network sees
                deriv = self.rhs(cur.detach().to(dtype=torch.float64)).to(device=model.device, dtype=model.dtype)
            target = model.prepare(window[j + 1])
            target_seconds += time.perf_counter() - t0
            pred, aux = model.predict(cur)
            loss_j, parts_j = model.loss(cur, deriv, target, aux=aux, derivative_weight=cfg.derivative_weight)
            w = cfg.unroll.step_weight**j
            total = total + w * loss_j / k
            for kk, v in parts_j.items():
                parts[kk] = parts.get(kk, 0.0) + w * v / k
            cur = pred  # feed back the prediction, kept in the graph (backpropagation through time)
        return WindowLoss(total, parts, target_seconds)

    @torch.no_grad()
    def pair_loss(self, model: Surrogate, current: State, nxt: State) -> float:
        """The one-step objective (no noise, no unrolling) of state pairs: the validation loss."""
        deriv = self.rhs(current)
        loss, _ = model.loss(
            model.prepare(current), model.prepare(deriv), model.prepare(nxt), derivative_weight=self.config.derivative_weight
        )
        return float(loss)
