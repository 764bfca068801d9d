"""The shared Surrogate contract: config defaults and bounds, the density-matrix projection, rollout,
spec, dtype/device handling, the identity normalisation, and how the single-CNN baseline is sized."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from qcsurrogate import DependencyGraph, State
from qcsurrogate.surrogate import PARC, Normalization, PARCConfig, PlainCNN, project_density_matrix
from qcsurrogate.surrogate.layers import PARCCNN
from qcsurrogate.surrogate.parc import BlockLifter, _matching_width, _safe
from qcsurrogate.testing import random_density_matrix

GRAPH = DependencyGraph({"X": ["V"], "V": ["X", ("rho", "diagonal")], "rho": ["X", "rho"]})
ALL_KEYS = {"X:identity", "V:identity", "rho:matrix", "rho:diagonal", "rho:bond_real", "rho:bond_imag"}


def make(cls=PARC, **cfg):
    torch.manual_seed(0)
    cfg.setdefault("width", 8)
    cfg.setdefault("dtype", "float64")
    return cls(GRAPH, "periodic", cls.Config(**cfg), Normalization.identity(GRAPH))


def random_state(L: int, batch: tuple[int, ...], seed: int = 0) -> State:
    g = torch.Generator().manual_seed(seed)
    return State(
        {"X": torch.randn(*batch, L, generator=g, dtype=torch.float64), "V": torch.randn(*batch, L, generator=g, dtype=torch.float64)},
        random_density_matrix(L, L // 2, batch, g),
    )


# -- config ------------------------------------------------------------------------------------------
def test_config_defaults():
    assert PARCConfig().model_dump() == {
        "name": "parc", "width": 128, "dropout": 0.0, "activation": "gelu", "complex_mode": "complex",
        "integrator_inputs": "derivative", "bilinear_inputs": False, "linear_skip": False, "init": "random",
        "project_rho": False, "dtype": "float32",
    }


@pytest.mark.parametrize(("field", "ok", "bad"), [
    ("width", [4, 4096], [3, 4097]),
    ("dropout", [0.0, 0.99], [-0.01, 1.0]),
])
def test_config_bounds(field, ok, bad):
    for v in ok:
        assert getattr(PARCConfig(**{field: v}), field) == v
    for v in bad:
        with pytest.raises(ValidationError):
            PARCConfig(**{field: v})


def test_config_rejects_unknown_keys_and_lstsq_with_skip_is_fine():
    with pytest.raises(ValidationError, match="extra"):
        PARCConfig(widht=8)
    assert PARCConfig(init="lstsq", linear_skip=True).init == "lstsq"
    with pytest.raises(ValidationError, match=r"Value error, init: lstsq fits the linear skip paths; set linear_skip: true \[type=value_error"):
        PARCConfig(init="lstsq")


# -- projection --------------------------------------------------------------------------------------
@settings(deadline=None, max_examples=20)
@given(batch=st.sampled_from([(), (1,), (2, 3), (3, 1, 2)]), L=st.integers(1, 5), seed=st.integers(0, 999))
def test_projection_is_hermitian_with_the_given_trace_for_any_batch(batch, L, seed):
    g = torch.Generator().manual_seed(seed)
    rho = torch.complex(torch.randn(*batch, L, L, generator=g, dtype=torch.float64), torch.randn(*batch, L, L, generator=g, dtype=torch.float64))
    trace = torch.randn(batch, generator=g, dtype=torch.float64)
    out = project_density_matrix(rho, trace)
    assert out.shape == rho.shape and out.dtype == rho.dtype
    torch.testing.assert_close(out, out.mH, rtol=0, atol=0)
    torch.testing.assert_close(torch.diagonal(out, dim1=-2, dim2=-1).sum(-1).real, trace, rtol=1e-12, atol=1e-12)
    # the correction is a multiple of the identity: off-diagonal entries are the Hermitian part's
    h = 0.5 * (rho + rho.mH)
    off = ~torch.eye(L, dtype=torch.bool)
    torch.testing.assert_close(out[..., off], h[..., off], rtol=0, atol=0)
    d = torch.diagonal(out - h, dim1=-2, dim2=-1)
    torch.testing.assert_close(d, d[..., :1].expand_as(d))


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_projection_keeps_the_matrix_dtype(default):
    """A complex64 prediction stays complex64 whatever the trace's precision or torch's default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        rho = torch.randn(2, 4, 4, dtype=torch.complex64)
        for tr in (torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.complex128), torch.ones(2, dtype=torch.float32)):
            out = project_density_matrix(rho, tr)
            assert out.dtype == torch.complex64
            torch.testing.assert_close(torch.diagonal(out, dim1=-2, dim2=-1).sum(-1).real, torch.ones(2, dtype=torch.float32))
    finally:
        torch.set_default_dtype(old)


