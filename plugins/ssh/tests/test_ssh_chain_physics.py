"""What the kit cannot know: the self-consistent ground state, the wall profiles and the observables
measured on constructed and on simulated states, scenario validation and seeding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from qcsurrogate_ssh_chain import (
    DegenerateFermiLevelWarning,
    SelfConsistencyError,
    SSHChain,
    bond_order,
    local_dimerization,
    wall_position,
)

import qcsurrogate
from qcsurrogate import ConfigError
from qcsurrogate.io import simulate_to_file
from qcsurrogate.system import ScenarioArgumentError


def _observe(system: SSHChain, state) -> dict[str, torch.Tensor]:
    return {o.name: o(state) for o in system.observables()}


# -- the self-consistent dimerised ground state ----------------------------------------------------------
def test_ground_state_is_self_consistent_and_dimerised():
    system = SSHChain(L=32, alpha=1.2)
    sol = system.dimerized_ground_state()
    K, a = system.params.K, system.params.alpha
    b = bond_order(torch.from_numpy(sol.rho)).numpy()
    assert np.abs(K * sol.u + 2 * a * b).max() < 1e-11  # force balance K u = -2 alpha b
    assert sol.u0 > 0.3 and sol.u_bar < 0  # dimerised (even bonds long: t_0 < t_1) and compressed
    assert np.allclose(sol.u, sol.u_bar + sol.u0 * (-1.0) ** np.arange(32), atol=1e-10)  # a clean two-bond pattern
    assert np.abs(sol.rho @ sol.rho - sol.rho).max() < 1e-12  # a Slater determinant: the gap is open
    eps = np.linalg.eigvalsh(system.hamiltonian(sol.u).numpy())
    assert eps[16] - eps[15] == pytest.approx(4 * a * sol.u0, rel=1e-9)  # Peierls gap 4 alpha u0 (L % 4 == 0)
    state = system.initial_state("dimerized_quench")
    d = system.rhs(state)  # a stationary state of the flow: no force, no electron dynamics
    assert float(d["p"].abs().max()) < 1e-11 and float(d.rho.abs().max()) < 1e-11


def test_quench_changes_coupling_only():
    system = SSHChain(L=16, alpha=1.5)
    state = system.initial_state("dimerized_quench", alpha_initial=1.2)
    gs_12 = SSHChain(L=16, alpha=1.2).dimerized_ground_state()
    assert np.allclose(state["u"].numpy(), gs_12.u, atol=1e-12)
    assert float(system.rhs(state)["p"].abs().max()) > 0.1  # out of equilibrium at alpha = 1.5


def test_degenerate_fermi_level_is_shared_and_warned():
    """alpha_initial = 0: the free ring; at L % 4 == 0 the k = +-pi/2 pair holds one electron."""
    with pytest.warns(DegenerateFermiLevelWarning, match="levels 3..4") as caught:
        state = SSHChain(L=8).initial_state("dimerized_quench", alpha_initial=0.0)
    assert caught[0].filename == __file__  # the warning names the caller, not the framework
    ev = torch.linalg.eigvalsh(state.rho)
    assert torch.allclose(ev, torch.tensor([0.0] * 3 + [0.5] * 2 + [1.0] * 3, dtype=torch.float64), atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateFermiLevelWarning)
        SSHChain(L=6).initial_state("dimerized_quench", alpha_initial=0.0)  # L = 6 is gapped: no warning


def test_far_apart_kink_antikink_share_their_midgap_electron():
    """Two walls 32 bonds apart: their midgap levels split by 6e-10, within the degeneracy tolerance, share one
    electron at half filling (warned, mixed rho); one electron fewer leaves both empty, a pure state."""
    system = SSHChain(L=64, alpha=1.5)
    with pytest.warns(DegenerateFermiLevelWarning, match="levels 31..32"):
        half = system.initial_state("solitons")
    assert float((half.rho @ half.rho - half.rho).abs().max()) > 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateFermiLevelWarning)
        charged = system.initial_state("solitons", n_electrons=31)
    assert float((charged.rho @ charged.rho - charged.rho).abs().max()) < 1e-12


def test_self_consistency_failure_is_reported():
    with pytest.raises(SelfConsistencyError, match="did not converge in 2 iterations"):
        SSHChain(L=16).initial_state("dimerized_quench", max_iter=2)


# -- walls -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("x0", [10.5, 10.3, 0.4, 20.8])
def test_one_soliton_is_located_where_it_was_put(x0):
    system = SSHChain(L=21, alpha=1.5)
    state = system.initial_state("solitons", positions=[x0], xi=2.5)
    d = local_dimerization(state["u"])
    assert float(d.abs().max()) > 0.4  # both domains are dimerised
    pos = float(_observe(system, state)["soliton_position"])
    assert min(abs(pos - x0), system.L - abs(pos - x0)) < 0.05


def test_relaxed_soliton_is_self_consistent_and_still_kicked():
    """A wall centred on bond 10.5 of L = 21 (mirror-symmetric) relaxes to the force balance, in place."""
    system = SSHChain(L=21, alpha=1.5)
    bare = system.initial_state("solitons", velocity=0.1)
    relaxed = system.initial_state("solitons", velocity=0.1, relax_steps=80)
    K, a = system.params.K, system.params.alpha
    balance = lambda s: float((K * s["u"] + 2 * a * bond_order(s.rho)).abs().max())  # noqa: E731
    assert balance(bare) > 1e-2 and balance(relaxed) < 1e-11
    assert float(_observe(system, relaxed)["soliton_position"]) == pytest.approx(10.5, abs=1e-9)
    assert torch.equal(relaxed["p"], bare["p"]) and float(relaxed["p"].abs().max()) > 0


def test_kink_antikink_are_located_and_labelled():
    system = SSHChain(L=40, alpha=1.5)
    state = system.initial_state("solitons", positions=[7.2, 27.7], n_traj=1)
    obs = _observe(system, state)
    assert obs["kink_position"].item() == pytest.approx(7.2, abs=0.05)
    assert obs["antikink_position"].item() == pytest.approx(27.7, abs=0.05)
    swapped = system.initial_state("solitons", positions=[27.7, 7.2])  # the first wall listed is the kink
    assert _observe(system, swapped)["kink_position"].item() == pytest.approx(27.7, abs=0.05)
    assert abs(obs["dimerization"].item()) < 0.05 < obs["dimerization_amplitude"].item()


def test_kicked_soliton_moves_at_its_velocity():
    """The soliton of an odd ring, kicked with v = 0.1 bonds per hbar/t, is tracked moving continuously at v."""
    system = SSHChain(L=21, alpha=1.5)
    state = system.initial_state("solitons", velocity=0.1)
    traj = qcsurrogate.simulate(system, state, 0.05, 400, save_every=20, progress=False)  # t = 0 .. 20
    x = _observe(system, traj)["soliton_position"].numpy()
    steps = np.diff(x)
    assert np.all(steps > 0) and np.all(steps < 0.2)  # continuous, forward (0.1 per saved step on average)
    assert (x[-1] - x[0]) / 20.0 == pytest.approx(0.1, rel=0.1)
    assert float(_observe(system, state)["soliton_position"]) == pytest.approx(10.5, abs=1e-9)


def test_wall_position_without_a_wall_is_finite():
    u = torch.tensor([0.3, -0.3] * 4, dtype=torch.float64)  # one clean domain on an even ring
    assert torch.isfinite(wall_position(u, +1)) and torch.isfinite(wall_position(u, -1))


def test_observables_values_on_the_ground_state():
    system = SSHChain(L=16, alpha=1.2)
    sol = system.dimerized_ground_state()
    obs = _observe(system, system.initial_state("dimerized_quench"))
    assert obs["dimerization"].item() == pytest.approx(sol.u0, abs=1e-12)
    assert obs["dimerization_amplitude"].item() == pytest.approx(sol.u0, abs=1e-12)
    K, a = system.params.K, system.params.alpha
    assert obs["bond_order"].item() == pytest.approx(-K * sol.u_bar / (2 * a), abs=1e-12)  # force balance
    assert obs["staggered_bond_order"].item() == pytest.approx(-K * sol.u0 / (2 * a), abs=1e-12)


def test_observable_names_and_shapes():
    even, odd = SSHChain(L=8, alpha=1.5), SSHChain(L=9, alpha=1.5)
    common = {"dimerization", "dimerization_amplitude", "bond_order", "staggered_bond_order", "S_u", "S_p"}
    assert {o.name for o in even.observables()} == common | {"kink_position", "antikink_position"}
    assert {o.name for o in odd.observables()} == common | {"soliton_position"}
    traj = qcsurrogate.simulate(odd, odd.initial_state("solitons", xi=1.0, n_traj=3, seed=0), 0.1, 4, progress=False)
    for o in odd.observables():
        want = (5, 3) + ((len(o.axis),) if o.kind == "spectrum" else ())
        assert tuple(o(traj).shape) == want, o.name
    one = odd.initial_state("solitons", xi=1.0)
    assert all(o(one).shape == ((len(o.axis),) if o.kind == "spectrum" else ()) for o in odd.observables())


# -- scenarios: validation and seeding --------------------------------------------------------------
@pytest.mark.parametrize(
    "L, kwargs, match",
    [
        (8, {"n_walls": 1}, "even number of domain walls"),
        (9, {"n_walls": 2}, "odd number of domain walls"),
        (16, {"positions": [4.0]}, "must list 2"),
        (16, {"positions": [4.0, 4.5]}, "at least one bond apart"),
        (16, {"xi": 5.0}, "do not fit"),
        (16, {"n_electrons": 17}, "n_electrons"),
    ],
)
def test_solitons_refuses_bad_arguments(L, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SSHChain(L=L, alpha=1.5).initial_state("solitons", **kwargs)


@pytest.mark.parametrize(
    "scenario, kwargs",
    [("solitons", {"n_walls": 3}), ("solitons", {"jitter": -1.0}), ("dimerized_quench", {"sigma_u": -0.1}),
     ("dimerized_quench", {"alpha_inital": 1.0}), ("random_bonds", {"n_traj": 0})],
)
def test_bad_arguments_are_scenario_argument_errors(scenario, kwargs):
    with pytest.raises(ScenarioArgumentError):
        SSHChain(L=16, alpha=1.5).initial_state(scenario, **kwargs)


def test_parameters_are_validated():
    with pytest.raises(ConfigError, match="alpah"):
        SSHChain(L=8, alpah=0.5)
    with pytest.raises(ConfigError, match="L"):
        SSHChain(L=3)
    assert SSHChain(L=8, K=1.0, omega=0.5).params.m == pytest.approx(4.0)


@pytest.mark.parametrize(
    "scenario, kwargs",
    [("solitons", {"n_traj": 3, "jitter": 1.0, "sigma_v": 0.05}),
     ("dimerized_quench", {"n_traj": 3, "sigma_u": 0.01, "sigma_p": 0.01}),
     ("random_bonds", {"n_traj": 3, "sigma": 0.1})],
)
def test_seeded_scenarios_are_reproducible(scenario, kwargs):
    system = SSHChain(L=20, alpha=1.5)
    a = system.initial_state(scenario, seed=1, **kwargs)
    b = system.initial_state(scenario, seed=1, **kwargs)
    c = system.initial_state(scenario, seed=2, **kwargs)
    assert a.allclose(b, rtol=0, atol=0) and not a.allclose(c)
    assert not torch.equal(a["u"][0], a["u"][1])  # the trajectories of an ensemble differ


def test_from_file_restarts_a_stored_run(tmp_path):
    system = SSHChain(L=9, alpha=1.5)
    state = system.initial_state("solitons", xi=1.0, n_traj=2, velocity=0.1, seed=3)
    path = simulate_to_file(system, state, tmp_path / "ssh.h5", 0.1, 6, save_every=3, progress=False)
    later = qcsurrogate.simulate(system, state, 0.1, 6, save_every=6, progress=False).index(-1)
    restart = system.initial_state("from_file", path=str(path), trajectories=[1])
    assert torch.allclose(restart["u"], later["u"][1:], atol=1e-12)
    with pytest.raises(ConfigError, match="L=9"):
        SSHChain(L=8).initial_state("from_file", path=str(path))
