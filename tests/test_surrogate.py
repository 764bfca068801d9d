"""PARC and the single-CNN baseline: wiring from the graph, shapes, equivariance, complex arithmetic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from qcsurrogate import DependencyGraph, State
from qcsurrogate.registry import get_surrogate_class, list_surrogates
from qcsurrogate.surrogate import PARC, Normalization, PARCConfig, PlainCNN, project_density_matrix
from qcsurrogate.surrogate.layers import Conv
from qcsurrogate.surrogate.parc import BlockLifter
from qcsurrogate.testing import random_density_matrix

GRAPH = DependencyGraph({"X": ["V"], "V": ["X", ("rho", "diagonal")], "rho": ["X", "rho"]})


def make(cls=PARC, boundary="periodic", **cfg) -> PARC:
    torch.manual_seed(0)
    cfg.setdefault("width", 8)
    cfg.setdefault("dtype", "float64")
    return cls(GRAPH, boundary, cls.Config(**cfg), Normalization.identity(GRAPH))


def random_state(L: int, batch: tuple[int, ...], seed: int = 0) -> State:
    g = torch.Generator().manual_seed(seed)
    return State(
        {"X": torch.randn(*batch, L, generator=g, dtype=torch.float64), "V": torch.randn(*batch, L, generator=g, dtype=torch.float64)},
        random_density_matrix(L, L // 2, batch, g),
    )


def roll(state: State, s: int) -> State:
    return State._raw({k: v.roll(s, -1) for k, v in state.fields.items()}, state.rho.roll((s, s), (-2, -1)))


@settings(max_examples=12, deadline=None)
@given(
    L=st.integers(2, 10),
    batch=st.sampled_from([(), (1,), (3,), (2, 2)]),
    complex_mode=st.sampled_from(["complex", "split"]),
    integrator_inputs=st.sampled_from(["derivative", "block", "state"]),
    boundary=st.sampled_from(["periodic", "open"]),
    cls=st.sampled_from([PARC, PlainCNN]),
)
def test_shapes_and_dtypes_for_any_L(L, batch, complex_mode, integrator_inputs, boundary, cls):
    model = make(cls, boundary, complex_mode=complex_mode, integrator_inputs=integrator_inputs, dtype="float32")
    s = model.prepare(random_state(L, batch))
    nxt, aux = model.predict(s)
    assert nxt.fields.keys() == s.fields.keys()
    for name in s.names:
        assert nxt[name].shape == s[name].shape
        assert nxt[name].dtype == s[name].dtype
    assert nxt.rho.dtype == torch.complex64
    traj = model.rollout(s, 3)
    assert traj.rho.shape == (4, *batch, L, L)


@pytest.mark.parametrize("complex_mode", ["complex", "split"])
@pytest.mark.parametrize("cls", [PARC, PlainCNN])
def test_translation_equivariance_with_periodic_padding(complex_mode, cls):
    model = make(cls, complex_mode=complex_mode).eval()
    s = random_state(7, (2,), seed=3)
    for shift in (1, 3):
        a = roll(model(s), shift)
        b = model(roll(s, shift))
        assert a.allclose(b, rtol=1e-10, atol=1e-12)


def test_open_boundary_breaks_translation_symmetry():
    """The check above can fail: zero padding is not equivariant under circular shifts."""
    model = make(boundary="open").eval()
    s = random_state(7, (2,), seed=3)
    assert not roll(model(s), 1).allclose(model(roll(s, 1)), rtol=1e-6, atol=1e-8)


def test_network_runs_unchanged_on_larger_lattices():
    model = make().eval()
    for L in (4, 8, 16):
        assert model(random_state(L, (1,))).rho.shape == (1, L, L)


def test_complex_conv_is_true_complex_arithmetic():
    torch.manual_seed(1)
    conv = Conv(3, 2, 3, 2, "open", complex_=True).double()
    x = torch.randn(4, 3, 5, 5, dtype=torch.complex128)
    w = torch.complex(conv.weight, conv.weight_im)
    b = torch.complex(conv.bias, conv.bias_im)
    ref = F.conv2d(x, w, b, padding=1)
    got = conv(torch.cat([x.real, x.imag], 1))
    out = torch.complex(*got.chunk(2, 1))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_circular_padding_wider_than_lattice_wraps_correctly():
    """A 7-wide kernel on L = 2 sites must see each neighbour as the periodic images it is."""
    torch.manual_seed(2)
    conv = Conv(1, 1, 7, 1, "periodic", complex_=False).double()
    x = torch.randn(1, 1, 2, dtype=torch.float64)
    tiled = x.repeat(1, 1, 7)  # 14 sites of the same periodic signal
    big = F.conv1d(F.pad(tiled, (3, 3), mode="circular"), conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), big[..., :2])


def test_lifting_rules_follow_the_graph():
    lf = BlockLifter("rho", GRAPH.inputs("rho"), "complex")
    assert lf.in_channels == 3  # X_i, X_j, rho
    X = torch.arange(4.0, dtype=torch.float64)[None]
    rho = torch.zeros(1, 4, 4, dtype=torch.complex128)
    x = lf.lift({"X:identity": X, "rho:matrix": rho})
    assert x.shape == (1, 6, 4, 4)  # [Re; Im] blocks of 3 complex channels
    torch.testing.assert_close(x[0, 0], X[0][:, None].expand(4, 4))  # x_i along rows
    torch.testing.assert_close(x[0, 1], X[0][None, :].expand(4, 4))  # x_j along columns
    assert torch.count_nonzero(x[:, 3:5]) == 0  # real inputs enter with zero imaginary part
    assert BlockLifter("V", GRAPH.inputs("V"), "complex").in_channels == 2  # X and diag(rho)
    assert BlockLifter("rho", GRAPH.inputs("rho"), "split").in_channels == 6
    bil = BlockLifter("rho", GRAPH.inputs("rho"), "complex", bilinear=True)
    assert bil.in_channels == 5  # + X_i rho_ij, X_j rho_ij
    y = bil.lift({"X:identity": X, "rho:matrix": torch.ones(1, 4, 4, dtype=torch.complex128)})
    torch.testing.assert_close(y[0, 3], X[0][:, None].expand(4, 4))


def test_state_dependencies_lift_the_whole_state():
    from qcsurrogate.surrogate.parc import state_dependencies

    assert [d.label() for d in state_dependencies(GRAPH, "X")] == ["X", "V", "bond_imag(rho)", "bond_real(rho)", "diagonal(rho)"]
    assert [d.label() for d in state_dependencies(GRAPH, "rho")] == ["X", "V", "rho"]


def test_differentiator_sees_exactly_the_graph_inputs():
    """V's block must not react to V itself (dV/dt depends on X and n only)."""
    model = make().eval()
    s = random_state(5, (2,))
    _, aux1 = model.predict(s)
    s2 = State._raw({"X": s["X"], "V": s["V"] + 1.0}, s.rho)
    _, aux2 = model.predict(s2)
    torch.testing.assert_close(aux1["deriv:V"], aux2["deriv:V"])
    assert not torch.allclose(aux1["deriv:X"], aux2["deriv:X"])


