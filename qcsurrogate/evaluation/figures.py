"""Figures like the paper's: snapshot rows (Fig. 2/3) and RMSE against the prediction window (Fig. 4),
and the observables a System declares against time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..atomic import atomic_path  # noqa: E402
from ..observables import check_observables, dominant_index, format_over_pi  # noqa: E402
from ..state import State  # noqa: E402
from ..system import System  # noqa: E402


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


def observables_figure(system: System, true: State, pred: State, dt: float, path: Path, t0: float = 0.0) -> Path:
    """Every observable the System declares against time, truth solid and surrogate dashed.

    One row per observable. A scalar is plotted as is; a spectrum at the truth's dominant axis value
    (largest entry of this truth's spectrum averaged over time), named in the legend and title (q in
    units of pi), next to q-t heat maps of the truth and the surrogate on one colour scale.
    `true`/`pred` are single-trajectory rollouts `(n_time, ...)`; time runs from `t0` in steps of `dt`.
    """
    obs = check_observables(system.observables())
    if not obs:
        raise ValueError(f"system '{system.name}' declares no observables to plot")
    true64, pred64 = true.to(dtype=torch.float64), pred.detach().to(dtype=torch.float64)
    t = t0 + dt * np.arange(true.rho.shape[0])
    spectra = any(o.kind == "spectrum" for o in obs)
    ncols = 3 if spectra else 1
    fig, axes = plt.subplots(len(obs), ncols, figsize=(6.4 + 4.2 * (ncols - 1), 3.0 * len(obs)), squeeze=False,
                             layout="constrained")
    for r, o in enumerate(obs):
        ax = axes[r, 0]
        yt, yp = o(true64).cpu().numpy(), o(pred64).cpu().numpy()
        unit = f" [{o.unit}]" if o.unit else ""
        if o.kind == "spectrum":
            assert o.axis is not None
            k = dominant_index(torch.from_numpy(yt))
            qk = f"{o.axis_name} = {format_over_pi(o.axis[k])}"
            ax.plot(t, yt[:, k], "-", label=f"truth (RK4), {qk}")
            ax.plot(t, yp[:, k], "--", label=f"surrogate, {qk}")
            ax.set_ylabel(f"{o.label} at {qk}{unit}")
            ax.set_title(f"{o.name}: dominant {qk} (time-averaged truth)", fontsize=9)
            q = np.asarray(o.axis) / np.pi
            finite = yt[np.isfinite(yt)]
            vmax = float(max(finite.max(), 1e-12)) if finite.size else 1.0
            for c, (img, who) in enumerate(((yt, "truth"), (yp, "surrogate")), start=1):
                a = axes[r, c]
                im = a.pcolormesh(t, q, img.T, shading="nearest", cmap="viridis", vmin=0.0, vmax=vmax)
                a.set_xlabel("t")
                a.set_ylabel(f"{o.axis_name} / π")
                a.set_title(f"{o.label} {who}", fontsize=9)
            fig.colorbar(im, ax=axes[r, 1:].tolist(), shrink=0.9)
        else:
            ax.plot(t, yt, "-", label="truth (RK4)")
            ax.plot(t, yp, "--", label="surrogate")
            ax.set_ylabel(f"{o.label}{unit}")
            ax.set_title(o.name, fontsize=9)
            for c in range(1, ncols):
                axes[r, c].set_visible(False)
        _clip_to_truth(ax, yt[:, k] if o.kind == "spectrum" else yt, yp[:, k] if o.kind == "spectrum" else yp)
        ax.set_xlabel("t")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _clip_to_truth(ax, yt: np.ndarray, yp: np.ndarray, factor: float = 100.0) -> None:
    """A diverging surrogate (beyond `factor` times the truth's largest magnitude) would flatten the truth:
    keep the axis on the truth's range, padded by its span, and say that curves leave it."""
    ft, fp = yt[np.isfinite(yt)], yp[np.isfinite(yp)]
    if not ft.size:
        return
    big = float(max(np.abs(ft).max(), 1e-300))
    if (fp.size and np.abs(fp).max() > factor * big) or fp.size < yp.size:
        lo, hi = float(ft.min()), float(ft.max())
        pad = max(hi - lo, 0.1 * big)
        ax.set_ylim(lo - pad, hi + pad)
        ax.text(0.02, 0.02, "surrogate leaves the axes (diverging)", transform=ax.transAxes, fontsize=7)
