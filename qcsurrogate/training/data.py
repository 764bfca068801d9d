"""Training data: trajectories split by trajectory, sampled as (state, next states) windows.

Splits are by whole trajectory, never by snapshot, so test trajectories are unseen. A dataset with a
single trajectory (the paper's shallow quench) cannot be split; it is then used for all three roles
and `memorized=True` says so, as the paper does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..state import State
from ..surrogate.normalization import Normalization


@dataclass(frozen=True)
class Split:
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    memorized: bool = False

    def to_json(self) -> dict:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test), "memorized": self.memorized}


def split_trajectories(n_traj: int, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Random split of trajectory indices; at least one trajectory each for val and test when n_traj >= 3."""
    if n_traj < 1:
        raise ValueError("need at least one trajectory")
    if n_traj == 1:
        return Split((0,), (0,), (0,), memorized=True)
    if n_traj == 2:
        return Split((0,), (1,), (1,))
    perm = torch.randperm(n_traj, generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, round(test_fraction * n_traj))
    n_val = max(1, round(val_fraction * n_traj))
    if n_test + n_val >= n_traj:
        raise ValueError(f"split leaves no training trajectories: n_traj={n_traj}, val={n_val}, test={n_test}")
    test = tuple(sorted(perm[:n_test]))
    val = tuple(sorted(perm[n_test : n_test + n_val]))
    train = tuple(sorted(perm[n_test + n_val :]))
    return Split(train, val, test)


class WindowSampler:
    """Uniform windows `(traj, t) -> states t .. t + k` from in-memory trajectories `(n_traj, n_time, ...)`.

    Batches come in a fixed order determined by `(seed, epoch)` so a resumed run draws exactly the
    batches the uninterrupted run would have drawn.
    """

    def __init__(self, trajectories: State, indices: Sequence[int], max_window: int, seed: int) -> None:
        n_time = trajectories.rho.shape[1]
        if max_window < 1 or max_window >= n_time:
            raise ValueError(f"window of {max_window} steps does not fit trajectories of {n_time} snapshots")
        self.data = trajectories.index(list(indices)) if list(indices) != list(range(trajectories.rho.shape[0])) else trajectories
        self.n_traj = len(indices)
        self.n_time = n_time
        self.max_window = max_window
        self.seed = seed
        self.n_starts = n_time - max_window
        self.size = self.n_traj * self.n_starts

    def batch(self, step: int, batch_size: int, window: int) -> list[State]:
        """The `window + 1` states (t, t+1, ..., t+window) of the batch used at optimizer step `step`."""
        per_epoch = max(1, self.size // batch_size)
        epoch, slot = divmod(step, per_epoch)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.size, generator=gen)
        idx = perm[slot * batch_size : (slot + 1) * batch_size]
        traj, t0 = idx // self.n_starts, idx % self.n_starts
        return [State._raw({k: v[traj, t0 + j] for k, v in self.data.fields.items()}, self.data.rho[traj, t0 + j]) for j in range(window + 1)]

    def all_pairs(self, stride: int = 1) -> tuple[State, State]:
        """Every (state, next state) pair with start times on a stride (for normalisation and metrics)."""
        t = torch.arange(0, self.n_time - 1, stride)
        cur = self.data.map(lambda x: x[:, t].reshape(-1, *x.shape[2:]))
        nxt = self.data.map(lambda x: x[:, t + 1].reshape(-1, *x.shape[2:]))
        return cur, nxt


def fit_normalization(system, sampler: WindowSampler, max_pairs: int = 20000) -> Normalization:
    """Normalisation statistics of `system`'s graph from (at most about `max_pairs`) pairs of `sampler`."""
    cur, nxt = sampler.all_pairs(stride=max(1, sampler.size // max_pairs))
    return Normalization.fit(system.graph, cur, system.rhs(cur), nxt - cur)
