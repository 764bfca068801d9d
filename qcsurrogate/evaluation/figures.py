"""Figures like the paper's: snapshot rows (Fig. 2/3) and RMSE against the prediction window (Fig. 4),
the observables a System declares against time, and the climate statistics of long rollouts.

Units: the System's, with hbar = 1 and energies in units of the hopping t_h, so time is in hbar / t_h
(`TIME`); every axis names its quantity and unit, every colour bar its quantity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from ..atomic import atomic_path  # noqa: E402
from ..observables import check_observables, dominant_index, format_over_pi  # noqa: E402
from ..state import State, rho_blocks  # noqa: E402
from ..system import System  # noqa: E402

TIME_UNIT = "ħ/t_h"
TIME = f"t ({TIME_UNIT})"
FIELD_UNITS = "ħ = t_h = 1"
RMSE_LABEL = "RMSE (paper's definition, ħ = t_h = 1)"


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def site_block_norm(state: State, rho: torch.Tensor | None = None) -> np.ndarray:
    """|rho_ij| per site pair: the Frobenius norm of each `d x d` orbital block, `(*batch, L, L)` (|rho_ij|
    itself for one orbital per site); `rho` (default `state.rho`) is any matrix of rho's layout."""
    rho = state.rho if rho is None else rho
    b = rho_blocks(rho.detach().cpu(), state.L)
    return b.abs().pow(2).sum((-2, -1)).sqrt().numpy()


def plotted_fields(state: State, vector_fields: Mapping[str, Sequence[str]] | None = None) -> dict[str, np.ndarray]:
    """What the snapshot rows draw over sites: each declared vector by its length |v|, every other field
    as it is, in field order (a vector where its first component was)."""
    vectors = dict(vector_fields or {})
    component_of = {c: v for v, comps in vectors.items() for c in comps}
    out: dict[str, np.ndarray] = {}
    for name in state.fields:
        v = component_of.get(name)
        if v is None:
            out[name] = state[name].detach().cpu().double().numpy()
        elif f"|{v}|" not in out:
            comps = torch.stack([state[c].detach().cpu().double() for c in vectors[v]])
            out[f"|{v}|"] = comps.pow(2).sum(0).sqrt().numpy()
    return out


