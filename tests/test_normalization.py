"""Fitted normalisation: what `Normalization.fit` learns, what the model's input normalisation does with
it, and that it survives JSON and save/load unchanged.

The data deliberately have non-zero means and non-unit spreads in every input (a complex mean for rho),
so a normalisation that forgets to centre, to scale, or drops an imaginary part is caught.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_system import ToySystem

from qcsurrogate import State
from qcsurrogate.surrogate import PARC, Normalization, PlainCNN
from qcsurrogate.testing import random_density_matrix

SYSTEM = ToySystem(L=5)
GRAPH = SYSTEM.graph
# every input key a 'state'-integrator PARC of the toy normalises (graph inputs + core reducing views)
ALL_KEYS = {"X:identity", "V:identity", "rho:matrix", "rho:diagonal", "rho:bond_real", "rho:bond_imag"}


def shifted_data(seed: int, mx: float, sx: float, mv: float, sv: float, crho: complex, srho: float, n: int = 24):
    """Flattened samples (batch (n,)) with the given offsets/spreads, their toy derivatives and
    increments whose scale differs from the derivatives' by a known factor."""
    g = torch.Generator().manual_seed(seed)
    L = SYSTEM.L
    X = mx + sx * torch.randn(n, L, generator=g, dtype=torch.float64)
    V = mv + sv * torch.randn(n, L, generator=g, dtype=torch.float64)
    rho = crho + srho * random_density_matrix(L, L // 2, (n,), g)
    states = State({"X": X, "V": V}, rho)
    deriv = SYSTEM.rhs(states)
    noise = State(
        {k: torch.randn(n, L, generator=g, dtype=torch.float64) for k in ("X", "V")},
        torch.complex(torch.randn(n, L, L, generator=g, dtype=torch.float64), torch.randn(n, L, L, generator=g, dtype=torch.float64)),
    )
    incs = deriv * 0.05 + noise * 0.01
    return states, deriv, incs


def rms(x: torch.Tensor) -> float:
    return math.sqrt(float((x.abs() ** 2).mean()))


data_params = {
    "seed": st.integers(0, 10_000),
    "mx": st.floats(-6, 6).filter(lambda v: abs(v) > 0.5),
    "sx": st.floats(0.2, 8),
    "mv": st.floats(-6, 6).filter(lambda v: abs(v) > 0.5),
    "sv": st.floats(0.2, 8),
    "c_re": st.floats(-3, 3).filter(lambda v: abs(v) > 0.3),
    "c_im": st.floats(-3, 3).filter(lambda v: abs(v) > 0.3),
    "srho": st.floats(0.2, 5),
}


def fitted(seed, mx, sx, mv, sv, c_re, c_im, srho):
    states, deriv, incs = shifted_data(seed, mx, sx, mv, sv, complex(c_re, c_im), srho)
    return states, deriv, incs, Normalization.fit(GRAPH, states, deriv, incs)


def model_with(norm: Normalization, cls=PARC, **cfg) -> PARC:
    torch.manual_seed(0)
    cfg.setdefault("integrator_inputs", "state")
    return cls(GRAPH, "periodic", cls.Config(width=8, dtype="float64", **cfg), norm)


@settings(deadline=None, max_examples=10)
@given(**data_params)
def test_fitted_input_normalisation_centres_and_scales_the_fit_data(seed, mx, sx, mv, sv, c_re, c_im, srho):
    states, _, _, norm = fitted(seed, mx, sx, mv, sv, c_re, c_im, srho)
    assert ALL_KEYS <= set(norm.inputs)
    # the data really are off-centre: the fitted means are the data means, rho's complex
    mean_rho = complex(states.rho.mean())
    assert abs(mean_rho.imag) > 0.1
    assert complex(norm.inputs["rho:matrix"][0]) == pytest.approx(mean_rho, rel=1e-12, abs=1e-12)
    assert norm.inputs["X:identity"][0] == pytest.approx(float(states["X"].mean()), rel=1e-12, abs=1e-12)

    model = model_with(norm)
    normed, batch = model._normed_inputs(states)
    assert batch == (24,)
    assert set(normed) == ALL_KEYS  # the 'state' integrator reads every view
    for key, x in normed.items():
        assert x.is_complex() == (key == "rho:matrix"), key
        mean = complex(x.mean())
        assert abs(mean) < 1e-10, (key, mean)  # centred (complex mean included)
        assert rms(x) == pytest.approx(1.0, rel=1e-10), key  # unit RMS


@settings(deadline=None, max_examples=10)
@given(**data_params)
def test_derivative_and_increment_scales_are_the_rms_of_the_fitted_data(seed, mx, sx, mv, sv, c_re, c_im, srho):
    _, deriv, incs, norm = fitted(seed, mx, sx, mv, sv, c_re, c_im, srho)
    assert set(norm.derivative) == set(norm.increment) == {"X", "V", "rho"}
    for v in ("X", "V", "rho"):
        assert norm.derivative[v] == pytest.approx(rms(deriv[v]), rel=1e-12)
        assert norm.increment[v] == pytest.approx(rms(incs[v]), rel=1e-12)
        # scales, not shifts: the increment scale is not the (much larger) derivative scale
        assert norm.increment[v] < 0.5 * norm.derivative[v]


@settings(deadline=None, max_examples=10)
@given(**data_params)
def test_fitted_normalisation_json_round_trip_is_exact(seed, mx, sx, mv, sv, c_re, c_im, srho):
    *_, norm = fitted(seed, mx, sx, mv, sv, c_re, c_im, srho)
    back = Normalization.from_json(json.loads(json.dumps(norm.to_json())))
    assert back == norm
    m = back.inputs["rho:matrix"][0]
    assert isinstance(m, complex) and m == norm.inputs["rho:matrix"][0]  # the imaginary part survives


@settings(deadline=None, max_examples=15)
@given(
    means=st.lists(
        st.one_of(st.floats(-1e6, 1e6), st.builds(complex, st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))),
        min_size=1, max_size=6,
    ),
    stds=st.lists(st.floats(1e-6, 1e6), min_size=6, max_size=6),
    scales=st.lists(st.floats(1e-9, 1e9), min_size=2, max_size=2),
)
def test_any_normalisation_json_round_trip_is_exact(means, stds, scales):
    keys = sorted(ALL_KEYS)
    norm = Normalization(
        inputs={keys[i]: (m, stds[i]) for i, m in enumerate(means)},
        derivative={"X": scales[0], "rho": scales[1]},
        increment={"X": scales[1], "rho": scales[0]},
    )
    back = Normalization.from_json(json.loads(json.dumps(norm.to_json())))
    assert back == norm
    for k, (m, _) in norm.inputs.items():
        got = back.inputs[k][0]
        assert complex(got).real == complex(m).real and complex(got).imag == complex(m).imag


@pytest.mark.parametrize("cls", [PARC, PlainCNN])
def test_model_with_fitted_normalisation_saves_and_loads_to_identical_predictions(tmp_path, cls):
    from qcsurrogate.training.checkpoint import load_model, save_model

    states, deriv, incs, norm = fitted(3, 2.5, 1.7, -3.0, 0.4, 0.8, -0.6, 2.0)
    model = model_with(norm, cls).eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.normalization == norm
    s = states.index(slice(0, 4))
    a, aux_a = model.predict(s)
    b, aux_b = loaded.predict(s)
    assert a.allclose(b, rtol=0, atol=0)
    for k in aux_a:
        assert torch.equal(aux_a[k], aux_b[k]), k
    # and the normalisation matters: the same weights under the identity normalisation differ
    plain = model_with(Normalization.identity(GRAPH), cls).eval()
    plain.load_state_dict(model.state_dict())
    assert not plain(s).allclose(a, rtol=1e-6, atol=1e-8)
