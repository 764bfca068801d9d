"""Data-parallel training under a real torch.distributed process group (gloo, 2 CPU processes)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out: Path, distributed: bool) -> None:
    sys.path.insert(0, str(HERE))
    from toy_system import ToySystem

    from qcsurrogate import simulate
    from qcsurrogate.surrogate import PARCConfig, build_surrogate
    from qcsurrogate.training import TrainConfig, Trainer, WindowSampler
    from qcsurrogate.training.data import fit_normalization

    torch.set_num_threads(1)
    system = ToySystem(L=4)
    traj = simulate(system, system.initial_state("random_start", seed=0, n_traj=2), 0.05, 20)
    traj = traj.map(lambda x: x.transpose(0, 1).contiguous())
    cfg = TrainConfig(steps=4, batch_size=8, warmup_steps=1, log_every=2, val_every=100, checkpoint_every=100, progress=False)
    sampler = WindowSampler(traj, [0, 1], 1, cfg.seed)
    norm = fit_normalization(system, sampler)
    torch.manual_seed(0)
    model = build_surrogate("parc", system, PARCConfig(width=8, dtype="float64"), norm)
    trainer = Trainer(model, system, sampler, None, cfg, out / "run")
    trainer.fit()
    rank = torch.distributed.get_rank() if distributed else 0
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"weights-{rank}.safetensors"))


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _train(Path(out), distributed=True)
    finally:
        torch.distributed.destroy_process_group()


def test_two_rank_training_equals_single_process_on_the_global_batch(tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    _train(single, distributed=False)
    dist_dir = tmp_path / "ddp"
    dist_dir.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(dist_dir)), nprocs=2, join=True)
    w0 = load_file(str(dist_dir / "weights-0.safetensors"))
    w1 = load_file(str(dist_dir / "weights-1.safetensors"))
    ref = load_file(str(single / "weights-0.safetensors"))
    for k in ref:
        assert torch.equal(w0[k], w1[k]), f"ranks disagree on {k}"
        torch.testing.assert_close(w0[k], ref[k], rtol=1e-9, atol=1e-11)
    assert (dist_dir / "run" / "train_log.jsonl").exists()  # rank 0 logged
    assert len((dist_dir / "run" / "train_log.jsonl").read_text().splitlines()) == 2  # and only rank 0
