"""Exact contracts of the level-filling rule, the degeneracy report and the CDW self-consistency loop.

Expected values are derived by hand (or by an independent cluster reference), never copied from output.
"""

from __future__ import annotations

import os

import inspect
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from qcsurrogate_holstein import (
    DegenerateFermiLevelWarning,
    FermiShell,
    HolsteinChain,
    fill_levels,
    ground_state_density,
)
from qcsurrogate_holstein.ground_state import SelfConsistencyError, self_consistent_cdw


# -- fill_levels ----------------------------------------------------------------------------------
def _reference_shell(eps, n, atol):
    """Independent reference: cut the spectrum into clusters at gaps > atol; the Fermi shell is the
    cluster holding both level n-1 and level n (None if they are in different clusters)."""
    L = len(eps)
    cluster, c = [0] * L, 0
    for i in range(1, L):
        if eps[i] - eps[i - 1] > atol:
            c += 1
        cluster[i] = c
    if n in (0, L) or cluster[n - 1] != cluster[n]:
        return None
    members = [i for i in range(L) if cluster[i] == cluster[n]]
    return members[0], members[-1]


@given(
    levels=st.lists(st.integers(-3, 3), min_size=1, max_size=10),
    data=st.data(),
)
def test_fill_levels_matches_cluster_reference(levels, data):
    eps = np.sort(np.asarray(levels, dtype=np.float64))  # integer levels: gaps are 0 or >= 1
    L = len(eps)
    n = data.draw(st.integers(0, L))
    occ, shell = fill_levels(eps, n, tol=0.1)  # scale <= 3, atol <= 0.3 < 1: degenerate iff equal
    ref = _reference_shell(eps, n, atol=0.5)
    assert occ.sum() == pytest.approx(n, abs=1e-12)
    if ref is None:
        assert shell is None
        np.testing.assert_array_equal(occ, np.r_[np.ones(n), np.zeros(L - n)])
        return
    first, last = ref
    assert (shell.first, shell.last, shell.size) == (first, last, last - first + 1)
    assert shell.energies == tuple(float(e) for e in eps[first : last + 1])
    assert shell.electrons == n - first and shell.n_electrons == n
    assert shell.occupation == pytest.approx((n - first) / (last - first + 1), rel=1e-15)
    expected = np.r_[
        np.ones(first), np.full(last - first + 1, (n - first) / (last - first + 1)), np.zeros(L - 1 - last)
    ]
    np.testing.assert_allclose(occ, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("eps", "n", "first", "last"),
    [
        ([0.0, 0.0, 0.0, 1.0], 2, 0, 2),  # shell reaches the lowest level
        ([0.0, 1.0, 1.0], 2, 1, 2),  # shell reaches the highest level
        ([0.0, 1.0, 1.0, 1.0, 2.0], 2, 1, 3),  # grows upwards from level n
        ([0.0, 1.0, 2.0, 2.0, 2.0, 3.0], 4, 2, 4),  # grows downwards, stops above level 1
        ([0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0], 5, 2, 5),
    ],
)
def test_fermi_shell_bounds(eps, n, first, last):
    occ, shell = fill_levels(np.array(eps), n)
    assert (shell.first, shell.last) == (first, last)
    assert shell.energies == tuple(eps[first : last + 1])
    assert occ[first : last + 1] == pytest.approx([(n - first) / (last - first + 1)] * (last - first + 1))


def test_gap_equal_to_tolerance_is_degenerate_and_grows_transitively():
    """'Levels outside the shell are separated by MORE than the tolerance': a gap of exactly
    tol * scale joins the shell (all values below are exact binary fractions, scale = 1)."""
    eps = np.array([-0.5, 0.0, 0.5, 1.0])
    occ, shell = fill_levels(eps, 2, tol=0.5)
    assert (shell.first, shell.last) == (0, 3)
    np.testing.assert_array_equal(occ, [0.5, 0.5, 0.5, 0.5])
    # just above the tolerance: a clean Slater determinant
    occ, shell = fill_levels(eps, 2, tol=0.5 - 2**-20)
    assert shell is None
    np.testing.assert_array_equal(occ, [1.0, 1.0, 0.0, 0.0])


@pytest.mark.parametrize("top", [0.5, 1.0])
def test_tolerance_scale_is_at_least_one(top):
    """atol = tol * max(1, max|eps|): for a spectrum inside [-1, 1] the absolute tolerance is tol."""
    tol = 1e-3
    gap = 1.5 * tol  # > tol * 1, < tol * 2
    eps = np.array([-top, 0.0, gap, top])
    _, shell = fill_levels(eps, 2, tol=tol)
    assert shell is None
    _, shell = fill_levels(eps, 2, tol=2 * tol)
    assert shell is not None and (shell.first, shell.last) == (1, 2)


