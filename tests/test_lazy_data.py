"""Lazy reading of trajectory files: the same batches, pairs, windows, trained weights and metrics as the
in-memory path, bit for bit (resumed and data-parallel runs included); the automatic choice and its
override; no file handle or reader thread left behind."""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import h5py
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file, save_file

from qcsurrogate.io import open_trajectory, simulate_to_file
from qcsurrogate.state import State
from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.system import ConfigError
from qcsurrogate.training import TrainConfig, Trainer, WindowSampler
from qcsurrogate.training.data import fit_normalization
from qcsurrogate.training.source import (
    LazySource,
    MemorySource,
    choose_loading,
    loaded_bytes,
    open_source,
)

HERE = Path(__file__).parent
N_TRAJ, N_STEPS = 5, 40


def _write(path: Path, **kw) -> Path:
    sys.path.insert(0, str(HERE))
    from toy_system import ToySystem

    system = ToySystem(L=4)
    return simulate_to_file(system, system.initial_state("random_start", seed=0, n_traj=N_TRAJ), path, 0.05, N_STEPS, **kw)


@pytest.fixture(scope="module")
def h5file(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("lazy") / "toy.h5")


@pytest.fixture(scope="module", params=["plain", "gzip", "float32"])
def any_file(request, tmp_path_factory) -> Path:
    kw = {"plain": {}, "gzip": {"compression": "gzip"}, "float32": {"precision": "float32"}}[request.param]
    return _write(tmp_path_factory.mktemp(request.param) / "toy.h5", **kw)


def _memory(path: Path) -> MemorySource:
    with open_trajectory(path) as tr:
        return MemorySource(tr.load())


def _same(a: State, b: State) -> None:
    assert a.names == b.names
    for name in a.names:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name


def _open_files() -> int:
    return len(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))


# -- the sources agree -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("block", "cache_bytes"), [(None, 128 << 20), (3, 128 << 20), (3, 2000)])
def test_lazy_batches_equal_the_in_memory_batches(any_file, block, cache_bytes):
    """Windows crossing block boundaries, a cache too small to keep a batch, shards of the global batch."""
    mem = _memory(any_file)
    with LazySource(any_file, cache_bytes=cache_bytes, block=block) as lazy:
        for indices, max_window in (([0, 2, 4], 3), ([1], 1)):
            a, b = WindowSampler(mem, indices, max_window, seed=3), WindowSampler(lazy, indices, max_window, seed=3)
            for step, window, shard in ((0, 3 if max_window == 3 else 1, (0, 1)), (1, 1, (0, 1)), (2, 1, (0, 1)),
                                        (7, max_window, (1, 2)), (8, max_window, (0, 2)), (40, 1, (2, 3))):
                wa, wb = a.batch(step, 6, window, shard=shard), b.batch(step, 6, window, shard=shard)
                assert len(wa) == len(wb) == window + 1
                for x, y in zip(wa, wb):
                    _same(x, y)
        assert lazy._cached <= cache_bytes


def test_a_shard_is_the_strided_slots_of_the_global_batch(h5file):
    with LazySource(h5file) as lazy:
        s = WindowSampler(lazy, [0, 1, 3], 2, seed=1)
        full = s.batch(5, 8, 2)
        for rank in range(2):
            for x, y in zip(s.batch(5, 8, 2, shard=(rank, 2)), full):
                _same(x, y.index(slice(rank, None, 2)))
        with pytest.raises(ValueError, match="rank"):
            s.batch(0, 8, 1, shard=(2, 2))


def test_prefetched_and_out_of_order_requests_give_the_same_batches(h5file):
    """The next step is read ahead; a request it did not guess (another window, a jump back) is read directly."""
    mem = WindowSampler(_memory(h5file), [0, 1, 2, 3], 3, seed=0)
    with LazySource(h5file) as lazy:
        s = WindowSampler(lazy, [0, 1, 2, 3], 3, seed=0)
        for step, window in ((0, 1), (1, 1), (2, 3), (3, 3), (1, 2), (9, 1), (10, 1)):
            for x, y in zip(s.batch(step, 4, window), mem.batch(step, 4, window)):
                _same(x, y)


