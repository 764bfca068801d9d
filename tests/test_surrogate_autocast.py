"""`model.autocast: bf16`: the CNNs compute in bfloat16, the state and everything around the networks stay
in float32, old configs keep their dumps (and so their run identities), and the option survives saving."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from qcsurrogate.graph import DependencyGraph
from qcsurrogate.state import State
from qcsurrogate.surrogate import PARC, Normalization, PARCConfig, PlainCNN, PlainCNNConfig
from qcsurrogate.testing import random_density_matrix
from qcsurrogate.training import load_model, save_model

GRAPH = DependencyGraph({"X": ["V"], "V": ["X", ("rho", "diagonal")], "rho": ["X", "rho"]})


def _state(L: int = 6, batch: int = 3, seed: int = 0) -> State:
    g = torch.Generator().manual_seed(seed)
    return State({"X": torch.randn(batch, L, generator=g, dtype=torch.float64),
                  "V": torch.randn(batch, L, generator=g, dtype=torch.float64)},
                 random_density_matrix(L, L // 2, (batch,), g))


def _pair(cls, cfg_cls):
    torch.manual_seed(0)
    plain = cls(GRAPH, "periodic", cfg_cls(width=8), Normalization.identity(GRAPH)).eval()
    mixed = cls(GRAPH, "periodic", cfg_cls(width=8, autocast="bf16"), Normalization.identity(GRAPH)).eval()
    mixed.load_state_dict(plain.state_dict())
    return plain, mixed


@pytest.mark.parametrize(("cls", "cfg_cls"), [(PARC, PARCConfig), (PlainCNN, PlainCNNConfig)])
def test_bf16_runs_the_networks_in_bfloat16_and_keeps_the_state_in_float32(cls, cfg_cls):
    plain, mixed = _pair(cls, cfg_cls)
    seen: list[torch.dtype] = []
    conv = next(m for m in mixed.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d) or hasattr(m, "kernel"))
    conv.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    s = plain.prepare(_state())
    with torch.no_grad():
        a, b = plain(s), mixed(s)
    assert seen and set(seen) == {torch.bfloat16}
    assert b.rho.dtype == torch.complex64 and all(b[k].dtype == torch.float32 for k in ("X", "V"))
    inc_a, inc_b = a - s, b - s
    for k in ("X", "V", "rho"):
        scale = float(inc_a[k].abs().max())
        err = float((inc_a[k] - inc_b[k]).abs().max())
        assert 0 < err < 0.05 * scale, (k, err, scale)  # bfloat16 has 8 bits of mantissa: differs, but little


def test_bf16_trains_with_finite_gradients():
    _, mixed = _pair(PARC, PARCConfig)
    mixed.train()
    s, nxt = mixed.prepare(_state(seed=1)), mixed.prepare(_state(seed=2))
    loss, _ = mixed.loss(s, nxt - s, nxt)
    loss.backward()
    grads = [p.grad for p in mixed.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().max() > 0 for g in grads)


def test_default_is_left_out_of_the_dump_and_bf16_is_kept_through_save_and_load(tmp_path):
    assert "autocast" not in PARCConfig(width=8).model_dump()  # old configs keep their identity
    assert PARCConfig(width=8, autocast="bf16").model_dump()["autocast"] == "bf16"
    _, mixed = _pair(PARC, PARCConfig)
    save_model(mixed, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.autocast == "bf16"
    s = mixed.prepare(_state())
    with torch.no_grad():
        assert loaded(s).allclose(mixed(s), rtol=0, atol=0)


def test_bf16_needs_float32():
    with pytest.raises(ValidationError, match="autocast: bf16 needs dtype: float32"):
        PARCConfig(width=8, autocast="bf16", dtype="float64")
    with pytest.raises(ValidationError):
        PARCConfig(width=8, autocast="fp16")
