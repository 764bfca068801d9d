"""Tests of the template plugin: the core's conformance kit, plus what the kit cannot know.

The kit checks what every hybrid system must satisfy (shapes, batching, Hermiticity, trace, RK4
order, energy drift, deterministic scenarios, a graph that matches the rhs). Only the plugin can
check that its equations are the
right ones, so the other tests compare the O(L^2) kernels with the dense formulas and the forces
with -dE/du from autograd.
"""

from __future__ import annotations

import pytest
import torch
from qcsurrogate_ssh import SSHChain, bond_matrix, bond_order

import qcsurrogate
from qcsurrogate import ConfigError, State
from qcsurrogate.testing import check_system, parametrize_with_checks, random_state


@parametrize_with_checks(
    [SSHChain(L=8, alpha=0.6)], scenario_kwargs={"random_bonds": {"n_traj": 2, "sigma": 0.1, "seed": 1}}, n_steps=20
)
def test_conformance(system, check):
    check()  # one pytest case per system, check and state, so a failure names them


def test_check_system_odd_ring():
    passed = check_system(SSHChain(L=5, alpha=0.8), n_steps=20)
    assert "scenarios_deterministic" in passed


@pytest.mark.parametrize("L", [2, 3, 8])
def test_rhs_and_energy_match_dense_formulas(L):
    system = SSHChain(L=L, alpha=0.7)
    state = random_state(system, batch=(3,), seed=L)
    H = system.hamiltonian(state["u"]).to(torch.complex128)
    d = system.rhs(state)
    assert torch.allclose(d.rho, -1j * (H @ state.rho - state.rho @ H), rtol=0, atol=1e-13)
    kinetic = (state["p"] ** 2 / (2 * system.params.m) + 0.5 * system.params.K * state["u"] ** 2).sum(-1)
    dense_energy = torch.diagonal(state.rho @ H, dim1=-2, dim2=-1).sum(-1).real + kinetic
    assert torch.allclose(system.energy(state), dense_energy, rtol=0, atol=1e-13)


def test_forces_are_minus_energy_gradient():
    """Hamilton's equations: du/dt = dE/dp and dp/dt = -dE/du."""
    system = SSHChain(L=6, alpha=0.9)
    state = random_state(system, batch=(2,), seed=3)
    u = state["u"].clone().requires_grad_(True)
    p = state["p"].clone().requires_grad_(True)
    system.energy(State._raw({"u": u, "p": p}, state.rho)).sum().backward()
    d = system.rhs(state)
    assert torch.allclose(d["u"], p.grad, atol=1e-14) and torch.allclose(d["p"], -u.grad, atol=1e-14)


def test_views_and_graph():
    rho = torch.arange(16.0).reshape(4, 4).to(torch.complex128)
    assert bond_order(rho).tolist() == [1.0, 6.0, 11.0, 12.0]  # rho_01, rho_12, rho_23, rho_30
    assert torch.equal(bond_order(rho), qcsurrogate.graph.get_view("bond_real")(rho))
    B = bond_matrix(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert B.tolist() == [[0, 1, 0, 4], [1, 0, 2, 0], [0, 2, 0, 3], [4, 0, 3, 0]]
    assert bond_matrix(torch.tensor([1.0, 2.0]))[0, 1] == 3.0  # L = 2: both bonds join sites 0 and 1
    graph = SSHChain(L=4).graph
    assert graph.to_dict() == {
        "u": [["p", "identity"]],
        "p": [["u", "identity"], ["rho", "bond_real"]],
        "rho": [["u", "bond_matrix"], ["rho", "matrix"]],
    }
    assert qcsurrogate.DependencyGraph.from_dict(graph.to_dict()) == graph


def test_degenerate_fermi_level_is_refused():
    with pytest.raises(ConfigError, match="degenerate Fermi level"):
        SSHChain(L=8).initial_state("dimerized", delta=0.0)  # uniform ring, L % 4 == 0, half filling
    assert SSHChain(L=6).initial_state("dimerized", delta=0.0).rho.shape == (6, 6)  # L = 6 is gapped


def test_parameters_are_validated():
    with pytest.raises(ConfigError, match="alpah"):
        SSHChain(L=8, alpah=0.5)
    assert SSHChain(L=8, K=1.0, omega=0.5).params.m == pytest.approx(4.0)


def test_discovered_by_the_registry():
    """Installed, the entry point registers 'ssh'; from a source tree conftest.py registers the module."""
    assert isinstance(qcsurrogate.load_system("ssh", L=6), SSHChain)
    assert qcsurrogate.list_plugins()["ssh"]["systems"] == ["ssh"]
    assert qcsurrogate.list_plugins()["ssh"]["views"] == ["bond_matrix"]
    assert qcsurrogate.get_view("bond_matrix").fn is bond_matrix
