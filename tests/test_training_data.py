"""Training data: trajectory splits (sizes, edge cases, errors) and window sampling (each sample is a run
of consecutive snapshots of one selected trajectory; an epoch visits every window once)."""

from __future__ import annotations

import pytest
import torch

from qcsurrogate.state import State
from qcsurrogate.training import Split, WindowSampler, split_trajectories

N_TRAJ, N_TIME, L = 3, 12, 2


@pytest.fixture(scope="module")
def traj() -> State:
    """Snapshot (i, t) carries the code 100 i + t in every entry, so a sample tells where it came from."""
    code = (100 * torch.arange(N_TRAJ)[:, None] + torch.arange(N_TIME)[None, :]).double()
    fields = {"X": code[..., None].expand(-1, -1, L).clone(), "V": -code[..., None].expand(-1, -1, L).clone()}
    rho = (code[..., None, None] * torch.ones(L, L)).to(torch.complex128)
    return State._raw(fields, rho)


def origin(s: State) -> list[tuple[int, int]]:
    code = s["X"][:, 0].long()
    assert torch.equal(s["V"], -s["X"]) and torch.equal(s.rho.real, s["X"][:, :1, None].expand(-1, L, L))
    return [(int(c) // 100, int(c) % 100) for c in code]


# -- splits -----------------------------------------------------------------------------------------
def test_split_sizes_follow_the_fractions_with_at_least_one_each():
    sp = split_trajectories(10, 0.0, 0.0, seed=0)  # fractions round to 0: still one each
    assert (len(sp.test), len(sp.val), len(sp.train)) == (1, 1, 8) and not sp.memorized
    sp = split_trajectories(10, 0.3, 0.2, seed=1)
    assert (len(sp.test), len(sp.val), len(sp.train)) == (2, 3, 5)
    assert sorted(sp.train + sp.val + sp.test) == list(range(10))
    assert all(list(x) == sorted(x) for x in (sp.train, sp.val, sp.test))
    assert split_trajectories(10, 0.3, 0.2, seed=2) != sp  # the seed picks the trajectories


def test_split_must_leave_training_trajectories():
    assert len(split_trajectories(5, 0.2, 0.4, seed=0).train) == 2
    with pytest.raises(ValueError, match=r"no training trajectories: n_traj=4, val=2, test=2"):
        split_trajectories(4, 0.5, 0.5, seed=0)  # val + test == n_traj
    assert len(split_trajectories(4, 0.25, 0.5, seed=0).train) == 1


def test_tiny_datasets():
    assert split_trajectories(2, 0.4, 0.4, seed=0) == Split((0,), (1,), (1,), memorized=False)
    assert split_trajectories(1, 0.4, 0.4, seed=0) == Split((0,), (0,), (0,), memorized=True)
    with pytest.raises(ValueError, match="need at least one trajectory"):
        split_trajectories(0, 0.1, 0.1, seed=0)


def test_split_to_json():
    assert Split((2, 3), (1,), (0,)).to_json() == {"train": [2, 3], "val": [1], "test": [0], "memorized": False}
    assert Split((0,), (0,), (0,), True).to_json()["memorized"] is True


# -- windows ----------------------------------------------------------------------------------------
def test_window_sampler_sizes_and_errors(traj):
    s = WindowSampler(traj, [0, 2], 3, seed=0)
    assert (s.n_traj, s.n_time, s.max_window, s.n_starts, s.size) == (2, N_TIME, 3, N_TIME - 3, 2 * (N_TIME - 3))
    WindowSampler(traj, [1], 1, 0)
    WindowSampler(traj, [1], N_TIME - 1, 0)
    for bad in (0, N_TIME):
        with pytest.raises(ValueError, match=f"window of {bad} steps does not fit trajectories of {N_TIME} snapshots"):
            WindowSampler(traj, [0], bad, 0)


@pytest.mark.parametrize("indices", [[0, 2], [1], [0, 1, 2]])
def test_an_epoch_visits_every_window_of_the_selected_trajectories_once(traj, indices):
    max_window, batch = 2, 4
    s = WindowSampler(traj, indices, max_window, seed=7)
    per_epoch = s.size // batch
    seen = []
    for step in range(per_epoch):
        window = s.batch(step, batch, max_window)
        assert len(window) == max_window + 1 and all(w.rho.shape == (batch, L, L) for w in window)
        starts = origin(window[0])
        for j, w in enumerate(window):  # consecutive snapshots of the same trajectory
            assert origin(w) == [(i, t + j) for i, t in starts]
        seen += starts
    assert len(set(seen)) == len(seen) == per_epoch * batch
    allowed = {(i, t) for i in indices for t in range(N_TIME - max_window)}
    assert set(seen) <= allowed and len(allowed) - len(seen) < batch
    # a shorter window of the same step starts at the same places
    assert origin(s.batch(1, batch, 1)[0]) == origin(s.batch(1, batch, max_window)[0])
    # the next epoch draws another order of the same windows
    nxt = [o for step in range(per_epoch, 2 * per_epoch) for o in origin(s.batch(step, batch, 1)[0])]
    assert nxt != seen and set(nxt) <= allowed and len(set(nxt)) == len(nxt)


def test_batches_depend_on_seed_and_step_only(traj):
    a, b = WindowSampler(traj, [0, 1], 1, seed=3), WindowSampler(traj, [0, 1], 1, seed=3)
    assert origin(a.batch(5, 4, 1)[0]) == origin(b.batch(5, 4, 1)[0])
    assert origin(a.batch(5, 4, 1)[0]) != origin(WindowSampler(traj, [0, 1], 1, seed=4).batch(5, 4, 1)[0])
    assert origin(a.batch(0, 4, 1)[0]) != origin(a.batch(1, 4, 1)[0])


def test_a_batch_larger_than_the_data_is_all_windows(traj):
    s = WindowSampler(traj, [2], 1, seed=0)
    got = origin(s.batch(0, 100, 1)[0])
    assert sorted(got) == [(2, t) for t in range(N_TIME - 1)]
    assert sorted(origin(s.batch(1, 100, 1)[0])) == sorted(got)  # every step is a whole epoch


@pytest.mark.parametrize("stride", [1, 3])
def test_all_pairs_are_each_snapshot_and_its_successor(traj, stride):
    s = WindowSampler(traj, [0, 2], 2, seed=0)
    cur, nxt = s.all_pairs(stride) if stride != 1 else s.all_pairs()
    starts = list(range(0, N_TIME - 1, stride))
    assert origin(cur) == [(i, t) for i in (0, 2) for t in starts]
    assert origin(nxt) == [(i, t + 1) for i in (0, 2) for t in starts]


def test_every_seed_and_epoch_has_its_own_order(traj):
    """No two (seed, epoch) pairs share a batch order: another seed is not the same run shifted by epochs."""
    batch = 5
    orders = set()
    for seed in range(4):
        s = WindowSampler(traj, [0, 1, 2], 1, seed=seed)
        per_epoch = s.size // batch
        for epoch in range(4):
            orders.add(tuple(o for k in range(per_epoch) for o in origin(s.batch(epoch * per_epoch + k, batch, 1)[0])))
    assert len(orders) == 16
