"""Ground-truth generation: one file from one process, or shards from many, resumable.

`generate_data` is what `qcsurrogate simulate` and the data stage of `qcsurrogate run` call. It resolves
how to compute (`qcsurrogate.execution`: compile, threads, processes, shards; logged with the reasons),
builds the initial ensemble once from the scenario, and then either

* integrates it in this process into one file (one process, one shard: the layout of old), or
* writes shards (`qcsurrogate.io.shards`): each shard integrates a contiguous slice of that same
  ensemble in a worker process (multiprocessing spawn, one thread each) or, under torchrun/SLURM-style
  ranks (`WORLD_SIZE`/`RANK`), in the rank that owns it (shard i goes to rank i mod WORLD_SIZE); then
  one master file makes them one data set for `open_trajectory`.

The trajectories do not interact and each shard's batch is integrated by the same kernels with one
thread, so a sharded data set holds the same numbers as a single-process run of the same config (bit
for bit here: checked by tests/test_generate.py). A generation that stops (killed, interrupted, a shard
failed) resumes from `OUT.shards/plan.json`: finished shards are checked and kept, temporary files of
unfinished ones are deleted, the rest are integrated.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import DataConfig
from .execution import Execution, resolve_execution, shard_ranges
from .io import shards as SH
from .state import NonFiniteError, State
from .system import System

Log = Callable[[str], None]
RANK_POLL_S = 2.0


@dataclass(frozen=True)
class GenerationReport:
    """What a generation did: how it computed, which files it wrote, time and peak memory."""

    path: Path
    execution: Execution
    files: tuple[Path, ...]
    shards_reused: int
    seconds: float
    peak_rss_mb: dict[str, float]

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files if f.exists())


def ranks_from_env() -> tuple[int, int]:
    """(rank, world size) when launched as one of several ranks (torchrun sets RANK and WORLD_SIZE), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"invalid ranks from the environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def generate_data(
    data: DataConfig,
    path: str | os.PathLike[str],
    log: Log,
    *,
    system: System | None = None,
    state0: State | None = None,
    compile: bool | str | None = None,
    threads: int | str | None = None,
    processes: int | str | None = None,
    shards: int | str | None = None,
    compression: str | None = None,
    compression_opts: int | None = None,
    overwrite: bool = True,
    extra_attrs: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    cores: int | None = None,
    ranks: tuple[int, int] | None = None,
) -> GenerationReport:
    """Integrate the configured scenario into `path` (one file, or a master over `path`'s shards).

    `compile`, `threads`, `processes`, `shards` override the config's `simulation` settings (None: the
    config's). With `overwrite=False` an existing `path`, or shards of another generation in
    `OUT.shards/`, are errors; shards of this very generation are always resumed. Nothing is written
    before the arguments are checked; every file appears atomically. `ranks` = (rank, world size) makes
    this process one of several that share the shards (`ranks_from_env()` under torchrun); rank 0 writes
    the plan and, once every shard is there, the master.
    """
    t_start = time.perf_counter()
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (refusing to overwrite it)")
    sim = data.simulation
    system = system if system is not None else data.build_system()
    state0 = state0 if state0 is not None else data.initial_state(system)
    batch_shape = tuple(int(s) for s in state0.batch_shape)
    n_traj = max(1, int(np.prod(batch_shape, dtype=np.int64)))
    rank, world = ranks if ranks is not None else (0, 1)
    if not 0 <= rank < world:
        raise ValueError(f"invalid ranks: rank {rank} of {world}")
    total_steps = sim.discard_steps + sim.n_steps
    ex = resolve_execution(
        compile=sim.compile if compile is None else compile, threads=sim.threads if threads is None else threads,
        processes=(world if world > 1 else sim.processes) if processes is None else processes,
        shards=sim.shards if shards is None else shards, device=sim.compute_device, L=int(state0.rho.shape[-1]), n_traj=n_traj,
        n_steps=total_steps, cores=cores, step_counts=(sim.save_every, sim.discard_steps),
    )
    extra = {"data_config": data.model_dump(mode="json", include={"system", "scenario", "simulation"}),
             **dict(extra_attrs or {})}
    storage = {"precision": sim.precision, "compression": compression, "compression_opts": compression_opts}
    compute = {"compile": ex.compile, "threads": ex.threads, "device": sim.compute_device}
    if ex.steps_per_call != 1:  # absent at 1, as in plans written before it existed
        compute["steps_per_call"] = ex.steps_per_call
    identity = {"data": data.identity(), "compute": compute}
    plan = SH.read_plan(path)
    resumable = plan is not None and {k: plan.get(k) for k in ("identity", "storage")} == {
        "identity": json.loads(json.dumps(identity, sort_keys=True, default=str)), "storage": storage,
    } and plan.get("state0_sha256") == SH.state_digest(state0)
    wanted_shards = sim.shards if shards is None else shards
    if resumable and wanted_shards != "auto" and len(plan["ranges"]) != ex.shards:
        resumable = False  # a shard count was asked for explicitly: the earlier plan is another generation
    if not resumable and ex.shards == 1 and world == 1:
        log(f"execution: {ex.describe()}")
        _single_file(data, path, system, state0, ex, storage, extra, overwrite, progress)
        if plan is not None and overwrite:
            SH.remove_shards(path)  # shards of an earlier generation into this name: replaced now
        return GenerationReport(path, ex, (path,), 0, time.perf_counter() - t_start, {"main": _peak_rss_mb()})

    if resumable:
        assert plan is not None
        n_shards = len(plan["ranges"])
        if ex.shards != n_shards:
            ex = Execution(ex.compile, ex.threads, min(ex.processes, n_shards), n_shards,
                           (*ex.reasons[:3], f"shards: {n_shards} (as planned by the interrupted generation)"),
                           ex.steps_per_call)
    else:
        if SH.shard_dir(path).exists() and any(SH.shard_dir(path).iterdir()) and rank == 0:
            if not overwrite:
                raise FileExistsError(f"{SH.shard_dir(path)} holds shards of another generation (another config, "
                                      "initial states, storage or compile choice); pass --force to start over")
            SH.remove_shards(path)
        plan = SH.make_plan(identity, state0, shard_ranges(n_traj, ex.shards), storage)
        plan["batch_shape"] = list(batch_shape)
        if rank == 0:
            SH.write_plan(path, plan)
        else:
            _wait_for_plan(path, plan, log)
    log(f"execution: {ex.describe()}" + (f"; rank {rank} of {world}" if world > 1 else ""))
    removed = SH.remove_temp_files(path) if rank == 0 else []
    if removed:
        log(f"removed {len(removed)} temporary file(s) of unfinished shards")
    n_shards = len(plan["ranges"])
    n_time = sim.n_snapshots
    done = {i for i in range(n_shards) if SH.shard_is_complete(SH.shard_path(path, i, n_shards), plan, i, n_time) is None}
    if done:
        log(f"resuming: {len(done)} of {n_shards} shards are finished and valid; integrating the other "
            f"{n_shards - len(done)}")
    mine = [i for i in range(n_shards) if i % world == rank and i not in done]
    tasks = [_task(data, path, plan, i, state0, ex, storage, extra, sim.discard_steps) for i in mine]
    peaks = {"main": 0.0}
    try:
        if ex.processes <= 1 or len(tasks) <= 1 or world > 1:  # a rank is one process: its shards run in it
            for t in tasks:
                out = _run_shard(t, progress=progress)
                log(f"shard {out['index'] + 1}/{n_shards} ({out['n_traj']} trajectories) done in {out['seconds']:.1f} s")
                peaks["main"] = max(peaks["main"], out["peak_rss_mb"])
        else:
            peaks.update(_run_pool(tasks, min(ex.processes, len(tasks)), n_shards, log))
    except NonFiniteError:
        # the same inputs would diverge again: nothing to resume, so the plan and any shards go too
        if rank == 0 and world == 1:
            SH.remove_shards(path)
        raise
    if rank != 0:
        log(f"rank {rank}: my shards are written; rank 0 writes the master file")
        peaks["main"] = max(peaks["main"], _peak_rss_mb())
        return GenerationReport(path, ex, tuple(SH.shard_path(path, i, n_shards) for i in mine), len(done),
                                time.perf_counter() - t_start, peaks)
    if world > 1:
        _wait_for_shards(path, plan, n_time, log)
    options = {"solver": sim.solver, "device": sim.compute_device, "compile": ex.compile, "threads": ex.threads,
               "steps_per_call": ex.steps_per_call, "processes": ex.processes, "shards": n_shards}
    SH.write_master(path, plan, overwrite=True, extra_attrs=extra, simulation_options=options,
                    batch_shape=plan.get("batch_shape"))
    peaks["main"] = max(peaks["main"], _peak_rss_mb())
    files = (path, *(SH.shard_path(path, i, n_shards) for i in range(n_shards)))
    return GenerationReport(path, ex, files, len(done), time.perf_counter() - t_start, peaks)


