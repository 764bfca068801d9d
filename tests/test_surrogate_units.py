"""Units and channel layout of the graph surrogates (PARC and the single-CNN baseline).

- the network works in normalised units; `predict` must turn its increment into physical units with
  the *increment* scale, and the loss must compare in the same normalised units;
- complex pair blocks travel as real tensors with [Re; Im] channel blocks; the integrator's input
  (F's output plus, per `integrator_inputs`, F's inputs or the whole state) must keep that layout.
"""

from __future__ import annotations

import cmath

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qcsurrogate import DependencyGraph, State
from qcsurrogate.surrogate import PARC, Normalization, PlainCNN
from qcsurrogate.surrogate.layers import Conv
from qcsurrogate.surrogate.parc import BlockLifter, _cat_channels
from qcsurrogate.testing import random_density_matrix

GRAPH = DependencyGraph({"X": ["V"], "V": ["X", ("rho", "diagonal")], "rho": ["X", "rho"]})
VARS = ("X", "V", "rho")


def normalization(inc: dict[str, float], deriv_factor: float, rho_mean: complex = 0.3 - 0.2j) -> Normalization:
    """A non-identity normalisation: shifted and scaled inputs, derivative scales != increment scales."""
    n = Normalization.identity(GRAPH)
    shifts = {"X:identity": (0.7, 1.9), "V:identity": (-1.1, 0.6), "rho:matrix": (rho_mean, 0.35),
              "rho:diagonal": (0.5, 0.2), "rho:bond_real": (-0.1, 0.3), "rho:bond_imag": (0.05, 0.15)}
    n.inputs.update(shifts)
    n.increment = dict(inc)
    n.derivative = {v: s * deriv_factor for v, s in inc.items()}
    return n


def make(cls, norm: Normalization, **cfg):
    torch.manual_seed(0)
    cfg.setdefault("width", 8)
    return cls(GRAPH, "periodic", cls.Config(dtype="float64", **cfg), norm).eval()


