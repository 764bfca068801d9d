"""State: construction, dtype handling, validation and the arithmetic Runge-Kutta steps need."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qcsurrogate.state import RHO, State, complex_dtype_of, real_dtype_of

SETTINGS = settings(deadline=None, max_examples=30)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
scalars = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@st.composite
def state_pairs(draw):
    """Two compatible states with random batch shape, L and values, plus their raw arrays."""
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    L = draw(st.integers(1, 4))

    def one():
        X = draw(hnp.arrays(np.float64, (*batch, L), elements=finite))
        V = draw(hnp.arrays(np.float64, (*batch, L), elements=finite))
        re = draw(hnp.arrays(np.float64, (*batch, L, L), elements=finite))
        im = draw(hnp.arrays(np.float64, (*batch, L, L), elements=finite))
        return {"X": X, "V": V, RHO: re + 1j * im}

    a, b = one(), one()
    sa = State({"X": a["X"], "V": a["V"]}, a[RHO])
    sb = State({"X": b["X"], "V": b["V"]}, b[RHO])
    return sa, sb, a, b


def _close(state: State, expected: dict[str, np.ndarray], atol: float = 0.0, rtol: float = 0.0) -> None:
    got = state.numpy()
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        np.testing.assert_allclose(got[k], v, rtol=rtol, atol=atol, err_msg=k)


def make(batch=(2,), L=3, seed=0, **kw) -> State:
    rng = np.random.default_rng(seed)
    return State(
        {"X": rng.normal(size=(*batch, L)), "V": rng.normal(size=(*batch, L))},
        rng.normal(size=(*batch, L, L)) + 1j * rng.normal(size=(*batch, L, L)),
        **kw,
    )


# -- construction and dtypes -------------------------------------------------------------------------
def test_from_numpy_defaults_to_double_precision():
    s = State({"X": np.zeros(4, dtype=np.float32)}, np.eye(4, dtype=np.float32))
    assert s.fields["X"].dtype == torch.float64
    assert s.rho.dtype == torch.complex128
    assert s.dtype == torch.float64
    assert s.L == 4 and s.batch_shape == torch.Size([]) and s.names == ("X", RHO)
    assert s["X"] is s.fields["X"] and s[RHO] is s.rho


def test_from_torch_and_from_lists():
    X = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    rho = torch.eye(3, dtype=torch.complex64).expand(2, 3, 3)
    s = State({"X": X}, rho)
    assert s.fields["X"].dtype == torch.float64 and s.rho.dtype == torch.complex128
    torch.testing.assert_close(s.fields["X"], X.double())
    assert s.batch_shape == torch.Size([2])
    s2 = State({"X": [[0, 1, 2], [3, 4, 5]]}, rho.numpy())  # ints and nested lists are accepted
    assert s2.allclose(s)


def test_float32_option():
    s = make(dtype=torch.float32)
    assert s.fields["X"].dtype == torch.float32 and s.fields["V"].dtype == torch.float32
    assert s.rho.dtype == torch.complex64
    assert s.dtype == torch.float32


def test_dtype_none_keeps_complex_precision_of_rho():
    s = State({"X": np.zeros(2)}, np.eye(2, dtype=np.complex64), dtype=None)
    assert s.rho.dtype == torch.complex64 and s.fields["X"].dtype == torch.float32
    s = State({"X": np.zeros(2)}, np.eye(2), dtype=None)  # a real rho becomes complex128
    assert s.rho.dtype == torch.complex128


def test_dtype_helpers():
    assert complex_dtype_of(torch.float32) == torch.complex64
    assert real_dtype_of(torch.complex128) == torch.float64
    with pytest.raises(TypeError, match="unsupported real dtype"):
        complex_dtype_of(torch.int64)
    with pytest.raises(TypeError, match="unsupported complex dtype"):
        real_dtype_of(torch.float64)
    with pytest.raises(TypeError):
        make(dtype=torch.float16)


@pytest.mark.parametrize(
    ("fields", "rho", "match"),
    [
        ({"X": np.zeros(3)}, np.zeros((3, 4)), "rho must be shaped"),
        ({"X": np.zeros(3)}, np.zeros(3), "rho must be shaped"),
        ({"X": np.zeros(4)}, np.zeros((3, 3)), r"rho is 3 x 3, not L\*d x L\*d for L=4"),
        ({"X": np.zeros(2)}, np.zeros((5, 5)), r"rho is 5 x 5, not L\*d x L\*d for L=2"),
        ({"X": np.zeros((2, 3))}, np.zeros((3, 3, 3)), "field 'X' has shape"),
        ({"X": np.zeros(3), "V": np.zeros((1, 3))}, np.zeros((3, 3)), "field 'V' has shape"),
    ],
)
def test_shape_validation(fields, rho, match):
    with pytest.raises(ValueError, match=match):
        State(fields, rho)


def test_nested_batch_accepted():
    s = State({"X": np.zeros((2, 5, 3))}, np.zeros((2, 5, 3, 3)))
    assert s.batch_shape == torch.Size([2, 5]) and s.L == 3
    with pytest.raises(ValueError, match="rho must be shaped"):
        State({"X": np.zeros((2, 5, 3))}, np.zeros((2, 5, 3, 4)))


def test_numpy_input_is_copied_not_aliased():
    X, rho = np.zeros((2, 3)), np.zeros((2, 3, 3), dtype=complex)
    s = State({"X": X}, rho)
    X += 1.0
    rho += 1.0
    assert float(s.fields["X"].abs().max()) == 0.0 and float(s.rho.abs().max()) == 0.0


def test_tensors_are_c_contiguous_whatever_the_input_layout():
    rng = np.random.default_rng(0)
    X = np.asfortranarray(rng.normal(size=(3, 4)))
    rho = np.asfortranarray(rng.normal(size=(3, 4, 4)))
    s = State({"X": X}, rho)
    assert s.fields["X"].is_contiguous() and s.rho.is_contiguous()
    np.testing.assert_array_equal(s.fields["X"].numpy(), X)
    np.testing.assert_array_equal(s.rho.numpy().real, rho)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_device_argument_moves_every_variable(kind):
    """`device=` puts rho there and the fields follow rho (the meta device stands in for a GPU)."""
    rng = np.random.default_rng(1)
    X, rho = rng.normal(size=(2, 3)), rng.normal(size=(2, 3, 3))
    if kind == "torch":
        X, rho = torch.from_numpy(X), torch.from_numpy(rho)
    s = State({"X": X}, rho, device="meta")
    assert {v.device.type for v in s.variables().values()} == {"meta"}
    assert s.rho.dtype == torch.complex128 and s.fields["X"].dtype == torch.float64
    on_meta = State({"X": torch.zeros(2, 3)}, torch.zeros(2, 3, 3, device="meta"))  # fields follow rho
    assert on_meta.fields["X"].device.type == "meta"
    cpu = State({"X": X}, rho)
    assert {v.device.type for v in cpu.variables().values()} == {"cpu"}


def test_rho_is_a_reserved_field_name():
    with pytest.raises(ValueError, match="reserved"):
        State({"rho": np.zeros(2)}, np.eye(2))


def test_needs_a_field():
    with pytest.raises(ValueError, match="^a State needs at least one classical field$"):
        State({}, np.eye(2))


def test_complex_field_rejected():
    with pytest.raises(TypeError, match="field 'X' is complex"):
        State({"X": np.zeros(2, dtype=complex)}, np.eye(2))
    with pytest.raises(TypeError, match="complex"):
        State({"X": torch.zeros(2, dtype=torch.complex128)}, torch.eye(2))


def test_unknown_variable_lists_names():
    with pytest.raises(KeyError, match=r"no variable 'Q'.*'X', 'V', 'rho'"):
        make()["Q"]


def test_variables_and_repr():
    s = make()
    assert list(s.variables()) == ["X", "V", RHO]
    r = repr(s)
    assert r == "State(X=(2, 3), V=(2, 3), rho=(2, 3, 3), dtype=torch.complex128, device=cpu)"


# -- arithmetic --------------------------------------------------------------------------------------
@SETTINGS
@given(state_pairs(), scalars)
def test_arithmetic_matches_tensor_arithmetic(pair, a):
    sa, sb, xa, xb = pair
    _close(sa + sb, {k: xa[k] + xb[k] for k in xa})
    _close(sa - sb, {k: xa[k] - xb[k] for k in xa})
    _close(sa * a, {k: xa[k] * a for k in xa})
    _close(a * sa, {k: a * xa[k] for k in xa})
    _close(-sa, {k: -xa[k] for k in xa})
    if abs(a) > 1e-3:
        _close(sa / a, {k: xa[k] / a for k in xa}, rtol=1e-15)
    _close(sa.axpy(a, sb), {k: xa[k] + a * xb[k] for k in xa}, rtol=1e-12, atol=1e-9)


@SETTINGS
@given(state_pairs())
def test_arithmetic_does_not_mutate_operands(pair):
    sa, sb, xa, xb = pair
    _ = sa + sb, sa - sb, sa * 2.0, sa / 3.0, sa.axpy(0.5, sb), -sa
    _close(sa, xa)
    _close(sb, xb)


def test_arithmetic_errors():
    s = make()
    with pytest.raises(TypeError, match=r"^State \* State is not defined; scale by a number$"):
        s * s  # noqa: B018
    with pytest.raises(TypeError, match="expected a State"):
        s + 1.0  # noqa: B018
    other = State({"X": np.zeros((2, 3)), "W": np.zeros((2, 3))}, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="different fields"):
        s + other  # noqa: B018
    with pytest.raises(ValueError, match="different fields"):
        s.axpy(1.0, other)


def test_field_order_does_not_matter():
    s = make()
    swapped = State({"V": s.fields["V"], "X": s.fields["X"]}, s.rho)
    assert s.allclose(swapped)
    assert swapped.allclose(s)
    torch.testing.assert_close((s - swapped)["X"], torch.zeros_like(s["X"]))


def test_allclose():
    s = make()
    assert s.allclose(s.clone())
    assert s.allclose(s + s * 1e-14)
    assert not s.allclose(s + s * 1e-6)
    assert s.allclose(s + s * 1e-6, rtol=1e-5)
    bumped = State._raw(dict(s.fields), s.rho + 1e-3j)  # only rho differs
    assert not s.allclose(bumped)
    # Default tolerances rtol=1e-10, atol=1e-12: near zero only atol counts.
    zero = s.map(torch.zeros_like)
    assert zero.allclose(zero.map(lambda t: t + 1e-13)) and not zero.allclose(zero.map(lambda t: t + 1e-11))
    assert s.allclose(s * (1 + 5e-11)) and not s.allclose(s * (1 + 1e-8))


# -- batching, indexing, devices ---------------------------------------------------------------------
def test_stack_index_cat():
    a, b, c = make(seed=0), make(seed=1), make(seed=2)
    st_ = State.stack([a, b, c])
    assert st_.batch_shape == torch.Size([3, 2]) and st_.fields["X"].shape == (3, 2, 3)
    assert st_.index(1).allclose(b, rtol=0, atol=0)
    assert st_.index(-1).allclose(c, rtol=0, atol=0)
    assert st_.index(slice(0, 2)).batch_shape == torch.Size([2, 2])
    assert st_.index((2, 1)).allclose(c.index(1), rtol=0, atol=0)
    cat = State.cat([a, b])
    assert cat.batch_shape == torch.Size([4])
    assert cat.index(slice(2, 4)).allclose(b, rtol=0, atol=0)
    # Along an inner batch axis: (3, 2) and (3, 2) batches give (3, 4), each row a's then b's.
    inner = State.cat([st_, State.stack([c, a, b])], dim=1)
    assert inner.batch_shape == torch.Size([3, 4]) and inner.fields["V"].shape == (3, 4, 3)
    assert inner.index((1, slice(0, 2))).allclose(b, rtol=0, atol=0)
    assert inner.index((1, slice(2, 4))).allclose(a, rtol=0, atol=0)
    with pytest.raises(ValueError, match="^cannot stack an empty sequence of states$"):
        State.stack([])
    other = State({"Y": np.zeros((2, 3))}, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="different fields"):
        State.stack([a, other])
    swapped = State({"V": b.fields["V"], "X": b.fields["X"]}, b.rho)
    mixed = State.stack([a, swapped])  # field order of the first state, values matched by name
    assert mixed.names == ("X", "V", RHO) and mixed.index(1).allclose(b, rtol=0, atol=0)
    assert State.stack([a]).batch_shape == torch.Size([1, 2])


def test_to_clone_detach_numpy():
    s = make()
    s32 = s.to(dtype=torch.float32)
    assert s32.fields["X"].dtype == torch.float32 and s32.rho.dtype == torch.complex64
    assert s32.allclose(s.to(dtype=torch.float32))
    back = s32.to(dtype=torch.float64)
    assert back.allclose(s, rtol=1e-6, atol=1e-6)
    same = s.to()
    assert same.allclose(s, rtol=0, atol=0) and same.dtype == torch.float64
    assert s.to("cpu").device == torch.device("cpu")
    meta = s.to("meta")
    assert {v.device.type for v in meta.variables().values()} == {"meta"} and meta.dtype == torch.float64
    meta32 = s.to("meta", dtype=torch.float32)
    assert {v.device.type for v in meta32.variables().values()} == {"meta"}
    assert meta32.fields["X"].dtype == torch.float32 and meta32.rho.dtype == torch.complex64
    with pytest.raises(TypeError):
        s.to(dtype=torch.complex128)  # give the real dtype; rho follows
    c = s.clone()
    c.fields["X"] += 1.0
    assert not c.allclose(s)
    g = State({"X": torch.zeros(2, requires_grad=True)}, torch.eye(2))
    assert not g.detach().fields["X"].requires_grad
    arrays = s.numpy()
    assert set(arrays) == {"X", "V", RHO} and arrays[RHO].dtype == np.complex128


@pytest.mark.parametrize("d", [1, 2, 3])
def test_orbitals_and_blocks_round_trip(d):
    L, batch = 4, (2,)
    gen = torch.Generator().manual_seed(d)
    rho = torch.randn(*batch, L * d, L * d, dtype=torch.complex128, generator=gen)
    s = State({"X": torch.zeros(*batch, L)}, rho)
    assert (s.L, s.orbitals) == (L, d)
    b = s.blocks
    assert b.shape == (*batch, L, L, d, d)
    for i, j, a, c in [(0, 0, 0, 0), (1, 3, d - 1, 0), (3, 2, 0, d - 1)]:
        assert b[..., i, j, a, c].equal(rho[..., i * d + a, j * d + c])
    from qcsurrogate.state import rho_from_blocks
    assert rho_from_blocks(b).equal(rho)
