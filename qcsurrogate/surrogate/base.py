"""The abstract `Surrogate`: a learned one-step map `state(t) -> state(t + dt)` wired from a graph.

A surrogate is built from what a System declares (dependency graph, boundary condition) plus a
pydantic config and fitted normalisation, so it never needs the System's code. Everything needed
to rebuild it is JSON (`spec()`); its weights are plain tensors (safetensors).
"""

from __future__ import annotations

import inspect
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializeAsAny,
    ValidationError,
    create_model,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from torch import nn

from ..constraints import Constraint, energy_projection, vector_length_projection
from ..graph import DependencyGraph
from ..state import RHO, State
from .normalization import Normalization

DEFAULT_SURROGATE = "parc"


def _projection_from_bool(value: Any) -> Any:
    """Configs written before 'spectrum' existed said `project_rho: true/false`."""
    if isinstance(value, bool):
        return "hermitian" if value else "none"
    return value


def _projection_to_bool(value: str) -> bool | str:
    """'none'/'hermitian' serialise as false/true, as before: configs and run identities stay unchanged."""
    return {"none": False, "hermitian": True}.get(value, value)


RhoProjection = Annotated[
    Literal["none", "hermitian", "spectrum"], BeforeValidator(_projection_from_bool), PlainSerializer(_projection_to_bool),
]


