"""How a graph surrogate wires its CNNs from the graph and the config: which views a 'state' integrator
reads, and that every CNN is built with the configured boundary, activation, dropout and skip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qcsurrogate import DependencyGraph, register_view
from qcsurrogate.graph import View
from qcsurrogate.surrogate import PARC, Normalization, PlainCNN
from qcsurrogate.surrogate.layers import Conv
from qcsurrogate.surrogate.parc import state_dependencies

GRAPH = DependencyGraph({"X": ["V"], "V": ["X", ("rho", "diagonal")], "rho": ["X", "rho"]})


@pytest.fixture
def custom_views(clean_registry):
    """A pair -> site view and a pair -> pair view a plugin might register (removed afterwards)."""
    register_view(View("test_wiring_antidiag", "pair", "site", lambda x: torch.flip(x, (-1,)).diagonal(dim1=-2, dim2=-1).real))
    register_view(View("test_wiring_conj", "pair", "pair", lambda x: x.conj()))


def test_state_dependencies_add_the_pair_to_site_views_the_graph_names(custom_views):
    g = DependencyGraph({
        "X": [("rho", "test_wiring_antidiag")], "V": ["X"], "rho": ["X", ("rho", "test_wiring_conj")],
    })
    site = [d.label() for d in state_dependencies(g, "X")]
    assert site == ["X", "V", "bond_imag(rho)", "bond_real(rho)", "diagonal(rho)", "test_wiring_antidiag(rho)"]
    assert [d.label() for d in state_dependencies(g, "V")] == site
    # pair blocks see every field and the pair matrix itself, whatever views the graph names
    assert [d.label() for d in state_dependencies(g, "rho")] == ["X", "V", "rho"]


def _nets(model):
    if isinstance(model, PARC):
        return {f"{k}:{t}": n for k, d in (("F", model.differentiators), ("S", model.integrators)) for t, n in d.items()}
    return dict(model.nets.items())


@pytest.mark.parametrize("cls", [PARC, PlainCNN])
@pytest.mark.parametrize(("boundary", "complex_mode", "act", "fn", "dropout", "skip"), [
    ("open", "complex", "tanh", torch.tanh, 0.2, True),
    ("periodic", "split", "silu", F.silu, 0.0, False),
])
def test_every_cnn_follows_the_config(cls, boundary, complex_mode, act, fn, dropout, skip):
    torch.manual_seed(0)
    cfg = cls.Config(width=8, activation=act, dropout=dropout, linear_skip=skip, complex_mode=complex_mode)
    model = cls(GRAPH, boundary, cfg, Normalization.identity(GRAPH))
    width = 8 if cls is PARC else model.matched_width
    for name, net in _nets(model).items():
        pair = name.endswith("rho")
        assert net.act is fn and net.drop.p == dropout, name
        assert (net.skip is not None) == skip, name
        assert net.wide.weight.shape[0] == width, name
        for conv in net.modules():
            if isinstance(conv, Conv):
                assert conv.boundary == boundary, name
                assert conv.dim == (2 if pair else 1), name
                assert conv.complex == (pair and complex_mode == "complex"), name
        assert net.drop.complex == (pair and complex_mode == "complex"), name


@pytest.mark.parametrize("complex_mode", ["complex", "split"])
@pytest.mark.parametrize("bilinear", [False, True])
def test_pair_block_with_two_pair_inputs(custom_views, complex_mode, bilinear):
    """Every pair input is its own channel: rho and conj(rho) alongside X_i, X_j (and X * each pair input)."""
    from qcsurrogate.surrogate.parc import BlockLifter

    deps = DependencyGraph({"X": ["X"], "rho": ["X", "rho", ("rho", "test_wiring_conj")]}).inputs("rho")
    lf = BlockLifter("rho", deps, complex_mode, bilinear=bilinear)
    n = 4 + (4 if bilinear else 0)  # X_i, X_j, rho, conj(rho) [+ X_i rho, X_i rho*, X_j rho, X_j rho*]
    assert lf.in_channels == (n if complex_mode == "complex" else 2 * n)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2, 3, generator=g, dtype=torch.float64)
    rho = torch.complex(torch.randn(2, 3, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, 3, generator=g, dtype=torch.float64))
    x = lf.lift({"X:identity": X, "rho:matrix": rho, "rho:test_wiring_conj": rho.conj()})
    assert x.shape == (2, 2 * n, 3, 3)
    z = torch.complex(x[:, :n], x[:, n:])
    torch.testing.assert_close(z[:, 2], rho, rtol=0, atol=0)
    torch.testing.assert_close(z[:, 3], rho.conj(), rtol=0, atol=0)
