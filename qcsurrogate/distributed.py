"""Multi-process (data-parallel) runs under `torchrun`: process group from the environment.

    torchrun --nproc_per_node=4 -m qcsurrogate run examples/holstein_deep.yaml

Every rank trains on its shard of each global batch (gradients averaged, see `Trainer`); rank 0
generates the data, writes checkpoints, evaluates and plots, the others wait at barriers.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str) -> None:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1); NCCL on GPUs, gloo on CPUs."""
    if world_size_from_env() <= 1 or not dist.is_available() or dist.is_initialized():
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def describe() -> str:
    """How this run computes, for the log: '' for one process, else the ranks and the backend."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ""
    return f"data-parallel on {dist.get_world_size()} processes ({dist.get_backend()}), this is rank {dist.get_rank()}"


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def local_device(requested: torch.device) -> torch.device:
    """Each rank's own GPU under torchrun; otherwise the requested device."""
    if requested.type == "cuda" and dist.is_available() and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return requested
