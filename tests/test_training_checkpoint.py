"""Checkpoints round-trip any optimizer's state (tensor and scalar entries, whatever their names) and the
caller's extra metadata; `latest.json` names the newest complete checkpoint; only `keep` are kept."""

from __future__ import annotations

import json

import pytest
import torch

from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.surrogate.normalization import Normalization
from qcsurrogate.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


class DottedStateOptimizer(torch.optim.Optimizer):
    """A plain momentum method whose per-parameter state names contain dots (tensor and scalar entries)."""

    def __init__(self, params, lr: float = 0.1) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                st["ema.slow"] = 0.9 * st.get("ema.slow", torch.zeros_like(p)) + 0.1 * p.grad
                st["calls.count"] = st.get("calls.count", 0) + 1
                p.add_(st["ema.slow"], alpha=-group["lr"])


@pytest.fixture(scope="module")
def system():
    from toy_system import ToySystem

    return ToySystem(L=4)


def new_model(system, seed):
    torch.manual_seed(seed)
    norm = Normalization.identity(system.graph)
    return build_surrogate("parc", system, PARCConfig(width=4, dtype="float64"), norm)


def stepped(model, n_steps=2):
    opt = DottedStateOptimizer(model.parameters())
    for i in range(n_steps):
        for j, p in enumerate(model.parameters()):
            p.grad = torch.full_like(p, 0.01 * (i + 1) * (j + 1))
        opt.step()
    return opt


def test_optimizer_state_with_dotted_names_round_trips(system, tmp_path):
    model = new_model(system, 0)
    opt = stepped(model)
    ck = save_checkpoint(tmp_path, 2, model, opt, {"note": "dotted"})
    fresh_model = new_model(system, 1)
    fresh_opt = DottedStateOptimizer(fresh_model.parameters())
    meta = load_checkpoint(ck, fresh_model, fresh_opt)
    assert meta["step"] == 2 and meta["note"] == "dotted"
    saved, loaded = opt.state_dict(), fresh_opt.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    assert saved["state"] and set(saved["state"]) == set(loaded["state"])
    for pid, st in saved["state"].items():
        assert set(st) == {"ema.slow", "calls.count"} == set(loaded["state"][pid])
        assert torch.equal(st["ema.slow"], loaded["state"][pid]["ema.slow"])
        assert loaded["state"][pid]["calls.count"] == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh_model.state_dict()[k]), k
    # the restored optimizer continues exactly like the original
    for o, m in ((opt, model), (fresh_opt, fresh_model)):
        for j, p in enumerate(m.parameters()):
            p.grad = torch.full_like(p, 0.5 * (j + 1))
        o.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh_model.state_dict()[k]), k


def test_latest_points_at_newest_and_only_keep_survive(system, tmp_path):
    model = new_model(system, 0)
    opt = stepped(model)
    assert latest_checkpoint(tmp_path) is None  # no pointer yet
    for step in (3, 6, 9):
        save_checkpoint(tmp_path, step, model, opt, {}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000006", "step-00000009"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000009"
    assert json.loads((tmp_path / "latest.json").read_text()) == {"step": 9, "path": "step-00000009"}
    assert not list(tmp_path.glob(".*.tmp"))  # built under a temporary name, then renamed
    save_checkpoint(tmp_path, 12, model, opt, {}, keep=1)
    assert [p.name for p in tmp_path.glob("step-*")] == ["step-00000012"]
