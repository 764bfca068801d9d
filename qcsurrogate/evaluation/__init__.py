"""Metrics (the paper's RMSEs, physics diagnostics) and figures of surrogate rollouts."""

from .metrics import next_step_rmse, persistence, physics_diagnostics, rmse_per_sample, rollout_rmse, summarize_rmse

__all__ = ["next_step_rmse", "persistence", "physics_diagnostics", "rmse_per_sample", "rollout_rmse", "summarize_rmse"]