def _single_file(data: DataConfig, path: Path, system: System, state0: State, ex: Execution,
                 storage: Mapping[str, Any], extra: Mapping[str, Any], overwrite: bool, progress: bool | None) -> None:
    from .io import simulate_to_file

    sim = data.simulation
    simulate_to_file(
        system, state0, path, sim.dt, sim.n_steps, sim.save_every,
        scenario=data.scenario.name, scenario_kwargs=data.scenario.kwargs, precision=storage["precision"],
        compression=storage["compression"], compression_opts=storage["compression_opts"], overwrite=overwrite,
        extra_attrs=extra, discard_steps=sim.discard_steps, solver=sim.solver, device=sim.compute_device,
        compile=ex.compile, threads=ex.threads, progress=progress, steps_per_call=ex.steps_per_call,
    )


def _task(data: DataConfig, path: Path, plan: Mapping[str, Any], index: int, state0: State, ex: Execution,
          storage: Mapping[str, Any], extra: Mapping[str, Any], discard_steps: int) -> dict[str, Any]:
    """Everything one shard needs, as plain data (it crosses to a spawned process)."""
    a, b = plan["ranges"][index]
    flat = state0.map(lambda x: x.reshape(-1, *x.shape[len(state0.batch_shape):]))
    part = flat.index(slice(a, b))
    return {
        "data": data.model_dump(mode="json", include={"system", "scenario", "simulation"}),
        "path": str(SH.shard_path(path, index, len(plan["ranges"]))),
        "index": index, "n_shards": len(plan["ranges"]), "range": [a, b],
        "fields": {k: v.numpy() for k, v in part.fields.items()}, "rho": part.rho.numpy(),
        "compile": ex.compile, "threads": ex.threads, "steps_per_call": ex.steps_per_call,
        "storage": dict(storage), "discard_steps": discard_steps,
        "extra": {**extra, "shard": {"index": index, "of": len(plan["ranges"]), "trajectories": [a, b],
                                     "plan_sha256": SH.plan_digest(plan)}},
    }


