"""Convolution building blocks: padding by boundary, initial scales, channel dropout, the PARC CNN's
layer structure and forward composition, and the parameter-count formula that sizes the baseline."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from qcsurrogate.surrogate.layers import PARCCNN, ChannelDropout, Conv, ResBlock, activation, lattice_pad


# -- activations -------------------------------------------------------------------------------------
def test_activation_names_give_the_named_function():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(activation("relu")(x), x.clamp_min(0))
    torch.testing.assert_close(activation("tanh")(x), torch.tanh(x))
    torch.testing.assert_close(activation("silu")(x), x * torch.sigmoid(x))
    torch.testing.assert_close(activation("gelu")(x), 0.5 * x * (1 + torch.erf(x / math.sqrt(2))))


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match=r"^unknown activation 'softplus'; choose from \['gelu', 'relu', 'silu', 'tanh'\]$"):
        activation("softplus")


# -- padding -----------------------------------------------------------------------------------------
def _wrap_index(n: int, p: int, L: int) -> torch.Tensor:
    return (torch.arange(n + 2 * p) - p) % L


@settings(deadline=None, max_examples=40)
@given(L=st.integers(1, 6), M=st.integers(1, 6), k=st.sampled_from([1, 3, 5, 7, 9, 13]), batch=st.integers(1, 3), seed=st.integers(0, 99))
def test_periodic_padding_is_wraparound_for_any_width(L, M, k, batch, seed):
    """Padded site j reads site (j - p) mod L, also when the padding is wider than the lattice."""
    g = torch.Generator().manual_seed(seed)
    p = k // 2
    x1 = torch.randn(batch, 2, L, generator=g, dtype=torch.float64)
    got1 = lattice_pad(x1, k, 1, "periodic")
    assert got1.shape == (batch, 2, L + 2 * p)
    assert torch.equal(got1, x1[..., _wrap_index(L, p, L)])
    x2 = torch.randn(batch, 2, L, M, generator=g, dtype=torch.float64)
    got2 = lattice_pad(x2, k, 2, "periodic")
    assert got2.shape == (batch, 2, L + 2 * p, M + 2 * p)
    assert torch.equal(got2, x2[..., _wrap_index(L, p, L), :][..., _wrap_index(M, p, M)])


@settings(deadline=None, max_examples=20)
@given(L=st.integers(1, 6), k=st.sampled_from([1, 3, 7, 9]), seed=st.integers(0, 99))
def test_open_padding_is_zeros_for_any_width(L, k, seed):
    g = torch.Generator().manual_seed(seed)
    p = k // 2
    x = torch.randn(2, 3, L, L, generator=g, dtype=torch.float64)
    got = lattice_pad(x, k, 2, "open")
    want = torch.zeros(2, 3, L + 2 * p, L + 2 * p, dtype=torch.float64)
    want[..., p:p + L, p:p + L] = x
    assert torch.equal(got, want)
    y = x[..., 0, :]
    want1 = torch.zeros(2, 3, L + 2 * p, dtype=torch.float64)
    want1[..., p:p + L] = y
    assert torch.equal(lattice_pad(y, k, 1, "open"), want1)


def test_conv_rejects_3d():
    with pytest.raises(ValueError, match=r"^only 1D \(sites\) and 2D \(site pairs\) convolutions are supported$"):
        Conv(1, 1, 3, 3, "open", False)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("complex_", [False, True])
def test_conv_initial_scale_is_one_over_sqrt_fan_in(dim, complex_):
    """Weights ~ N(0, 1/fan_in) with fan_in counting real and imaginary inputs; biases start at zero."""
    torch.manual_seed(0)
    cin, cout, k = 48, 48, 3
    conv = Conv(cin, cout, k, dim, "periodic", complex_)
    fan_in = cin * k**dim * (2 if complex_ else 1)
    assert conv.weight.shape == (cout, cin) + (k,) * dim
    assert conv.bias.shape == (cout,)
    ws = [conv.weight] + ([conv.weight_im] if complex_ else [])
    for w in ws:
        assert float(w.detach().std()) * math.sqrt(fan_in) == pytest.approx(1.0, rel=0.06)
        assert abs(float(w.detach().mean())) * math.sqrt(fan_in) < 0.05
    assert not torch.equal(ws[0], ws[-1]) or not complex_  # real and imaginary kernels are independent draws
    assert torch.count_nonzero(conv.bias) == 0
    if complex_:
        assert conv.bias_im.shape == (cout,) and torch.count_nonzero(conv.bias_im) == 0
    else:
        assert not hasattr(conv, "weight_im") and not hasattr(conv, "bias_im")
    w, b = conv.kernel()
    assert w.shape == (cout * (2 if complex_ else 1), cin * (2 if complex_ else 1)) + (k,) * dim
    assert b.shape == (cout * (2 if complex_ else 1),)


@pytest.mark.parametrize("boundary", ["periodic", "open"])
def test_conv1d_matches_torch_reference(boundary):
    torch.manual_seed(3)
    conv = Conv(2, 3, 5, 1, boundary, False).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(4, 2, 6, dtype=torch.float64)
    mode = "circular" if boundary == "periodic" else "constant"
    ref = F.conv1d(F.pad(x, (2, 2), mode=mode), conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), ref, rtol=1e-12, atol=1e-12)


# -- channel dropout ---------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_probability_must_be_in_unit_interval(p):
    with pytest.raises(ValueError, match=rf"^dropout probability must be in \[0, 1\), got {p}$"):
        ChannelDropout(p)


def test_dropout_zero_is_identity_and_default_real():
    d = ChannelDropout(0.0).train()
    assert d.complex is False
    x = torch.randn(3, 4, 5)
    assert d(x) is x
    assert ChannelDropout(0.5).eval()(x) is x


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropout_drops_whole_channels_and_rescales(complex_, p):
    torch.manual_seed(0)
    d = ChannelDropout(p, complex_).train()
    B, C = 64, 8
    x = 1.0 + torch.rand(B, C, 3, 4, dtype=torch.float64)  # never zero
    y = d(x)
    ratio = y / x
    per_channel = ratio.flatten(2)
    # each (sample, channel) is either dropped whole or kept whole and scaled by 1/(1-p)
    assert torch.allclose(per_channel, per_channel[..., :1].expand_as(per_channel))
    vals = per_channel[..., 0]
    kept = vals != 0
    torch.testing.assert_close(vals[kept], torch.full_like(vals[kept], 1 / (1 - p)))
    frac = float(kept.double().mean())
    assert frac == pytest.approx(1 - p, abs=0.08)
    if complex_:  # Re and Im halves of a complex channel drop together
        assert torch.allclose(vals[:, : C // 2], vals[:, C // 2:], rtol=1e-12, atol=0)
    else:
        assert not torch.allclose(vals[:, : C // 2], vals[:, C // 2:], rtol=1e-12, atol=0)


# -- residual block and the PARC CNN -----------------------------------------------------------------
def test_resblock_is_act_of_input_plus_two_convs():
    torch.manual_seed(1)
    blk = ResBlock(3, 1, "periodic", False, "tanh").double()
    x = torch.randn(2, 3, 7, dtype=torch.float64)
    want = torch.tanh(x + blk.c2(torch.tanh(blk.c1(x))))
    torch.testing.assert_close(blk(x), want, rtol=0, atol=0)
    assert blk.c1.k == blk.c2.k == 3 and blk.c1.dim == 1 and blk.c1.boundary == "periodic"


def _convs(m: PARCCNN) -> list[tuple[str, Conv]]:
    return [(n, c) for n, c in m.named_modules() if isinstance(c, Conv)]


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("skip", [False, True])
def test_parc_cnn_layer_structure(complex_, dim, skip):
    m = PARCCNN(3, 2, width=10, dim=dim, boundary="open", complex_=complex_, act="relu", dropout=0.3, linear_skip=skip)
    shapes = {n: (c.weight.shape[1], c.weight.shape[0], c.k) for n, c in _convs(m)}
    want = {
        "stem": (3, 5, 3), "res.0.c1": (5, 5, 3), "res.0.c2": (5, 5, 3), "res.1.c1": (5, 5, 3), "res.1.c2": (5, 5, 3),
        "wide": (5, 10, 7), "point1": (10, 5, 1), "point2": (5, 5, 1), "head": (5, 2, 3),
    }
    if skip:
        want["skip"] = (3, 2, 3)
    else:
        assert m.skip is None
    assert shapes == want
    for _, c in _convs(m):
        assert (c.dim, c.boundary, c.complex) == (dim, "open", complex_)
    assert m.drop.p == 0.3 and m.drop.complex == complex_
    assert m.act is F.relu and all(b.act is F.relu for b in m.res)


def test_parc_cnn_defaults():
    m = PARCCNN(2, 1, width=8, dim=1, boundary="periodic", complex_=False)
    assert m.skip is None
    assert m.drop.p == 0.0
    assert m.act is F.gelu and m.res[0].act is F.gelu
    assert [c.weight.shape[0] for _, c in _convs(m)][:1] == [4]
    # the smallest widths keep at least one channel in the half-width layers
    assert PARCCNN(2, 1, width=1, dim=1, boundary="periodic", complex_=False).stem.weight.shape[0] == 1


@pytest.mark.parametrize("skip", [False, True])
def test_parc_cnn_forward_is_the_documented_composition(skip):
    """stem -> 2 ResBlocks -> 7-wide conv -> 1x1 -> 1x1 -> 3-wide head, channel dropout after the wide conv
    and after the second 1x1 conv, plus the linear skip from the input if enabled."""
    torch.manual_seed(4)
    m = PARCCNN(2, 3, width=8, dim=2, boundary="periodic", complex_=False, act="tanh", dropout=0.5, linear_skip=skip).double()
    with torch.no_grad():
        for _, c in _convs(m):
            c.bias.normal_()
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64)

    def manual(x):
        h = torch.tanh(m.stem(x))
        h = m.res[1](m.res[0](h))
        h = m.drop(torch.tanh(m.wide(h)))
        h = torch.tanh(m.point1(h))
        y = m.head(m.drop(torch.tanh(m.point2(h))))
        return y + m.skip(x) if skip else y

    for mode in ("eval", "train"):
        getattr(m, mode)()
        torch.manual_seed(7)
        got = m(x)
        torch.manual_seed(7)
        want = manual(x)
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@settings(deadline=None, max_examples=30)
@given(
    in_ch=st.integers(1, 6),
    out_ch=st.integers(1, 3),
    width=st.integers(1, 13),
    dim=st.sampled_from([1, 2]),
    complex_=st.booleans(),
    skip=st.sampled_from([None, False, True]),
)
def test_count_parameters_matches_the_built_module(in_ch, out_ch, width, dim, complex_, skip):
    kw = {} if skip is None else {"linear_skip": skip}
    m = PARCCNN(in_ch, out_ch, width=width, dim=dim, boundary="open", complex_=complex_, **kw)
    n = PARCCNN.count_parameters(in_ch, out_ch, width, dim, complex_, **kw)
    assert type(n) is int
    assert n == sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_dropout_mask_is_in_the_input_precision_and_device(dtype):
    """Kept channels are scaled by exactly 1/(1-p) in the input's own dtype, and the mask lives on the input's device."""
    torch.manual_seed(0)
    p = 0.3
    d = ChannelDropout(p).train()
    x = torch.ones(16, 6, 5, dtype=dtype)
    y = d(x)
    assert y.dtype == dtype
    scale = torch.tensor(1 / (1 - p), dtype=dtype)  # 1/(1-p) rounded once to the input precision
    assert set(torch.unique(y).tolist()) == {0.0, float(scale)}
    meta = d(torch.empty(2, 3, 4, device="meta"))
    assert meta.device.type == "meta" and meta.shape == (2, 3, 4)
