"""The dependency graph: the view registry, validation, serialisation and evaluation of views."""

from __future__ import annotations

import json

import pytest
import torch

import qcsurrogate
from qcsurrogate.graph import Dependency, DependencyGraph, View, available_views, get_view, kind_of
from qcsurrogate.state import RHO

TOY_EDGES = {"X": ["V"], "V": ["X", ("rho", "diagonal")], "rho": ["X", "rho"]}


def _bond_view(name: str = "bond") -> View:
    return View(name, "pair", "site", lambda x: torch.diagonal(x, offset=1, dim1=-2, dim2=-1).real, "bond")


@pytest.fixture
def views(clean_registry):
    """Views registered here go through the registry, which `clean_registry` restores after the test."""
    return clean_registry


# -- the view registry -------------------------------------------------------------------------------
def test_builtin_views():
    assert {"identity", "matrix", "diagonal", "bond_real", "bond_imag"} <= set(available_views())
    assert available_views() == sorted(available_views())
    d = get_view("diagonal")
    assert (d.input_kind, d.output_kind) == ("pair", "site")
    assert (get_view("identity").input_kind, get_view("identity").output_kind) == ("site", "site")
    assert (get_view("matrix").input_kind, get_view("matrix").output_kind) == ("pair", "pair")
    # registered by the core's own plugin, like its surrogates
    assert qcsurrogate.list_plugins()["qcsurrogate"]["views"] == ["identity", "matrix", "diagonal", "bond_real",
                                                                  "bond_imag", "spin_density_x", "spin_density_y", "spin_density_z",
        *(f"spin_bond_{p}_{a}" for p in ("real", "imag") for a in "xyz")]


def test_register_view_and_reject_duplicates(views):
    bond = _bond_view()
    assert qcsurrogate.register_view(bond) is bond
    assert get_view("bond") is bond and "bond" in available_views()
    assert views.list_plugins()["view:bond"]["views"] == ["bond"]
    with pytest.raises(views.RegistryError, match="view name 'bond' registered twice: by plugin 'view:bond'"):
        qcsurrogate.register_view(_bond_view(), name="another")
    with pytest.raises(views.RegistryError, match="by plugin 'qcsurrogate' .* and by plugin 'view:diagonal'"):
        qcsurrogate.register_view(View("diagonal", "pair", "site", lambda x: x))
    assert get_view("bond") is bond and get_view("diagonal").doc.startswith("real part")  # failures left no trace
    views.unregister_plugin("view:bond")
    assert "bond" not in available_views()


def test_views_fixture_isolates_registry():
    assert "bond" not in available_views()


def test_view_kinds_are_checked():
    with pytest.raises(ValueError, match="input_kind must be one of"):
        View("v", "bond", "site", lambda x: x)
    with pytest.raises(ValueError, match="non-empty name"):
        View("", "site", "site", lambda x: x)


def test_unknown_view_lists_registered_ones():
    with pytest.raises(KeyError, match=r"unknown view 'nope'.*'diagonal'.*'identity'.*'matrix'"):
        get_view("nope")
    with pytest.raises(KeyError, match="unknown view 'nope'"):
        DependencyGraph({"X": [("X", "nope")], "rho": ["rho"]})


# -- validation --------------------------------------------------------------------------------------
def test_valid_graph_normalises_dependencies():
    g = DependencyGraph(TOY_EDGES)
    assert g.variables == ("X", "V", "rho")
    assert g.inputs("V") == (Dependency("X"), Dependency("rho", "diagonal"))
    assert [d.resolved_view().name for d in g.inputs("rho")] == ["identity", "matrix"]
    assert [d.label() for d in g.inputs("V")] == ["X", "diagonal(rho)"]
    assert repr(g) == "DependencyGraph(X <- V; V <- X, diagonal(rho); rho <- X, rho)"
    assert kind_of(RHO) == "pair" and kind_of("X") == "site"
    # Dependency objects, bare names and (source, view) pairs or lists are equivalent spellings.
    g2 = DependencyGraph({"X": [Dependency("V")], "V": [("X", "identity"), ["rho", "diagonal"]], "rho": ["X", "rho"]})
    assert g2 == g


@pytest.mark.parametrize(
    ("edges", "match"),
    [
        ({"X": ["V"], "V": ["X"]}, "must give an entry for 'rho'"),
        ({"X": ["V"], "rho": ["rho"]}, "'X' depends on unknown variable 'V'"),
        ({"X": [], "rho": ["rho"]}, "'X' depends on nothing"),
        ({"X": ["rho"], "rho": ["rho"]}, "site variable 'X' cannot take the pair matrix 'rho' directly"),
        ({"X": [("rho", "matrix")], "rho": ["rho"]}, "give a view that reduces it"),
        ({"X": [("X", "diagonal")], "rho": ["rho"]}, "view 'diagonal' takes a pair variable but 'X' is site"),
        ({"X": ["X"], "rho": [("rho", "identity")]}, "view 'identity' takes a site variable but 'rho' is pair"),
        ({"X": ["X"], "rho": [("X", "matrix")]}, "view 'matrix' takes a pair variable"),
    ],
)
def test_validation_errors(edges, match):
    with pytest.raises(ValueError, match=match):
        DependencyGraph(edges)