@pytest.mark.parametrize("stride", [1, 3, 7, 100])
def test_all_pairs_are_the_same_and_read_only_the_strided_snapshots(any_file, stride):
    mem = WindowSampler(_memory(any_file), [0, 3, 4], 1, seed=0)
    with LazySource(any_file) as lazy:
        s = WindowSampler(lazy, [0, 3, 4], 1, seed=0)
        for x, y in zip(s.all_pairs(stride), mem.all_pairs(stride)):
            _same(x, y)
        # one read per trajectory and variable, and nothing kept: the pairs bypass the block cache
        assert lazy.reads == 3 * len(lazy.names) and not lazy._cache


def test_windows_and_whole_trajectories_are_the_same(any_file):
    mem = _memory(any_file)
    with LazySource(any_file, block=4) as lazy:
        traj, t0 = [4, 0, 0, 2, 4], [0, 3, 30, 17, 35]
        _same(lazy.window_block(traj, t0, 6), mem.window_block(traj, t0, 6))
        _same(lazy.trajectories([3, 1]), mem.trajectories([3, 1]))
        _same(lazy.trajectories(range(N_TRAJ)), mem.data)


def test_evaluation_windows_read_by_trajectory_batches_equal_the_loaded_truth(h5file):
    from qcsurrogate.pipeline.stages import read_windows, truth_windows

    mem = _memory(h5file)
    test, starts = [4, 1, 2], [0, 7, 30]
    want = truth_windows(mem.data.index(test), starts, 9)
    with LazySource(h5file) as lazy:
        for source in (mem, lazy):
            for per_read in (1, 2, 64):
                _same(read_windows(source, test, starts, 0, 10, per_read=per_read), want)
            _same(read_windows(source, test, starts, 4, 3, per_read=2), want.index(slice(4, 7)))


def test_fit_normalization_is_the_same(h5file):
    sys.path.insert(0, str(HERE))
    from toy_system import ToySystem

    system = ToySystem(L=4)
    with LazySource(h5file) as lazy:
        a = fit_normalization(system, WindowSampler(lazy, [0, 1, 2], 2, 0), max_pairs=50)
    b = fit_normalization(system, WindowSampler(_memory(h5file), [0, 1, 2], 2, 0), max_pairs=50)
    assert a.to_json() == b.to_json()


# -- training --------------------------------------------------------------------------------------------
def _trainer(source, out: Path, steps: int = 6, stochastic: bool = True) -> Trainer:
    """A tiny PARC on trajectories 0, 1, 3 (validation: 2); `stochastic` adds dropout and input noise,
    whose draws depend on the batch a process holds (so not for comparing ranks with one process)."""
    sys.path.insert(0, str(HERE))
    from toy_system import ToySystem

    system = ToySystem(L=4)
    cfg = TrainConfig(steps=steps, batch_size=6, warmup_steps=1, log_every=2, val_every=3, checkpoint_every=2,
                      progress=False, objective={"unroll": {"max_steps": 2, "start_fraction": 0.5},
                                                "noise_std": 1e-3 if stochastic else 0.0})
    train = WindowSampler(source, [0, 1, 3], cfg.objective.unroll.max_steps, cfg.seed)
    norm = fit_normalization(system, train)
    torch.manual_seed(cfg.seed)
    model = build_surrogate("parc", system, PARCConfig(width=6, dropout=0.1 if stochastic else 0.0, dtype="float64"), norm)
    return Trainer(model, system, train, WindowSampler(source, [2], 1, cfg.seed), cfg, out)


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_lazy_training_gives_bit_identical_weights_and_resumes_exactly(h5file, tmp_path):
    mem = _trainer(_memory(h5file), tmp_path / "mem")
    mem.fit()
    with LazySource(h5file, block=5, cache_bytes=4000) as lazy:
        whole = _trainer(lazy, tmp_path / "lazy")
        whole.fit()
        cut = _trainer(lazy, tmp_path / "cut")
        cut.fit(stop_after=3)  # interrupted after step 3 (its last checkpoint)
        resumed = _trainer(lazy, tmp_path / "cut")
        summary = resumed.fit(resume=True)
    assert summary["steps_run"] == 3  # from the step-3 checkpoint
    ref = _weights(mem)
    for other in (whole, resumed):
        got = _weights(other)
        assert set(got) == set(ref)
        for k in ref:
            assert torch.equal(got[k], ref[k]), k
    assert [r["loss"] for r in whole.history] == [r["loss"] for r in mem.history]
    assert [r.get("val_loss") for r in whole.history] == [r.get("val_loss") for r in mem.history]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_to(path: str, out: Path, lazy: bool, rank: int, interrupt: int | None = None) -> None:
    """Train (interrupted after `interrupt` steps and resumed from the checkpoint, when given); save the weights."""
    torch.set_num_threads(1)
    source = LazySource(path) if lazy else _memory(Path(path))
    try:
        trainer = _trainer(source, out / "run", stochastic=False)
        if interrupt is not None:
            trainer.fit(stop_after=interrupt)
            if torch.distributed.is_initialized():
                torch.distributed.barrier()  # rank 0 has written the checkpoint every rank resumes from
            trainer = _trainer(source, out / "run", stochastic=False)
            assert trainer.fit(resume=True)["steps_run"] == trainer.cfg.steps - interrupt
        else:
            trainer.fit()
    finally:
        source.close()
    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, str(out / f"weights-{rank}.safetensors"))


