"""The inference path: `rollout` batches every start, `inference_step(compile=True)` agrees with eager."""

from __future__ import annotations

import pytest
import torch
from test_surrogate import make, random_state

from qcsurrogate.surrogate import PARC
from qcsurrogate.training.checkpoint import load_model, save_model


def test_eager_rollout_is_the_repeated_forward_and_restores_training_mode():
    model = make(dtype="float32").train()
    s = random_state(5, (3,))
    traj = model.rollout(s, 4, save_every=2)
    assert model.training
    model.eval()
    y = model.prepare(s)
    with torch.no_grad():
        for _ in range(4):
            y = model(y)
    assert torch.equal(traj.rho[-1], y.rho) and torch.equal(traj["X"][-1], y["X"])
    assert traj.rho.dtype == torch.complex64 and traj.rho.shape == (3, 3, 5, 5)


def test_a_float64_model_rolls_out_in_float64_and_a_float32_one_in_float32():
    s = random_state(4, (2,))
    assert make(dtype="float64").rollout(s, 1).rho.dtype == torch.complex128
    assert make(dtype="float32").rollout(s, 1).rho.dtype == torch.complex64


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Torchinductor does not support code generation for complex")
def test_compiled_inference_matches_eager_and_load_model_can_default_to_it(tmp_path):
    model = make(PARC, dtype="float32", integrator_inputs="state").eval()
    s = random_state(6, (4,), seed=2)
    eager = model.rollout(s, 3)
    compiled = model.rollout(s, 3, compile=True)
    for k in s.names:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-5, atol=1e-6)
    assert model.inference_step(compile=True) is model.inference_step(compile=True)  # cached, traced once
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m", compile=True)
    assert loaded.rollout_compile and not load_model(tmp_path / "m").rollout_compile