def test_custom_view_usable_in_graph(views):
    qcsurrogate.register_view(_bond_view())
    g = DependencyGraph({"X": [("rho", "bond")], "rho": ["rho"]})
    assert g.inputs("X")[0].label() == "bond(rho)"


# -- serialisation -----------------------------------------------------------------------------------
def test_to_dict_from_dict_round_trip():
    g = DependencyGraph(TOY_EDGES)
    d = g.to_dict()
    assert d == {
        "X": [["V", "identity"]],
        "V": [["X", "identity"], ["rho", "diagonal"]],
        "rho": [["X", "identity"], ["rho", "matrix"]],
    }
    back = DependencyGraph.from_dict(json.loads(json.dumps(d)))
    assert back == g and back.to_dict() == d
    assert g != DependencyGraph({"X": ["X"], "V": ["V"], "rho": ["rho"]})
    assert g != "not a graph"


# -- evaluation --------------------------------------------------------------------------------------
def test_gather_evaluates_views():
    g = DependencyGraph(TOY_EDGES)
    rho = torch.tensor([[0.25, 0.1 + 0.2j], [0.1 - 0.2j, 0.75]], dtype=torch.complex128).expand(3, 2, 2)
    X = torch.randn(3, 2, dtype=torch.float64)
    V = torch.randn(3, 2, dtype=torch.float64)
    out = g.gather("V", {"X": X, "V": V, "rho": rho})
    assert [d.source for d, _ in out] == ["X", "rho"]
    assert out[0][1] is X
    diag = out[1][1]
    assert not diag.is_complex() and diag.dtype == torch.float64 and diag.shape == (3, 2)
    torch.testing.assert_close(diag, torch.tensor([0.25, 0.75], dtype=torch.float64).expand(3, 2))
    rho_in = g.gather("rho", {"X": X, "V": V, "rho": rho})
    assert rho_in[1][1] is rho and rho_in[0][1] is X


def test_gather_missing_variable():
    g = DependencyGraph(TOY_EDGES)
    with pytest.raises(KeyError):
        g.gather("V", {"X": torch.zeros(2)})


def test_toy_system_graph(toy):
    g = toy.graph
    assert g == DependencyGraph(TOY_EDGES)
    assert set(g.variables) == {*toy.field_names, RHO}


def test_spin_views_read_the_on_site_and_bond_blocks_in_the_pauli_basis():
    """With the orbital sums, the spin views give every real number of the 2x2 on-site and bond blocks:
    B = (tr B + sum_a tr(sigma^a B) sigma^a) / 2 rebuilds each block exactly."""
    from qcsurrogate.state import rho_blocks
    from qcsurrogate.testing import random_density_matrix

    L = 5
    rho = random_density_matrix(2 * L, 4, (3,), torch.Generator().manual_seed(0))
    sigma = {"x": torch.tensor([[0, 1], [1, 0]], dtype=rho.dtype), "y": torch.tensor([[0, -1j], [1j, 0]], dtype=rho.dtype),
             "z": torch.tensor([[1, 0], [0, -1]], dtype=rho.dtype)}
    blocks = rho_blocks(rho, L)
    for i in range(L):
        onsite, bond = blocks[:, i, i], blocks[:, i, (i + 1) % L]
        n = get_view("diagonal")(rho, L)[:, i]
        s = {a: get_view(f"spin_density_{a}")(rho, L)[:, i] for a in "xyz"}
        torch.testing.assert_close(onsite, (n[:, None, None] * torch.eye(2) + sum(s[a][:, None, None] * sigma[a]
                                                                                   for a in "xyz")) / 2)
        t0 = torch.complex(get_view("bond_real")(rho, L)[:, i], get_view("bond_imag")(rho, L)[:, i])
        t = {a: torch.complex(get_view(f"spin_bond_real_{a}")(rho, L)[:, i], get_view(f"spin_bond_imag_{a}")(rho, L)[:, i])
             for a in "xyz"}
        torch.testing.assert_close(bond, (t0[:, None, None] * torch.eye(2) + sum(t[a][:, None, None] * sigma[a]
                                                                                  for a in "xyz")) / 2)
    with pytest.raises(ValueError, match="the spin bond views need 2 orbitals per site"):
        get_view("spin_bond_real_x")(rho, 2 * L)
