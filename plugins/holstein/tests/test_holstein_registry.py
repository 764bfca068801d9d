"""Discovery through the entry point, parameter validation and the public parameter names."""

from __future__ import annotations

import pytest
import torch

import qcsurrogate
import qcsurrogate_holstein
from qcsurrogate import ConfigError, DependencyGraph
from qcsurrogate_holstein import HolsteinChain


def test_load_system_through_registry():
    system = qcsurrogate.load_system("holstein", L=8, g=0.8)
    assert isinstance(system, HolsteinChain) and system.name == "holstein"
    assert "holstein" in qcsurrogate.list_systems()
    info = qcsurrogate.list_plugins()["holstein"]
    assert info["version"] == qcsurrogate_holstein.__version__ == "0.1.0"
    assert info["systems"] == ["holstein"]


def test_defaults_and_derived_mass():
    p = HolsteinChain(L=8).params
    assert (p.hopping, p.g, p.K, p.omega, p.density_offset, p.boundary) == (1.0, 0.8, 1.0, 0.4, 0.5, "periodic")
    assert p.m == pytest.approx(6.25) and HolsteinChain(L=8, K=0.16).m == pytest.approx(1.0)
    assert HolsteinChain(L=8).field_names == ("Q", "P")
    assert HolsteinChain(L=4, boundary="open").boundary == "open"


@pytest.mark.parametrize(
    "params, key",
    [({"L": 1}, "L"), ({"L": 8, "gg": 1}, "gg"), ({"L": 8, "g": -0.1}, "g"), ({"L": 8, "hopping": 0}, "hopping"),
     ({"L": 8, "K": float("inf")}, "K"), ({"L": 8, "omega": 0}, "omega"), ({"L": 8, "density_offset": 1.5}, "density_offset"),
     ({"L": 8, "boundary": "twisted"}, "boundary"), ({}, "L")],
)  # fmt: skip
def test_parameter_errors_name_the_key(params, key):
    with pytest.raises(ConfigError, match=rf"(?m)^\s+{key}:"):
        qcsurrogate.load_system("holstein", **params)


def test_graph_and_describe():
    system = HolsteinChain(L=8)
    assert system.graph == DependencyGraph({"Q": ["P"], "P": ["Q", ("rho", "diagonal")], "rho": ["Q", "rho"]})
    d = system.describe()
    assert d["system"] == "holstein" and d["params"]["L"] == 8 and d["graph"]["P"] == [["Q", "identity"], ["rho", "diagonal"]]


def test_two_site_ring_counts_its_bond_twice():
    """H_ij = -t (d_{j,i+1} + d_{j,i-1}): on a ring of two both neighbours are the other site."""
    Q = torch.zeros(2, dtype=torch.float64)
    assert float(HolsteinChain(L=2, hopping=1.0).hamiltonian(Q)[0, 1]) == -2.0
    assert float(HolsteinChain(L=2, hopping=1.0, boundary="open").hamiltonian(Q)[0, 1]) == -1.0
    H = HolsteinChain(L=5, boundary="open", g=1.0).hamiltonian(torch.arange(5.0, dtype=torch.float64))
    assert float(H[0, 4]) == 0.0 and float(H[3, 3]) == -3.0 and torch.equal(H, H.mT)
