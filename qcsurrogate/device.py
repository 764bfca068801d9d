"""Where a run computes: the torch device and the CPU thread count, chosen once for every stage."""

from __future__ import annotations

import torch

from . import distributed


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available; under torchrun each rank gets its own GPU."""
    if name == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device '{name}' requested but CUDA is not available here")
    return distributed.local_device(dev)


def use_threads(threads: int | None) -> int:
    """Set torch's CPU thread count (None keeps torch's default); returns the count in effect.

    Results can change in the last digits with the thread count (reductions split differently), so
    every stage of a run uses the same setting and records it.
    """
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
