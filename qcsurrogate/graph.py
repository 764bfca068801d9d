"""The variable dependency graph: which variables, seen through which views, drive each derivative.

A System declares it as data (`Q <- P`, `P <- Q, diag(rho)`, `rho <- Q, rho` for Holstein); surrogates
read it to wire one block per variable with exactly the inputs the physics names. Views are explicit
objects in an extensible registry so a plugin can add, say, a nearest-neighbour bond view.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from .state import RHO

Kind = Literal["site", "pair"]
"""`site`: a 1D array over sites `(*batch, L)`; `pair`: a 2D array over site pairs `(*batch, L, L)`."""


@dataclass(frozen=True)
class View:
    """A named map from a variable to the quantity a derivative actually depends on."""

    name: str
    input_kind: Kind
    output_kind: Kind
    fn: Callable[[torch.Tensor], torch.Tensor]
    doc: str = ""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


_VIEWS: dict[str, View] = {}


def register_view(view: View, *, replace: bool = False) -> View:
    """Add a view to the registry; names are unique unless `replace=True`."""
    if view.name in _VIEWS and not replace:
        raise ValueError(f"a view named '{view.name}' is already registered")
    _VIEWS[view.name] = view
    return view


def get_view(name: str) -> View:
    if name not in _VIEWS:
        from .registry import get_registry  # plugins register their views when imported

        get_registry()
    try:
        return _VIEWS[name]
    except KeyError:
        raise KeyError(f"unknown view '{name}'; registered views: {sorted(_VIEWS)}") from None


def available_views() -> list[str]:
    return sorted(_VIEWS)


register_view(View("identity", "site", "site", lambda x: x, "the site field itself"))
register_view(View("matrix", "pair", "pair", lambda x: x, "the full pair matrix itself"))
register_view(
    View(
        "diagonal",
        "pair",
        "site",
        lambda x: torch.diagonal(x, dim1=-2, dim2=-1).real,
        "real part of the diagonal of a pair matrix (site occupations n_i = rho_ii)",
    )
)




def _bond(x: torch.Tensor) -> torch.Tensor:
    """x_{i, i+1} (wrapping at the end): the nearest-neighbour bond elements of a pair matrix."""
    return torch.diagonal(torch.roll(x, -1, dims=-1), dim1=-2, dim2=-1)


register_view(View("bond_real", "pair", "site", lambda x: _bond(x).real, "Re x_{i,i+1} (e.g. bond order)"))
register_view(View("bond_imag", "pair", "site", lambda x: _bond(x).imag, "Im x_{i,i+1} (e.g. bond current)"))


CORE_REDUCING_VIEWS = ("diagonal", "bond_real", "bond_imag")
"""Pair -> site views every installation has; what a 'state' integrator reads besides the graph's own
views (never plugin views a graph does not name, so a model's shape cannot depend on what is installed)."""


@dataclass(frozen=True)
class Dependency:
    """`source` seen through the view named `view` ('identity' for fields, 'matrix' for rho by default)."""

    source: str
    view: str | None = None

    def resolved_view(self) -> View:
        if self.view is not None:
            return get_view(self.view)
        return get_view("matrix" if self.source == RHO else "identity")

    def label(self) -> str:
        v = self.resolved_view()
        return self.source if v.name in ("identity", "matrix") else f"{v.name}({self.source})"


def kind_of(variable: str) -> Kind:
    """Fields live on sites, the density matrix on site pairs."""
    return "pair" if variable == RHO else "site"


class DependencyGraph:
    """`{target: (Dependency, ...)}` for every dynamical variable; validated on construction."""

    def __init__(self, edges: Mapping[str, Sequence[Dependency | str | tuple[str, str]]]) -> None:
        norm: dict[str, tuple[Dependency, ...]] = {}
        for target, deps in edges.items():
            items = []
            for d in deps:
                if isinstance(d, Dependency):
                    items.append(d)
                elif isinstance(d, str):
                    items.append(Dependency(d))
                else:
                    items.append(Dependency(*d))
            norm[target] = tuple(items)
        self.edges = norm
        self._validate()

    def _validate(self) -> None:
        if RHO not in self.edges:
            raise ValueError("the dependency graph must give an entry for 'rho'")
        for target, deps in self.edges.items():
            if not deps:
                raise ValueError(f"variable '{target}' depends on nothing; give at least one input")
            for d in deps:
                if d.source not in self.edges:
                    raise ValueError(f"'{target}' depends on unknown variable '{d.source}'")
                view = d.resolved_view()
                if view.input_kind != kind_of(d.source):
                    raise ValueError(
                        f"view '{view.name}' takes a {view.input_kind} variable but '{d.source}' is {kind_of(d.source)}"
                    )
                if kind_of(target) == "site" and view.output_kind == "pair":
                    raise ValueError(
                        f"site variable '{target}' cannot take the pair matrix '{d.source}' directly; "
                        "give a view that reduces it to sites (e.g. 'diagonal')"
                    )

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self.edges)

    def inputs(self, target: str) -> tuple[Dependency, ...]:
        return self.edges[target]

    def gather(self, target: str, variables: Mapping[str, torch.Tensor]) -> list[tuple[Dependency, torch.Tensor]]:
        """Evaluate the views that feed `target` on concrete tensors."""
        return [(d, d.resolved_view()(variables[d.source])) for d in self.edges[target]]

    def to_dict(self) -> dict[str, list[list[str]]]:
        """JSON form (stored with trained models and trajectory files)."""
        return {t: [[d.source, d.resolved_view().name] for d in deps] for t, deps in self.edges.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[Sequence[str]]]) -> DependencyGraph:
        return cls({t: [Dependency(s, v) for s, v in deps] for t, deps in data.items()})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DependencyGraph) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        body = "; ".join(f"{t} <- {', '.join(d.label() for d in deps)}" for t, deps in self.edges.items())
        return f"DependencyGraph({body})"
