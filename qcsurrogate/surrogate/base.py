"""The abstract `Surrogate`: a learned one-step map `state(t) -> state(t + dt)` wired from a graph.

A surrogate is built from what a System declares (dependency graph, boundary condition) plus a
pydantic config and fitted normalisation, so it never needs the System's code. Everything needed
to rebuild it is JSON (`spec()`); its weights are plain tensors (safetensors).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from ..graph import DependencyGraph
from ..state import RHO, State
from .normalization import Normalization


class SurrogateConfig(BaseModel):
    """Architecture options shared by the shipped surrogates (units: channels, probabilities)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("parc", description="registered surrogate name ('parc', 'cnn', or a plugin's)")
    width: int = Field(128, ge=4, le=4096, description="channels at the widest layer (paper: 128)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="channel-wise dropout probability")
    activation: Literal["gelu", "relu", "silu", "tanh"] = "gelu"
    complex_mode: Literal["complex", "split"] = Field(
        "complex", description="rho block as a true complex CNN, or a real CNN on (Re, Im) channels"
    )
    integrator_inputs: Literal["derivative", "block", "state"] = Field(
        "derivative",
        description="what the integrator S sees besides F's output: 'derivative' nothing else (Eq. 10, the paper), "
        "'block' F's own inputs, 'state' the whole state lifted to the block (what an O(dt^2) step needs)",
    )
    bilinear_inputs: bool = Field(
        False,
        description="also feed products of inputs (x_i rho_ij, x_j rho_ij in pair blocks; x_a x_b in site blocks): "
        "a generic multiplicative prior, beyond the paper",
    )
    linear_skip: bool = Field(
        False, description="add a linear 3-wide convolution from each CNN's input to its output (beyond the paper)"
    )
    init: Literal["random", "lstsq"] = Field(
        "random", description="'lstsq': start each linear skip at the least-squares local linear map (needs linear_skip)"
    )
    project_rho: bool = Field(False, description="project predicted rho on Hermitian matrices with the input trace")
    dtype: Literal["float32", "float64"] = "float32"

    @model_validator(mode="after")
    def _init_needs_skip(self) -> SurrogateConfig:
        if self.init == "lstsq" and not self.linear_skip:
            raise ValueError("init: lstsq fits the linear skip paths; set linear_skip: true")
        return self


def project_density_matrix(rho: torch.Tensor, trace: torch.Tensor) -> torch.Tensor:
    """Hermitian part of `rho` with its trace restored to `trace` (spread evenly over the diagonal)."""
    h = 0.5 * (rho + rho.mH)
    L = h.shape[-1]
    tr = torch.diagonal(h, dim1=-2, dim2=-1).sum(-1).real
    shift = ((trace.real - tr) / L).to(h.real.dtype)
    eye = torch.eye(L, dtype=h.dtype, device=h.device)
    return h + shift[..., None, None] * eye


class Surrogate(nn.Module, ABC):
    """A network that advances a State by one fixed step dt; `rollout` iterates it."""

    name: ClassVar[str]
    Config: ClassVar[type[SurrogateConfig]] = SurrogateConfig

    def __init__(
        self, graph: DependencyGraph, boundary: Literal["periodic", "open"], config: SurrogateConfig, normalization: Normalization
    ) -> None:
        super().__init__()
        self.graph = graph
        self.boundary = boundary
        self.config = config
        self.normalization = normalization
        self.field_names = tuple(v for v in graph.variables if v != RHO)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.config.dtype == "float32" else torch.float64

    @property
    def device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")

    # -- what every surrogate implements ---------------------------------------------------------
    @abstractmethod
    def predict(self, state: State) -> tuple[State, dict[str, torch.Tensor]]:
        """One step: the next state and any auxiliary outputs (normalised derivatives, ...)."""

    @abstractmethod
    def loss(
        self, state: State, derivative: State, next_state: State, aux: dict[str, torch.Tensor] | None = None,
        prediction: State | None = None, derivative_weight: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training objective for one step from `state`, given its exact derivative and the true next state.

        `aux`/`prediction` reuse a forward pass already made; `derivative_weight` scales any term
        that supervises an internal derivative estimate (Eq. 11's first term)."""

    # -- shared behaviour --------------------------------------------------------------------------
    def prepare(self, state: State) -> State:
        """Cast a state to the model's device and precision."""
        return state.to(device=self.device, dtype=self.dtype)

    def forward(self, state: State) -> State:
        nxt, _ = self.predict(state)
        return nxt

    def finish_step(self, state: State, nxt: State) -> State:
        if self.config.project_rho:
            trace = torch.diagonal(state.rho, dim1=-2, dim2=-1).sum(-1)
            nxt = State._raw(nxt.fields, project_density_matrix(nxt.rho, trace))
        return nxt

    @torch.no_grad()
    def rollout(self, state0: State, n_steps: int, save_every: int = 1) -> State:
        """Recurrent prediction from `state0`: `n_steps // save_every + 1` snapshots, t = 0 included."""
        if n_steps % save_every:
            raise ValueError(f"n_steps ({n_steps}) must be a multiple of save_every ({save_every})")
        was_training = self.training
        self.eval()
        y = self.prepare(state0)
        out = [y]
        for i in range(1, n_steps + 1):
            y = self(y)
            if i % save_every == 0:
                out.append(y)
        self.train(was_training)
        return State.stack(out)

    def spec(self) -> dict[str, Any]:
        """JSON needed to rebuild this surrogate (weights excluded)."""
        return {
            "surrogate": self.name,
            "graph": self.graph.to_dict(),
            "boundary": self.boundary,
            "config": self.config.model_dump(),
            "normalization": self.normalization.to_json(),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Surrogate:
        return cls(
            DependencyGraph.from_dict(spec["graph"]),
            spec["boundary"],
            cls.Config(**spec["config"]),
            Normalization.from_json(spec["normalization"]),
        )

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
