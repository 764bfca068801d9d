"""Input-noise injection (zero-mean Gaussian scaled by each input's std, rho kept Hermitian) and the
gradient averaging of data-parallel training (each gradient becomes the mean over ranks)."""

from __future__ import annotations

import math

import pytest
import torch

from qcsurrogate.state import State
from qcsurrogate.training.objective import perturb
from qcsurrogate.training.trainer import Trainer

N, L = 4000, 4


def zero_state() -> State:
    fields = {"X": torch.zeros(N, L, dtype=torch.float64), "V": torch.zeros(N, L, dtype=torch.float64)}
    return State._raw(fields, torch.zeros(N, L, L, dtype=torch.complex128))


def rms(x: torch.Tensor) -> float:
    return float(x.abs().pow(2).mean().sqrt())


@pytest.mark.parametrize(
    "inputs, std",
    [
        ({"X:identity": (5.0, 3.0), "V:identity": (-1.0, 0.25), "rho:matrix": (0.0, 0.5)}, 0.2),
        ({}, 0.1),  # variables without an input scale get unit scale
        ({"X:identity": (0.0, 2.0)}, 0.05),  # V and rho without one
    ],
    ids=["all-scaled", "none-scaled", "X-scaled"],
)
def test_noise_is_zero_mean_gaussian_with_the_input_std(inputs, std):
    torch.manual_seed(0)
    before = zero_state()
    out = perturb(before, inputs, std)
    assert out.rho.shape == before.rho.shape and out.rho.dtype == before.rho.dtype
    for name in ("X", "V"):
        s = inputs.get(f"{name}:identity", (0.0, 1.0))[1]
        d = out[name] - before[name]
        assert d.shape == (N, L) and d.dtype == torch.float64
        n = d.numel()
        assert abs(float(d.mean())) < 5 * std * s / math.sqrt(n), name  # zero mean
        assert rms(d) == pytest.approx(std * s, rel=0.05), name  # std = noise_std * input std
        # Gaussian: about 31.7% of draws lie beyond one standard deviation
        assert float((d.abs() > std * s).double().mean()) == pytest.approx(0.3173, abs=0.02), name
    # rho: the Hermitian part of complex unit-variance noise, so E|d_ij|^2 = (std * s)^2 / 2 per element
    s = inputs.get("rho:matrix", (0.0, 1.0))[1]
    d = out.rho - before.rho
    assert torch.equal(out.rho, out.rho.mH)  # still Hermitian, exactly
    assert rms(d) == pytest.approx(std * s / math.sqrt(2), rel=0.05)
    assert abs(complex(d.mean())) < 5 * std * s / math.sqrt(d.numel())
    assert torch.count_nonzero(d.imag.diagonal(dim1=-2, dim2=-1)) == 0  # real diagonal (Hermitian)
    assert torch.count_nonzero(d.imag) > 0  # complex off the diagonal


def test_noise_is_added_to_the_state_not_replacing_it():
    torch.manual_seed(1)
    base = zero_state()
    shifted = State._raw({k: v + 7.0 for k, v in base.fields.items()}, base.rho + torch.eye(L, dtype=torch.complex128))
    out = perturb(shifted, {}, 0.01)
    for name in ("X", "V"):
        assert float((out[name] - 7.0).abs().max()) < 0.1
    assert float((out.rho - torch.eye(L, dtype=torch.complex128)).abs().max()) < 0.1


@pytest.fixture()
def trainer(tmp_path):
    from toy_system import ToySystem

    from qcsurrogate import simulate
    from qcsurrogate.surrogate import PARCConfig, build_surrogate
    from qcsurrogate.surrogate.normalization import Normalization
    from qcsurrogate.training import TrainConfig, WindowSampler

    system = ToySystem(L=4)
    traj = simulate(system, system.initial_state("random_start", seed=0, n_traj=1), 0.05, 4)
    traj = traj.map(lambda x: x.transpose(0, 1).contiguous())
    cfg = TrainConfig(steps=2, batch_size=2, warmup_steps=0, progress=False)
    torch.manual_seed(0)
    model = build_surrogate("parc", system, PARCConfig(width=4, dtype="float64"), Normalization.identity(system.graph))
    return Trainer(model, system, WindowSampler(traj, [0], 1, 0), None, cfg, tmp_path)


def test_gradients_are_averaged_over_ranks(trainer, monkeypatch):
    """With all_reduce summing this rank's flat gradient and another rank's, each parameter's gradient
    becomes the mean of the two; parameters without a gradient are left alone."""
    params = list(trainer.model.parameters())
    assert len(params) >= 3
    g = torch.Generator().manual_seed(3)
    own = [torch.randn(p.shape, dtype=p.dtype, generator=g) for p in params]
    other = [torch.randn(p.shape, dtype=p.dtype, generator=g) for p in params]
    for p, o in zip(params, own):
        p.grad = o.clone()
    params[1].grad = None  # e.g. a parameter unused by this batch
    other_flat = torch.cat([o.reshape(-1) for i, o in enumerate(other) if i != 1])
    calls = []

    def fake_all_reduce(tensor, *args, **kwargs):  # the sum over 2 ranks
        calls.append(tensor.shape)
        tensor.add_(other_flat)

    monkeypatch.setattr(torch.distributed, "all_reduce", fake_all_reduce)
    trainer.world = 2
    trainer._average_gradients()
    assert calls == [other_flat.shape]  # one collective on all gradients at once
    for i, p in enumerate(params):
        if i == 1:
            assert p.grad is None
        else:
            assert p.grad.shape == p.shape
            assert torch.equal(p.grad, (own[i] + other[i]) / 2), i
