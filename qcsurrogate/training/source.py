"""Where training and evaluation read trajectories from: the whole file in memory, or lazily from it.

Both sources answer the same questions with the same numbers (float64 / complex128, whatever the
storage precision), so a run gives bit-identical results either way:

- `windows(traj, t0, length)`: the snapshots `t0[i] + j` of trajectories `traj[i]`, one State per `j`;
- `window_block(traj, t0, length)`: the same as one State with batch `(length, n)`;
- `pairs(trajs, times)`: snapshots `times` and `times + 1` of each of `trajs` (strided pairs);
- `trajectories(idx)`: whole trajectories `(len(idx), n_time)`.

`LazySource` reads time blocks of one trajectory from the HDF5 file (sorted, consecutive blocks merged
into one read), keeps a bounded LRU cache of them, and does every read on one background thread (h5py is
not thread-parallel), which also prefetches the next training batch while the current one trains.
`open_source` picks the source: in memory when the file, loaded as float64, is small against the
memory available, lazily otherwise (`loading: auto | memory | lazy` in the run config).
"""

from __future__ import annotations

import os
import threading
import weakref
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import numpy as np
import torch

from ..io.reader import Trajectory, check_finite, open_trajectory
from ..state import RHO, State, complex_dtype_of

Loading = Literal["auto", "memory", "lazy"]
"""How a run reads its trajectory file: 'memory' loads it whole, 'lazy' reads windows on demand,
'auto' loads it when it is small against the available memory (`MEMORY_FRACTION`)."""

MEMORY_FRACTION = 0.25
"""'auto' loads a file in memory when its float64 size is at most this share of the available memory
(divided among the ranks of a data-parallel run): training needs room beside the data."""

DEFAULT_CACHE_BYTES = 128 << 20
"""Bound of a lazy source's block cache (storage dtype); a constant, so memory does not grow with the file."""

UNCOMPRESSED_BLOCK = 16
"""Snapshots per cached block when the file is not compressed (a read touches only the bytes it needs);
a compressed file is cached by whole chunks, which HDF5 must decompress whole anyway."""

T = TypeVar("T")


def loaded_bytes(n_traj: int, n_time: int, L: int, n_fields: int, orbitals: int = 1) -> int:
    """Bytes of a trajectory file loaded as float64 fields `(L,)` and complex128 rho `(L*d, L*d)`."""
    N = L * orbitals
    return n_traj * n_time * (n_fields * L * 8 + N * N * 16)


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where the OS does not say)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def choose_loading(loading: Loading, nbytes: int, available: int | None, ranks: int = 1) -> tuple[str, str]:
    """`('memory' | 'lazy', why)` for a file of `nbytes` loaded, `available` bytes free, `ranks` processes
    on this machine each holding its own copy."""
    size = f"{nbytes / 2**30:.2f} GiB as float64"
    if loading == "memory":
        return "memory", f"{size}; the config says loading: memory"
    if loading == "lazy":
        return "lazy", f"{size}; the config says loading: lazy"
    if loading != "auto":
        raise ValueError(f"loading must be 'auto', 'memory' or 'lazy', got {loading!r}")
    if available is None:
        return "lazy", f"{size}; the available memory is unknown (loading: auto)"
    budget = MEMORY_FRACTION * available / max(1, ranks)
    per_rank = f" per each of {ranks} ranks" if ranks > 1 else ""
    share = f"{MEMORY_FRACTION:.0%} of {available / 2**30:.1f} GiB available{per_rank}"
    if nbytes <= budget:
        return "memory", f"{size}, within {share} (loading: auto)"
    return "lazy", f"{size}, more than {share} (loading: auto)"


