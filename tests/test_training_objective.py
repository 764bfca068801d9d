"""The training objective: Eq. (11)'s total is the weighted sum of its parts and moves with each part and
weight; unrolled training sums `w**j * loss_j / k`, feeds step j the model's own prediction of step j - 1
and backpropagates through that chain."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qcsurrogate import simulate
from qcsurrogate.state import RHO, State
from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.training import TrainConfig, Trainer, WindowSampler
from qcsurrogate.training.data import fit_normalization

MAX_K = 4
BATCH = 6


@pytest.fixture(scope="module")
def toy_data():
    from toy_system import ToySystem

    system = ToySystem(L=4)
    y0 = system.initial_state("random_start", seed=1, n_traj=2)
    traj = simulate(system, y0, 0.05, 16).map(lambda x: x.transpose(0, 1).contiguous())  # (traj, time, ...)
    sampler = WindowSampler(traj, [0, 1], MAX_K, seed=0)
    return system, sampler, fit_normalization(system, sampler)


@pytest.fixture(scope="module")
def models(toy_data):
    """An untrained PARC and single-CNN baseline in float64 (so sums can be compared to round-off)."""
    system, _, norm = toy_data
    out = {}
    for name in ("parc", "cnn"):
        torch.manual_seed(0)
        out[name] = build_surrogate(name, system, PARCConfig(width=8, dtype="float64"), norm).eval()
    return out


def one_step(toy_data, model, step=0):
    """(state, exact derivative, true next state) of a batch, cast for the model."""
    system, sampler, _ = toy_data
    w = sampler.batch(step, BATCH, 1)
    return model.prepare(w[0]), model.prepare(system.rhs(w[0])), model.prepare(w[1])


def shifted(state: State, var: str, by: torch.Tensor | float) -> State:
    v = state.variables()
    v[var] = v[var] + by
    return State._raw({k: x for k, x in v.items() if k != RHO}, v[RHO])


def expected_keys(model) -> set[str]:
    keys = {f"step:{v}" for v in model.graph.variables}
    if model.name == "parc":
        keys |= {f"deriv:{v}" for v in model.graph.variables}
    return keys


def weighted_sum(parts: dict[str, float], dw: float) -> float:
    return sum(p for k, p in parts.items() if k.startswith("step:")) + dw * sum(
        p for k, p in parts.items() if k.startswith("deriv:")
    )


# -- one step: Eq. (11) ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["parc", "cnn"])
@settings(max_examples=20, deadline=None)
@given(dw=st.floats(0.0, 10.0), step=st.integers(0, 30))
def test_loss_total_is_the_weighted_sum_of_its_parts(toy_data, models, name, dw, step):
    model = models[name]
    state, deriv, nxt = one_step(toy_data, model, step)
    pred, aux = model.predict(state)
    total, parts = model.loss(state, deriv, nxt, aux=aux, derivative_weight=dw)
    assert set(parts) == expected_keys(model)  # the baseline has no derivative estimate, PARC one per variable
    assert all(p > 0 for p in parts.values())
    assert float(total.detach()) == pytest.approx(weighted_sum(parts, dw), rel=1e-12, abs=0)
    # each step part is the mean squared error of the predicted state, in increment units
    for v in model.graph.variables:
        err = (pred[v] - nxt[v]) / model.normalization.increment[v]
        assert parts[f"step:{v}"] == pytest.approx(float(err.abs().pow(2).mean().detach()), rel=1e-9)


@pytest.mark.parametrize("name", ["parc", "cnn"])
@settings(max_examples=10, deadline=None)
@given(dw=st.floats(0.1, 5.0), step=st.integers(0, 30))
def test_loss_moves_with_each_part_and_its_weight(toy_data, models, name, dw, step):
    """Pushing one variable's target (next state, or exact derivative) away raises exactly that part, and
    the total by that rise times the part's weight; the derivative weight scales the derivative parts."""
    model = models[name]
    state, deriv, nxt = one_step(toy_data, model, step)
    _, aux = model.predict(state)

    def loss(d=deriv, n=nxt, w=dw):
        total, parts = model.loss(state, d, n, aux=aux, derivative_weight=w)
        return float(total.detach()), parts

    total0, parts0 = loss()
    for v in model.graph.variables:
        cases = [(f"step:{v}", 1.0, {"n": shifted(nxt, v, 100 * model.normalization.increment[v])})]
        if model.name == "parc":
            cases.append((f"deriv:{v}", dw, {"d": shifted(deriv, v, 100 * model.normalization.derivative[v])}))
        for key, weight, kwargs in cases:
            total, parts = loss(**kwargs)
            assert parts[key] > parts0[key] + 1.0, key
            assert {k: p for k, p in parts.items() if k != key} == {k: p for k, p in parts0.items() if k != key}
            assert total - total0 == pytest.approx(weight * (parts[key] - parts0[key]), rel=1e-9)
    # the derivative weight: total(w2) - total(w1) = (w2 - w1) * sum of derivative parts (zero for the baseline)
    deriv_sum = sum(p for k, p in parts0.items() if k.startswith("deriv:"))
    assert loss(w=2 * dw)[0] - total0 == pytest.approx(dw * deriv_sum, rel=1e-9, abs=1e-12)
    assert (loss(w=2 * dw)[0] > total0) == (model.name == "parc")


# -- unrolled: the trainer's objective ---------------------------------------------------------------


