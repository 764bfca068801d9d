"""How ground truth is computed on this machine: compile or not, threads, processes, shards.

Each `auto` is resolved here, from the size of the job only (never from a timing), so a config makes
the same choices every time it runs with the same number of cores, and every choice can be overridden.
The rules, with the measurements behind them (docs/performance.md, 2-core machine):

* threads: 1 torch thread per process on CPU. Two threads made the compiled kernels 10-100x slower on a
  busy machine; all cores are used by one process per core instead, each on its slice of trajectories.
* compile: on CPU when the run would take at least `COMPILE_MIN_EAGER_S` eagerly. Tracing costs about
  5-20 s once per process and shape; the compiled step is 3-4x faster, so shorter runs would not repay it.
  Off on other devices (the compiled path is only measured on CPU here).
* processes: one per core, capped by the trajectories and by the work: each process must have at least
  `PROCESS_MIN_EAGER_S` of (eager-estimated) work, since spawning one costs seconds of start-up and its
  own tracing. Other jobs' load is not taken into account: on the busy 2-core machine two processes
  ran at 0.75-0.88x of one in some runs and 1.4-1.7x in others (docs/performance.md); the number of
  processes never changes the numbers (each shard is integrated alone, one thread).
* steps_per_call (compiled): 4 RK steps per compiled call for L <= 16, where the per-call overhead is a
  large share of a step (measured 1.2x at L = 8 x 256), else 1 (slower at L = 32 and 256). Decided on L
  only, so a run integrates with the same kernels whatever its number of processes.
* shards: about `SHARD_TARGET_EAGER_S` of eager-estimated work each (a few minutes compiled), so a
  killed long run resumes with little lost even on one process; at least one per process, preferring a count that divides the trajectories evenly
  (one compiled shape per process).

The eager cost model `eager_seconds` is deliberately rough (fitted to the eager throughputs measured at
L = 8 x 256, 32 x 64 and 256 x 1 at one thread): it only has to tell seconds from minutes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

import torch

Auto = Literal["auto"]

EAGER_STEP_OVERHEAD_S = 2.0e-3
"""Per RK4 step of eager `simulate`, whatever the batch: Python and kernel-launch overhead."""
EAGER_ELEMENT_S = 1.2e-7
"""Per RK4 step and per density-matrix element (trajectory x L^2) of eager `simulate`."""
COMPILE_MIN_EAGER_S = 30.0
PROCESS_MIN_EAGER_S = 30.0
SHARD_TARGET_EAGER_S = 600.0


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under taskset or a SLURM allocation)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def eager_seconds(L: int, n_traj: int, n_steps: int) -> float:
    """Rough wall time of `n_steps` eager RK4 steps of `n_traj` trajectories at size L, one thread."""
    return n_steps * (EAGER_STEP_OVERHEAD_S + EAGER_ELEMENT_S * n_traj * L * L)


SMALL_L_UNROLL = 16
"""Largest L at which compiled runs unroll 4 steps per call."""


def resolve_steps_per_call(compile: bool, L: int, *step_counts: int) -> int:
    """RK steps per compiled call: 4 for small L when every step count in `step_counts` allows it, else 1."""
    if compile and L <= SMALL_L_UNROLL and all(n % 4 == 0 for n in step_counts):
        return 4
    return 1


def resolve_threads(threads: int | Auto | None, device: torch.device | str) -> tuple[int | None, str]:
    """The torch thread count to use (None: leave torch's setting alone) and why."""
    if threads is None:
        return None, f"threads: torch's setting ({torch.get_num_threads()})"
    if threads == "auto":
        if torch.device(device).type == "cpu":
            return 1, "threads: 1 (auto: one thread per process on CPU)"
        return None, f"threads: torch's setting ({torch.get_num_threads()}; auto, device {device})"
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be 'auto', None or an integer >= 1, got {threads!r}")
    return threads, f"threads: {threads} (given)"


def resolve_compile(compile: bool | Auto, device: torch.device | str, L: int, n_traj: int, n_steps: int) -> tuple[bool, str]:
    """Whether to torch.compile the step, and why (`auto`: CPU runs long enough to repay the tracing)."""
    if isinstance(compile, bool):
        return compile, f"compile: {str(compile).lower()} (given)"
    if compile != "auto":
        raise ValueError(f"compile must be 'auto', True or False, got {compile!r}")
    if torch.device(device).type != "cpu":
        return False, f"compile: false (auto: the compiled path is measured on CPU only, device is {device})"
    est = eager_seconds(L, n_traj, n_steps)
    if est >= COMPILE_MIN_EAGER_S:
        return True, f"compile: true (auto: ~{_fmt_s(est)} eager, worth the ~5-20 s of tracing)"
    return False, f"compile: false (auto: ~{_fmt_s(est)} eager, too short to repay ~5-20 s of tracing)"


@dataclass(frozen=True)
class Execution:
    """The resolved way a data set is computed, with the reason for each choice (what the log says)."""

    compile: bool
    threads: int | None
    processes: int
    shards: int
    reasons: tuple[str, ...] = field(default=())
    steps_per_call: int = 1

    def describe(self) -> str:
        return "; ".join(self.reasons)


def resolve_execution(
    *, compile: bool | Auto, threads: int | Auto | None, processes: int | Auto, shards: int | Auto,
    device: str, L: int, n_traj: int, n_steps: int, cores: int | None = None, step_counts: tuple[int, ...] = (),
) -> Execution:
    """Resolve every `auto` of a data generation of `n_traj` trajectories x `n_steps` steps at size L.

    `compile` is decided on the whole job (not per process), so a sharded run and a single-process run of
    the same config integrate with the same kernels and write the same numbers.
    """
    cores = available_cores() if cores is None else cores
    do_compile, why_compile = resolve_compile(compile, device, L, n_traj, n_steps)
    spc = resolve_steps_per_call(do_compile, L, *step_counts) if step_counts else 1
    if spc > 1:
        why_compile += f", {spc} steps per compiled call (L <= {SMALL_L_UNROLL})"
    n_threads, why_threads = resolve_threads(threads, device)
    est = eager_seconds(L, n_traj, n_steps)
    if processes == "auto":
        by_work = max(1, int(est // PROCESS_MIN_EAGER_S))
        n_proc = max(1, min(cores, n_traj, by_work))
        limit = min((cores, "cores"), (n_traj, "trajectories"), (by_work, "work"), key=lambda x: x[0])[1]
        why_proc = (f"processes: {n_proc} (auto: {cores} core{'s' * (cores != 1)}, {n_traj} trajectories, "
                    f"~{_fmt_s(est)} eager work; limited by the {limit})")
    else:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be 'auto' or an integer >= 1, got {processes!r}")
        n_proc = min(processes, n_traj)
        why_proc = f"processes: {n_proc} (given{'' if n_proc == processes else f' {processes}, capped by the trajectories'})"
    if shards == "auto":
        n_shards = auto_shards(n_traj, n_proc, est)  # one process too: a killed long run resumes by shard
        why_shards = f"shards: {n_shards} (auto)"
    else:
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise ValueError(f"shards must be 'auto' or an integer >= 1, got {shards!r}")
        n_shards = min(shards, n_traj)
        why_shards = f"shards: {n_shards} (given)"
    n_proc = min(n_proc, n_shards)
    return Execution(do_compile, n_threads, n_proc, n_shards, (why_compile, why_threads, why_proc, why_shards), spc)


def auto_shards(n_traj: int, processes: int, eager_s: float) -> int:
    """At least one shard per process, about `SHARD_TARGET_EAGER_S` of work each, a multiple of the
    processes (they finish together) dividing `n_traj` evenly if one does up to twice the target count."""
    per_proc = max(1, math.ceil(eager_s / processes / SHARD_TARGET_EAGER_S))
    target = min(n_traj, processes * per_proc)
    for k in range(target, min(n_traj, 2 * target) + 1):
        if n_traj % k == 0 and k % processes == 0:
            return k
    return target


def shard_ranges(n_traj: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous trajectory ranges [start, stop) of `n_shards` near-equal shards (sizes differ by at most 1)."""
    if not 1 <= n_shards <= n_traj:
        raise ValueError(f"need 1 <= shards <= trajectories, got {n_shards} shards of {n_traj}")
    base, extra = divmod(n_traj, n_shards)
    out, start = [], 0
    for i in range(n_shards):
        stop = start + base + (i < extra)
        out.append((start, stop))
        start = stop
    return out


def _fmt_s(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
