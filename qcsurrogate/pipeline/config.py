"""The run config: everything `qcsurrogate run` does, in one validated YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config import DataConfig, StrictModel, load_yaml
from ..surrogate.base import ModelConfig, PARCConfig, SurrogateConfig, config_for
from ..training.trainer import TrainConfig


class SplitConfig(StrictModel):
    """Split by whole trajectories (fractions of n_traj); one trajectory is used for all roles."""

    val_fraction: float = Field(0.125, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    seed: int = 0


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