def make_trainer(toy_data, model, tmp: Path, k_max=MAX_K, w=1.0, dw=1.0) -> Trainer:
    system, sampler, _ = toy_data
    cfg = TrainConfig(
        steps=10, warmup_steps=0, batch_size=BATCH, progress=False,
        objective={"derivative_weight": dw, "unroll": {"max_steps": k_max, "step_weight": w}},
    )
    return Trainer(model, system, sampler, None, cfg, tmp)


def reference_objective(system, model, window, k, w, dw, detach_feedback=False):
    """`sum_j w**j * loss_j / k` with step j starting from the model's prediction of step j - 1."""
    cur = model.prepare(window[0])
    total, losses, parts = 0.0, [], []
    for j in range(k):
        deriv = model.prepare(system.rhs(cur.detach()))
        pred, aux = model.predict(cur)
        loss_j, parts_j = model.loss(cur, deriv, model.prepare(window[j + 1]), aux=aux, derivative_weight=dw)
        total = total + w**j * loss_j / k
        losses.append(float(loss_j.detach()))
        parts.append(parts_j)
        cur = pred.detach() if detach_feedback else pred
    return total, losses, parts


@settings(max_examples=12, deadline=None)
@given(k=st.integers(1, MAX_K), w=st.floats(0.05, 1.0), dw=st.floats(0.0, 3.0), step=st.integers(0, 30))
def test_unrolled_loss_is_the_decayed_mean_of_the_step_losses(toy_data, models, tmp_path_factory, k, w, dw, step):
    system, sampler, _ = toy_data
    model = models["parc"]
    tr = make_trainer(toy_data, model, tmp_path_factory.mktemp("run"), w=w, dw=dw)
    window = sampler.batch(step, BATCH, k)
    total, parts, _ = tr.objective.window_loss(model, window)
    expected, losses, ref_parts = reference_objective(system, model, window, k, w, dw)
    assert float(total.detach()) == pytest.approx(float(expected.detach()), rel=1e-12, abs=0)
    assert float(total.detach()) == pytest.approx(sum(w**j * lj for j, lj in enumerate(losses)) / k, rel=1e-12)
    # the logged parts carry the same weights, so the logged total is their weighted sum
    assert set(parts) == expected_keys(model)
    for key in parts:
        assert parts[key] == pytest.approx(sum(w**j * p[key] for j, p in enumerate(ref_parts)) / k, rel=1e-12)
    assert float(total.detach()) == pytest.approx(weighted_sum(parts, dw), rel=1e-12)


def test_unrolled_loss_moves_with_both_weights(toy_data, models, tmp_path):
    """step_weight scales the later steps (k >= 2), derivative_weight the derivative parts."""
    system, sampler, _ = toy_data
    model = models["parc"]
    window = sampler.batch(3, BATCH, 3)

    def total(w, dw):
        return float(make_trainer(toy_data, model, tmp_path, w=w, dw=dw).objective.window_loss(model, window).total.detach())

    base = total(1.0, 1.0)
    _, losses, parts = reference_objective(system, model, window, 3, 1.0, 1.0)
    assert base - total(0.5, 1.0) == pytest.approx((0.5 * losses[1] + 0.75 * losses[2]) / 3, rel=1e-9)
    deriv = sum(p[key] for p in parts for key in p if key.startswith("deriv:")) / 3
    assert total(1.0, 3.0) - base == pytest.approx(2.0 * deriv, rel=1e-9)
    assert deriv > 0 and losses[1] > 0 and losses[2] > 0


def test_each_unrolled_step_starts_from_the_previous_prediction(toy_data, models, tmp_path, monkeypatch):
    _, sampler, _ = toy_data
    model = models["parc"]
    k = 3
    tr = make_trainer(toy_data, model, tmp_path)
    window = sampler.batch(5, BATCH, k)
    calls: list[tuple[State, State]] = []
    predict = model.predict

    def spy(state):
        out, aux = predict(state)
        calls.append((state, out))
        return out, aux

    monkeypatch.setattr(model, "predict", spy)
    tr.objective.window_loss(model, window)
    assert len(calls) == k
    first = model.prepare(window[0])
    assert all(torch.equal(calls[0][0][v], first[v]) for v in first.variables())
    for j in range(1, k):
        seen, previous = calls[j][0], calls[j - 1][1]
        truth = model.prepare(window[j])
        assert all(torch.equal(seen[v], previous[v]) for v in seen.variables()), f"step {j} input"
        assert not seen.allclose(truth, rtol=1e-3, atol=1e-6), "an untrained model's prediction should not be the truth"
        assert seen.rho.requires_grad and seen.rho.grad_fn is not None, "the fed-back prediction was detached"


def test_gradients_flow_through_the_fed_back_prediction(toy_data, models, tmp_path):
    """Backpropagation through time: the k = 2 gradient includes the path through the first prediction."""
    system, sampler, _ = toy_data
    model = models["parc"]
    window = sampler.batch(7, BATCH, 2)
    params = list(model.parameters())

    def grads(loss):
        g = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(g, params)])

    got = grads(make_trainer(toy_data, model, tmp_path).objective.window_loss(model, window).total)
    through = grads(reference_objective(system, model, window, 2, 1.0, 1.0)[0])
    detached = grads(reference_objective(system, model, window, 2, 1.0, 1.0, detach_feedback=True)[0])
    assert torch.allclose(got, through, rtol=1e-10, atol=1e-14)
    assert (through - detached).norm() > 1e-3 * through.norm()  # the chain's own path is not negligible
