"""The core's conformance kit over every scenario on a ring and an open chain, plus the equations checked
against dense formulas and autograd, and the graph's views."""

from __future__ import annotations

import pytest
import torch
from qcsurrogate_sd_chain import SDChain, charge_density, spin_density

import qcsurrogate
from qcsurrogate import State
from qcsurrogate.testing import parametrize_with_checks, random_state

RING = SDChain(L=6, J=1.3, B=0.4)
OPEN = SDChain(L=5, J=-0.8, boundary="open")
SIGMA = torch.tensor([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=torch.complex128)


def _kit_kwargs(system: SDChain) -> dict:
    q = 2 * torch.pi * 2 / system.L if system.boundary == "periodic" else 1.1
    return {
        "spiral_quench": {"q": q, "J_initial": 0.5, "tilt_angle": 0.3, "random_phase": True, "n_traj": 2, "seed": 1},
        "random_spins": {"n_traj": 2, "seed": 2},
        "ferro_tilt": {"theta": 0.7, "tilt_angle": 0.2, "n_traj": 2, "seed": 3, "n_electrons": 3},
    }


@parametrize_with_checks([RING, OPEN], scenario_kwargs=_kit_kwargs, n_steps=30)
def test_conformance_check(system, check):
    check()


def _dense_hamiltonian(system: SDChain, state: State) -> torch.Tensor:
    """H = -t T (x) 1 - J sum_i |i><i| (x) S_i . sigma - (B/2) 1 (x) sigma^z, built from Kronecker products."""
    p = system.params
    L = p.L
    T = torch.zeros(L, L, dtype=torch.complex128)
    for i in range(L - (p.boundary == "open")):
        T[i, (i + 1) % L] += 1
        T[(i + 1) % L, i] += 1
    S = torch.stack([state[c] for c in ("Sx", "Sy", "Sz")], -1).to(torch.complex128)  # (*batch, L, 3)
    Sdots = torch.einsum("...ia,abc->...ibc", S, SIGMA)  # (*batch, L, 2, 2)
    H = -p.hopping * torch.kron(T, torch.eye(2, dtype=torch.complex128)) - 0.5 * p.B * torch.kron(
        torch.eye(L, dtype=torch.complex128), SIGMA[2])
    onsite = torch.zeros(*S.shape[:-2], 2 * L, 2 * L, dtype=torch.complex128)
    for i in range(L):
        onsite[..., 2 * i:2 * i + 2, 2 * i:2 * i + 2] = Sdots[..., i, :, :]
    return H - p.J * onsite


@pytest.mark.parametrize("system", [RING, OPEN, SDChain(L=2, J=0.6, B=-0.3), SDChain(L=3)], ids=str)
def test_rhs_and_energy_match_dense_formulas(system):
    state = random_state(system, batch=(3,), seed=system.L)
    H = _dense_hamiltonian(system, state)
    assert torch.allclose(system.hamiltonian(state["Sx"], state["Sy"], state["Sz"]), H, rtol=0, atol=1e-15)
    d = system.rhs(state)
    assert torch.allclose(d.rho, -1j * (H @ state.rho - state.rho @ H), rtol=0, atol=1e-13)
    S = torch.stack([state[c] for c in ("Sx", "Sy", "Sz")], -2)
    dense_energy = torch.diagonal(H @ state.rho, dim1=-2, dim2=-1).sum(-1).real - system.params.B * S[..., 2, :].sum(-1)
    assert torch.allclose(system.energy(state), dense_energy, rtol=0, atol=1e-13)
    # the spin density as tr(sigma rho_ii), straight from the definition
    blocks = torch.stack([state.rho[..., 2 * i:2 * i + 2, 2 * i:2 * i + 2] for i in range(system.L)], -3)
    s = torch.einsum("abc,...icb->...ai", SIGMA, blocks)
    assert torch.allclose(spin_density(state.rho), s.real, atol=1e-15) and float(s.imag.abs().max()) < 1e-15


def test_spin_torque_is_minus_s_cross_energy_gradient():
    """Hamiltonian spin dynamics: dS_i/dt = -S_i x dE/dS_i (autograd), so E is the conserved energy."""
    system = SDChain(L=5, J=0.9, B=0.35)
    state = random_state(system, batch=(2,), seed=3)
    S = torch.stack([state[c] for c in ("Sx", "Sy", "Sz")], -2).clone().requires_grad_(True)
    system.energy(State._raw({c: S[..., k, :] for k, c in enumerate(("Sx", "Sy", "Sz"))}, state.rho)).sum().backward()
    torque = -torch.linalg.cross(S.detach(), S.grad, dim=-2)
    d = system.rhs(state)
    assert torch.allclose(torch.stack([d[c] for c in ("Sx", "Sy", "Sz")], -2), torque, rtol=0, atol=1e-14)


def test_graph_and_views():
    assert RING.graph.to_dict() == {
        "Sx": [["Sy", "identity"], ["Sz", "identity"], ["rho", "spin_density_y"], ["rho", "spin_density_z"]],
        "Sy": [["Sx", "identity"], ["Sz", "identity"], ["rho", "spin_density_x"], ["rho", "spin_density_z"]],
        "Sz": [["Sx", "identity"], ["Sy", "identity"], ["rho", "spin_density_x"], ["rho", "spin_density_y"]],
        "rho": [["Sx", "identity"], ["Sy", "identity"], ["Sz", "identity"], ["rho", "matrix"]],
    }
    state = random_state(RING, batch=(2,), seed=0)
    s = spin_density(state.rho)
    for k, c in enumerate("xyz"):
        view = qcsurrogate.get_view(f"spin_density_{c}")  # the core's, blocked: it needs the number of sites
        assert view.blocked and torch.equal(view(state.rho, L=6), s[..., k, :])
        assert view(state.rho.to(torch.complex64), L=6).dtype == torch.float32  # surrogates run in single precision
    n = qcsurrogate.get_view("diagonal")(state.rho, L=6)  # the core's occupation sums over the spins
    assert torch.allclose(n, charge_density(state.rho))
    assert torch.allclose(n, torch.diagonal(state.rho, dim1=-2, dim2=-1).real.unflatten(-1, (6, 2)).sum(-1))
    with pytest.raises(ValueError, match="the spin density views need 2 orbitals per site"):
        qcsurrogate.get_view("spin_density_z")(state.rho, L=12)  # read as one orbital per site
    assert RING.orbitals == 2 and RING.vector_fields == {"S": ("Sx", "Sy", "Sz")}


def test_discovered_by_the_registry():
    """Installed, the entry point registers 'sd_chain'; from a source tree conftest.py registers the module."""
    assert isinstance(qcsurrogate.load_system("sd_chain", L=6), SDChain)
    assert qcsurrogate.list_plugins()["sd_chain"]["systems"] == ["sd_chain"]
    assert qcsurrogate.list_plugins()["sd_chain"]["views"] == []  # its graph's spin views are the core's
