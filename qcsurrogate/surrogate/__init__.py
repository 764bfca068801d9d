"""Neural surrogates of a System's dynamics, wired from its dependency graph."""

from __future__ import annotations

from .base import Surrogate, SurrogateConfig, project_density_matrix
from .normalization import Normalization
from .parc import PARC, PlainCNN


def builtin_surrogates() -> list[type[Surrogate]]:
    """Surrogate classes shipped with the core (registered by the core's own plugin)."""
    return [PARC, PlainCNN]


__all__ = ["PARC", "Normalization", "PlainCNN", "Surrogate", "SurrogateConfig", "builtin_surrogates", "project_density_matrix"]