def test_plain_cnn_matches_parc_parameter_count():
    for w in (16, 32):
        p, c = make(width=w), make(PlainCNN, width=w)
        assert abs(c.n_parameters() - p.n_parameters()) / p.n_parameters() < 0.05


def test_projection_restores_hermiticity_and_trace():
    model = make(project_rho=True).eval()
    s = random_state(6, (3,))
    nxt = model(s)
    torch.testing.assert_close(nxt.rho, nxt.rho.mH)
    tr = torch.diagonal(nxt.rho, dim1=-2, dim2=-1).sum(-1)
    torch.testing.assert_close(tr, torch.diagonal(s.rho, dim1=-2, dim2=-1).sum(-1))
    free = make(project_rho=False).eval()(s)
    assert float((free.rho - free.rho.mH).abs().max().detach()) > 1e-6  # the projection is doing something


def test_project_density_matrix_is_identity_on_valid_matrices():
    rho = random_density_matrix(5, 2, (2,), torch.Generator().manual_seed(0))
    torch.testing.assert_close(project_density_matrix(rho, torch.full((2,), 2.0, dtype=torch.float64)), rho)


@pytest.mark.parametrize("cls", [PARC, PlainCNN])
def test_spec_round_trip_rebuilds_the_same_function(cls):
    model = make(cls).eval()
    clone = type(model).from_spec(model.spec())
    clone.load_state_dict(model.state_dict())
    s = random_state(5, (2,))
    assert model(s).allclose(clone.eval()(s), rtol=0, atol=0)


def test_builtin_surrogates_are_registered():
    assert {"parc", "cnn"} <= set(list_surrogates())
    assert get_surrogate_class("parc") is PARC


def test_dropout_is_channelwise_and_off_in_eval():
    model = make(dropout=0.5)
    s = random_state(5, (2,))
    model.eval()
    a, b = model(s), model(s)
    assert a.allclose(b, rtol=0, atol=0)
    model.train()
    torch.manual_seed(0)
    c = model(s)
    torch.manual_seed(1)
    d = model(s)
    assert not c.allclose(d)


def test_least_squares_init_makes_the_differentiator_exact_for_bilinear_dynamics():
    """The toy's rhs is linear in (X_i rho_ij, X_j rho_ij, rho, ...): F starts exact to round-off."""
    from toy_system import ToySystem

    from qcsurrogate import simulate

    system = ToySystem(L=5)
    traj = simulate(system, system.initial_state("random_start", seed=1, n_traj=4), 0.05, 30)
    cur, nxt = traj.index(slice(0, -1)), traj.index(slice(1, None))
    flat = lambda s: s.map(lambda t: t.reshape(-1, *t.shape[2:]))  # noqa: E731
    cur, nxt = flat(cur), flat(nxt)
    deriv = system.rhs(cur)
    norm = Normalization.fit(system.graph, cur, deriv, nxt - cur)
    cfg = PARCConfig(width=8, bilinear_inputs=True, linear_skip=True, init="lstsq", dtype="float64", integrator_inputs="state")
    model = PARC(system.graph, system.boundary, cfg, norm)
    before, _ = model.loss(cur, deriv, nxt)
    resid = model.initialize_from_data(cur, deriv, nxt)
    assert all(resid[f"F:{v}"] < 1e-12 for v in ("X", "V", "rho")), resid
    _, parts = model.loss(cur, deriv, nxt)
    assert all(parts[f"deriv:{v}"] < 1e-10 for v in ("X", "V", "rho")), parts
    assert sum(parts.values()) < float(before.detach()) / 100


def test_lstsq_init_requires_the_linear_skip():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="linear_skip"):
        PARCConfig(init="lstsq")


def test_architecture_does_not_depend_on_installed_views(clean_registry):
    """A plugin registering a pair -> site view must not change the shape of models of other systems."""
    from qcsurrogate import View, register_view

    before = make(integrator_inputs="state").n_parameters()
    register_view(View("test_only_antidiag", "pair", "site", lambda x: torch.flip(x, (-1,)).diagonal(dim1=-2, dim2=-1).real))
    assert make(integrator_inputs="state").n_parameters() == before