def test_fill_levels_takes_any_real_dtype():
    """Integer spectra are converted to float64 first (int8 differences would wrap around)."""
    occ, shell = fill_levels(np.array([-100, 100], dtype=np.int8), 1)
    assert shell is None
    np.testing.assert_array_equal(occ, [1.0, 0.0])
    assert occ.dtype == np.float64


def test_fill_levels_error_messages():
    with pytest.raises(ValueError, match=r"fill_levels takes one spectrum \(N,\), got shape \(2, 2\)"):
        fill_levels(np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match=r"^energies must be sorted ascending \(as eigh returns them\)$"):
        fill_levels(np.array([1.0, 0.0]), 1)


def test_ground_state_density_passes_tolerance():
    H = np.diag([-1.0, 0.0, 1e-6, 1.0])
    rho, shell = ground_state_density(H, 2)  # default tol 1e-8 resolves the 1e-6 splitting
    assert shell is None
    np.testing.assert_allclose(np.diag(rho), [1, 1, 0, 0], atol=1e-15)
    rho, shell = ground_state_density(H, 2, tol=1e-5)
    assert (shell.first, shell.last) == (1, 2)
    np.testing.assert_allclose(np.diag(rho), [1, 0.5, 0.5, 0], atol=1e-15)


# -- FermiShell.message ---------------------------------------------------------------------------
SHELL = FermiShell(first=3, last=4, energies=(-0.25, 0.125), electrons=1, occupation=0.5, n_electrons=4, tol=1e-8)


def test_message_without_context():
    msg = SHELL.message()
    assert msg.startswith("degenerate Fermi level: levels 3..4 (energies -0.25, 0.125; equal within tol=1.0e-08) ")
    assert "share 1 of the 4 electrons, so each gets occupation 0.5;" in msg
    assert " in " not in msg.split(":")[0]
    assert SHELL.message("") == msg


def test_message_with_context():
    msg = SHELL.message("my run")
    assert msg.startswith("degenerate Fermi level in my run: levels 3..4 (energies -0.25, 0.125;")


# -- report_degeneracy: the warning points at user code --------------------------------------------
def _warnings_of(call):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        call()
    return [w for w in rec if issubclass(w.category, DegenerateFermiLevelWarning)]


def test_warning_points_at_direct_caller():
    system = HolsteinChain(L=8)  # periodic, half filling: k = +-pi/2 shell at energy 0
    line = inspect.currentframe().f_lineno + 1
    ws = _warnings_of(lambda: system.deep_quench())
    assert len(ws) == 1
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampolines put their own frames in the stack
        assert (ws[0].filename, ws[0].lineno) == (__file__, line)
    assert str(ws[0].message).startswith("degenerate Fermi level in deep_quench (L=8, periodic, g=0, N=4): levels 3..4")


def test_warning_points_at_caller_of_initial_state():
    system = HolsteinChain(L=8)
    line = inspect.currentframe().f_lineno + 1
    ws = _warnings_of(lambda: system.initial_state("deep_quench"))
    assert len(ws) == 1
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampolines put their own frames in the stack
        assert (ws[0].filename, ws[0].lineno) == (__file__, line)


def test_warning_from_code_without_module_name():
    """exec'd code has no __name__ in its globals; it is still user code, not a crash."""
    system = HolsteinChain(L=8)
    code = compile("\n\nsystem.deep_quench()\n", "<user-script>", "exec")
    ws = _warnings_of(lambda: exec(code, {"system": system}))  # noqa: S102 -- globals without __name__ on purpose
    assert len(ws) == 1
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampolines put their own frames in the stack
        assert (ws[0].filename, ws[0].lineno) == ("<user-script>", 3)


# -- self_consistent_cdw ----------------------------------------------------------------------------
def _chain_h(L, g):
    T = np.zeros((L, L))
    for i in range(L):
        T[i, (i + 1) % L] = T[(i + 1) % L, i] = 1.0
    return lambda Q: -T - g * np.diag(Q)


@pytest.mark.parametrize(("L", "N"), [(8, 4), (8, 2), (8, 6), (6, 3), (8, 5)])
def test_seed_is_maximal_physical_density_wave(L, N):
    """The seed Q = g (n_seed - n0) / K with n_seed = N/L + delta cos(2 pi N i / L): a density with
    mean N/L, site 0 highest, and the largest amplitude that keeps every n_i in [0, 1]."""
    g, K, n0 = 0.7, 2.5, 0.3
    seen = []
    h = _chain_h(L, g)

    def spy(Q):
        seen.append(np.array(Q))
        return h(Q)

    self_consistent_cdw(spy, L=L, g=g, K=K, n0=n0, n_electrons=N, tol=1e-10, max_iter=5000)
    n_seed = seen[0] * K / g + n0
    f = N / L
    pattern = np.cos(2 * np.pi * N * np.arange(L) / L)
    delta = min(f, 1 - f) / np.abs(pattern).max()
    np.testing.assert_allclose(n_seed, f + delta * pattern, atol=1e-12)
    assert n_seed.mean() == pytest.approx(f, abs=1e-12)
    assert n_seed.min() >= -1e-12 and n_seed.max() <= 1 + 1e-12
    assert n_seed[0] == pytest.approx(n_seed.max(), abs=1e-12)