def _worker(rank: int, world: int, port: int, path: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _train_to(path, Path(out), lazy=True, rank=rank, interrupt=3)
    finally:
        torch.distributed.destroy_process_group()


def test_two_rank_lazy_training_resumed_equals_the_uninterrupted_single_process_result(h5file, tmp_path):
    """Each rank reads its shard lazily; interrupted after step 3 and resumed from rank 0's checkpoint."""
    single = tmp_path / "single"
    single.mkdir()
    _train_to(str(h5file), single, lazy=False, rank=0)
    ddp = tmp_path / "ddp"
    ddp.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(h5file), str(ddp)), nprocs=2, join=True)
    w0, w1 = load_file(str(ddp / "weights-0.safetensors")), load_file(str(ddp / "weights-1.safetensors"))
    ref = load_file(str(single / "weights-0.safetensors"))
    for k in ref:
        assert torch.equal(w0[k], w1[k]), f"ranks disagree on {k}"
        torch.testing.assert_close(w0[k], ref[k], rtol=1e-9, atol=1e-11)  # up to the order of the gradient sum


# -- choosing the path ---------------------------------------------------------------------------------------
def test_auto_loads_in_memory_what_fits_and_reads_the_rest_lazily():
    gib = 2**30
    assert choose_loading("auto", gib, 8 * gib)[0] == "memory"  # 1 GiB <= 25% of 8 GiB
    kind, why = choose_loading("auto", 3 * gib, 8 * gib)
    assert kind == "lazy" and "more than 25% of 8.0 GiB available" in why and "3.00 GiB" in why
    kind, why = choose_loading("auto", gib, 8 * gib, ranks=4)  # four ranks each hold a copy
    assert kind == "lazy" and "per each of 4 ranks" in why
    assert choose_loading("auto", 1, None)[0] == "lazy"  # unknown memory: never risk it
    assert choose_loading("memory", 100 * gib, gib) == ("memory", "100.00 GiB as float64; the config says loading: memory")
    assert choose_loading("lazy", 1, 100 * gib)[0] == "lazy"
    with pytest.raises(ValueError, match="loading must be"):
        choose_loading("sometimes", 1, 1)  # type: ignore[arg-type]


def test_open_source_follows_the_override_and_logs_the_choice(h5file, monkeypatch):
    import qcsurrogate.training.source as source_mod

    with open_trajectory(h5file) as tr:
        nbytes = loaded_bytes(tr.n_traj, tr.n_time, tr.L, len(tr.field_names))
    assert nbytes == N_TRAJ * (N_STEPS + 1) * (2 * 4 * 8 + 4 * 4 * 16)
    logs: list[str] = []
    monkeypatch.setattr(source_mod, "available_memory", lambda: 4 * nbytes - 1)  # just too little for 'auto'
    with open_source(h5file, "auto", logs.append) as s:
        assert isinstance(s, LazySource)
    monkeypatch.setattr(source_mod, "available_memory", lambda: 4 * nbytes)
    with open_source(h5file, "auto", logs.append) as s:
        assert isinstance(s, MemorySource)
    with open_source(h5file, "lazy", logs.append) as s:
        assert isinstance(s, LazySource)
    assert "lazily (windows on demand)" in logs[0] and "(loading: auto)" in logs[0]
    assert "in memory" in logs[1] and "within 25%" in logs[1]
    assert "the config says loading: lazy" in logs[2]


