"""Conservation-law projections of a surrogate's step: the spectrum of rho and the total energy.

Both are exact laws of the true dynamics (unitary evolution of rho, energy-conserving equations); the
tests check that each projection lands on its manifold, leaves points already on it alone, moves
nothing it should not, and that training passes gradients straight through it.
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
from qcsurrogate.constraints import ConstraintError, energy_projection, vector_length_projection
from qcsurrogate.surrogate import PARC, Normalization, PARCConfig
from qcsurrogate.surrogate.base import build_surrogate, project_spectrum
from qcsurrogate.testing import random_density_matrix
from qcsurrogate.training.checkpoint import load_model, save_model

TOY = ToySystem(L=6)


def random_unitary(L: int, gen: torch.Generator) -> torch.Tensor:
    z = torch.randn(L, L, dtype=torch.complex128, generator=gen)
    q, r = torch.linalg.qr(z)
    return q * (torch.diagonal(r) / torch.diagonal(r).abs())


def mixed_rho(L: int, gen: torch.Generator) -> torch.Tensor:
    """A rho with fractional, partly degenerate occupations (like a degenerate Fermi level)."""
    occ = torch.tensor([1.0] * (L // 2 - 1) + [0.5, 0.5] + [0.0] * (L - L // 2 - 1), dtype=torch.float64)
    u = random_unitary(L, gen)
    return (u * occ.to(u.dtype)) @ u.mH


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.floats(1e-4, 0.3), L=st.integers(3, 9))
def test_spectrum_projection_restores_the_reference_occupations(seed, size, L):
    gen = torch.Generator().manual_seed(seed)
    reference = mixed_rho(L, gen)
    noise = torch.randn(L, L, dtype=torch.complex128, generator=gen)
    predicted = random_unitary(L, gen) @ reference @ random_unitary(L, gen).mH * 0 + reference + size * noise
    out = project_spectrum(predicted, reference)
    torch.testing.assert_close(out, out.mH, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.eigvalsh(out), torch.linalg.eigvalsh(reference), rtol=0, atol=1e-12)
    torch.testing.assert_close(project_spectrum(out, reference), out, rtol=0, atol=1e-10)  # a projection
    # nearest on the manifold through rho's own eigenvectors: never farther than the Hermitian part is from it
    herm = 0.5 * (predicted + predicted.mH)
    assert torch.linalg.matrix_norm(out - herm) <= torch.linalg.matrix_norm(reference - herm) + 1e-12


def test_spectrum_projection_keeps_a_unitarily_evolved_rho():
    gen = torch.Generator().manual_seed(3)
    reference = mixed_rho(8, gen)
    u = random_unitary(8, gen)
    evolved = u @ reference @ u.mH
    torch.testing.assert_close(project_spectrum(evolved, reference), evolved, rtol=0, atol=1e-12)


def make(**cfg):
    torch.manual_seed(0)
    config = PARCConfig(**{"width": 8, "dtype": "float64", **cfg})
    return build_surrogate("parc", TOY, config, Normalization.identity(TOY.graph))


def test_spectrum_step_passes_gradients_straight_through():
    model = make(project_rho="spectrum").train()
    state = TOY.initial_state("random_start", seed=0, n_traj=2)
    nxt = State._raw(state.fields, (state.rho + 0.01).requires_grad_(True))
    out = model.finish_step(state, nxt)
    torch.testing.assert_close(out.rho.detach(), project_spectrum(nxt.rho.detach(), state.rho), rtol=0, atol=0)
    weight = torch.randn(out.rho.shape, dtype=torch.complex128)
    (grad,) = torch.autograd.grad((out.rho * weight.conj()).real.sum(), nxt.rho)
    torch.testing.assert_close(grad, weight)  # the identity's gradient, not the eigenvectors'


def test_training_identity_leaves_out_exactly_the_inference_only_options():
    base = PARCConfig(width=8, project_rho="spectrum")
    same = PARCConfig(width=8, project_rho="spectrum", conserve_energy=True)
    assert same.training_identity() == base.training_identity() == base.model_dump(mode="json")
    assert same.inference_options() == {"conserve_energy": True} and base.inference_options() == {}
    for other in (PARCConfig(width=8, project_rho="hermitian"), PARCConfig(width=8), PARCConfig(width=12, project_rho="spectrum")):
        assert other.training_identity() != base.training_identity()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.floats(1e-6, 0.1))
def test_energy_projection_restores_the_input_energy_and_leaves_rho(seed, size):
    gen = torch.Generator().manual_seed(seed)
    state = TOY.initial_state("random_start", seed=seed % 1000, n_traj=3)
    nxt = State._raw({k: v + size * torch.randn(v.shape, dtype=v.dtype, generator=gen) for k, v in state.fields.items()},
                     state.rho)
    out = energy_projection(TOY)(state, nxt)
    e0, e1 = TOY.energy(state), TOY.energy(out)
    torch.testing.assert_close(e1, e0, rtol=1e-12, atol=1e-12)
    assert out.rho is nxt.rho
    # the smallest change along the gradient: not larger than a few times the perturbation it undoes
    moved = torch.sqrt(sum(((out[k] - nxt[k]) ** 2).sum(-1) for k in state.fields))
    assert (moved <= 3 * size * math.sqrt(2 * TOY.L) + 1e-12).all()


def test_energy_projection_keeps_a_state_of_the_right_energy():
    state = TOY.initial_state("random_start", seed=1, n_traj=2)
    out = energy_projection(TOY)(state, state)
    for k in state.fields:
        torch.testing.assert_close(out[k], state[k], rtol=0, atol=1e-13)


class NumpyEnergyToy(ToySystem):
    name = "numpy-energy-toy"

    def energy(self, state):
        return torch.from_numpy(super().energy(state.detach()).numpy())


def test_energy_projection_needs_an_autograd_energy():
    system = NumpyEnergyToy(L=6)
    state = system.initial_state("random_start", seed=0, n_traj=1)
    with pytest.raises(ConstraintError, match="NumpyEnergyToy.energy is not differentiable"):
        energy_projection(system)(state, state)


def test_rollout_with_conserve_energy_keeps_the_energy_and_the_spectrum():
    model = make(project_rho="spectrum", conserve_energy=True).eval()
    state = TOY.initial_state("random_start", seed=2, n_traj=2)
    free = make(project_rho="spectrum").eval().rollout(state, 20)
    traj = model.rollout(state, 20)
    e = TOY.energy(traj)
    assert (TOY.energy(free) - TOY.energy(state)).abs().max() > 1e-3  # the random net does not conserve it
    torch.testing.assert_close(e, TOY.energy(state).expand_as(e), rtol=1e-10, atol=1e-10)
    occ = torch.linalg.eigvalsh(traj.rho)
    torch.testing.assert_close(occ, torch.linalg.eigvalsh(state.rho).expand_as(occ), rtol=0, atol=1e-10)


def test_energy_constraint_acts_at_inference_only():
    model = make(conserve_energy=True)
    state = TOY.initial_state("random_start", seed=4, n_traj=2)
    nxt = State._raw({k: v + 0.05 for k, v in state.fields.items()}, state.rho)
    assert model.train().finish_step(state, nxt).fields is nxt.fields  # unrolled training sees the raw step
    fixed = model.eval().finish_step(state, nxt)
    torch.testing.assert_close(TOY.energy(fixed), TOY.energy(state), rtol=1e-12, atol=1e-12)


def test_conserve_energy_without_a_system_is_a_clear_error(tmp_path):
    model = make(conserve_energy=True)
    save_model(model, tmp_path / "m")
    state = TOY.initial_state("random_start", seed=0, n_traj=1)
    loaded = load_model(tmp_path / "m")
    with pytest.raises(RuntimeError, match=r"has model options \['conserve_energy'\], which need its System"):
        loaded.rollout(state, 1)
    attached = load_model(tmp_path / "m", system=TOY)
    torch.testing.assert_close(attached.rollout(state, 3).rho, model.eval().rollout(state, 3).rho)


def test_projection_options_in_configs():
    assert PARCConfig(project_rho=True).project_rho == "hermitian"
    assert PARCConfig(project_rho=False).project_rho == "none"
    dumped = PARCConfig(project_rho="hermitian").model_dump()
    assert dumped["project_rho"] is True and "conserve_energy" not in dumped  # run identities of older configs hold
    new = PARCConfig(project_rho="spectrum", conserve_energy=True)
    assert new.model_dump()["project_rho"] == "spectrum" and new.model_dump()["conserve_energy"] is True
    assert PARCConfig.model_validate(json.loads(json.dumps(new.model_dump()))) == new
    with pytest.raises(ValueError, match="project_rho"):
        PARCConfig(project_rho="pure")


def test_spec_round_trip_keeps_the_constraints():
    model = make(project_rho="spectrum", conserve_energy=True)
    clone = PARC.from_spec(json.loads(json.dumps(model.spec())))
    assert clone.config.project_rho == "spectrum" and clone.config.conserve_energy
    assert clone.constraints == []  # not persisted: attach_system sets them up
    assert len(clone.attach_system(TOY).constraints) == 1


def test_random_density_matrix_is_on_the_manifold_it_claims():
    rho = random_density_matrix(6, 3, (2,), torch.Generator().manual_seed(0))
    torch.testing.assert_close(project_spectrum(rho, rho), rho, rtol=0, atol=1e-12)


def test_spectrum_projection_keeps_the_trace_over_a_long_single_precision_chain():
    # single-precision eigen-solves biased the trace by ~1e-6 per step (3e-4 after these 300 steps)
    gen = torch.Generator().manual_seed(7)
    rho = mixed_rho(32, gen).to(torch.complex64)
    trace0 = torch.diagonal(rho).sum().real.double()
    for _ in range(300):  # each step projects a slightly perturbed copy onto the previous one's spectrum
        noisy = rho + 1e-4 * torch.randn(rho.shape, dtype=torch.complex64, generator=gen)
        rho = project_spectrum(noisy, rho)
    assert rho.dtype == torch.complex64
    assert abs(torch.diagonal(rho).sum().real.double() - trace0) < 2e-5


def test_unreachable_energy_keeps_the_closest_fields_and_never_moves_away():
    # electrons with more energy than the target: no field configuration reaches E0
    state = TOY.initial_state("random_start", seed=3, n_traj=2)
    low = State._raw({k: 0.0 * v for k, v in state.fields.items()}, state.rho)  # fields at rest: E0 low
    hot = State._raw(state.fields, state.rho)
    e_min_gap = (TOY.energy(hot) - TOY.energy(low)).abs()
    out = energy_projection(TOY)(low, hot)
    assert torch.isfinite(torch.stack([out[k] for k in out.fields])).all()
    gap = (TOY.energy(out) - TOY.energy(low)).abs()
    assert (gap <= e_min_gap + 1e-12).all()  # never farther from E0 than the prediction itself


# -- vector lengths ------------------------------------------------------------------------------------
def test_vector_length_projection_restores_each_site_length_and_the_direction():
    from toy_spinful import ToySpinfulVector

    system = ToySpinfulVector(L=4)
    state = system.initial_state("random_start", n_traj=3)
    gen = torch.Generator().manual_seed(1)
    nxt = State._raw({k: v + 0.3 * torch.randn(v.shape, dtype=v.dtype, generator=gen) for k, v in state.fields.items()},
                     state.rho)
    fixed = vector_length_projection(system)(state, nxt)
    length = lambda s: torch.sqrt(s["X"] ** 2 + s["V"] ** 2)  # noqa: E731
    torch.testing.assert_close(length(fixed), length(state), rtol=1e-14, atol=1e-14)
    ratio = fixed["X"] / nxt["X"]
    torch.testing.assert_close(fixed["V"] / nxt["V"], ratio)  # one factor per site: the direction is kept
    assert fixed.rho is nxt.rho
    zero = State._raw({k: torch.zeros_like(v) for k, v in state.fields.items()}, state.rho)
    assert vector_length_projection(system)(state, zero)["X"].equal(zero["X"])  # no direction to scale


def test_vector_lengths_need_declared_vectors_and_act_at_inference_only():
    with pytest.raises(ConstraintError, match="declares no vector_fields, which conserve_vector_lengths needs"):
        vector_length_projection(TOY)
    from toy_spinful import ToySpinfulVector

    system = ToySpinfulVector(L=4)
    cfg = PARCConfig(width=8, conserve_vector_lengths=True)
    assert cfg.inference_options() == {"conserve_vector_lengths": True}
    assert "conserve_vector_lengths" not in PARCConfig(width=8).model_dump()  # old run identities unchanged
    model = build_surrogate("parc", system, cfg, Normalization.identity(system.graph))
    state = system.initial_state("random_start", n_traj=2)
    nxt = State._raw({k: 1.5 * v for k, v in state.fields.items()}, state.rho)
    assert model.train().finish_step(state, nxt).fields is nxt.fields
    fixed = model.eval().finish_step(state, nxt)
    torch.testing.assert_close(fixed["X"], state["X"].to(fixed["X"].dtype))


def test_energy_on_the_vectors_spheres_restores_both_energy_and_lengths():
    """conserve_energy with conserve_vector_lengths: one projection keeps both (one after the other, the
    length rescaling would undo part of the energy correction)."""
    from toy_spinful import ToySpinfulVector

    system = ToySpinfulVector(L=4)
    state = system.initial_state("random_start", n_traj=3)
    gen = torch.Generator().manual_seed(5)
    nxt = State._raw({k: v + 0.02 * torch.randn(v.shape, dtype=v.dtype, generator=gen) for k, v in state.fields.items()},
                     state.rho)
    length = lambda s: torch.sqrt(s["X"] ** 2 + s["V"] ** 2)  # noqa: E731
    both = energy_projection(system, keep_vector_lengths=True)(state, nxt)
    torch.testing.assert_close(system.energy(both), system.energy(state), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(length(both), length(state), rtol=1e-13, atol=1e-13)
    sequential = vector_length_projection(system)(state, energy_projection(system)(state, nxt))
    assert float((system.energy(sequential) - system.energy(state)).abs().max()) > 1e-6  # what it replaces
    cfg = PARCConfig(width=8, conserve_energy=True, conserve_vector_lengths=True)
    model = build_surrogate("parc", system, cfg, Normalization.identity(system.graph, orbitals=2)).eval()
    fixed = model.finish_step(state, nxt)
    torch.testing.assert_close(length(fixed), length(state), rtol=1e-12, atol=1e-12)
    with pytest.raises(ConstraintError, match="declares no vector_fields"):
        energy_projection(TOY, keep_vector_lengths=True)
