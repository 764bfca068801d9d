"""Per-variable scales fitted on training data and stored with the model.

Inputs are standardised per (variable, view) with scalar statistics (scalars, not per-site
statistics, so normalisation keeps translation equivariance). Derivatives and one-step increments
are only scaled, never shifted, so zero change stays zero change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..graph import Dependency, DependencyGraph, kind_of, reducing_views
from ..state import State


def input_key(dep: Dependency) -> str:
    return f"{dep.source}:{dep.resolved_view().name}"


def _all_dependencies(graph: DependencyGraph, orbitals: int = 1) -> list[Dependency]:
    """Every variable as itself and through the core's reducing views (what 'state' integrators read)."""
    out = [Dependency(v) for v in graph.variables]
    out += [Dependency(v, n) for v in graph.variables if kind_of(v) == "pair" for n in reducing_views(orbitals)]
    return out


def _rms(x: torch.Tensor) -> float:
    v = float(x.abs().pow(2).mean().sqrt())
    return v if v > 1e-12 else 1.0


@dataclass
class Normalization:
    """`inputs[key] = (mean, std)`; `derivative[var]` and `increment[var]` are RMS scales."""

    inputs: dict[str, tuple[complex | float, float]] = field(default_factory=dict)
    derivative: dict[str, float] = field(default_factory=dict)
    increment: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, graph: DependencyGraph, states: State, derivatives: State, increments: State) -> Normalization:
        """Fit on flattened samples: `states`, their exact derivatives and their one-step increments."""
        variables = states.variables()
        inputs: dict[str, tuple[Any, float]] = {}
        own = [(d, d.evaluate(variables)) for d in _all_dependencies(graph, states.orbitals)]
        for target in graph.variables:
            for dep, x in graph.gather(target, variables) + own:
                key = input_key(dep)
                if key in inputs:
                    continue
                mean = x.mean()
                std = _rms(x - mean)
                inputs[key] = (complex(mean) if mean.is_complex() else float(mean), std)
        return cls(
            inputs=inputs,
            derivative={v: _rms(derivatives[v]) for v in graph.variables},
            increment={v: _rms(increments[v]) for v in graph.variables},
        )

    def to_json(self) -> dict[str, Any]:
        def enc(m: complex | float) -> list[float]:
            return [m.real, m.imag] if isinstance(m, complex) else [m, 0.0]

        return {
            "inputs": {k: {"mean": enc(m), "std": s} for k, (m, s) in self.inputs.items()},
            "derivative": dict(self.derivative),
            "increment": dict(self.increment),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Normalization:
        inputs = {}
        for k, v in data["inputs"].items():
            re, im = v["mean"]
            inputs[k] = (complex(re, im) if im else float(re), float(v["std"]))
        return cls(inputs=inputs, derivative=dict(data["derivative"]), increment=dict(data["increment"]))

    @classmethod
    def identity(cls, graph: DependencyGraph, orbitals: int = 1) -> Normalization:
        """Unit scales (for tests and for building a model before data is seen)."""
        deps = [d for t in graph.variables for d in graph.inputs(t)] + _all_dependencies(graph, orbitals)
        inputs = {input_key(d): (0.0, 1.0) for d in deps}
        ones = {v: 1.0 for v in graph.variables}
        return cls(inputs=inputs, derivative=dict(ones), increment=dict(ones))
