"""Neural surrogates of a System's dynamics, wired from its dependency graph."""

from __future__ import annotations

from .base import (
    CNNConfig,
    ModelConfig,
    PARCConfig,
    PlainCNNConfig,
    Surrogate,
    SurrogateConfig,
    build_surrogate,
    config_for,
    construct_surrogate,
    parse_model_config,
    project_density_matrix,
    surrogate_config_class,
)
from .normalization import Normalization
from .parc import PARC, PlainCNN


def builtin_surrogates() -> list[type[Surrogate]]:
    """Surrogate classes shipped with the core (registered by the core's own plugin)."""
    return [PARC, PlainCNN]


__all__ = [
    "PARC",
    "CNNConfig",
    "ModelConfig",
    "Normalization",
    "PARCConfig",
    "PlainCNN",
    "PlainCNNConfig",
    "Surrogate",
    "SurrogateConfig",
    "build_surrogate",
    "builtin_surrogates",
    "config_for",
    "construct_surrogate",
    "parse_model_config",
    "project_density_matrix",
    "surrogate_config_class",
]
