"""Training data: trajectories split by trajectory, sampled as (state, next states) windows.

Splits are by whole trajectory, never by snapshot, so test trajectories are unseen. A dataset with a
single trajectory (the paper's shallow quench) cannot be split; it is then used for all three roles
and `memorized=True` says so, as the paper does.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from ..state import State
from ..surrogate.normalization import Normalization
from .source import LazySource, MemorySource, TrajectorySource


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
    """Uniform windows `(traj, t) -> states t .. t + k` of the trajectories `indices` of a source.

    `trajectories` is a `TrajectorySource` (in memory or lazy, `training.source`) or a State
    `(n_traj, n_time, ...)` held in memory. Batches come in a fixed order determined by `(seed, epoch)`
    so a resumed run draws exactly the batches the uninterrupted run would have drawn, from either source.
    With a lazy source the next batch (same size and window, the next step) is read in the background
    while the current one trains; a different request just reads synchronously.
    """

    def __init__(self, trajectories: State | TrajectorySource, indices: Sequence[int], max_window: int, seed: int) -> None:
        self.source = trajectories if isinstance(trajectories, TrajectorySource) else MemorySource(trajectories)
        n_time = self.source.n_time
        if max_window < 1 or max_window >= n_time:
            raise ValueError(f"window of {max_window} steps does not fit trajectories of {n_time} snapshots")
        self.indices = tuple(int(i) for i in indices)
        bad = [i for i in self.indices if not 0 <= i < self.source.n_traj]
        if bad:
            raise IndexError(f"trajectory indices {bad} out of range for {self.source.n_traj} trajectories")
        self._global = torch.tensor(self.indices, dtype=torch.long)
        self.n_traj = len(self.indices)
        self.n_time = n_time
        self.max_window = max_window
        self.seed = seed
        self.n_starts = n_time - max_window
        self.size = self.n_traj * self.n_starts
        self._perm: tuple[int, torch.Tensor] | None = None
        self._ahead: tuple[tuple[int, int, int, int, int], Future[list[State]]] | None = None

    def _draw(self, step: int, batch_size: int, shard: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(trajectory in the source, start time) of the slots `rank::world` of step `step`'s global batch."""
        per_epoch = max(1, self.size // batch_size)
        epoch, slot = divmod(step, per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.size, generator=gen))
        idx = self._perm[1][slot * batch_size : (slot + 1) * batch_size]
        rank, world = shard
        if world > 1:
            idx = idx[rank::world]
        return self._global[idx // self.n_starts], idx % self.n_starts

    def batch(self, step: int, batch_size: int, window: int, shard: tuple[int, int] = (0, 1)) -> list[State]:
        """The `window + 1` states (t, t+1, ..., t+window) of the batch used at optimizer step `step`.

        `shard=(rank, world)` returns only the slots `rank, rank + world, ...` of the global batch (what one
        rank of a data-parallel run trains on, read by that rank alone); the default is the whole batch."""
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard {shard} is not (rank, world size) with 0 <= rank < world size")
        key = (step, batch_size, window, rank, world)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == key:
            states = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            traj, t0 = self._draw(step, batch_size, shard)
            states = self.source.windows(traj, t0, window + 1)
        if isinstance(self.source, LazySource) and not self.source.closed:
            traj, t0 = self._draw(step + 1, batch_size, shard)
            self._ahead = ((step + 1, batch_size, window, rank, world), self.source.prefetch_windows(traj, t0, window + 1))
        return states

    def all_pairs(self, stride: int = 1) -> tuple[State, State]:
        """Every (state, next state) pair with start times on a stride (for normalisation and metrics);
        a lazy source reads only those snapshots."""
        t = torch.arange(0, self.n_time - 1, stride)
        return self.source.pairs(self.indices, t)


def fit_normalization(system, sampler: WindowSampler, max_pairs: int = 20000) -> Normalization:
    """Normalisation statistics of `system`'s graph from (at most about `max_pairs`) pairs of `sampler`."""
    cur, nxt = sampler.all_pairs(stride=max(1, sampler.size // max_pairs))
    return Normalization.fit(system.graph, cur, system.rhs(cur), nxt - cur)
