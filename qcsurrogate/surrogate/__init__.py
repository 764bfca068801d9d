"""Neural surrogates of a System's dynamics, wired from its dependency graph."""

from __future__ import annotations

from .base import Surrogate


def builtin_surrogates() -> list[type[Surrogate]]:
    """Surrogate classes shipped with the core (registered by the core's own plugin)."""
    return []


__all__ = ["Surrogate", "builtin_surrogates"]
