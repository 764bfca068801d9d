"""Exact contracts of the observables, the neighbour kernel and the dense H: definitions, batching,
dtype and device preservation, error messages, and the empty/full-band edge of n_electrons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qcsurrogate import ConfigError
from qcsurrogate_holstein import HolsteinChain
from qcsurrogate_holstein import lattice, observables

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


def _complex_batch(shape, seed=0):
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.normal(size=shape) + 1j * rng.normal(size=shape))


# -- neighbour: out[..., i, ...] = x[..., i + step, ...] -----------------------------------------
@given(arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 6)), elements=finite))
def test_neighbour_reads_site_i_plus_step(a):
    x = torch.as_tensor(a)
    L = x.shape[-1]
    for step in (1, -1):
        per = lattice.neighbour(x, step, -1, "periodic")
        opn = lattice.neighbour(x, step, -1, "open")
        for i in range(L):
            assert torch.equal(per[:, i], x[:, (i + step) % L])
            j = i + step
            expected = x[:, j] if 0 <= j < L else torch.zeros_like(x[:, 0])
            assert torch.equal(opn[:, i], expected)


def test_neighbour_along_rows_of_a_matrix():
    x = torch.arange(12.0).reshape(4, 3)
    assert torch.equal(lattice.neighbour(x, 1, 0, "open"), torch.tensor([[3.0, 4, 5], [6, 7, 8], [9, 10, 11], [0, 0, 0]]))
    assert torch.equal(lattice.neighbour(x, -1, -2, "open"), torch.tensor([[0.0, 0, 0], [0, 1, 2], [3, 4, 5], [6, 7, 8]]))
    assert torch.equal(lattice.neighbour(x, 1, 0, "periodic"), x[[1, 2, 3, 0]])


@pytest.mark.parametrize("step", [0, 2, -3])
def test_open_neighbour_rejects_other_steps_with_message(step):
    with pytest.raises(ValueError, match=rf"step must be \+1 or -1, got {step}"):
        lattice.neighbour(torch.zeros(4), step, -1, "open")


# -- adjacency / hamiltonian: dtype and device follow the input ------------------------------------
@pytest.mark.parametrize("boundary", ["periodic", "open"])
def test_adjacency_honours_device_and_dtype(boundary):
    T = lattice.adjacency(5, boundary, dtype=torch.float32, device="meta")
    assert T.device.type == "meta" and T.dtype == torch.float32 and T.shape == (5, 5)


@pytest.mark.parametrize("boundary", ["periodic", "open"])
def test_hamiltonian_on_the_device_of_q(boundary):
    H = HolsteinChain(L=5, boundary=boundary).hamiltonian(torch.zeros(2, 5, device="meta"))
    assert H.device.type == "meta" and H.shape == (2, 5, 5)


def _dense_H(L, t, g, Q, boundary):
    """Independent construction: H_ij = -t (d_{j,i+1} + d_{j,i-1}) - g Q_i d_ij, in numpy float64."""
    H = np.diag(-g * np.asarray(Q, dtype=np.float64))
    for i in range(L):
        for j in (i + 1, i - 1):
            if boundary == "periodic" or 0 <= j < L:
                H[i, j % L] += -t
    return H


@pytest.mark.parametrize("boundary", ["periodic", "open"])
def test_hamiltonian_from_python_floats_is_float64(boundary):
    Q = [0.1, -0.3, 0.7, 1 / 3]
    sys = HolsteinChain(L=4, g=0.7, hopping=1.3, boundary=boundary)
    H = sys.hamiltonian(Q)
    assert H.dtype == torch.float64
    np.testing.assert_array_equal(H.numpy(), _dense_H(4, 1.3, 0.7, Q, boundary))


def test_hamiltonian_keeps_a_float32_tensor_float32():
    Q = torch.tensor([0.1, -0.3, 0.7, 1 / 3], dtype=torch.float32)
    H = HolsteinChain(L=4, g=0.7).hamiltonian(Q)
    assert H.dtype == torch.float32
    np.testing.assert_allclose(H.numpy(), _dense_H(4, 1.0, 0.7, Q.numpy(), "periodic"), rtol=1e-6)


@pytest.mark.parametrize("n", [3, 5])
def test_hamiltonian_wrong_length_message(n):
    with pytest.raises(ValueError, match=rf"^Q has {n} sites; this chain has L=4$"):
        HolsteinChain(L=4).hamiltonian(np.zeros(n))


# -- n_electrons: the empty and the full band are valid fillings --------------------------------
@pytest.mark.parametrize("boundary", ["periodic", "open"])
@pytest.mark.parametrize("L", [2, 5])
def test_empty_and_full_band(L, boundary):
    sys = HolsteinChain(L=L, boundary=boundary)
    empty = sys.deep_quench(n_electrons=0, sigma=0.0)
    full = sys.deep_quench(n_electrons=L, sigma=0.0)
    np.testing.assert_allclose(empty.rho.numpy()[0], np.zeros((L, L)), atol=1e-12)
    np.testing.assert_allclose(full.rho.numpy()[0], np.eye(L), atol=1e-12)
    s0 = sys.shallow_quench(n_electrons=0)
    sL = sys.shallow_quench(n_electrons=L)
    # Q_i = g_initial (n_i - n0) / K with n_i = 0 or 1
    p = sys.params
    np.testing.assert_allclose(s0["Q"].numpy(), np.full(L, 0.5 * (0 - p.density_offset) / p.K), atol=1e-12)
    np.testing.assert_allclose(sL["Q"].numpy(), np.full(L, 0.5 * (1 - p.density_offset) / p.K), atol=1e-12)
    for bad in (-1, L + 1):
        with pytest.raises(ConfigError, match=rf"n_electrons must be an integer in 0\.\.{L} \(L={L}\), got {bad}"):
            sys.deep_quench(n_electrons=bad)


# -- observables: definitions, batched over leading axes ------------------------------------------
@pytest.mark.parametrize("shape", [(4, 4), (3, 4, 4), (2, 3, 4, 4)])
def test_densities_are_the_real_diagonal_per_batch(shape):
    rho = _complex_batch(shape)
    n = observables.densities(rho)
    assert n.shape == shape[:-1] and n.dtype == torch.float64
    flat, nf = rho.reshape(-1, 4, 4), n.reshape(-1, 4)
    for b in range(flat.shape[0]):
        for i in range(4):
            assert nf[b, i] == flat[b, i, i].real


@pytest.mark.parametrize("shape", [(4, 4), (3, 4, 4), (2, 3, 4, 4)])
def test_purity_and_idempotency_per_batch(shape):
    rho = _complex_batch(shape, seed=1)
    pur, idem = observables.purity(rho), observables.idempotency_error(rho)
    assert pur.shape == shape[:-2] and idem.shape == shape[:-2]
    flat = rho.reshape(-1, 4, 4).numpy()
    for b, r in enumerate(flat):
        np.testing.assert_allclose(pur.reshape(-1)[b].item(), np.trace(r @ r).real, rtol=1e-12)
        np.testing.assert_allclose(idem.reshape(-1)[b].item(), np.abs(r @ r - r).max(), rtol=1e-12)


def test_purity_of_a_slater_determinant_is_n():
    rho = HolsteinChain(L=6).deep_quench(n_traj=3).rho
    np.testing.assert_allclose(observables.purity(rho).numpy(), [3.0] * 3, atol=1e-12)
    assert observables.idempotency_error(rho).max() < 1e-12


@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 7)), elements=finite))
def test_staggered_mean_definition_per_row(a):
    x = torch.as_tensor(a)
    out = observables.staggered_mean(x)
    assert out.shape == x.shape[:-1]
    for b in range(a.shape[0]):
        expected = sum((-1) ** i * a[b, i] for i in range(a.shape[1])) / a.shape[1]
        np.testing.assert_allclose(out[b].item(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.complex64])
def test_staggered_mean_keeps_dtype(dtype):
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]], dtype=dtype)
    out = observables.staggered_mean(x)
    assert out.dtype == dtype
    assert out.to(torch.complex128).tolist() == [0.5, -0.5]


def test_staggered_mean_on_the_device_of_x():
    out = observables.staggered_mean(torch.zeros(3, 6, device="meta"))
    assert out.device.type == "meta" and out.shape == (3,)
