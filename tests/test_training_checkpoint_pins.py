"""save_model's files (nested directories, version stamps in both files), latest_checkpoint's error for a
pointer to an incomplete checkpoint, save_checkpoint's default of keeping two, and the frozen batch order."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from qcsurrogate import __version__, simulate
from qcsurrogate.artifacts import ArtifactError
from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.surrogate.normalization import Normalization
from qcsurrogate.training import WindowSampler
from qcsurrogate.training.checkpoint import LATEST, latest_checkpoint, load_model, save_checkpoint, save_model


@pytest.fixture(scope="module")
def system():
    from toy_system import ToySystem

    return ToySystem(L=4)


def new_model(system):
    torch.manual_seed(0)
    return build_surrogate("parc", system, PARCConfig(width=4, dtype="float64"), Normalization.identity(system.graph))


def test_save_model_creates_nested_directories_and_stamps_the_version(system, tmp_path):
    model = new_model(system)
    d = tmp_path / "a" / "b" / "model"
    save_model(model, d, extra={"note": 1})
    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"qcsurrogate": __version__}
    spec = json.loads((d / "model.json").read_text())
    assert spec["qcsurrogate_version"] == __version__ and spec["note"] == 1
    assert spec["surrogate"] == model.name
    again = load_model(d)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_a_pointer_to_a_checkpoint_without_meta_is_an_error_not_a_fresh_start(system, tmp_path):
    assert latest_checkpoint(tmp_path) is None  # no pointer at all: nothing to resume
    (tmp_path / "step-00000007").mkdir()
    (tmp_path / LATEST).write_text(json.dumps({"step": 7, "path": "step-00000007"}))
    with pytest.raises(ArtifactError, match=r"latest.json: names checkpoint step-00000007, which is not there "
                                            r"\(complete checkpoints: none\)"):
        latest_checkpoint(tmp_path)
    (tmp_path / "step-00000007" / "meta.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000007"


def test_save_checkpoint_keeps_two_by_default(system, tmp_path):
    model = new_model(system)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model, opt, {})
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000003", "step-00000004"]


def test_batch_order_is_the_frozen_seed_scheme(system):
    """Resuming a checkpoint of an earlier version must redraw its batches: epoch e of seed s permutes
    the windows with torch.randperm seeded by s * 1_000_003 + e (frozen, not an implementation detail)."""
    y0 = system.initial_state("random_start", seed=0, n_traj=2)
    traj = simulate(system, y0, 0.05, 6).map(lambda x: x.transpose(0, 1).contiguous())  # 7 snapshots
    for seed in (0, 3):
        sampler = WindowSampler(traj, [0, 1], 1, seed)  # 2 x 6 = 12 windows, 3 batches of 4 per epoch
        n_starts = 6
        for step in range(7):
            epoch, slot = divmod(step, 3)
            perm = torch.randperm(12, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            idx = perm[slot * 4 : (slot + 1) * 4]
            cur, nxt = sampler.batch(step, 4, 1)
            assert torch.equal(cur.rho, traj.rho[idx // n_starts, idx % n_starts])
            assert torch.equal(nxt.rho, traj.rho[idx // n_starts, idx % n_starts + 1])