@pytest.mark.usefixtures("toy_registered")
def test_the_loading_field_is_validated(tmp_path):
    from test_pipeline import TINY

    from qcsurrogate.pipeline import load_run_config

    cfg = dict(json.loads(json.dumps(TINY)), output_dir=str(tmp_path / "run"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert load_run_config(path).loading == "auto"
    path.write_text(yaml.safe_dump({**cfg, "loading": "lazy"}))
    assert load_run_config(path).loading == "lazy"
    path.write_text(yaml.safe_dump({**cfg, "loading": "mmap"}))
    with pytest.raises(ConfigError, match="loading: Input should be 'auto', 'memory' or 'lazy'"):
        load_run_config(path)


@pytest.mark.usefixtures("toy_registered")
def test_loading_is_no_stage_input_so_old_configs_keep_their_identity(tmp_path):
    from test_pipeline import TINY

    from qcsurrogate.pipeline import Plan, load_run_config
    from qcsurrogate.pipeline.layout import RunLayout
    from qcsurrogate.pipeline.ledger import Ledger

    plans = []
    for loading in (None, "auto", "memory", "lazy"):
        cfg = dict(json.loads(json.dumps(TINY)), output_dir=str(tmp_path / "run"))
        if loading:
            cfg["loading"] = loading
        path = tmp_path / f"{loading}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        rc = load_run_config(path)
        plan = Plan(rc, Ledger(RunLayout(rc.output_dir)))
        plans.append({s: plan.inputs(s) for s in plan.stages})
    assert all(p == plans[0] for p in plans[1:])


# -- the pipeline ------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("toy_registered")
def test_a_lazy_run_gives_the_in_memory_run_and_closes_its_file(tmp_path, capsys):
    from test_pipeline import TINY

    from qcsurrogate.cli import main

    outs = {}
    for loading in ("memory", "lazy"):
        cfg = dict(json.loads(json.dumps(TINY)), output_dir=str(tmp_path / loading), loading=loading)
        cfg["evaluation"] = {**cfg["evaluation"], "climate": {"horizon": 12, "max_lag": 4, "bins": 5},
                             "starts": [0, 10, 15]}
        path = tmp_path / f"{loading}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        before_files, before_threads = _open_files(), threading.active_count()
        assert main(["run", str(path)]) == 0
        assert _open_files() == before_files and threading.active_count() == before_threads
        outs[loading] = capsys.readouterr().out
    assert "lazily (windows on demand)" in outs["lazy"] and "the config says loading: lazy" in outs["lazy"]
    assert "in memory" in outs["memory"]
    for name in ("model", "baseline_cnn/model"):
        a = load_file(str(tmp_path / "memory" / name / "model.safetensors"))
        b = load_file(str(tmp_path / "lazy" / name / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), name

    def metrics(d):
        m = json.loads((tmp_path / d / "metrics.json").read_text())
        return {k: v for k, v in m.items() if k not in ("inputs", "computed_with")}

    assert metrics("memory") == metrics("lazy")
    assert "climate" in metrics("lazy") and "rollout_from_t0" in metrics("lazy")


def test_closing_releases_the_file_and_the_reader_thread(h5file):
    before = _open_files()
    lazy = LazySource(h5file)
    assert _open_files() == before + 1
    lazy.window_block([0], [0], 2)
    lazy.close()
    assert lazy.closed and _open_files() == before
    assert not any(t.name.startswith("qcsurrogate-reader") and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ValueError, match="closed"):
        lazy.window_block([0], [0], 2)
    lazy.close()  # twice is fine

    dropped = LazySource(h5file)
    WindowSampler(dropped, [0, 1], 1, 0).batch(0, 4, 1)  # leaves a prefetch in flight
    del dropped
    for _ in range(200):  # the prefetch, finishing on the reader thread, may hold the last reference
        gc.collect()
        if _open_files() == before:
            break
        time.sleep(0.02)
    assert _open_files() == before  # the finalizer closed what nobody closed
