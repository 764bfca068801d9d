"""Observables as physics: the structure factor of a pure wave peaks at its wave vector with the right
height, obeys Parseval's sum rule, is invariant under lattice translations, and its q = pi entry is L times
the squared staggered mean; the declaration type refuses what it cannot report; the default observables of
a System and the dominant-q and pi-fraction helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from toy_system import ToySystem

from qcsurrogate import State
from qcsurrogate.observables import (
    Observable,
    check_observables,
    default_observables,
    dominant_index,
    format_over_pi,
    fourier,
    structure_factor,
    wavevectors,
)

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
fields = arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 9)), elements=finite)


def full_zone(L: int) -> list[float]:
    return [2 * math.pi * k / L for k in range(L)]


# -- the structure factor ---------------------------------------------------------------------------
def test_wavevectors_are_the_half_zone():
    assert wavevectors(8) == pytest.approx([0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, math.pi])
    assert wavevectors(5) == pytest.approx([0, 2 * math.pi / 5, 4 * math.pi / 5])  # odd L: pi is not a lattice q
    assert len(wavevectors(2)) == 2


@pytest.mark.parametrize("L, m", [(8, 1), (8, 3), (12, 5), (7, 2)])
@pytest.mark.parametrize("phase", [0.0, 0.7])
def test_a_cosine_wave_peaks_at_its_wave_vector_with_height_L_A2_over_4(L, m, phase):
    A, q0 = 0.8, 2 * math.pi * m / L
    j = torch.arange(L, dtype=torch.float64)
    S = structure_factor(A * torch.cos(q0 * j + phase))
    expected = np.zeros(L // 2 + 1)
    expected[m] = L * A**2 / 4  # |sum_j A cos(q0 j + phase) e^{-i q0 j}| = L A / 2 for 0 < q0 < pi
    np.testing.assert_allclose(S.numpy(), expected, atol=1e-12)
    assert int(S.argmax()) == m


@pytest.mark.parametrize("L", [2, 8, 10])
def test_uniform_and_staggered_patterns_have_height_L_A2(L):
    A = 0.3
    j = torch.arange(L, dtype=torch.float64)
    S0, Spi = structure_factor(torch.full((L,), A, dtype=torch.float64)), structure_factor(A * (-1.0) ** j)
    np.testing.assert_allclose(S0.numpy(), [L * A**2] + [0] * (L // 2), atol=1e-12)
    np.testing.assert_allclose(Spi.numpy(), [0] * (L // 2) + [L * A**2], atol=1e-12)


@given(fields)
def test_parseval_sum_rule_over_the_full_zone(a):
    x = torch.as_tensor(a)
    L = x.shape[-1]
    S_full = structure_factor(x, full_zone(L))
    np.testing.assert_allclose(S_full.sum(-1).numpy(), (x**2).sum(-1).numpy(), rtol=1e-10, atol=1e-10)
    # the half zone holds it all: S(q) = S(-q) = S(2 pi - q) for a real field, so every 0 < q < pi counts twice
    S = structure_factor(x)
    w = torch.full((L // 2 + 1,), 2.0, dtype=torch.float64)
    w[0] = 1
    if L % 2 == 0:
        w[-1] = 1
    np.testing.assert_allclose((S * w).sum(-1).numpy(), (x**2).sum(-1).numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(S.numpy(), S_full[..., : L // 2 + 1].numpy(), rtol=1e-12, atol=1e-12)


@given(fields, st.integers(1, 8))
def test_translation_invariance_on_a_ring(a, shift):
    x = torch.as_tensor(a)
    L = x.shape[-1]
    y = torch.roll(x, shift, dims=-1)
    np.testing.assert_allclose(structure_factor(y).numpy(), structure_factor(x).numpy(), rtol=1e-9, atol=1e-9)
    # the amplitude itself only picks up a phase e^{-i q shift}: |F| is what is invariant, F is not
    q = torch.tensor(wavevectors(L), dtype=torch.float64)
    np.testing.assert_allclose(
        fourier(y, q).numpy(), (fourier(x, q) * torch.exp(-1j * q * shift)).numpy(), rtol=1e-9, atol=1e-9
    )


@given(arrays(np.float64, st.tuples(st.integers(1, 3), st.sampled_from([2, 4, 6, 8])), elements=finite))
def test_q_pi_entry_is_L_times_the_squared_staggered_mean(a):
    x = torch.as_tensor(a)
    L = x.shape[-1]
    m = np.array([sum((-1) ** j * row[j] for j in range(L)) / L for row in a])
    np.testing.assert_allclose(structure_factor(x)[..., -1].numpy(), L * m**2, rtol=1e-10, atol=1e-10)


def test_structure_factor_batches_over_leading_axes_and_keeps_precision():
    x = torch.randn(3, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    S = structure_factor(x)
    assert S.shape == (3, 2, 4) and S.dtype == torch.float64
    for idx in np.ndindex(3, 2):
        row = x[idx].numpy()
        F = [sum(row[j] * np.exp(-1j * q * j) for j in range(6)) for q in wavevectors(6)]
        np.testing.assert_allclose(S[idx].numpy(), np.abs(F) ** 2 / 6, rtol=1e-12)
    assert structure_factor(x.float()).dtype == torch.float32
    assert structure_factor(torch.zeros(2, 5, device="meta")).shape == (2, 3)


# -- the declaration --------------------------------------------------------------------------------
def test_observable_checks_its_declaration():
    f = lambda s: s["X"].sum(-1)
    with pytest.raises(ValueError, match="needs its axis values"):
        Observable("S", f, kind="spectrum")
    with pytest.raises(ValueError, match="takes no axis"):
        Observable("m", f, axis=(0.0,))
    with pytest.raises(ValueError, match="must be 'scalar' or 'spectrum'"):
        Observable("m", f, kind="vector")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be an identifier"):
        Observable("S(q)", f)
    o = Observable("m", f)
    assert o.label == "m" and o.kind == "scalar" and o.axis is None
    assert Observable("S", f, kind="spectrum", axis=[0, 1]).axis == (0.0, 1.0)


def test_observable_call_checks_the_returned_shape():
    s = ToySystem(L=4).initial_state("random_start", n_traj=3)
    assert Observable("m", lambda s: s["X"].sum(-1))(s).shape == (3,)
    with pytest.raises(ValueError, match=r"returned shape \(3, 4\) for a state of batch shape \(3,\); expected \(3,\)"):
        Observable("m", lambda s: s["X"])(s)
    with pytest.raises(ValueError, match=r"expected \(3, 2\)"):
        Observable("S", lambda s: s["X"], kind="spectrum", axis=(0.0, 1.0))(s)


def test_check_observables_refuses_duplicates_and_non_observables():
    o = Observable("m", lambda s: s["X"].sum(-1))
    assert check_observables([o]) == (o,)
    with pytest.raises(ValueError, match="'m' is declared twice"):
        check_observables([o, Observable("m", lambda s: s["V"].sum(-1))])
    with pytest.raises(TypeError, match="must return Observable instances, got str"):
        check_observables(["m"])


def test_default_observables_are_the_structure_factors_of_every_field():
    system = ToySystem(L=6)
    obs = system.observables()
    assert [o.name for o in obs] == ["S_X", "S_V"]
    assert all(o.kind == "spectrum" and o.axis == pytest.approx(wavevectors(6)) for o in obs)
    assert [o.label for o in obs] == ["S_X(q)", "S_V(q)"]
    s = system.initial_state("random_start", n_traj=2)
    for o, f in zip(obs, ("X", "V")):
        S, plain = o(s), structure_factor(s[f])
        np.testing.assert_allclose(S[..., 1:].numpy(), plain[..., 1:].numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(S[..., 0].numpy(), 0.0, atol=1e-14)  # connected: the mean is no order
        assert (plain[..., 0] > 1e-6).any()  # while the plain S(0) = L mean^2 of a random state is not 0
    assert [o.name for o in default_observables(system)] == ["S_X", "S_V"]


def test_a_uniform_background_does_not_make_q0_dominant():
    # A contracted lattice with a weak staggered order: mean -0.9, amplitude 0.05 (the SSH ring's u).
    L = 8
    x = -0.9 + 0.05 * (-1.0) ** torch.arange(L, dtype=torch.float64)
    fields = {"X": x[None], "V": torch.zeros(1, L, dtype=torch.float64)}
    state = State(fields, torch.eye(L, dtype=torch.complex128)[None] * 0.5)
    (S_X, _) = ToySystem(L=L).observables()
    assert S_X.axis[dominant_index(S_X(state))] == pytest.approx(math.pi)
    assert wavevectors(L)[dominant_index(structure_factor(x))] == 0.0  # the plain one picks the background


def test_default_observables_follow_the_state_batch():
    system = ToySystem(L=4)
    s = system.initial_state("random_start", n_traj=2)
    traj = State.stack([s, s, s])  # (time, batch)
    assert system.observables()[0](traj).shape == (3, 2, 3)


# -- measuring and naming wave vectors --------------------------------------------------------------
def test_dominant_index_averages_every_leading_axis_and_skips_non_finite():
    S = torch.tensor([[[1.0, 0.0, 3.0]], [[1.0, 5.0, 0.0]]])  # (time, batch, q): means 1, 2.5, 1.5
    assert dominant_index(S) == 1
    S[0, 0, 1] = float("nan")  # a diverged prediction-like entry: the mean over what is finite, 5
    assert dominant_index(S) == 1
    assert dominant_index(torch.tensor([2.0, 2.0, 1.0])) == 0  # ties go to the smallest q
    assert dominant_index(torch.full((2, 3), float("inf"))) == 0


@pytest.mark.parametrize(
    "q, text",
    [(0.0, "0"), (math.pi, "π"), (3 * math.pi / 4, "3π/4"), (math.pi / 2, "π/2"), (-math.pi / 4, "-π/4"),
     (2 * math.pi * 3 / 10, "3π/5"), (1.0, "0.32π")],
)  # fmt: skip
def test_format_over_pi(q, text):
    assert format_over_pi(q) == text
