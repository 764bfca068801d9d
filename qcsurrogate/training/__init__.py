"""Training surrogates on ground-truth trajectories: data windows, the loop, checkpoints."""

from .checkpoint import load_model, save_model
from .data import Split, WindowSampler, split_trajectories
from .trainer import TrainConfig, Trainer

__all__ = ["Split", "TrainConfig", "Trainer", "WindowSampler", "load_model", "save_model", "split_trajectories"]