def test_projection_runs_on_the_matrix_device():
    """No tensor is created on a fixed device (the meta device stands in for an accelerator)."""
    rho = torch.empty(2, 3, 3, dtype=torch.complex64, device="meta")
    out = project_density_matrix(rho, torch.empty(2, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 3, 3) and out.dtype == torch.complex64


# -- the Surrogate contract --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_device_and_prepare(dtype):
    model = make(dtype=dtype)
    want = {"float32": torch.float32, "float64": torch.float64}[dtype]
    assert model.dtype == want
    assert all(p.dtype == want for p in model.parameters())
    assert model.device == torch.device("cpu")
    s = model.prepare(random_state(4, (2,)))
    assert s["X"].dtype == want and s.rho.dtype == (torch.complex64 if dtype == "float32" else torch.complex128)


def test_device_of_a_model_without_tensors_is_cpu():
    model = make()
    model.to("meta")
    assert model.device.type == "meta"
    empty = make()
    for sub in empty.modules():
        sub._parameters.clear()
        sub._buffers.clear()
    assert empty.device == torch.device("cpu")


def test_forward_is_the_predicted_state_and_n_parameters_counts_weights():
    model = make().eval()
    s = random_state(5, (2,))
    nxt, _ = model.predict(s)
    assert model(s).allclose(nxt, rtol=0, atol=0)
    assert model.n_parameters() == sum(p.numel() for p in model.parameters()) > 0
    # F and S per variable; nothing else carries weights
    assert model.n_parameters() == sum(
        sum(p.numel() for p in m.parameters()) for m in (*model.differentiators.values(), *model.integrators.values())
    )


@pytest.mark.parametrize("save_every", [1, 2, 3])
def test_rollout_iterates_the_step_and_keeps_every_kth(save_every):
    model = make(dropout=0.3).train()
    s = random_state(4, (2,))
    n = 6
    traj = model.rollout(s, n, save_every=save_every)
    assert model.training  # the mode is restored
    assert traj.rho.shape == (n // save_every + 1, 2, 4, 4)
    model.eval()
    y, want = s, [s]
    with torch.no_grad():
        for i in range(1, n + 1):
            y = model(y)
            if i % save_every == 0:
                want.append(y)
    assert traj.allclose(State.stack(want), rtol=0, atol=0)  # eval mode: no dropout during the rollout
    m2 = make().eval()
    m2.rollout(s, 2)
    assert not m2.training
    assert make().rollout(s, 2).rho.shape[0] == 3  # default: every step kept


def test_rollout_rejects_a_step_count_that_is_not_a_multiple():
    with pytest.raises(ValueError, match=r"^n_steps \(5\) must be a multiple of save_every \(2\)$"):
        make().rollout(random_state(4, (1,)), 5, save_every=2)


@pytest.mark.parametrize("cls", [PARC, PlainCNN])
def test_spec_is_json_with_everything_needed(cls):
    model = make(cls, project_rho=True, activation="tanh")
    spec = json.loads(json.dumps(model.spec()))
    assert spec == {
        "surrogate": cls.name,
        "graph": GRAPH.to_dict(),
        "boundary": "periodic",
        "config": model.config.model_dump(),
        "normalization": model.normalization.to_json(),
    }
    clone = cls.from_spec(spec)
    assert type(clone) is cls and clone.boundary == "periodic" and clone.graph == GRAPH
    assert clone.config == model.config and clone.normalization == model.normalization


@pytest.mark.parametrize("batch", [(2,), (2, 3), ()])
def test_finish_step_projects_only_when_asked(batch):
    s = random_state(4, batch)
    bad = State._raw(s.fields, s.rho + 0.1j * torch.ones_like(s.rho.real))
    assert make(project_rho=False).finish_step(s, bad) is bad
    out = make(project_rho=True).finish_step(s, bad)
    torch.testing.assert_close(out.rho, project_density_matrix(bad.rho, torch.diagonal(s.rho, dim1=-2, dim2=-1).sum(-1)))
    assert out.fields is bad.fields


# -- normalisation ------------------------------------------------------------------------------------
def test_identity_normalisation_is_unit_scales_on_every_key():
    n = Normalization.identity(GRAPH)
    assert n.inputs == {k: (0.0, 1.0) for k in ALL_KEYS}
    assert n.derivative == {"X": 1.0, "V": 1.0, "rho": 1.0}
    assert n.increment == {"X": 1.0, "V": 1.0, "rho": 1.0}
    assert n.derivative is not n.increment


def test_identity_normalised_model_sees_the_raw_inputs():
    model = make(integrator_inputs="state")
    s = random_state(4, (3,))
    normed, batch = model._normed_inputs(s)
    assert batch == (3,)
    assert set(normed) == ALL_KEYS
    torch.testing.assert_close(normed["X:identity"], s["X"], rtol=0, atol=0)
    torch.testing.assert_close(normed["rho:matrix"], s.rho, rtol=0, atol=0)
    torch.testing.assert_close(normed["rho:diagonal"], torch.diagonal(s.rho, dim1=-2, dim2=-1).real, rtol=0, atol=0)


def test_normalisation_json_layout():
    n = Normalization(inputs={"a:identity": (1.5, 2.0), "b:matrix": (0.5 - 0.25j, 3.0)}, derivative={"a": 4.0}, increment={"a": 5.0})
    assert n.to_json() == {
        "inputs": {"a:identity": {"mean": [1.5, 0.0], "std": 2.0}, "b:matrix": {"mean": [0.5, -0.25], "std": 3.0}},
        "derivative": {"a": 4.0},
        "increment": {"a": 5.0},
    }
    back = Normalization.from_json({"inputs": {"a:identity": {"mean": [2, 0], "std": 3}}, "derivative": {}, "increment": {}})
    m, s = back.inputs["a:identity"]
    assert type(m) is float and m == 2.0 and type(s) is float and s == 3.0


def test_fit_on_constant_data_gives_unit_scales_not_zero():
    """A variable that never changes (RMS 0) gets scale 1, so normalising never divides by zero."""
    s = random_state(4, (6,))
    zero = s * 0.0
    n = Normalization.fit(GRAPH, s, zero, zero)
    assert n.derivative == n.increment == {"X": 1.0, "V": 1.0, "rho": 1.0}
    tiny = s * 1e-13
    n2 = Normalization.fit(GRAPH, s, tiny, s * 1e-11)
    assert n2.derivative == {"X": 1.0, "V": 1.0, "rho": 1.0}
    assert all(v == pytest.approx(1e-11 * math.sqrt(float((s[k].abs() ** 2).mean())), rel=1e-9) for k, v in n2.increment.items())


def test_safe_buffer_names():
    assert _safe("rho:bond_real") == "rho__bond_real"
    model = make()
    names = {n for n, _ in model.named_buffers()}
    assert "in_mean_re__rho__matrix" in names and "in_std__X__identity" in names and "in_mean_im__V__identity" in names
    assert model.state_dict().keys().isdisjoint(names)  # not persistent: the normalisation is JSON in the spec


# -- lifting of site blocks with bilinear inputs -----------------------------------------------------
def test_site_block_bilinear_lift_adds_products_of_distinct_pairs():
    lf = BlockLifter("V", GRAPH.inputs("V"), "complex", bilinear=True)
    assert lf.kind == "site" and not lf.complex and lf.out_channels == 1
    assert lf.in_channels == 3  # X, n, X * n
    g = torch.Generator().manual_seed(0)
    X, n = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    x = lf.lift({"X:identity": X, "rho:diagonal": n})
    assert torch.equal(x, torch.stack([X, n, X * n], 1))
    three = BlockLifter("V", (*GRAPH.inputs("V"), GRAPH.inputs("X")[0]), "split", bilinear=True)
    assert three.in_channels == 6 and type(three.in_channels) is int  # 3 inputs + 3 distinct products
    plain = BlockLifter("V", GRAPH.inputs("V"), "split")
    assert plain.in_channels == 2 and plain.bilinear is False


# -- the baseline's width ----------------------------------------------------------------------------
@settings(deadline=None, max_examples=30)
@given(a=st.integers(1, 50), p=st.sampled_from([1, 2, 3]), target=st.integers(1, 10**6))
def test_matching_width_is_the_closest_count(a, p, target):
    count = lambda w: a * w**p + w  # noqa: E731  strictly increasing
    w = _matching_width(count, target)
    top = 4
    while count(top) <= target:
        top += 1
    best = min(range(4, top + 1), key=lambda v: abs(count(v) - target))
    assert abs(count(w) - target) == abs(count(best) - target)
    assert w == best


@pytest.mark.parametrize("complex_mode", ["complex", "split"])
@pytest.mark.parametrize("cfg", [{}, {"linear_skip": True}, {"integrator_inputs": "state", "width": 16}])
def test_plain_cnn_width_is_the_best_match_to_parc(complex_mode, cfg):
    cfg = {"complex_mode": complex_mode, **cfg}
    parc, cnn = make(PARC, **cfg), make(PlainCNN, **cfg)
    target = parc.n_parameters()

    def count(w):
        return sum(
            PARCCNN.count_parameters(lf.in_channels, lf.out_channels, w, 1 if lf.kind == "site" else 2, lf.complex, cnn.config.linear_skip)
            for lf in cnn.lifters.values()
        )

    best = min(range(4, 400), key=lambda w: abs(count(w) - target))
    assert type(cnn.matched_width) is int and cnn.matched_width == best
    assert cnn.n_parameters() == count(best)
    assert all(net.wide.weight.shape[0] == best for net in cnn.nets.values())
    assert "deriv:X" not in cnn.predict(random_state(4, (1,)))[1]


def test_loss_defaults_reuse_nothing_and_weight_the_derivative_by_one():
    model = make().eval()
    s = random_state(4, (2,))
    nxt = random_state(4, (2,), seed=1)
    der = random_state(4, (2,), seed=2)
    with torch.no_grad():
        total, parts = model.loss(s, der, nxt)
    assert set(parts) == {f"{k}:{v}" for k in ("step", "deriv") for v in ("X", "V", "rho")}
    assert float(total) == pytest.approx(sum(parts.values()), rel=1e-12)
    with torch.no_grad():
        t2, p2 = model.loss(s, der, nxt, derivative_weight=0.0)
    assert float(t2) == pytest.approx(sum(v for k, v in p2.items() if k.startswith("step")), rel=1e-12)


@pytest.mark.parametrize("cfg", [{"complex_mode": "complex"}, {"complex_mode": "split", "linear_skip": True}, {"linear_skip": True}])
def test_plain_cnn_counts_the_nets_it_builds(cfg):
    """The sizing formula the baseline uses counts exactly the parameters of each block's CNN."""
    cnn = make(PlainCNN, **cfg)
    for t, lf in cnn.lifters.items():
        for w in (4, 9):
            net = cnn._cnn(lf.in_channels, lf.out_channels, t, w)
            assert cnn._count(t, lf.in_channels, lf.out_channels, w) == sum(p.numel() for p in net.parameters()), (t, w)


@pytest.mark.parametrize("mode", ["derivative", "block"])
def test_only_a_state_integrator_normalises_views_beyond_the_graph_inputs(mode):
    model = make(integrator_inputs=mode)
    normed, _ = model._normed_inputs(random_state(4, (2,)))
    assert set(normed) == {"X:identity", "V:identity", "rho:diagonal", "rho:matrix"}


def test_rms_scale_threshold_is_exclusive():
    """Scales at or below 1e-12 count as 'no signal' and become 1; anything above is kept."""
    from qcsurrogate.surrogate.normalization import _rms

    assert _rms(torch.full((7,), 1e-12, dtype=torch.float64)) == 1.0
    assert _rms(torch.full((7,), 2e-12, dtype=torch.float64)) == pytest.approx(2e-12, rel=1e-12)
    assert _rms(torch.full((3,), 3.0 + 4.0j, dtype=torch.complex128)) == pytest.approx(5.0, rel=1e-12)


def test_normalisation_covers_variables_no_block_reads():
    """A field that feeds no block is still normalised as itself: a 'state' integrator reads it."""
    g = DependencyGraph({"X": ["X"], "V": ["X"], "rho": ["X", "rho"]})
    keys = {"X:identity", "V:identity", "rho:matrix", "rho:diagonal", "rho:bond_real", "rho:bond_imag"}
    assert set(Normalization.identity(g).inputs) == keys
    s = random_state(4, (5,))
    norm = Normalization.fit(g, s, s, s)
    assert set(norm.inputs) == keys
    model = PARC(g, "periodic", PARCConfig(width=8, dtype="float64", integrator_inputs="state"), norm)
    assert model(s).rho.shape == s.rho.shape


def test_fitted_means_of_real_inputs_are_real_floats():
    s = random_state(4, (5,))
    norm = Normalization.fit(GRAPH, s, s, s)
    for key, (mean, std) in norm.inputs.items():
        assert type(mean) is (complex if key == "rho:matrix" else float), key
        assert type(std) is float, key


@pytest.mark.parametrize("complex_mode", ["complex", "split"])
def test_state_integrator_lifts_the_state_with_the_same_bilinear_rule(complex_mode):
    """With bilinear inputs, the whole state lifted for S gets the same product channels as F's inputs."""
    model = make(integrator_inputs="state", bilinear_inputs=True, complex_mode=complex_mode)
    assert all(lf.bilinear for lf in model.state_lifters.values())
    # V's block: 5 site channels (X, V, bond_imag, bond_real, diagonal) + 10 distinct products, after F's 1 output
    assert model.integrator_in_channels("V") == 1 + 5 + 10
    # rho's block: X_i, X_j, V_i, V_j, rho + 4 site-times-pair products, after F's 1 complex output
    per = 1 if complex_mode == "complex" else 2
    assert model.integrator_in_channels("rho") == per * (1 + 5 + 4)
    assert make(integrator_inputs="state", complex_mode=complex_mode).integrator_in_channels("V") == 1 + 5