def snapshot_figure(true: State, pred: State, times: Sequence[float], indices: Sequence[int], path: Path, title: str = "",
                    steps: Sequence[int] | None = None, vector_fields: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Per time column: the fields over sites (truth solid, surrogate dashed; a declared vector field by its
    length), truth minus surrogate, and |rho_ij| heat maps of the truth, the surrogate and their difference
    |rho_ij - rho_ij^pred| over site pairs (with several orbitals per site, the norm of each orbital block).

    `true`/`pred` are single-trajectory rollouts `(n_time, ...)`; `indices` pick the snapshots, at `times`
    (units hbar/t_h); `steps` (default: `indices`) are the model steps named in the column titles.
    """
    lines_t, lines_p = plotted_fields(true, vector_fields), plotted_fields(pred, vector_fields)
    names = list(lines_t)
    n = len(indices)
    steps = list(indices) if steps is None else list(steps)
    fig, axes = plt.subplots(5, n, figsize=(2.6 * n, 11.0), squeeze=False, layout="constrained")
    rho_t = site_block_norm(true)
    rho_p = site_block_norm(pred)
    rho_d = site_block_norm(true, true.rho.detach().cpu() - pred.rho.detach().cpu().to(true.rho.dtype))
    vmax = float(max(rho_t[list(indices)].max(), 1e-12))
    dfin = rho_d[list(indices)][np.isfinite(rho_d[list(indices)])]
    dmax = float(max(dfin.max() if dfin.size else 0.0, 1e-12))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    unit = f"({FIELD_UNITS})"
    for c, (i, t, k) in enumerate(zip(indices, times, steps)):
        ax, dax = axes[0, c], axes[1, c]
        for j, name in enumerate(names):
            col = colors[j % len(colors)]
            yt, yp = lines_t[name][i], lines_p[name][i]
            ax.plot(yt, "-o", ms=3, color=col, label=f"{name} truth")
            ax.plot(yp, "--x", ms=4, color=col, label=f"{name} pred")
            dax.plot(yt - yp, "-", marker=".", color=col, label=f"{name} truth − surrogate")
        ax.set_title(f"t = {t:g} {TIME_UNIT}\n(step {k})", fontsize=9)
        if not all(np.isfinite(v[i].detach().cpu().numpy()).all() for v in pred.variables().values()):
            for a in (ax, dax, axes[3, c], axes[4, c]):
                a.text(0.5, 0.5, "surrogate non-finite\n(diverged)", transform=a.transAxes, ha="center",
                       va="center", fontsize=8, color="crimson")
        ax.set_xlabel("site i")
        dax.set_xlabel("site i")
        dax.axhline(0.0, color="0.6", lw=0.6)
        if c == 0:
            ax.legend(fontsize=6, loc="best")
            ax.set_ylabel(f"{', '.join(names)} {unit}")
            dax.set_ylabel(f"truth − surrogate {unit}")
            dax.legend(fontsize=6, loc="best")
        for r, (img, lab, top) in enumerate(((rho_t[i], "truth", vmax), (rho_p[i], "surrogate", vmax),
                                             (rho_d[i], "|truth − surrogate|", dmax))):
            a = axes[2 + r, c]
            if r < 2:
                im = a.imshow(img, cmap="viridis", vmin=0, vmax=top)
            else:  # errors span decades along a rollout: a log scale shows the early ones too
                im = a.imshow(np.maximum(img, top * 1e-8), cmap="magma", norm=LogNorm(vmin=top * 1e-8, vmax=top))
            a.set_xticks([])
            a.set_yticks([])
            a.set_xlabel("site j", fontsize=8)
            if c == 0:
                a.set_ylabel(f"|ρ_ij| {lab}\nsite i" if r < 2 else "|ρ_ij − ρ_ij^pred|\nsite i")
            if r == 1:
                im_rho = im
            if r == 2:
                im_diff = im
    cb = fig.colorbar(im_rho, ax=axes[2:4, :].ravel().tolist(), shrink=0.8)
    cb.set_label("|ρ_ij| (dimensionless)")
    cb2 = fig.colorbar(im_diff, ax=axes[4, :].ravel().tolist(), shrink=0.8)
    cb2.set_label("|ρ_ij − ρ_ij^pred| (dimensionless, log scale)")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _floats(values) -> np.ndarray:
    """metrics.json stores diverged values as null."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _first_diverged(curve: dict[str, Any]) -> tuple[int, float] | None:
    """(step, fraction at the last recorded step) where a curve first has diverged rollouts, else None."""
    frac = _floats(curve.get("diverged_fraction", []))
    hit = np.flatnonzero(np.nan_to_num(frac) > 0)
    if not hit.size:
        return None
    return int(curve["steps"][hit[0]]), float(frac[-1])


def rmse_window_figure(curves: dict[str, dict[str, Any]], dt: float, path: Path, title: str = "",
                       predictability: dict[str, Any] | None = None) -> Path:
    """RMSE against the number of recurrent steps for each predictor (solid: total; thin: per variable).

    Where rollouts diverge (non-finite) the curves are cut: the step of the first diverged rollout is
    marked on each such curve with the share diverged by the end, and a lower panel shows that share
    against the step. `predictability` (metrics.json's section) adds the truth's own limit on the same
    axes: the exact solver from the truth perturbed by 1e-6 noise and by the surrogate's one-step error,
    with the threshold that defines the predictability horizon.
    """
    diverging = {label: d for label, c in curves.items() if (d := _first_diverged(c)) is not None}
    if diverging:
        fig, (ax, bax) = plt.subplots(2, 1, figsize=(6.8, 6.2), sharex=True, layout="constrained",
                                      gridspec_kw={"height_ratios": [3, 1]})
    else:
        fig, ax = plt.subplots(figsize=(6.8, 4.6), layout="constrained")
        bax = None
    styles = ["-", "--", ":", "-."]
    finite = [v for c in curves.values() for v in c["rmse_total"] if v is not None and np.isfinite(v)]
    cut = bool(finite) and max(finite) > 1e2  # a diverging predictor would squash every other curve
    for s, (label, curve) in enumerate(curves.items()):
        steps = np.asarray(curve["steps"])
        total = _floats(curve["rmse_total"])
        (line,) = ax.plot(steps, total, styles[s % 4], lw=2, label=f"{label}: total")
        if s == 0:
            for key in curve:
                if key.startswith("rmse_") and key != "rmse_total":  # (diverged_fraction is not an RMSE)
                    ax.plot(steps, _floats(curve[key]), styles[s % 4], lw=0.8, label=f"{label}: {key[5:]}")
        if label in diverging:
            k, frac = diverging[label]
            last = np.flatnonzero(np.isfinite(total) & (steps < k))
            y = total[last[-1]] if last.size else np.nan
            y = 1.0 if not np.isfinite(y) else (min(y, 50.0) if cut else y)  # on the axes
            ax.plot([k], [y], marker="X", ms=8, color=line.get_color(), ls="none")
            ax.annotate(f"{label}: diverging from step {k}\n({frac:.0%} diverged by step {steps[-1]})",
                        (k, y), fontsize=7, color=line.get_color(), ha="right", va="top", xytext=(-6, -4),
                        textcoords="offset points")
            assert bax is not None
            bax.plot(steps, 100 * _floats(curve["diverged_fraction"]), styles[s % 4], color=line.get_color(),
                     label=label)
    if predictability:
        thr = predictability["threshold"]
        for key, lab, ls in (("truth_perturbed", "truth, fields perturbed by {p:.0e} relative noise (exact solver)",
                              (0, (1, 1))),
                             ("surrogate_error", "truth, perturbed by the surrogate's one-step error", (0, (4, 1, 1, 1)))):
            sec = predictability[key]
            ax.plot(np.asarray(sec["steps"]), _floats(sec["rmse_total"]), linestyle=ls, color="0.25" if key ==
                    "truth_perturbed" else "0.55", lw=1.4, label=lab.format(p=sec.get("perturbation", 0.0)))
        ax.axhline(thr, color="0.5", lw=0.7, ls="--")
        med = predictability["surrogate_error"].get("median_horizon_steps")
        txt = f"threshold {thr:g}" + (f": predictability horizon {med:g} steps (median)" if med else
                                      ": predictability horizon beyond the window")
        ax.annotate(txt, (0.98, thr), xycoords=("axes fraction", "data"), ha="right", va="top", fontsize=7,
                    color="0.35", xytext=(0, -2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if cut:
        ax.set_ylim(top=1e2)
        ax.text(0.02, 0.02, "curves above 1e2 (diverging) are cut", transform=ax.transAxes, fontsize=7)
    xlabel = f"recurrent model steps k (one step = {dt:g} {TIME_UNIT})"
    ax.set_ylabel(RMSE_LABEL)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if bax is not None:
        bax.set_ylabel("diverged rollouts (%)")
        bax.set_ylim(-5, 105)
        bax.set_xlabel(xlabel)
        bax.grid(True, alpha=0.3)
        bax.legend(fontsize=7)
    else:
        ax.set_xlabel(xlabel)
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
                a.set_xlabel(TIME)
                a.set_ylabel(f"{o.axis_name} / π")
                a.set_title(f"{o.label} {who}", fontsize=9)
            cb = fig.colorbar(im, ax=axes[r, 1:].tolist(), shrink=0.9)
            cb.set_label(f"{o.label}{unit}")
        else:
            ax.plot(t, yt, "-", label="truth (RK4)")
            ax.plot(t, yp, "--", label="surrogate")
            ax.set_ylabel(f"{o.label}{unit}")
            ax.set_title(o.name, fontsize=9)
            for c in range(1, ncols):
                axes[r, c].set_visible(False)
        _clip_to_truth(ax, yt[:, k] if o.kind == "spectrum" else yt, yp[:, k] if o.kind == "spectrum" else yp)
        ax.set_xlabel(TIME)
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


# -- climate ------------------------------------------------------------------------------------------
def _order_label(name: str, entry: dict[str, Any]) -> str:
    """'S_Q(q) at q = 3π/4' or 'staggered mean of Q [unit]'."""
    unit = f" [{entry['unit']}]" if entry.get("unit") else ""
    at = f" at {entry['at']}" if entry.get("at") else ""
    return f"{entry.get('label') or name}{at}{unit}"


def _grid(n: int, width: float = 4.2, height: float = 3.2):
    ncols = min(n, 2)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained")
    for a in axes.ravel()[n:]:
        a.set_visible(False)
    return fig, axes.ravel()[:n]


def _climate_caption(climate: dict[str, Any]) -> str:
    return (f"{climate['n_rollouts']} held-out rollouts of {climate['horizon']} steps "
            f"({climate['horizon'] * climate['dt']:g} {TIME_UNIT}), statistics after the first {climate['discard']}; "
            f"{climate['diverged']['fraction']:.0%} diverged (left out)")


def _climate_panels(climate: dict[str, Any], entries: dict[str, dict[str, Any]], draw, path: Path, title: str) -> Path:
    """One panel per entry, `draw(ax, name, entry)` returning the surrogate's figure of merit for the title
    (None when every surrogate rollout diverged); truth and surrogate legend, grid, caption, save."""
    fig, axes = _grid(len(entries))
    for ax, (name, e) in zip(axes, entries.items()):
        merit = draw(ax, name, e)
        ax.set_title(f"{name}: {merit}" if merit is not None else f"{name}: every surrogate rollout diverged",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle((f"{title}: " if title else "") + _climate_caption(climate), fontsize=9)
    return _save(fig, path)


def acf_figure(climate: dict[str, Any], path: Path, title: str = "") -> Path:
    """Autocorrelation of each order against the time lag, truth solid and surrogate dashed."""
    dt = climate["dt"]

    def draw(ax, name: str, e: dict[str, Any]) -> str | None:
        lag_t = dt * np.asarray(e["acf"]["lags"], dtype=float)
        ax.plot(lag_t, _floats(e["acf"]["truth"]), "-", label="truth (exact solver)")
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_xlabel(f"time lag τ ({TIME_UNIT})")
        ax.set_ylabel(f"autocorrelation C(τ) of {_order_label(name, e)}", fontsize=8)
        if e["acf"]["surrogate"] is None:
            return None
        ax.plot(lag_t, _floats(e["acf"]["surrogate"]), "--", label="surrogate")
        return f"max |ΔC| = {e['acf']['max_abs_diff']:.3f}"

    return _climate_panels(climate, climate["orders"], draw, path, title)


def distribution_figure(climate: dict[str, Any], path: Path, title: str = "") -> Path:
    """Stationary distribution (probability density) of each order, truth and surrogate, with W1/std."""

    def draw(ax, name: str, e: dict[str, Any]) -> str | None:
        d = e["distribution"]
        edges = np.asarray(d["bin_edges"], dtype=float)
        ax.stairs(_floats(d["truth"]), edges, fill=True, alpha=0.35, label="truth (exact solver)")
        ax.set_xlabel(_order_label(name, e), fontsize=8)
        unit = e.get("unit")
        ax.set_ylabel(f"probability density{f' (1/{unit})' if unit else ''}")
        if d["surrogate"] is None:
            return None
        ax.stairs(_floats(d["surrogate"]), edges, lw=1.5, label="surrogate")
        return f"W1/σ_truth = {d['w1_over_std']:.3f}"

    return _climate_panels(climate, climate["orders"], draw, path, title)


def structure_factor_figure(climate: dict[str, Any], path: Path, title: str = "") -> Path:
    """Time-averaged spectra (structure factors) over q, truth and surrogate, with their relative L2 difference."""

    def draw(ax, name: str, e: dict[str, Any]) -> str | None:
        q = np.asarray(e["q_over_pi"], dtype=float)
        ax.plot(q, _floats(e["truth"]), "-o", ms=3, label="truth (exact solver)")
        unit = f" [{e['unit']}]" if e.get("unit") else ""
        ax.set_xlabel(f"wave vector {e['axis_name']} / π")
        ax.set_ylabel(f"time-averaged {e['label']}{unit}")
        if e["surrogate"] is None:
            return None
        ax.plot(q, _floats(e["surrogate"]), "--x", ms=4, label="surrogate")
        return f"relative L2 difference {e['rel_l2']:.3f}"

    return _climate_panels(climate, climate["structure_factor"], draw, path, title)