class TrajectorySource(ABC):
    """Trajectories `(n_traj, n_time, ...)` of one file, read the same way wherever they live."""

    n_traj: int
    n_time: int
    kind: str

    @abstractmethod
    def windows(self, traj: torch.Tensor, t0: torch.Tensor, length: int) -> list[State]:
        """States `t0[i] + j` of trajectories `traj[i]` for j < length, one State (batch `(n,)`) per j."""

    @abstractmethod
    def window_block(self, traj: Sequence[int], t0: Sequence[int], length: int) -> State:
        """States `t0[i] + j` of trajectories `traj[i]` as one State with batch `(length, n)`."""

    @abstractmethod
    def pairs(self, trajs: Sequence[int], times: torch.Tensor) -> tuple[State, State]:
        """Snapshots `times` and `times + 1` of each of `trajs`, batch `(len(trajs) * len(times),)`, trajectory-major."""

    @abstractmethod
    def trajectories(self, idx: Sequence[int]) -> State:
        """Whole trajectories, batch `(len(idx), n_time)`."""

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T] | None:
        """Run `fn` in the background where that helps (a lazy source's reader); None: call it yourself."""
        return None

    def close(self) -> None:
        """Release the file and the reader thread (a no-op in memory)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemorySource(TrajectorySource):
    """All trajectories in one State `(n_traj, n_time, ...)`: every read is an index."""

    kind = "memory"

    def __init__(self, data: State) -> None:
        self.data = data
        self.n_traj, self.n_time = int(data.rho.shape[0]), int(data.rho.shape[1])

    def windows(self, traj: torch.Tensor, t0: torch.Tensor, length: int) -> list[State]:
        d = self.data
        return [State._raw({k: v[traj, t0 + j] for k, v in d.fields.items()}, d.rho[traj, t0 + j]) for j in range(length)]

    def window_block(self, traj: Sequence[int], t0: Sequence[int], length: int) -> State:
        tr = torch.as_tensor(list(traj), dtype=torch.long)[None, :]
        t = torch.as_tensor(list(t0), dtype=torch.long)[None, :] + torch.arange(length)[:, None]
        return self.data.map(lambda x: x[tr, t])

    def pairs(self, trajs: Sequence[int], times: torch.Tensor) -> tuple[State, State]:
        sel = self.data if list(trajs) == list(range(self.n_traj)) else self.data.index(list(trajs))
        cur = sel.map(lambda x: x[:, times].reshape(-1, *x.shape[2:]))
        nxt = sel.map(lambda x: x[:, times + 1].reshape(-1, *x.shape[2:]))
        return cur, nxt

    def trajectories(self, idx: Sequence[int]) -> State:
        return self.data if list(idx) == list(range(self.n_traj)) else self.data.index(list(idx))


def _shutdown(pool: ThreadPoolExecutor, tr: Trajectory) -> None:
    # the last reference may go away on the reader thread itself (a finished prefetch), which cannot join itself
    on_reader = threading.current_thread() in getattr(pool, "_threads", ())
    pool.shutdown(wait=not on_reader, cancel_futures=True)
    tr.close()


class LazySource(TrajectorySource):
    """A trajectory file read on demand, by time blocks of one trajectory, through a bounded LRU cache.

    Every file access runs on one reader thread, in submission order: h5py serialises reads anyway, and
    one thread owns the cache, so nothing needs a lock. A prefetch (`submit`) overlaps the next batch's
    read with the current step's arithmetic. Close it (or use it as a context manager); it is also closed
    when garbage-collected.
    """

    kind = "lazy"

    def __init__(self, path: str | os.PathLike[str], cache_bytes: int = DEFAULT_CACHE_BYTES, block: int | None = None) -> None:
        self.path = Path(path)
        tr = open_trajectory(self.path)
        self._tr = tr
        try:
            self.n_traj, self.n_time, self.L, self.orbitals = tr.n_traj, tr.n_time, tr.L, tr.orbitals
            self.names = tr.variables
            self._times = tr.times
            self._ds = {n: tr.dataset(n) for n in self.names}
            rho = self._ds[RHO]
            chunk_t = rho.chunks[1] if rho.chunks else None
            if block is None:
                block = chunk_t if (rho.compression is not None and chunk_t) else min(chunk_t or UNCOMPRESSED_BLOCK, UNCOMPRESSED_BLOCK)
            if block < 1:
                raise ValueError(f"block must be >= 1 snapshot, got {block}")
            self.block = int(block)
            self.cache_bytes = int(cache_bytes)
        except BaseException:
            tr.close()
            raise
        self._cache: OrderedDict[tuple[int, int], dict[str, np.ndarray]] = OrderedDict()
        self._cached = 0
        self.reads = 0  # h5py reads (one per variable and merged run of blocks): what the cache saves
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="qcsurrogate-reader")
        self._closed = threading.Event()
        self._finalizer = weakref.finalize(self, _shutdown, self._pool, tr)

    # -- the reader thread ---------------------------------------------------------------------------
    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._closed.is_set():
            raise ValueError(f"the lazy trajectory source of {self.path} is closed")
        return self._pool.submit(fn, *args)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(fn, *args).result()

    def close(self) -> None:
        self._closed.set()
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _blocks(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], dict[str, np.ndarray]]:
        """The blocks `(traj, block index)` (reader thread only): cached ones, the rest read in (traj, time)
        order with consecutive blocks of a trajectory merged into one read per variable."""
        out: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        missing: list[tuple[int, int]] = []
        for key in sorted(set(keys)):
            hit = self._cache.get(key)
            if hit is None:
                missing.append(key)
            else:
                self._cache.move_to_end(key)
                out[key] = hit
        b = self.block
        i = 0
        while i < len(missing):
            traj, c0 = missing[i]
            j = i
            while j + 1 < len(missing) and missing[j + 1] == (traj, missing[j][1] + 1):
                j += 1
            c1 = missing[j][1]
            lo, hi = c0 * b, min((c1 + 1) * b, self.n_time)
            try:
                run = {n: ds[traj, lo:hi] for n, ds in self._ds.items()}
            except OSError as err:
                raise OSError(f"{self.path}: cannot read trajectory {traj}, snapshots {lo}..{hi - 1} ({err})") from None
            for n, v in run.items():
                check_finite(self.path, n, v, traj, slice(lo, hi, 1), self._times, has_traj_axis=False)
            self.reads += len(run)
            for c in range(c0, c1 + 1):
                a = c * b - lo
                blk = {n: v[a : a + b] for n, v in run.items()}  # views of one read: cached together
                out[(traj, c)] = blk
                self._store((traj, c), blk)
            i = j + 1
        return out

    def _store(self, key: tuple[int, int], blk: dict[str, np.ndarray]) -> None:
        size = sum(v.nbytes for v in blk.values())
        if size > self.cache_bytes:
            return
        self._cache[key] = blk
        self._cached += size
        while self._cached > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached -= sum(v.nbytes for v in old.values())

    def _assemble(self, traj: np.ndarray, t0: np.ndarray, length: int) -> dict[str, np.ndarray]:
        """Snapshots `t0[i] + j` of `traj[i]` as arrays `(length, n, ...)` in storage dtype (reader thread only)."""
        b, n = self.block, len(traj)
        out = {k: np.empty((length, n, *ds.shape[2:]), dtype=ds.dtype) for k, ds in self._ds.items()}
        first, last = t0 // b, (t0 + length - 1) // b
        keys = [(int(tj), int(c)) for tj, f, la in zip(traj, first, last) for c in range(f, la + 1)]
        blocks = self._blocks(keys)
        for i, (tj, s, f, la) in enumerate(zip(traj.tolist(), t0.tolist(), first.tolist(), last.tolist())):
            for c in range(f, la + 1):
                blk = blocks[(tj, c)]
                lo, hi = max(s, c * b), min(s + length, (c + 1) * b)
                for k, arr in out.items():
                    arr[lo - s : hi - s, i] = blk[k][lo - c * b : hi - c * b]
        return out

    def _to_state(self, arrays: dict[str, np.ndarray]) -> State:
        fields = {n: torch.from_numpy(arrays[n]).to(torch.float64) for n in self.names if n != RHO}
        return State._raw(fields, torch.from_numpy(arrays[RHO]).to(complex_dtype_of(torch.float64)))

    def _windows(self, traj: np.ndarray, t0: np.ndarray, length: int) -> list[State]:
        arrays = self._assemble(traj, t0, length)
        # one standalone contiguous array per step, like the in-memory gather makes
        return [self._to_state({k: v[j].copy() for k, v in arrays.items()}) for j in range(length)]

    def _window_block(self, traj: np.ndarray, t0: np.ndarray, length: int) -> State:
        return self._to_state(self._assemble(traj, t0, length))

    def _pairs(self, trajs: list[int], times: np.ndarray) -> tuple[State, State]:
        """Only the snapshots at `times` and `times + 1` are read (bypassing the cache): one read per
        trajectory and variable, a slice when they are contiguous."""
        want = np.union1d(times, times + 1)
        sel: Any = slice(int(want[0]), int(want[-1]) + 1) if want.size and want[-1] - want[0] + 1 == want.size else want
        pos_cur, pos_nxt = np.searchsorted(want, times), np.searchsorted(want, times + 1)
        cur = {k: np.empty((len(trajs) * len(times), *ds.shape[2:]), dtype=ds.dtype) for k, ds in self._ds.items()}
        nxt = {k: np.empty_like(v) for k, v in cur.items()}
        m = len(times)
        for i, tj in enumerate(trajs):
            for k, ds in self._ds.items():
                data = ds[tj, sel] if want.size else ds[tj, 0:0]
                self.reads += 1
                cur[k][i * m : (i + 1) * m] = data[pos_cur]
                nxt[k][i * m : (i + 1) * m] = data[pos_nxt]
        return self._to_state(cur), self._to_state(nxt)

    def _trajectories(self, idx: list[int]) -> State:
        arrays = {k: np.empty((len(idx), *ds.shape[1:]), dtype=ds.dtype) for k, ds in self._ds.items()}
        for i, tj in enumerate(idx):
            for k, ds in self._ds.items():
                arrays[k][i] = ds[tj]
                self.reads += 1
        return self._to_state(arrays)

    # -- the interface (any thread) ------------------------------------------------------------------------
    def windows(self, traj: torch.Tensor, t0: torch.Tensor, length: int) -> list[State]:
        return self._call(self._windows, _ints(traj), _ints(t0), length)

    def window_block(self, traj: Sequence[int], t0: Sequence[int], length: int) -> State:
        return self._call(self._window_block, _ints(traj), _ints(t0), length)

    def pairs(self, trajs: Sequence[int], times: torch.Tensor) -> tuple[State, State]:
        return self._call(self._pairs, [int(i) for i in trajs], _ints(times))

    def trajectories(self, idx: Sequence[int]) -> State:
        return self._call(self._trajectories, [int(i) for i in idx])

    def prefetch_windows(self, traj: torch.Tensor, t0: torch.Tensor, length: int) -> Future[list[State]]:
        """`windows` started now on the reader thread; collect it with `.result()`."""
        return self.submit(self._windows, _ints(traj), _ints(t0), length)


def _ints(x: Any) -> np.ndarray:
    return np.asarray(x.numpy() if isinstance(x, torch.Tensor) else list(x), dtype=np.int64).reshape(-1)


def open_source(path: str | os.PathLike[str], loading: Loading = "auto", log: Callable[[str], None] | None = None,
                cache_bytes: int = DEFAULT_CACHE_BYTES) -> TrajectorySource:
    """The trajectories of `path` in memory or lazily, as `loading` says or (auto) as they fit; logs the choice."""
    with open_trajectory(path) as tr:
        nbytes = loaded_bytes(tr.n_traj, tr.n_time, tr.L, len(tr.field_names), tr.orbitals)
        ranks = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
        kind, why = choose_loading(loading, nbytes, available_memory() if loading == "auto" else None, ranks)
        if log is not None:
            log(f"reading {Path(path).name} {'in memory' if kind == 'memory' else 'lazily (windows on demand)'}: {why}")
        if kind == "memory":
            return MemorySource(tr.load())
    return LazySource(path, cache_bytes=cache_bytes)
