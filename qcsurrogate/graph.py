"""The variable dependency graph: which variables, seen through which views, drive each derivative.

A System declares it as data (`Q <- P`, `P <- Q, diag(rho)`, `rho <- Q, rho` for Holstein); surrogates
read it to wire one block per variable with exactly the inputs the physics names. Views are named by
the graph and resolved through the registry (see views.py), so a plugin can add, say, a bond view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .state import RHO
from .views import CORE_REDUCING_VIEWS, Kind, View, available_views, get_view, reducing_views

__all__ = [
    "CORE_REDUCING_VIEWS",
    "Dependency",
    "DependencyGraph",
    "Kind",
    "View",
    "available_views",
    "get_view",
    "kind_of",
    "sites_of",
]


@dataclass(frozen=True)
class Dependency:
    """`source` seen through the view named `view` ('identity' for fields, 'matrix' for rho by default)."""

    source: str
    view: str | None = None

    def resolved_view(self) -> View:
        if self.view is not None:
            return get_view(self.view)
        return get_view("matrix" if self.source == RHO else "identity")

    def evaluate(self, variables: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """This view of `variables[source]`, given all variables (the fields' last axis is the number of
        sites a blocked view needs); its output shape is checked, so a view that cannot handle the
        state's orbitals fails here, by name."""
        x = variables[self.source]
        view = self.resolved_view()
        L = sites_of(variables)
        y = view(x, L)
        n = int(x.shape[-1]) if view.output_kind == "pair" and view.input_kind == "pair" else L
        want = (n,) if view.output_kind == "site" else (n, n)
        if tuple(y.shape[-len(want):]) != want:
            d = int(variables[RHO].shape[-1]) // L if RHO in variables else 1
            raise ValueError(
                f"view '{view.name}' of '{self.source}' returned shape {tuple(y.shape)}; a {view.output_kind} quantity of "
                f"this state ({L} sites, {d} orbital(s) per site) ends in {want}"
                + ("" if view.blocked else " (a view reading a matrix with several orbitals per site should be "
                   "declared blocked=True, to receive it as (*batch, L, L, d, d) site blocks)")
            )
        return y

    def label(self) -> str:
        v = self.resolved_view()
        return self.source if v.name in ("identity", "matrix") else f"{v.name}({self.source})"


def sites_of(variables: Mapping[str, torch.Tensor]) -> int:
    """The number of lattice sites L of a state's variables: the last axis of its (site) fields."""
    for name, t in variables.items():
        if name != RHO:
            return int(t.shape[-1])
    raise ValueError("a state needs at least one site field to know its number of sites")


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
        return [(d, d.evaluate(variables)) for d in self.edges[target]]

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
