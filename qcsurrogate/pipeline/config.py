"""The run config: everything `qcsurrogate run` does, in one validated YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator

from ..config import DataConfig, StrictModel, load_yaml
from ..surrogate.base import ModelConfig, PARCConfig, SurrogateConfig, config_for
from ..training.source import Loading
from ..training.trainer import TrainConfig


class SplitConfig(StrictModel):
    """Split by whole trajectories (fractions of n_traj); one trajectory is used for all roles."""

    val_fraction: float = Field(0.125, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    seed: int = 0


class ClimateConfig(StrictModel):
    """Statistics of long rollouts against the truth on the held-out trajectories (`evaluation.climate`).

    Rollouts of `horizon` model steps from each of `starts` (default: the evaluation's starts) on every
    test trajectory; their first `discard` steps are left out of the statistics (not of the divergence
    check). See docs/surrogate.md, "Climate".
    """

    horizon: int = Field(1000, ge=2, description="model steps per rollout (clipped to what the test trajectories hold)")
    discard: int = Field(0, ge=0, description="leading model steps of each rollout left out of the statistics")
    starts: list[int] | None = Field(None, description="start snapshots; default: evaluation.starts")
    max_lag: int = Field(250, ge=1, description="largest lag (model steps) of the autocorrelation functions")
    bins: int = Field(40, ge=2, le=1000, description="histogram bins of each order's stationary distribution")
    range_factor: float = Field(
        1.1, ge=1.0, description="a rollout whose order leaves the truth's range widened by this factor is diverged")
    range_orders: list[str] | None = Field(
        None, description="observables the range rule watches (default: every one the System declares)")

    @field_validator("starts")
    @classmethod
    def _non_negative(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(s < 0 for s in v)):
            raise ValueError("climate.starts must be a non-empty list of snapshot indices >= 0")
        return v

    @model_validator(mode="after")
    def _window_left(self) -> ClimateConfig:
        if self.discard >= self.horizon - 1:
            raise ValueError(f"climate.discard ({self.discard}) must leave at least two steps of the "
                             f"{self.horizon}-step rollout")
        return self


class PredictabilityConfig(StrictModel):
    """The truth's own predictability on the evaluation's rollout windows (`evaluation.predictability`).

    The exact solver (the data file's method, integration step and save interval) is run from each start
    state, from that state with its fields perturbed by `perturbation` relative noise, and from that state
    plus the surrogate's one-step error; see docs/surrogate.md, "Predictability".
    """

    perturbation: float = Field(1e-6, gt=0.0, description="relative size of the noise added to the fields")
    seed: int = Field(0, ge=0, description="seed of that noise")
    threshold: float = Field(0.1, gt=0.0, description="total RMSE that ends the predictability horizon")
    compile: bool = Field(False, description="fuse the solver's steps with torch.compile (last-digit changes only)")


class EvalConfig(StrictModel):
    """Held-out evaluation: next-step RMSE and RMSE against the number of recurrent steps."""

    horizon: int = Field(400, ge=1, description="recurrent steps per rollout (400 x 0.08 = t 32, Fig. 2)")
    starts: list[int] = Field(default_factory=lambda: [0], description="start snapshots of the rollouts")
    next_step_max_pairs: int = Field(4096, ge=1)
    baselines: list[Literal["persistence"]] = Field(
        default_factory=lambda: ["persistence"],
        description="untrained reference predictors (trained ones are listed under the top-level `baselines`)",
    )
    figure_snapshots: int = Field(5, ge=2, le=12, description="columns of the snapshot figure")
    climate: ClimateConfig | None = Field(None, description="statistics of long rollouts (off when absent)")
    predictability: PredictabilityConfig | None = Field(
        None, description="growth of perturbations of the truth under the exact solver (off when absent)")

    @model_serializer(mode="wrap")
    def _omit_absent_blocks(self, handler: SerializerFunctionWrapHandler) -> dict:
        """An absent optional block is not written: a config without it keeps the digest it had before it existed."""
        out = handler(self)
        for key in ("climate", "predictability"):
            if out.get(key, 0) is None:
                del out[key]
        return out

    @field_validator("baselines", mode="before")
    @classmethod
    def _trained_elsewhere(cls, v: object) -> object:
        if isinstance(v, list) and "cnn" in v:
            raise ValueError("'cnn' is a trained model: list it in the top-level `baselines: [cnn]` so the run trains it")
        return v

    @field_validator("starts")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        if not v or any(s < 0 for s in v):
            raise ValueError("starts must be a non-empty list of snapshot indices >= 0")
        return v


class RunConfig(StrictModel):
    """Everything `qcsurrogate run` does, in one validated file."""

    name: str
    output_dir: Path = Field(description="run directory (overridable with --output)")
    description: str = ""
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    data: DataConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=PARCConfig)
    baselines: list[str] = Field(
        default_factory=list,
        description="other registered surrogates trained on the same data with `model`'s settings, e.g. [cnn] "
        "(the paper's single CNN of the same width); each is trained, evaluated and plotted beside `model`",
    )
    training: TrainConfig = Field(default_factory=TrainConfig)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    loading: Loading = Field(
        "auto",
        description="how training and evaluation read the trajectory file: 'memory' (load it whole), 'lazy' "
        "(read windows on demand, for files larger than memory) or 'auto' (in memory when it takes at most a "
        "quarter of the available memory). Results are identical either way, so it is no stage's input",
    )

    @field_validator("baselines")
    @classmethod
    def _known_surrogates(cls, names: list[str]) -> list[str]:
        from ..registry import RegistryError, get_surrogate_class

        for n in names:
            try:
                get_surrogate_class(n)
            except RegistryError as err:  # names the installed surrogates
                raise ValueError(str(err)) from None
        if len(set(names)) != len(names):
            raise ValueError(f"baselines lists a surrogate twice: {names}")
        return names

    @model_validator(mode="after")
    def _baseline_differs(self) -> RunConfig:
        if self.model.name in self.baselines:
            raise ValueError(f"baselines: '{self.model.name}' is already the run's model")
        return self

    def model_configs(self) -> dict[str, SurrogateConfig]:
        """The models this run trains, by label: 'model' (the run's surrogate) and each baseline's name."""
        out = {"model": self.model}
        for name in self.baselines:
            out[name] = config_for(name, self.model)
        return out


def load_run_config(path: str | Path) -> RunConfig:
    return load_yaml(path, RunConfig)
