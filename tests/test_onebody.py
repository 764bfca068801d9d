"""The core's Fermi filling: one rule for every plugin's ground states, real or complex H."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcsurrogate.onebody import DegenerateFermiLevelWarning, fill_levels, ground_state_density, report_degeneracy


def _ring(L: int) -> np.ndarray:
    H = np.zeros((L, L))
    for i in range(L):
        H[i, (i + 1) % L] = H[(i + 1) % L, i] = -1.0
    return H


@settings(max_examples=30, deadline=None)
@given(N=st.integers(2, 10), n=st.integers(0, 10), seed=st.integers(0, 2**31 - 1))
def test_complex_hermitian_h_gives_its_projector(N, n, seed):
    n = min(n, N)
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N))
    H = A + A.conj().T  # generic: no degeneracy
    rho, shell = ground_state_density(H, n)
    assert shell is None
    assert np.abs(rho - rho.conj().T).max() == 0.0  # exactly Hermitian
    np.testing.assert_allclose(np.trace(rho).real, n, atol=1e-12)
    np.testing.assert_allclose(rho @ rho, rho, atol=1e-10)  # a pure Slater determinant
    np.testing.assert_allclose(H @ rho, rho @ H, atol=1e-9)  # stationary: commutes with H
    eps = np.linalg.eigvalsh(H)
    np.testing.assert_allclose(np.trace(H @ rho).real, eps[:n].sum(), atol=1e-9)  # the lowest n levels


def test_spin_degenerate_levels_share_the_shell_and_say_so(caplog):
    # Two decoupled spin species on a periodic ring of 4 (site-major, d = 2): every level is doubly
    # degenerate and k = +-pi/2 at energy 0 make a shell of four levels around half filling.
    H = np.kron(_ring(4), np.eye(2))
    rho, shell = ground_state_density(H, 3)
    assert (shell.first, shell.last, shell.electrons, shell.occupation) == (2, 5, 1, 0.25)
    np.testing.assert_allclose(np.trace(rho).real, 3, atol=1e-12)
    log = logging.getLogger("a_plugin")
    with caplog.at_level(logging.INFO, logger="a_plugin"):
        with pytest.warns(DegenerateFermiLevelWarning, match=r"levels 2\.\.5 .* share 1 of the 3 electrons.*Try L=6"):
            report_degeneracy(shell, "a test", hint="Try L=6", log=log)
    assert [r.name for r in caplog.records] == ["a_plugin"]


def test_no_shell_is_silent_and_filling_is_validated():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report_degeneracy(None, "nothing")
    occ, shell = fill_levels(np.array([-1.0, 0.0, 1.0]), 3)
    assert shell is None and occ.tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match=r"n_electrons must be in 0\.\.3, got 4"):
        fill_levels(np.array([-1.0, 0.0, 1.0]), 4)
    with pytest.raises(ValueError, match=r"H must be one square matrix \(N, N\), got shape \(2, 3\)"):
        ground_state_density(np.zeros((2, 3)), 1)