class SurrogateConfig(BaseModel):
    """Base of every surrogate's config: the `model:` block of a run config, selected by `name`.

    Each registered surrogate class owns a subclass (`Surrogate.Config`) whose `name` is the
    literal registered name; `ModelConfig` / `parse_model_config` pick that subclass by `name` and
    validate the whole block with it, so a plugin surrogate gets its own validated options.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="registered surrogate name ('parc', 'cnn', or a plugin's)")
    project_rho: RhoProjection = Field(
        "none",
        description="constraint applied to each predicted rho: 'hermitian' its Hermitian part with the input's trace; "
        "'spectrum' also the input's eigenvalues (unitary evolution conserves them); true/false mean 'hermitian'/'none'",
    )
    conserve_energy: bool = Field(
        False,
        description="restore the input's total energy after every step by moving the classical fields along the "
        "gradient of System.energy (needs the System: the pipeline attaches it, or Surrogate.attach_system)",
    )
    conserve_vector_lengths: bool = Field(
        False,
        description="give every declared vector field (System.vector_fields) its input's per-site length after every "
        "step: for vectors the equations keep at fixed length, e.g. classical unit spins (needs the System, as "
        "conserve_energy)",
    )
    dtype: Literal["float32", "float64"] = "float32"

    INFERENCE_ONLY: ClassVar[tuple[str, ...]] = ("conserve_energy", "conserve_vector_lengths")
    """Options that act at inference only (see `Surrogate.attach_system`): not inputs of training. All
    default to False and were added after run identities were first recorded."""

    def training_identity(self) -> dict[str, Any]:
        """The options that determine the trained weights (the train stage's input): the dump without the
        inference-only settings."""
        data = self.model_dump(mode="json")
        for key in self.INFERENCE_ONLY:
            data.pop(key, None)
        return data

    def inference_options(self) -> dict[str, Any]:
        """The inference-only settings that are switched on (`{}` for a config without any): changing them
        redoes evaluation, not training."""
        return {key: getattr(self, key) for key in self.INFERENCE_ONLY if getattr(self, key)}

    OMIT_AT_DEFAULT: ClassVar[dict[str, Any]] = {"conserve_energy": False, "conserve_vector_lengths": False}
    """Options added after run identities were first recorded, with their defaults: omitted from dumps
    there, so configs (and the run stages digested from them) that do not use them keep their identity."""

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for key, default in self.OMIT_AT_DEFAULT.items():
            if key in data and data[key] == default:
                del data[key]
        return data


class CNNConfig(SurrogateConfig):
    """Architecture options shared by the shipped graph-wired CNN surrogates (units: channels, probabilities)."""

    width: int = Field(128, ge=4, le=4096, description="channels at the widest layer (paper: 128)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="channel-wise dropout probability")
    activation: Literal["gelu", "relu", "silu", "tanh"] = "gelu"
    complex_mode: Literal["complex", "split"] = Field(
        "complex", description="rho block as a true complex CNN, or a real CNN on (Re, Im) channels"
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
    autocast: Literal["none", "bf16"] = Field(
        "none",
        description="'bf16': the CNNs compute in bfloat16 under torch.autocast (faster on GPUs with bf16 units), "
        "their outputs and the state stay in float32; the ground truth never does",
    )

    OMIT_AT_DEFAULT: ClassVar[dict[str, Any]] = {**SurrogateConfig.OMIT_AT_DEFAULT, "autocast": "none"}

    @model_validator(mode="after")
    def _init_needs_skip(self) -> CNNConfig:
        if self.init == "lstsq" and not self.linear_skip:
            raise ValueError("init: lstsq fits the linear skip paths; set linear_skip: true")
        if self.autocast != "none" and self.dtype != "float32":
            raise ValueError(f"autocast: {self.autocast} needs dtype: float32 (mixed precision lowers float32 "
                             f"convolutions), got dtype: {self.dtype}")
        return self


IntegratorInputs = Literal["derivative", "block", "state"]


class PARCConfig(CNNConfig):
    """PARC: a differentiator F and an integrator S per variable (the paper's architecture)."""

    name: Literal["parc"] = Field("parc", description="registered surrogate name")
    integrator_inputs: IntegratorInputs = Field(
        "derivative",
        description="what the integrator S sees besides F's output: 'derivative' nothing else (Eq. 10, the paper), "
        "'block' F's own inputs, 'state' the whole state lifted to the block (what an O(dt^2) step needs)",
    )


class PlainCNNConfig(CNNConfig):
    """The single-CNN baseline: sized to match a PARC of the same `width` and `integrator_inputs`."""

    name: Literal["cnn"] = Field("cnn", description="registered surrogate name")
    integrator_inputs: IntegratorInputs = Field(
        "derivative", description="the parameter budget only: that of a PARC with these integrator inputs"
    )


# -- choosing the config class by name ------------------------------------------------------------
def surrogate_config_class(name: str) -> type[SurrogateConfig]:
    """The Config class of the registered surrogate `name` (RegistryError if none is installed)."""
    from ..registry import get_surrogate_class

    return get_surrogate_class(name).Config


def _reraise(err: ValidationError, cls: type[BaseModel]) -> ValidationError:
    """The same errors, for re-raising from a validator (pydantic then nests their locations)."""
    details = [
        InitErrorDetails(type=PydanticCustomError(e["type"], "{msg}", {"msg": e["msg"]}), loc=e["loc"], input=e["input"])
        for e in err.errors(include_url=False)
    ]
    return ValidationError.from_exception_data(cls.__name__, details)


def parse_model_config(data: Any) -> SurrogateConfig:
    """Validate a `model:` block (mapping or config) with the Config of the surrogate its `name` selects.

    `name` defaults to 'parc'. Unknown names are an error listing the installed surrogates; every
    other error is the selected Config's own, located under the block.
    """
    from ..registry import RegistryError

    if isinstance(data, SurrogateConfig):
        data = data.model_dump()
    if not isinstance(data, Mapping):
        raise PydanticCustomError("model_type", "{msg}", {"msg": f"expected a mapping of model options, got {type(data).__name__}"})
    name = data.get("name", DEFAULT_SURROGATE)
    if not isinstance(name, str):
        raise ValidationError.from_exception_data(
            "SurrogateConfig", [InitErrorDetails(type="string_type", loc=("name",), input=name)]
        )
    try:
        cls = surrogate_config_class(name)
    except RegistryError as err:
        raise ValidationError.from_exception_data(
            "SurrogateConfig",
            [InitErrorDetails(type=PydanticCustomError("unknown_surrogate", "{msg}", {"msg": str(err)}), loc=("name",), input=name)],
        ) from None
    try:
        return cls.model_validate({**data, "name": name})
    except ValidationError as err:
        raise _reraise(err, cls) from None


ModelConfig = Annotated[SurrogateConfig, BeforeValidator(parse_model_config), SerializeAsAny()]
"""The run config's `model:` field type: `model: ModelConfig = Field(default_factory=PARCConfig)`.

Validates with the Config of the surrogate named by `name` and serialises with that class's fields."""


def config_for(name: str, config: SurrogateConfig) -> SurrogateConfig:
    """A config for surrogate `name` sharing every option of `config` that `name`'s Config accepts.

    E.g. `config_for("cnn", parc_config)` is the single-CNN baseline of the same width, activation,
    dtype, ... (and the same parameter budget)."""
    cls = surrogate_config_class(name)
    shared = {k: v for k, v in config.model_dump().items() if k in cls.model_fields}
    return cls.model_validate({**shared, "name": name})


def build_surrogate(name: str, system: Any, config: SurrogateConfig, normalization: Normalization) -> Surrogate:
    """The registered surrogate `name` for `system` (its `graph` and `boundary`).

    `config` may be any surrogate's config: it is carried over with `config_for(name, config)`, so
    the main model's `model:` block also sizes the single-CNN baseline."""
    from ..registry import get_surrogate_class

    cls = get_surrogate_class(name)
    model = construct_surrogate(cls, system.graph, system.boundary, config_for(name, config), normalization,
                                orbitals=int(getattr(system, "orbitals", 1)))
    return model.attach_system(system)


def _takes_orbitals(cls: type[Surrogate]) -> bool:
    params = inspect.signature(cls.__init__).parameters.values()
    return any(p.name == "orbitals" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def construct_surrogate(
    cls: type[Surrogate], graph: DependencyGraph, boundary: Literal["periodic", "open"], config: SurrogateConfig,
    normalization: Normalization, orbitals: int = 1,
) -> Surrogate:
    """`cls(graph, boundary, config, normalization, orbitals=orbitals)`, for surrogate classes written before
    orbitals existed too: those are built without the keyword, and only for one orbital per site."""
    if _takes_orbitals(cls):
        return cls(graph, boundary, config, normalization, orbitals=orbitals)
    if orbitals != 1:
        raise TypeError(f"surrogate '{cls.name}' ({cls.__qualname__}) does not take `orbitals`, so it cannot model a "
                        f"system with {orbitals} orbitals per site; its __init__ needs an `orbitals: int` keyword")
    return cls(graph, boundary, config, normalization)


def project_density_matrix(rho: torch.Tensor, trace: torch.Tensor) -> torch.Tensor:
    """Hermitian part of `rho` with its trace restored to `trace` (spread evenly over the L*d diagonal entries)."""
    h = 0.5 * (rho + rho.mH)
    N = h.shape[-1]
    tr = torch.diagonal(h, dim1=-2, dim2=-1).sum(-1).real
    shift = ((trace.real - tr) / N).to(h.real.dtype)
    eye = torch.eye(N, dtype=h.dtype, device=h.device)
    return h + shift[..., None, None] * eye


def project_spectrum(rho: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The matrix with `rho`'s Hermitian eigenvectors and `reference`'s eigenvalues.

    The von Neumann equation with a Hermitian one-body Hamiltonian moves rho along its isospectral
    manifold (occupations, trace, purity and every tr(rho^k) are conserved); a predicted rho drifts off
    it and this brings it back to the nearest point with the same eigenvectors. Eigenvalues are paired
    in ascending order. Bounded by construction: rho can no longer grow, whatever the network does.
    """
    # In double precision whatever the model's: over 1000+ steps (each step's reference is the previous
    # projection) single-precision eigen-solves bias the trace by ~1e-6 per step (measured 1e-3 in 1200).
    wide = torch.complex128
    ref, mat = reference.to(wide), rho.to(wide)
    occupations = torch.linalg.eigvalsh(0.5 * (ref + ref.mH))
    _, vectors = torch.linalg.eigh(0.5 * (mat + mat.mH))
    return ((vectors * occupations.to(wide)[..., None, :]) @ vectors.mH).to(rho.dtype)


class Surrogate(nn.Module, ABC):
    """A network that advances a State by one fixed step dt; `rollout` iterates it.

    A subclass sets `name` (its registered name) and `Config` (a `SurrogateConfig` subclass whose
    `name` is `Literal[<name>]`). A named subclass that does not declare its own `Config` gets one
    derived from its parent's, with only `name` changed, so `class MyPARC(PARC): name = "my-parc"`
    is selected by `model: {name: my-parc, ...}` and accepts PARC's options.
    """

    name: ClassVar[str]
    Config: ClassVar[type[SurrogateConfig]] = SurrogateConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return
        if "Config" not in cls.__dict__:
            cls.Config = create_model(
                f"{cls.__name__}Config", __base__=cls.Config, __module__=cls.__module__,
                __doc__=f"Options of the '{cls.name}' surrogate.",
                name=(Literal[cls.name], Field(cls.name, description="registered surrogate name")),
            )
        default = cls.Config.model_fields["name"].default
        if default != cls.name:
            raise TypeError(f"{cls.__name__}.Config must declare `name: Literal['{cls.name}'] = '{cls.name}'` "
                            f"(its name defaults to {default!r})")

    def __init__(
        self, graph: DependencyGraph, boundary: Literal["periodic", "open"], config: SurrogateConfig,
        normalization: Normalization, *, orbitals: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(orbitals, int) or orbitals < 1:
            raise ValueError(f"orbitals must be a positive int, got {orbitals!r}")
        self.constraints: list[Constraint] = []
        self.graph = graph
        self.boundary = boundary
        self.config = config
        self.normalization = normalization
        self.orbitals = orbitals
        """Orbitals per site `d` of the states this surrogate steps (rho is `(L*d) x (L*d)`)."""
        self.field_names = tuple(v for v in graph.variables if v != RHO)

    def check_orbitals(self, state: State) -> None:
        """A clear error for a state with another number of orbitals per site than the model was built for."""
        if state.orbitals != self.orbitals:
            raise ValueError(f"this '{self.name}' surrogate was built for {self.orbitals} orbital(s) per site; the state "
                             f"has {state.orbitals} (rho {tuple(state.rho.shape[-2:])} for L={state.L} sites)")

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
        derivative_weight: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training objective for one step from `state`, given its exact derivative and the true next state.

        `aux` reuses the auxiliary outputs of a `predict(state)` already made; `derivative_weight`
        scales any term that supervises an internal derivative estimate (Eq. 11's first term)."""

    # -- optional hooks --------------------------------------------------------------------------
    def initialize_from_data(self, current: State, derivative: State, nxt: State) -> dict[str, float]:
        """Data-dependent initialisation before training, from sample states (batch axes first).

        `current` are training states, `derivative` their exact time derivatives (`system.rhs`),
        `nxt` the true states one step `dt` later, all on the CPU in the data's precision. Called
        once on a freshly built model, before it is moved to its device and before the first
        optimizer step (never on resume: the checkpoint's weights replace whatever this sets).
        Returns a report `{name: value}` (e.g. residuals) for the log; `{}` means nothing was done.
        The default does nothing; PARC and the single-CNN baseline fit their linear skips by least
        squares when their config says `init: lstsq`.
        """
        return {}

    # -- shared behaviour --------------------------------------------------------------------------
    def prepare(self, state: State) -> State:
        """Cast a state to the model's device and precision."""
        return state.to(device=self.device, dtype=self.dtype)

    def forward(self, state: State) -> State:
        nxt, _ = self.predict(state)
        return nxt

    def finish_step(self, state: State, nxt: State) -> State:
        """Apply the config's constraints to a predicted step (`state` is the step's input).

        'spectrum' projects with eigenvectors, whose gradient is ill-conditioned where occupations are
        degenerate (rho has mostly 0s and 1s), so in training it passes gradients straight through the
        projection (the forward value is the projected rho, the backward the identity). The System's
        constraints (`attach_system`) act in eval mode only."""
        mode = self.config.project_rho
        if mode == "hermitian":
            trace = torch.diagonal(state.rho, dim1=-2, dim2=-1).sum(-1)
            nxt = State._raw(nxt.fields, project_density_matrix(nxt.rho, trace))
        elif mode == "spectrum":
            projected = project_spectrum(nxt.rho.detach(), state.rho.detach())
            rho = nxt.rho + (projected - nxt.rho).detach() if torch.is_grad_enabled() else projected
            nxt = State._raw(nxt.fields, rho)
        if self.training:
            return nxt
        wanted = self.config.inference_options()
        if wanted and not self.constraints:
            raise RuntimeError(f"this '{self.name}' surrogate has model options {sorted(wanted)}, which need its "
                               "System: call attach_system(system), or load_model(..., system=system)")
        for constraint in self.constraints:
            nxt = constraint(state, nxt)
        return nxt

    def attach_system(self, system: Any) -> Surrogate:
        """Set up the constraints the config asks for that need the System's equations (not persisted).

        They act in eval mode only (rollouts, evaluation, validation), not in training's unrolled steps:
        there the energy correction, driven mostly by the error of rho, moves the fields by amounts the
        straight-through gradient cannot see, and training got worse (measured in docs/results.md).
        Called by `build_surrogate` and the pipeline; a surrogate loaded by hand calls it itself. With both
        energy and vector lengths, one projection restores the energy on the vectors' spheres."""
        lengths = bool(getattr(self.config, "conserve_vector_lengths", False))
        if self.config.conserve_energy:  # with the lengths: energy restored on the vectors' spheres
            self.constraints = [energy_projection(system, keep_vector_lengths=lengths)]
        else:
            self.constraints = [vector_length_projection(system)] if lengths else []
        return self

    rollout_compile: bool = False
    """What `rollout(..., compile=None)` does; `load_model(..., compile=True)` sets it on the loaded model."""

    def inference_step(self, compile: bool = False) -> Callable[[State], State]:
        """One step `state -> next state` for inference: no autograd, the model's device and precision.

        Call it in eval mode (`rollout` does). With `compile`, the step is `torch.compile`d for the
        shapes it meets (static shapes: each new batch size or L is a new trace, tens of seconds on a
        CPU, so compile for long rollouts of one shape). The compiled function is cached on the model
        per torch thread count (Inductor generates its CPU code for one) and owns a private code
        object, so models do not share dynamo's per-code cache and its recompile limit. A compiled step
        agrees with the eager one to the precision's round-off (a few 1e-8 in float32), not bit for
        bit; training never uses it.
        """
        if not compile:
            return self._eager_step
        key = torch.get_num_threads()
        cache = self.__dict__.setdefault("_compiled_steps", {})
        if key not in cache:
            model = self

            def step(state: State) -> State:
                with torch.no_grad():
                    return model(model.prepare(state))

            own = types.FunctionType(step.__code__.replace(), step.__globals__, step.__name__, None, step.__closure__)
            cache[key] = torch.compile(own, dynamic=False)
        return cache[key]

    def _eager_step(self, state: State) -> State:
        with torch.no_grad():
            return self(self.prepare(state))

    @torch.no_grad()
    def rollout(self, state0: State, n_steps: int, save_every: int = 1, *, compile: bool | None = None) -> State:
        """Recurrent prediction from `state0`: `n_steps // save_every + 1` snapshots, t = 0 included.

        All batch entries of `state0` advance together (one network call per step). `compile`
        (default: `self.rollout_compile`, False unless the model was loaded with `compile=True`) uses
        the compiled step of `inference_step`: faster for long or large rollouts, equal to round-off.
        """
        if n_steps % save_every:
            raise ValueError(f"n_steps ({n_steps}) must be a multiple of save_every ({save_every})")
        step = self.inference_step(self.rollout_compile if compile is None else compile)
        was_training = self.training
        self.eval()
        try:
            y = self.prepare(state0)
            out = [y]
            for i in range(1, n_steps + 1):
                y = step(y)
                if i % save_every == 0:
                    out.append(y)
        finally:
            self.train(was_training)
        return State.stack(out)

    def spec(self) -> dict[str, Any]:
        """JSON needed to rebuild this surrogate (weights excluded). `orbitals` is written only when it is
        not 1, so specs of one-orbital models are what they were before orbitals existed (and a spec
        without it means 1)."""
        spec: dict[str, Any] = {
            "surrogate": self.name,
            "graph": self.graph.to_dict(),
            "boundary": self.boundary,
            "config": self.config.model_dump(),
            "normalization": self.normalization.to_json(),
        }
        if self.orbitals != 1:
            spec["orbitals"] = self.orbitals
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Surrogate:
        """Rebuild from `spec()`. The class, not the saved config, decides the name: specs written
        before configs were per-surrogate may lack `name` in their config."""
        orbitals = spec.get("orbitals", 1)
        if not isinstance(orbitals, int) or isinstance(orbitals, bool) or orbitals < 1:
            raise ValueError(f"'orbitals' must be a positive integer, got {orbitals!r}")
        return construct_surrogate(
            cls,
            DependencyGraph.from_dict(spec["graph"]),
            spec["boundary"],
            cls.Config.model_validate({**spec["config"], "name": cls.name}),
            Normalization.from_json(spec["normalization"]),
            orbitals=orbitals,
        )

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