def _run_shard(task: Mapping[str, Any], progress: bool | None = False) -> dict[str, Any]:
    """Integrate one shard into its file (atomically); runs in a worker process or in this one."""
    from .io import simulate_to_file

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\._inductor.*")
    t0 = time.perf_counter()
    data = DataConfig.model_validate(task["data"])
    sim = data.simulation
    system = data.build_system()
    state = State({k: torch.from_numpy(v) for k, v in task["fields"].items()}, torch.from_numpy(task["rho"]))
    st = task["storage"]
    simulate_to_file(
        system, state, task["path"], sim.dt, sim.n_steps, sim.save_every,
        scenario=data.scenario.name, scenario_kwargs=data.scenario.kwargs, precision=st["precision"],
        compression=st["compression"], compression_opts=st["compression_opts"], overwrite=True,
        extra_attrs=task["extra"], discard_steps=task["discard_steps"], solver=sim.solver, device=sim.compute_device,
        compile=task["compile"], threads=task["threads"], progress=progress,
        steps_per_call=task["steps_per_call"],
    )
    return {"index": task["index"], "n_traj": task["range"][1] - task["range"][0],
            "seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb(), "pid": os.getpid()}


def _worker_init(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def _run_pool(tasks: list[dict[str, Any]], processes: int, n_shards: int, log: Log) -> dict[str, float]:
    """Run shard tasks on `processes` spawned workers; the first failure stops the rest (finished shards stay)."""
    peaks: dict[str, float] = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx, initializer=_worker_init,
                             initargs=(tasks[0]["threads"],)) as pool:
        pending = {pool.submit(_run_shard, t) for t in tasks}
        n_done = 0
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)  # log each shard as it ends
                for fut in finished:
                    out = fut.result()  # re-raises a worker's error (BrokenProcessPool if it was killed)
                    n_done += 1
                    peaks[f"worker {out['pid']}"] = max(peaks.get(f"worker {out['pid']}", 0.0), out["peak_rss_mb"])
                    log(f"shard {out['index'] + 1}/{n_shards} ({out['n_traj']} trajectories) done in "
                        f"{out['seconds']:.1f} s [{n_done}/{len(tasks)} of this run]")
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return peaks


def _wait_for_plan(path: Path, plan: Mapping[str, Any], log: Log, timeout_s: float = 600.0) -> None:
    """A rank other than 0 waits for rank 0 to have written the same plan (after clearing stale shards)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = SH.read_plan(path)
        if got is not None and got == json.loads(json.dumps(plan)):
            return
        time.sleep(RANK_POLL_S)
    raise TimeoutError(f"rank 0 did not write the shard plan {SH.shard_dir(path) / SH.PLAN_FILE} within "
                       f"{timeout_s:.0f} s (do all ranks run the same config and see the same files?)")


def _wait_for_shards(path: Path, plan: Mapping[str, Any], n_time: int, log: Log) -> None:
    """Rank 0 waits until every shard is finished (ranks share a file system); no deadline: ranks may be slow."""
    n = len(plan["ranges"])
    said = False
    while True:
        missing = [i for i in range(n) if SH.shard_is_complete(SH.shard_path(path, i, n), plan, i, n_time) is not None]
        if not missing:
            return
        if not said:
            log(f"rank 0: waiting for {len(missing)} shard(s) of the other ranks")
            said = True
        time.sleep(RANK_POLL_S)


def output_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of a trajectory data set: `path`, and its shard files if it is a master."""
    return [Path(path), *SH.shard_files(path)]
