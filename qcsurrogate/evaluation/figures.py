"""Figures like the paper's: snapshot rows (Fig. 2/3) and RMSE against the prediction window (Fig. 4)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import atomic_path  # noqa: E402
from ..state import State  # noqa: E402
from .metrics import staggered_mean  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def snapshot_figure(true: State, pred: State, times: Sequence[float], indices: Sequence[int], path: Path, title: str = "") -> Path:
    """Per time column: fields over sites (truth solid, prediction dashed) and |rho_ij| heat maps.

    `true`/`pred` are single-trajectory rollouts `(n_time, ...)`; `indices` pick the snapshots.
    """
    names = list(true.fields)
    n = len(indices)
    fig, axes = plt.subplots(1 + 2, n, figsize=(2.6 * n, 7.2), squeeze=False)
    rho_t = np.abs(true.rho.detach().cpu().numpy())
    rho_p = np.abs(pred.rho.detach().cpu().numpy())
    vmax = float(max(rho_t[list(indices)].max(), 1e-12))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, (i, t) in enumerate(zip(indices, times)):
        ax = axes[0, c]
        for j, name in enumerate(names):
            ax.plot(true[name][i].cpu().numpy(), "-o", ms=3, color=colors[j % len(colors)], label=f"{name} truth")
            ax.plot(pred[name][i].detach().cpu().numpy(), "--x", ms=4, color=colors[j % len(colors)], label=f"{name} pred")
        ax.set_title(f"t = {t:g}")
        ax.set_xlabel("site i")
        if c == 0:
            ax.legend(fontsize=6, loc="best")
        for r, (img, lab) in enumerate(((rho_t[i], "truth"), (rho_p[i], "prediction"))):
            a = axes[1 + r, c]
            im = a.imshow(img, cmap="viridis", vmin=0, vmax=vmax)
            a.set_xticks([])
            a.set_yticks([])
            if c == 0:
                a.set_ylabel(f"|rho_ij| {lab}")
    fig.colorbar(im, ax=axes[1:, :].ravel().tolist(), shrink=0.8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _floats(values) -> np.ndarray:
    """metrics.json stores diverged values as null."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def rmse_window_figure(curves: dict[str, dict[str, Any]], dt: float, path: Path, title: str = "") -> Path:
    """RMSE against the number of recurrent steps for each predictor (solid: total; thin: per variable)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = ["-", "--", ":", "-."]
    for s, (label, curve) in enumerate(curves.items()):
        steps = np.asarray(curve["steps"])
        ax.plot(steps, _floats(curve["rmse_total"]), styles[s % 4], lw=2, label=f"{label}: total")
        if s == 0:
            for key in curve:
                if key.startswith("rmse_") and key != "rmse_total":  # (diverged_fraction is not an RMSE)
                    ax.plot(steps, _floats(curve[key]), styles[s % 4], lw=0.8, label=f"{label}: {key[5:]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    finite = [v for c in curves.values() for v in c["rmse_total"] if v is not None and np.isfinite(v)]
    if finite and max(finite) > 1e2:  # a diverging predictor would squash every other curve
        ax.set_ylim(top=1e2)
        ax.text(0.02, 0.02, "curves above 1e2 (diverging) are cut", transform=ax.transAxes, fontsize=7)
    ax.set_xlabel(f"recurrent steps (dt = {dt:g})")
    ax.set_ylabel("RMSE")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def order_parameter_figure(true: State, pred: State, dt: float, path: Path, field: str | None = None) -> Path:
    """Staggered mean of a field (the CDW order parameter for a period-2 pattern) against time."""
    field = field or next(iter(true.fields))
    t = np.arange(true.rho.shape[0]) * dt
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(t, staggered_mean(true[field]).cpu().numpy(), "-", label="truth (RK4)")
    ax.plot(t, staggered_mean(pred[field].double()).detach().cpu().numpy(), "--", label="surrogate")
    ax.set_xlabel("t")
    ax.set_ylabel(f"staggered mean of {field}")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)