def random_state(L: int, batch: tuple[int, ...], seed: int) -> State:
    g = torch.Generator().manual_seed(seed)
    return State(
        {"X": 0.7 + torch.randn(*batch, L, generator=g, dtype=torch.float64),
         "V": torch.randn(*batch, L, generator=g, dtype=torch.float64)},
        random_density_matrix(L, L // 2, batch, g),
    )


def perturbed(state: State, inc: dict[str, float], seed: int) -> State:
    """A 'next state': each variable moved by a random amount of the size of its increment scale."""
    g = torch.Generator().manual_seed(seed + 1)
    fields = {k: v + inc[k] * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in state.fields.items()}
    noise = torch.complex(torch.randn(state.rho.shape, generator=g, dtype=torch.float64),
                          torch.randn(state.rho.shape, generator=g, dtype=torch.float64))
    return State._raw(fields, state.rho + inc["rho"] * noise)


scales = st.fixed_dictionaries({v: st.floats(1e-3, 3.0) for v in VARS})
units_params = {
    "inc": scales,
    "deriv_factor": st.sampled_from([0.1, 7.0, 40.0]),
    "cls": st.sampled_from([PARC, PlainCNN]),
    "complex_mode": st.sampled_from(["complex", "split"]),
    "batch": st.sampled_from([(3,), (2, 2)]),
    "seed": st.integers(0, 1000),
}


# -- units ------------------------------------------------------------------------------------------
@settings(deadline=None, max_examples=10)
@given(**units_params)
def test_prediction_is_state_plus_increment_in_physical_units(inc, deriv_factor, cls, complex_mode, batch, seed):
    model = make(cls, normalization(inc, deriv_factor), complex_mode=complex_mode)
    s = random_state(5, batch, seed)
    with torch.no_grad():
        nxt, aux = model.predict(s)
    for v in VARS:
        step = aux[f"inc:{v}"].reshape(s[v].shape) * inc[v]  # normalised increment times its scale
        torch.testing.assert_close(nxt[v], s[v] + step, rtol=1e-12, atol=1e-15)
        assert float(step.abs().max()) > 0  # the increment is not trivially zero


@settings(deadline=None, max_examples=10)
@given(**units_params)
def test_loss_compares_in_normalised_units(inc, deriv_factor, cls, complex_mode, batch, seed):
    norm = normalization(inc, deriv_factor)
    model = make(cls, norm, complex_mode=complex_mode)
    s = random_state(5, batch, seed)
    nxt_true = perturbed(s, inc, seed)
    deriv = perturbed(s, {v: 1.0 for v in VARS}, seed + 7) - s
    with torch.no_grad():
        _, aux = model.predict(s)
        total, parts = model.loss(s, deriv, nxt_true, aux=aux, derivative_weight=0.5)
    expected_total = 0.0
    for v in VARS:
        i = aux[f"inc:{v}"].reshape(s[v].shape)
        step = float(((i - (nxt_true[v] - s[v]) / inc[v]).abs() ** 2).mean())
        assert parts[f"step:{v}"] == pytest.approx(step, rel=1e-10)
        expected_total += step
        if cls is PARC:
            d = aux[f"deriv:{v}"].reshape(s[v].shape)
            dpart = float(((d - deriv[v] / norm.derivative[v]).abs() ** 2).mean())
            assert parts[f"deriv:{v}"] == pytest.approx(dpart, rel=1e-10)
            expected_total += 0.5 * dpart
        else:
            assert f"deriv:{v}" not in parts
    assert float(total) == pytest.approx(expected_total, rel=1e-10)


class Fixed(nn.Module):
    """Stands in for a CNN: returns fixed output channels whatever it is fed."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] == self.out.shape[0]
        return self.out


@settings(deadline=None, max_examples=10)
@given(**units_params)
def test_exact_normalised_increment_gives_zero_step_loss_and_exact_prediction(
    inc, deriv_factor, cls, complex_mode, batch, seed
):
    model = make(cls, normalization(inc, deriv_factor), complex_mode=complex_mode)
    s = random_state(4, batch, seed)
    nxt_true = perturbed(s, inc, seed)
    last = model.integrators if cls is PARC else model.nets  # the network whose output is the increment
    for v in VARS:
        lf = model.lifters[v]
        target = ((nxt_true[v] - s[v]) / inc[v]).reshape(-1, *s[v].shape[len(batch):])  # exact, normalised
        chans = lf.to_channels(target)
        assert torch.equal(lf.to_variable(chans), target)  # the output round trip is exact
        last[v] = Fixed(chans)
    with torch.no_grad():
        pred, aux = model.predict(s)
        _, parts = model.loss(s, s, nxt_true, aux=aux)
    for v in VARS:
        assert parts[f"step:{v}"] < 1e-28, parts
        torch.testing.assert_close(pred[v], nxt_true[v], rtol=1e-13, atol=1e-13)


# -- channel layout ----------------------------------------------------------------------------------
def _n(norm: Normalization, key: str, x: torch.Tensor) -> torch.Tensor:
    mean, std = norm.inputs[key]
    return (x - mean) / std


def expected_extra(norm: Normalization, s: State, target: str, mode: str) -> list[torch.Tensor]:
    """The (complex, for rho) channels the integrator reads besides F's output, written out by hand."""
    if mode == "derivative":
        return []
    X, V, rho = _n(norm, "X:identity", s["X"]), _n(norm, "V:identity", s["V"]), _n(norm, "rho:matrix", s.rho)
    L = rho.shape[-1]
    if target == "rho":
        def rows_cols(x):
            return [x[:, :, None].expand(-1, L, L), x[:, None, :].expand(-1, L, L)]
        return [*rows_cols(X), rho] if mode == "block" else [*rows_cols(X), *rows_cols(V), rho]
    # site block V: graph inputs X, diagonal(rho); the whole state adds V and the bond views (sorted by name)
    diag = _n(norm, "rho:diagonal", torch.diagonal(s.rho, dim1=-2, dim2=-1).real)
    if mode == "block":
        return [X, diag]
    bond = s.rho[:, torch.arange(L), (torch.arange(L) + 1) % L]
    return [X, V, _n(norm, "rho:bond_imag", bond.imag), _n(norm, "rho:bond_real", bond.real), diag]


def spy(model: PARC, target: str) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    model.differentiators[target].register_forward_hook(lambda m, i, o: seen.__setitem__("F", o))
    model.integrators[target].register_forward_pre_hook(lambda m, i: seen.__setitem__("S", i[0]))
    return seen


@settings(deadline=None, max_examples=24)
@given(
    mode=st.sampled_from(["derivative", "block", "state"]),
    complex_mode=st.sampled_from(["complex", "split"]),
    rho_kind=st.sampled_from(["general", "real", "imag"]),
    L=st.integers(3, 6),
    seed=st.integers(0, 1000),
)
def test_integrator_sees_F_output_and_inputs_in_the_re_im_layout(mode, complex_mode, rho_kind, L, seed):
    """For the rho block the integrator's input, read as complex channels (Re block, Im block), is
    exactly [F's output, *inputs]; in split mode it is F's (Re, Im) pair followed by the [Re; Im] inputs."""
    rho_mean = 0.3 - 0.2j if rho_kind == "general" else 0.0  # zero mean: a real (imaginary) rho stays so when normalised
    norm = normalization({v: 0.1 for v in VARS}, 2.0, rho_mean=rho_mean)
    model = make(PARC, norm, complex_mode=complex_mode, integrator_inputs=mode)
    s = random_state(L, (2,), seed)
    if rho_kind != "general":
        part = s.rho.real if rho_kind == "real" else s.rho.imag
        s = State._raw(s.fields, part.to(s.rho.dtype) * (1 if rho_kind == "real" else 1j))
    seen, seen_v = spy(model, "rho"), spy(model, "V")
    with torch.no_grad():
        model.predict(s)

    S, F_out = seen["S"], seen["F"]
    extra = expected_extra(norm, s, "rho", mode)
    f = torch.complex(F_out[:, 0], F_out[:, 1])  # F's output is one complex channel as (Re, Im)
    assert S.shape[1] == model.integrator_in_channels("rho") * (2 if complex_mode == "complex" else 1)
    if complex_mode == "complex":
        C = 1 + len(extra)
        assert S.shape[1] == 2 * C
        z = torch.complex(S[:, :C], S[:, C:])
        torch.testing.assert_close(z[:, 0], f, rtol=0, atol=0)
        for k, e in enumerate(extra, start=1):
            torch.testing.assert_close(z[:, k], e.to(z.dtype), rtol=1e-14, atol=1e-14, msg=f"channel {k}")
        if extra and rho_kind == "real":  # every input is real: the Im half of the inputs is zero
            assert torch.count_nonzero(S[:, C + 1:]) == 0 and torch.count_nonzero(S[:, 1:C]) > 0
        if extra and rho_kind == "imag":  # rho is imaginary: its Re channel is zero, its Im channel is not
            assert torch.count_nonzero(S[:, C - 1]) == 0 and torch.count_nonzero(S[:, 2 * C - 1]) > 0
    else:
        torch.testing.assert_close(S[:, :2], F_out, rtol=0, atol=0)
        re = [e.real if e.is_complex() else e for e in extra]
        im = [e.imag if e.is_complex() else torch.zeros_like(e) for e in extra]
        want = torch.stack(re + im, 1) if extra else S[:, 2:2]
        torch.testing.assert_close(S[:, 2:], want, rtol=1e-14, atol=1e-14)

    # the site block V: a real stack [F's output, *inputs]
    Sv, Fv = seen_v["S"], seen_v["F"]
    torch.testing.assert_close(Sv[:, :1], Fv, rtol=0, atol=0)
    want_v = expected_extra(norm, s, "V", mode)
    assert Sv.shape[1] == 1 + len(want_v) == model.integrator_in_channels("V")
    for k, e in enumerate(want_v, start=1):
        torch.testing.assert_close(Sv[:, k], e, rtol=1e-14, atol=1e-14, msg=f"V channel {k}")


def _complex_stack(g: torch.Generator, n: int, L: int) -> torch.Tensor:
    return torch.complex(torch.randn(2, n, L, L, generator=g, dtype=torch.float64),
                         torch.randn(2, n, L, L, generator=g, dtype=torch.float64))


def _layout(z: torch.Tensor) -> torch.Tensor:
    """Complex channels -> the real [Re; Im] block layout."""
    return torch.cat([z.real, z.imag], 1)


@settings(deadline=None, max_examples=20)
@given(na=st.integers(1, 4), nb=st.integers(1, 4), theta=st.floats(0.1, 6.2), seed=st.integers(0, 1000))
def test_cat_channels_keeps_re_im_halves_aligned_and_commutes_with_a_global_phase(na, nb, theta, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = _complex_stack(g, na, 3), _complex_stack(g, nb, 3)
    cat = _cat_channels(_layout(a), _layout(b), True)
    torch.testing.assert_close(cat, _layout(torch.cat([a, b], 1)), rtol=0, atol=0)
    # a true complex convolution (no bias) of the concatenation is equivariant to a global phase
    torch.manual_seed(seed)
    conv = Conv(na + nb, 2, 3, 2, "periodic", complex_=True).double()
    with torch.no_grad():
        conv.bias.zero_()
        conv.bias_im.zero_()
    ph = cmath.exp(1j * theta)
    rotated = conv(_cat_channels(_layout(ph * a), _layout(ph * b), True))
    y = conv(cat)
    torch.testing.assert_close(rotated, _layout(ph * torch.complex(*y.chunk(2, 1))), rtol=1e-12, atol=1e-12)
    # real stacks are concatenated as they are
    ra, rb = torch.randn(2, na, 3, generator=g), torch.randn(2, nb, 3, generator=g)
    assert torch.equal(_cat_channels(ra, rb, False), torch.cat([ra, rb], 1))


@settings(deadline=None, max_examples=20)
@given(
    target=st.sampled_from(["X", "V", "rho"]),
    complex_mode=st.sampled_from(["complex", "split"]),
    L=st.integers(1, 6),
    B=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_to_channels_and_to_variable_are_inverse(target, complex_mode, L, B, seed):
    g = torch.Generator().manual_seed(seed)
    lf = BlockLifter(target, GRAPH.inputs(target), complex_mode)
    if target == "rho":
        v = torch.complex(torch.randn(B, L, L, generator=g, dtype=torch.float64), torch.randn(B, L, L, generator=g, dtype=torch.float64))
        y = torch.randn(B, 2, L, L, generator=g, dtype=torch.float64)
    else:
        v = torch.randn(B, L, generator=g, dtype=torch.float64)
        y = torch.randn(B, 1, L, generator=g, dtype=torch.float64)
    assert torch.equal(lf.to_variable(lf.to_channels(v)), v)
    assert torch.equal(lf.to_channels(lf.to_variable(y)), y)
    assert lf.to_channels(v).shape[1] == (2 if target == "rho" else 1)
    if target == "rho":  # channel 0 is the real part, channel 1 the imaginary part
        assert torch.equal(lf.to_channels(v)[:, 0], v.real) and torch.equal(lf.to_channels(v)[:, 1], v.imag)


@settings(deadline=None, max_examples=15)
@given(complex_mode=st.sampled_from(["complex", "split"]), bilinear=st.booleans(), L=st.integers(2, 5), seed=st.integers(0, 1000))
def test_pair_lift_puts_each_complex_input_in_its_re_and_im_channel(complex_mode, bilinear, L, seed):
    g = torch.Generator().manual_seed(seed)
    lf = BlockLifter("rho", GRAPH.inputs("rho"), complex_mode, bilinear=bilinear)
    X = torch.randn(2, L, generator=g, dtype=torch.float64)
    rho = torch.complex(torch.randn(2, L, L, generator=g, dtype=torch.float64), torch.randn(2, L, L, generator=g, dtype=torch.float64))
    x = lf.lift({"X:identity": X, "rho:matrix": rho})
    xi, xj = X[:, :, None].expand(-1, L, L), X[:, None, :].expand(-1, L, L)
    want = [xi.to(rho.dtype), xj.to(rho.dtype), rho] + ([xi * rho, xj * rho] if bilinear else [])
    C = len(want)
    assert x.shape == (2, 2 * C, L, L)
    assert lf.in_channels == (C if complex_mode == "complex" else 2 * C)
    torch.testing.assert_close(torch.complex(x[:, :C], x[:, C:]), torch.stack(want, 1), rtol=0, atol=0)
