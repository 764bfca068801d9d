"""Deep-quench sampling and user-given states: determinism, validation, and a long stable run."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from qcsurrogate import ConfigError, State, simulate
from qcsurrogate.testing import random_density_matrix
from qcsurrogate_holstein import DegenerateFermiLevelWarning, HolsteinChain


@pytest.fixture(autouse=True)
def _quiet_degeneracy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateFermiLevelWarning)
        yield


def test_deep_quench_shape_determinism_and_seeds():
    system = HolsteinChain(L=8, g=2.0)
    a = system.initial_state("deep_quench", n_traj=5, seed=3)
    b = system.initial_state("deep_quench", n_traj=5, seed=3)
    c = system.initial_state("deep_quench", n_traj=5, seed=4)
    assert a["Q"].shape == (5, 8) and a.rho.shape == (5, 8, 8) and a.batch_shape == (5,)
    assert a.allclose(b, rtol=0, atol=0)
    assert not torch.equal(a["Q"], c["Q"])
    assert torch.equal(a["P"], torch.zeros(5, 8, dtype=torch.float64))
    assert torch.equal(a.rho, c.rho) and torch.equal(a.rho[0], a.rho[4])  # the electrons are the g = 0 ground state
    assert a.dtype == torch.float64 and a.rho.dtype == torch.complex128
    # the stream is numpy's PCG64, fixed across platforms: pin it
    assert torch.equal(a["Q"], torch.from_numpy(np.random.default_rng(3).normal(0.0, 1e-4, (5, 8))))
    assert system.initial_state("deep_quench")["Q"].shape == (1, 8)


def test_deep_quench_sigma_is_honoured():
    Q = HolsteinChain(L=8).initial_state("deep_quench", n_traj=500, sigma=0.3, seed=1)["Q"]
    assert float(Q.std()) == pytest.approx(0.3, rel=0.05)
    assert float(Q.mean()) == pytest.approx(0.0, abs=0.03)
    assert torch.equal(HolsteinChain(L=4).initial_state("deep_quench", sigma=0.0)["Q"], torch.zeros(1, 4, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, key",
    [({"n_traj": 0}, "n_traj"), ({"sigma": -1.0}, "sigma"), ({"seed": -2}, "seed"), ({"n_electrons": 9}, "n_electrons"),
     ({"n_electrons": 2.5}, "n_electrons"), ({"bogus": 1}, "bogus")],
)  # fmt: skip
def test_deep_quench_argument_errors_name_the_argument(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        HolsteinChain(L=8).initial_state("deep_quench", **kwargs)


@pytest.mark.slow
def test_paper_deep_quench_g2_is_stable_over_2500_steps():
    """docs/physics.md: with K = 1, m = 6.25 the g = 2 deep quench at dt = 0.08 keeps |Q| < ~1.5 and its energy."""
    system = HolsteinChain(L=8, g=2.0)
    traj = simulate(system, system.initial_state("deep_quench", n_traj=2, seed=0), dt=0.08, n_steps=2500, save_every=25)
    assert torch.isfinite(traj["Q"]).all()
    assert float(traj["Q"].abs().max()) < 1.5
    assert float(traj["Q"].abs().max()) > 0.5  # the CDW did nucleate from the 1e-4 noise
    E = system.energy(traj)
    assert float((E - E[0]).abs().max()) < 1e-7


def test_from_arrays_validates_and_normalises():
    system = HolsteinChain(L=4)
    gen = torch.Generator().manual_seed(0)
    rho = random_density_matrix(4, 2, (3,), gen)
    Q = np.linspace(-0.1, 0.1, 12).reshape(3, 4).astype(np.float32)
    st = system.initial_state("from_arrays", Q=Q, P=np.zeros((3, 4)), rho=rho.numpy())
    assert st.dtype == torch.float64 and st.batch_shape == (3,)
    assert torch.equal(st.rho, st.rho.mH)  # made exactly Hermitian
    Q[0, 0] = 99.0
    assert float(st["Q"][0, 0]) != 99.0  # a copy, not a view of the caller's array
    back = system.initial_state("from_state", state=st)
    assert back.allclose(st, rtol=0, atol=0)

    bad = rho.clone()
    bad[0, 0, 1] += 1e-3
    with pytest.raises(ConfigError, match="not Hermitian"):
        system.from_arrays(np.zeros((3, 4)), np.zeros((3, 4)), bad)
    with pytest.raises(ConfigError, match=r"rho must be shaped \(3, 4, 4\)"):
        system.from_arrays(np.zeros((3, 4)), np.zeros((3, 4)), rho[:2])
    with pytest.raises(ConfigError, match=r"Q must be shaped \(\*batch, 4\)"):
        system.from_arrays(np.zeros((3, 5)), np.zeros((3, 5)), rho)
    with pytest.raises(ConfigError, match="same shape"):
        system.from_arrays(np.zeros((3, 4)), np.zeros((1, 4)), rho)
    with pytest.raises(ConfigError, match="outside \\[0, 1\\]"):
        system.from_arrays(np.zeros(4), np.zeros(4), 2 * torch.eye(4))
    assert system.from_arrays(np.zeros(4), np.zeros(4), 2 * torch.eye(4), check_spectrum=False).L == 4
    with pytest.raises(ConfigError, match="non-finite"):
        system.from_arrays(np.full(4, np.nan), np.zeros(4), torch.eye(4) / 2)
    with pytest.raises(ConfigError, match="lacks field"):
        system.from_state(State({"X": np.zeros(4)}, np.eye(4) / 2))
    with pytest.raises(ConfigError, match=r"^Q is not a rectangular array \("):  # a ragged list from a YAML file
        system.from_arrays([[0, 0, 0, 0], [0, 0]], np.zeros(4), torch.eye(4) / 2)
    with pytest.raises(ConfigError, match=r"^rho must hold numbers, got an array of <U1$"):
        system.from_arrays(np.zeros(4), np.zeros(4), [["a"] * 4] * 4)
