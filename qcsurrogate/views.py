"""Views: named maps from a variable to the quantity a derivative actually depends on.

Views are a registered kind, like systems and surrogates: the core's own (below) are registered by
the core's builtin plugin, a plugin's through its `register_views` hook, and the registry rejects a
name registered twice. This module holds only the `View` type, the core's views and the seam through
which names are resolved: graphs (graph.py) and surrogates look views up with `get_view`, which asks
the lookup the registry installs when it is imported (``import qcsurrogate`` imports it). So graph.py
never imports the registry, and no plugin has to register anything when its module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import torch

Kind = Literal["site", "pair"]
"""`site`: a 1D array over sites `(*batch, L)`; `pair`: a 2D array over site pairs `(*batch, L, L)`."""


@dataclass(frozen=True)
class View:
    """A named map from a variable to the quantity a derivative actually depends on.

    `fn` maps a batched tensor to a batched tensor and must accept the float32 / complex64 tensors
    surrogates use; it is differentiated through during training.
    """

    name: str
    input_kind: Kind
    output_kind: Kind
    fn: Callable[[torch.Tensor], torch.Tensor]
    doc: str = ""

    def __post_init__(self) -> None:
        kinds = get_args(Kind)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a view needs a non-empty name, got {self.name!r}")
        for attr in ("input_kind", "output_kind"):
            if getattr(self, attr) not in kinds:
                raise ValueError(f"view '{self.name}': {attr} must be one of {kinds}, got {getattr(self, attr)!r}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _bond(x: torch.Tensor) -> torch.Tensor:
    """x_{i, i+1} (wrapping at the end): the nearest-neighbour bond elements of a pair matrix."""
    return torch.diagonal(torch.roll(x, -1, dims=-1), dim1=-2, dim2=-1)


CORE_VIEWS: tuple[View, ...] = (
    View("identity", "site", "site", lambda x: x, "the site field itself"),
    View("matrix", "pair", "pair", lambda x: x, "the full pair matrix itself"),
    View(
        "diagonal",
        "pair",
        "site",
        lambda x: torch.diagonal(x, dim1=-2, dim2=-1).real,
        "real part of the diagonal of a pair matrix (site occupations n_i = rho_ii)",
    ),
    View("bond_real", "pair", "site", lambda x: _bond(x).real, "Re x_{i,i+1} (e.g. bond order)"),
    View("bond_imag", "pair", "site", lambda x: _bond(x).imag, "Im x_{i,i+1} (e.g. bond current)"),
)
"""The views every installation has (registered by the core's builtin plugin)."""

CORE_REDUCING_VIEWS = ("diagonal", "bond_real", "bond_imag")
"""Pair -> site views every installation has; what a 'state' integrator reads besides the graph's own
views (never plugin views a graph does not name, so a model's shape cannot depend on what is installed)."""

_CORE: dict[str, View] = {v.name: v for v in CORE_VIEWS}

ViewLookup = Callable[[], Mapping[str, View]]
"""Returns every registered view by name; the registry installs one with `set_view_lookup`."""

def _core_only() -> Mapping[str, View]:
    return _CORE


_lookup: ViewLookup = _core_only  # until the registry installs itself


def set_view_lookup(lookup: ViewLookup) -> None:
    """Install where view names resolve (the registry calls this once, when it is imported)."""
    global _lookup
    _lookup = lookup


def get_view(name: str) -> View:
    """The registered view called `name` (the core's own resolve without building the registry)."""
    if name in _CORE:
        return _CORE[name]
    views = _lookup()
    try:
        return views[name]
    except KeyError:
        raise KeyError(f"unknown view '{name}'; registered views: {sorted(views)}") from None


def available_views() -> list[str]:
    """Names of every registered view, sorted."""
    return sorted(_lookup())