def test_exact_fixed_point_meets_zero_tolerance():
    """Converged means residual <= tol: at g = 0 the seed is Q = 0, an exact fixed point."""
    sol = self_consistent_cdw(_chain_h(4, 0.0), L=4, g=0.0, K=1.0, n0=0.5, n_electrons=1, tol=0.0)
    assert sol.iterations == 1 and sol.residual == 0.0
    np.testing.assert_array_equal(sol.Q, np.zeros(4))


def test_degeneracy_tol_reaches_level_filling():
    H = np.diag([-1.0, 0.0, 1e-6, 1.0])
    kw = {"L": 4, "g": 0.0, "K": 1.0, "n0": 0.5, "n_electrons": 2}
    assert self_consistent_cdw(lambda Q: H, **kw).shell is None
    sol = self_consistent_cdw(lambda Q: H, degeneracy_tol=1e-5, **kw)
    assert (sol.shell.first, sol.shell.last) == (1, 2)
    np.testing.assert_allclose(np.diag(sol.rho), [1, 0.5, 0.5, 0], atol=1e-15)


def _scripted(occupations):
    """H(Q) whose ground state (N = 2, L = 4) fills the sites scripted for each successive call."""
    seen = []

    def h(Q):
        seen.append(np.array(Q))
        return -np.diag(np.asarray(occupations[min(len(seen), len(occupations)) - 1], dtype=float))

    return h, seen


def test_orthogonal_successive_steps_do_not_halve_the_mixing():
    """g = K = 1, n0 = 1/2: Q_new = n - 1/2. Seed (+,-,+,-)/2; call 1 fills sites 0,1 -> step
    (0,1,-1,0), Q1 = (+,+,-,-)/2; call 2 fills sites 1,3 -> step (-1,0,0,1), orthogonal to the
    previous one, so the mixing stays 1 and Q2 = (-,+,-,+)/2 (halving would give (0,1,-1,0)/2)."""
    h, seen = _scripted([[1, 1, 0, 0], [0, 1, 0, 1], [0, 1, 0, 1]])
    sol = self_consistent_cdw(h, L=4, g=1.0, K=1.0, n0=0.5, n_electrons=2, tol=1e-12)
    np.testing.assert_allclose(seen[0], [0.5, -0.5, 0.5, -0.5], atol=1e-15)
    np.testing.assert_allclose(seen[1], [0.5, 0.5, -0.5, -0.5], atol=1e-15)
    np.testing.assert_allclose(seen[2], [-0.5, 0.5, -0.5, 0.5], atol=1e-15)
    assert sol.iterations == 3


def test_default_iteration_budget_and_mixing():
    """Defaults: max_iter 5000 (exactly that many H evaluations) and plain iteration (mixing 1)."""
    calls = []

    def flip(Q):  # alternates the filled sublattice on every call: there is no fixed point
        calls.append(1)
        return -np.diag([0.0, 1.0, 0.0, 1.0] if len(calls) % 2 else [1.0, 0.0, 1.0, 0.0])

    with pytest.raises(SelfConsistencyError, match=r"did not converge in 5000 iterations: .* \(L=4, g=1.0, K=1.0"):
        self_consistent_cdw(flip, L=4, g=1.0, K=1.0, n0=0.5, n_electrons=2)
    assert len(calls) == 5000
    # plain iteration by default: one step from the seed lands on Q_new (script above, call 1)
    h, seen = _scripted([[1, 1, 0, 0]])
    sol = self_consistent_cdw(h, L=4, g=1.0, K=1.0, n0=0.5, n_electrons=2, tol=1e-12)
    np.testing.assert_allclose(seen[1], [0.5, 0.5, -0.5, -0.5], atol=1e-15)
    assert sol.iterations == 2


def test_zero_iterations_report_infinite_residual():
    with pytest.raises(
        SelfConsistencyError, match=r"did not converge in 0 iterations: max \|g\(n - n0\)/K - Q\| = inf"
    ):
        self_consistent_cdw(_chain_h(4, 1.0), L=4, g=1.0, K=1.0, n0=0.5, n_electrons=2, max_iter=0)
