"""Training surrogates on ground-truth trajectories: data windows, the objective, the loop, checkpoints."""

from .checkpoint import load_model, save_model
from .data import Split, WindowSampler, split_trajectories
from .objective import Objective, ObjectiveConfig, UnrollCurriculum
from .trainer import TrainConfig, Trainer

__all__ = [
    "Objective",
    "ObjectiveConfig",
    "Split",
    "TrainConfig",
    "Trainer",
    "UnrollCurriculum",
    "WindowSampler",
    "load_model",
    "save_model",
    "split_trajectories",
]
