"""Figures: which curves and images are drawn from which data, with which labels, scales and styles, and
the PNG files written. The Figure objects are inspected (captured when the module closes them), not pixels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from toy_system import ToySystem

from qcsurrogate.evaluation import figures
from qcsurrogate.observables import Observable, connected_structure_factor, structure_factor, wavevectors
from qcsurrogate.state import State

L, N_TIME = 4, 6
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def captured(monkeypatch):
    """The figures the module closes after saving, kept open for inspection."""
    figs = []
    real_close = plt.close
    monkeypatch.setattr(figures.plt, "close", figs.append)
    yield figs
    for f in figs:
        real_close(f)


def rollout(seed: int, scale: float = 1.0) -> State:
    g = torch.Generator().manual_seed(seed)
    fields = {n: torch.randn(N_TIME, L, generator=g, dtype=torch.float64) for n in ("X", "V")}
    a = torch.complex(torch.randn(N_TIME, L, L, generator=g, dtype=torch.float64),
                      torch.randn(N_TIME, L, L, generator=g, dtype=torch.float64))
    return State._raw(fields, scale * (a + a.mH))


def assert_png_written(path, returned):
    assert returned == path and path.read_bytes().startswith(PNG)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.info["dpi"] == pytest.approx((120, 120), abs=0.05)  # stored as pixels per metre


# -- snapshot rows ----------------------------------------------------------------------------------
@pytest.mark.parametrize("title", ["quench", ""])
def test_snapshot_figure_draws_truth_prediction_and_their_difference_per_time(tmp_path, captured, title):
    true, pred = rollout(0), rollout(1, scale=3.0)
    indices, times = [0, 2, 5], [0.0, 0.25, 1.5]
    path = tmp_path / "new" / "dir" / "snapshots.png"
    assert_png_written(path, figures.snapshot_figure(true, pred, times, indices, path, title=title, steps=[0, 20, 50]))
    (fig,) = captured
    n = len(indices)
    grid = np.array(fig.axes[: 5 * n]).reshape(5, n)
    assert len(fig.axes) == 5 * n + 2  # and two labelled colour bars: |rho| and |rho - rho_pred|
    assert fig.axes[-2].get_ylabel() == "|ρ_ij| (dimensionless)"
    assert fig.axes[-1].get_ylabel() == "|ρ_ij − ρ_ij^pred| (dimensionless, log scale)"
    assert fig.get_layout_engine() is not None  # constrained layout: tick labels do not run into neighbours
    vmax = float(true.rho[indices].abs().max())  # one colour scale: the truth's largest |rho_ij|
    diff = (true.rho - pred.rho).abs()
    dmax = float(diff[indices].max())
    for c, (i, t, k) in enumerate(zip(indices, times, [0, 20, 50])):
        ax = grid[0, c]
        assert ax.get_title() == f"t = {t:g} ħ/t_h\n(step {k})" and ax.get_xlabel() == "site i"
        lines = ax.get_lines()
        assert [ln.get_label() for ln in lines] == ["X truth", "X pred", "V truth", "V pred"]
        dlines = grid[1, c].get_lines()[:2]  # (then the zero line)
        for kk, name in enumerate(("X", "V")):
            tl, pl = lines[2 * kk], lines[2 * kk + 1]
            np.testing.assert_array_equal(tl.get_ydata(), true[name][i].numpy())
            np.testing.assert_array_equal(pl.get_ydata(), pred[name][i].numpy())
            np.testing.assert_array_equal(tl.get_xdata(), np.arange(L))
            assert (tl.get_linestyle(), tl.get_marker()) == ("-", "o")  # truth solid
            assert (pl.get_linestyle(), pl.get_marker()) == ("--", "x")  # prediction dashed
            assert tl.get_color() == pl.get_color() == dlines[kk].get_color()  # one colour per field
            np.testing.assert_allclose(dlines[kk].get_ydata(), (true[name][i] - pred[name][i]).numpy(), rtol=1e-15)
        assert lines[0].get_color() != lines[2].get_color()
        legend = ax.get_legend()
        if c == 0:
            assert [tx.get_text() for tx in legend.get_texts()] == ["X truth", "X pred", "V truth", "V pred"]
            assert ax.get_ylabel() == "X, V (ħ = t_h = 1)"
            assert grid[1, 0].get_ylabel() == "truth − surrogate (ħ = t_h = 1)"
        else:
            assert legend is None and ax.get_ylabel() == ""
        for r, (rho, lab) in enumerate(((true.rho, "truth"), (pred.rho, "surrogate"))):
            a = grid[2 + r, c]
            (im,) = a.get_images()
            np.testing.assert_allclose(np.asarray(im.get_array()), rho[i].abs().numpy(), rtol=1e-15)
            assert im.get_clim() == pytest.approx((0.0, vmax))
            assert im.get_cmap().name == "viridis"
            assert list(a.get_xticks()) == [] and list(a.get_yticks()) == []
            assert a.get_xlabel() == "site j"
            assert a.get_ylabel() == (f"|ρ_ij| {lab}\nsite i" if c == 0 else "")
        (dim,) = grid[4, c].get_images()  # the error, on one log scale over the columns
        np.testing.assert_allclose(np.asarray(dim.get_array()), np.maximum(diff[i].numpy(), dmax * 1e-8), rtol=1e-15)
        assert dim.get_clim() == pytest.approx((dmax * 1e-8, dmax))
        assert grid[4, c].get_ylabel() == ("|ρ_ij − ρ_ij^pred|\nsite i" if c == 0 else "")
    if title:
        assert fig._suptitle.get_text() == title
    else:
        assert fig._suptitle is None


def test_snapshot_colour_scale_has_a_floor_for_zero_rho(tmp_path, captured):
    true = rollout(0)
    true = State._raw(true.fields, torch.zeros_like(true.rho))
    with plt.rc_context({"image.cmap": "gray"}):  # a user style does not change the heat maps' colour map
        figures.snapshot_figure(true, rollout(1), [0.0], [1], tmp_path / "s.png")
    (fig,) = captured
    (im,) = fig.axes[2].get_images()
    assert im.get_clim() == (0.0, 1e-12) and im.get_cmap().name == "viridis"


@pytest.mark.parametrize("n", [1, 4])
def test_snapshot_columns_keep_their_width(tmp_path, captured, n):
    figures.snapshot_figure(rollout(0), rollout(1), [0.1 * i for i in range(n)], list(range(n)), tmp_path / "s.png")
    (fig,) = captured
    assert tuple(fig.get_size_inches()) == pytest.approx((2.6 * n, 11.0))  # 2.6 inch per snapshot column


# -- RMSE against the window ------------------------------------------------------------------------
def curve(total, diverged=(0.0, 0.0, 0.0, 0.0), **parts):
    return {"steps": [1, 2, 4, 8], "rmse_total": total, **{f"rmse_{k}": v for k, v in parts.items()},
            "diverged_fraction": list(diverged)}


def test_rmse_window_figure_draws_totals_and_the_first_predictors_parts(tmp_path, captured):
    curves = {
        "parc": curve([0.01, 0.02, None, 5.0], X=[0.004, 0.01, 0.2, 2.0], rho=[0.006, 0.01, 0.3, 3.0]),
        "persistence": curve([0.1, 0.2, 0.4, float("inf")], X=[0.05, 0.1, 0.2, 0.4], rho=[0.05, 0.1, 0.2, 0.4]),
    }
    path = tmp_path / "deep" / "rmse.png"
    assert_png_written(path, figures.rmse_window_figure(curves, 0.05, path, title="Holstein"))
    (fig,) = captured
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["parc: total", "parc: X", "parc: rho", "persistence: total"]
    for ln in lines:
        np.testing.assert_array_equal(ln.get_xdata(), [1, 2, 4, 8])
    np.testing.assert_array_equal(lines[0].get_ydata(), [0.01, 0.02, np.nan, 5.0])  # null (diverged) -> gap
    np.testing.assert_array_equal(lines[1].get_ydata(), curves["parc"]["rmse_X"])
    np.testing.assert_array_equal(lines[2].get_ydata(), curves["parc"]["rmse_rho"])
    np.testing.assert_array_equal(lines[3].get_ydata(), [0.1, 0.2, 0.4, np.inf])
    assert [ln.get_linestyle() for ln in lines] == ["-", "-", "-", "--"]  # one style per predictor
    assert [ln.get_linewidth() for ln in lines] == [2, 0.8, 0.8, 2]  # totals thick, parts thin
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "recurrent model steps k (one step = 0.05 ħ/t_h)"
    assert ax.get_ylabel() == "RMSE (paper's definition, ħ = t_h = 1)"
    assert ax.get_title() == "Holstein"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [ln.get_label() for ln in lines]
    assert len(ax.texts) == 0 and ax.get_ylim()[1] < 1e2  # inf and null are not "diverging above 1e2"
    assert any(gl.get_visible() for gl in ax.xaxis.get_gridlines())
    # the PNG is cropped to what is drawn ("tight", 0.1 inch padding), not the nominal figure size
    bb = fig.get_tightbbox(fig.canvas.get_renderer())
    with Image.open(path) as im:
        assert im.size[0] == pytest.approx((bb.width + 0.2) * 120, abs=2)
        assert im.size[1] == pytest.approx((bb.height + 0.2) * 120, abs=2)


@pytest.mark.parametrize("top, cut", [(100.0, False), (250.0, True)])
def test_rmse_window_figure_cuts_curves_above_1e2(tmp_path, captured, top, cut):
    curves = {"cnn": curve([0.1, 1.0, 10.0, top]), "parc": curve([0.01, 0.02, 0.03, 0.04])}
    figures.rmse_window_figure(curves, 0.1, tmp_path / "r.png")
    (fig,) = captured
    (ax,) = fig.axes
    assert ax.get_title() == ""
    if cut:
        assert ax.get_ylim()[1] == 1e2
        assert [t.get_text() for t in ax.texts] == ["curves above 1e2 (diverging) are cut"]
    else:
        assert ax.get_ylim()[1] > 1e2 and len(ax.texts) == 0


def test_rmse_window_figure_shows_where_and_how_many_rollouts_diverged(tmp_path, captured):
    curves = {"parc": curve([0.01, 0.02, None, None], diverged=(0.0, 0.0, 0.25, 0.75)),
              "cnn": curve([0.01, 0.02, 0.03, 0.04])}
    figures.rmse_window_figure(curves, 0.64, tmp_path / "r.png")
    (fig,) = captured
    ax, bax = fig.axes  # RMSE above, the diverged share below on the same steps
    marker = [ln for ln in ax.get_lines() if ln.get_marker() == "X"]
    assert len(marker) == 1 and list(marker[0].get_xdata()) == [4]  # the first step with a diverged rollout
    assert list(marker[0].get_ydata()) == [0.02]  # drawn at the curve's last finite value, where it is cut
    assert [t.get_text() for t in ax.texts] == ["parc: diverging from step 4\n(75% diverged by step 8)"]
    (share,) = bax.get_lines()
    np.testing.assert_allclose(share.get_ydata(), [0, 0, 25, 75])
    assert bax.get_ylabel() == "diverged rollouts (%)"
    assert bax.get_xlabel() == "recurrent model steps k (one step = 0.64 ħ/t_h)"


def test_rmse_window_figure_draws_the_truths_predictability_on_the_same_axes(tmp_path, captured):
    pred = {"threshold": 0.1,
            "truth_perturbed": {"perturbation": 1e-6, "steps": [1, 2, 4, 8], "rmse_total": [1e-6, 2e-6, 4e-6, 1e-5]},
            "surrogate_error": {"steps": [1, 2, 4, 8], "rmse_total": [1e-4, 1e-3, 0.05, 0.2], "median_horizon_steps": 8}}
    figures.rmse_window_figure({"parc": curve([1e-4, 1e-3, 0.01, 0.1])}, 0.1, tmp_path / "r.png", predictability=pred)
    (fig,) = captured
    (ax,) = fig.axes
    by_label = {ln.get_label(): ln for ln in ax.get_lines()}
    noise = by_label["truth, fields perturbed by 1e-06 relative noise (exact solver)"]
    err = by_label["truth, perturbed by the surrogate's one-step error"]
    np.testing.assert_array_equal(noise.get_ydata(), [1e-6, 2e-6, 4e-6, 1e-5])
    np.testing.assert_array_equal(err.get_ydata(), [1e-4, 1e-3, 0.05, 0.2])
    assert [t.get_text() for t in ax.texts] == ["threshold 0.1: predictability horizon 8 steps (median)"]


def test_rmse_window_figure_cycles_four_line_styles(tmp_path, captured):
    curves = {f"p{s}": curve([0.1 * (s + 1)] * 4) for s in range(5)}
    figures.rmse_window_figure(curves, 0.1, tmp_path / "r.png")
    (fig,) = captured
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == [f"p{s}: total" for s in range(5)]
    assert [ln.get_linestyle() for ln in lines] == ["-", "--", ":", "-.", "-"]


# -- observables ------------------------------------------------------------------------------------
class _Declaring(ToySystem):
    """The toy's default structure factors S_X(q), S_V(q) plus one scalar with a unit."""

    def observables(self):
        return (*super().observables(), Observable("X_sum", lambda s: s["X"].sum(-1), label="sum of X", unit="a.u."))


class _ScalarsOnly(ToySystem):
    def observables(self):
        return (Observable("X_sum", lambda s: s["X"].sum(-1)),)


class _Silent(ToySystem):
    def observables(self):
        return ()


def wave_rollout(seed: int, scale: float = 1.0) -> State:
    """A rollout whose X is a growing q = pi/2 wave (plus noise): S_X peaks at pi/2, whatever the seed."""
    r = rollout(seed, scale)
    j, t = torch.arange(L, dtype=torch.float64), torch.arange(N_TIME, dtype=torch.float64)
    X = (1 + 0.2 * t)[:, None] * torch.cos(torch.pi / 2 * j) + 0.05 * r["X"]
    return State._raw({"X": X, "V": r["V"]}, r.rho)


def test_observables_figure_plots_spectra_at_the_truths_dominant_q_and_scalars(tmp_path, captured):
    system = _Declaring(L=L)
    true, pred = wave_rollout(0), wave_rollout(1, scale=2.0).to(dtype=torch.float32)
    pred.fields["X"] = 1.5 * pred["X"]  # a surrogate that overshoots the wave's amplitude
    path = tmp_path / "figs" / "observables.png"
    assert_png_written(path, figures.observables_figure(system, true, pred, 0.25, path, t0=2.0))
    (fig,) = captured
    grid = np.array(fig.axes[:9]).reshape(3, 3)
    assert len(fig.axes) == 9 + 2  # and one colour bar per spectrum row
    t = 2.0 + 0.25 * np.arange(N_TIME)
    q = np.array(wavevectors(L))
    # row 0: S_X at its dominant q = pi/2 (index 1 of q = 0, pi/2, pi)
    ax = grid[0, 0]
    tl, pl = ax.get_lines()
    assert (tl.get_label(), pl.get_label()) == ("truth (RK4), q = π/2", "surrogate, q = π/2")
    assert (tl.get_linestyle(), pl.get_linestyle()) == ("-", "--")
    S_true = connected_structure_factor(true["X"], q).numpy()  # the default observables are connected
    S_pred = connected_structure_factor(pred["X"].double(), q).numpy()
    np.testing.assert_allclose(tl.get_xdata(), t, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tl.get_ydata(), S_true[:, 1], rtol=1e-12)
    np.testing.assert_allclose(pl.get_ydata(), S_pred[:, 1], rtol=1e-12)
    assert not np.allclose(tl.get_ydata(), pl.get_ydata())
    assert ax.get_xlabel() == "t (ħ/t_h)" and ax.get_ylabel() == "S_X(q) at q = π/2"
    assert "dominant q = π/2" in ax.get_title()
    assert [tx.get_text() for tx in ax.get_legend().get_texts()] == ["truth (RK4), q = π/2", "surrogate, q = π/2"]
    # q-t heat maps of truth and surrogate, one colour scale (the truth's largest entry)
    for c, S in ((1, S_true), (2, S_pred)):
        (mesh,) = grid[0, c].collections
        np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(len(q), N_TIME), S.T, rtol=1e-12)
        assert mesh.get_clim() == pytest.approx((0.0, S_true.max()))
        assert grid[0, c].get_xlabel() == "t (ħ/t_h)" and grid[0, c].get_ylabel() == "q / π"
    assert fig.axes[9].get_ylabel() == "S_X(q)"  # the colour bars say what they measure
    assert [grid[0, c].get_title() for c in (1, 2)] == ["S_X(q) truth", "S_X(q) surrogate"]
    # row 1: V is noise, its label names whichever q dominates its own truth
    kV = int(np.argmax(connected_structure_factor(true["V"], q).numpy().mean(0)))
    assert grid[1, 0].get_lines()[0].get_label() == f"truth (RK4), q = {['0', 'π/2', 'π'][kV]}"
    # row 2: the scalar, with its unit; no heat maps
    sl, spl = grid[2, 0].get_lines()
    np.testing.assert_allclose(sl.get_ydata(), true["X"].sum(-1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(spl.get_ydata(), pred["X"].double().sum(-1).numpy(), rtol=1e-6)
    assert (sl.get_label(), spl.get_label()) == ("truth (RK4)", "surrogate")
    assert grid[2, 0].get_ylabel() == "sum of X [a.u.]" and grid[2, 0].get_title() == "X_sum"
    assert not grid[2, 1].get_visible() and not grid[2, 2].get_visible()


def test_observables_figure_of_scalars_only_has_one_column(tmp_path, captured):
    figures.observables_figure(_ScalarsOnly(L=L), rollout(0), rollout(1), 0.5, tmp_path / "o.png")
    (fig,) = captured
    (ax,) = fig.axes
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), 0.5 * np.arange(N_TIME))  # t0 defaults to 0
    assert ax.get_ylabel() == "X_sum"  # the label defaults to the name; no unit, no brackets


def test_observables_figure_needs_a_declared_observable(tmp_path):
    with pytest.raises(ValueError, match="system 'toy' declares no observables to plot"):
        figures.observables_figure(_Silent(L=L), rollout(0), rollout(1), 0.5, tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()


def test_snapshot_figure_without_title_has_none(tmp_path, captured):
    figures.snapshot_figure(rollout(0), rollout(1), [0.0], [0], tmp_path / "s.png")
    (fig,) = captured
    assert fig._suptitle is None


def test_snapshot_fields_wrap_around_a_short_colour_cycle(tmp_path, captured):
    """More fields than the style has colours: colours repeat in cycle order (no IndexError)."""
    from cycler import cycler

    g = torch.Generator().manual_seed(0)
    fields = {f"F{k}": torch.randn(N_TIME, L, generator=g, dtype=torch.float64) for k in range(5)}
    s = State._raw(fields, torch.zeros(N_TIME, L, L, dtype=torch.complex128))
    with plt.rc_context({"axes.prop_cycle": cycler(color=["red", "green", "blue"])}):
        figures.snapshot_figure(s, s, [0.0], [0], tmp_path / "s.png")
    (fig,) = captured
    lines = fig.axes[0].get_lines()
    assert [ln.get_color() for ln in lines] == [c for c in ["red", "green", "blue", "red", "green"] for _ in (0, 1)]


@pytest.mark.parametrize("blow_up, cut", [(10.0, False), (1e6, True), (float("nan"), True)])
def test_observables_figure_keeps_a_diverging_surrogate_from_flattening_the_truth(tmp_path, captured, blow_up, cut):
    true, pred = rollout(0), rollout(0)
    pred.fields["X"] = pred["X"].clone()
    pred.fields["X"][-1] = blow_up * pred["X"][-1].abs().max()  # the last snapshot runs away
    figures.observables_figure(_ScalarsOnly(L=L), true, pred, 0.5, tmp_path / "o.png")
    (fig,) = captured
    (ax,) = fig.axes
    s = true["X"].sum(-1).numpy()
    if cut:
        span = s.max() - s.min()
        assert ax.get_ylim() == pytest.approx((s.min() - span, s.max() + span))
        assert [t.get_text() for t in ax.texts] == ["surrogate leaves the axes (diverging)"]
    else:  # ~20 times off is a bad surrogate, not a diverging one: drawn in full
        assert ax.get_ylim()[1] >= float(pred["X"][-1].sum()) and len(ax.texts) == 0


# -- climate ------------------------------------------------------------------------------------------
def climate_section(diverge_all: bool = False):
    from qcsurrogate.evaluation.climate import climate_statistics, observe

    system = _Declaring(L=L)
    true = wave_rollout(0).map(lambda x: x[:, None])  # a batch of one rollout
    pred = true.clone()
    pred.fields["X"] = (1e3 if diverge_all else 1.02) * true["X"]
    st = climate_statistics(system.observables(), observe(system, true), observe(system, pred), discard=1, max_lag=3,
                            bins=5, range_factor=1.1)
    return {"horizon": N_TIME - 1, "discard": 1, "starts": [0], "max_lag": 3, "bins": 5, "dt": 0.5, **st}


def test_climate_figures_label_every_axis_with_quantity_and_unit(tmp_path, captured):
    c = climate_section()
    figures.acf_figure(c, tmp_path / "acf.png", "deep")
    figures.distribution_figure(c, tmp_path / "dist.png", "deep")
    figures.structure_factor_figure(c, tmp_path / "sq.png", "deep")
    acf, dist, sq = captured
    names = ["S_X", "S_V", "X_sum"]
    for fig in (acf, dist):
        axes = [a for a in fig.axes if a.get_visible()]
        assert len(axes) == 3 and fig.get_layout_engine() is not None
        assert "1 held-out rollouts of 5 steps (2.5 ħ/t_h), statistics after the first 1" in fig._suptitle.get_text()
        assert all(a.get_title().startswith(n) for a, n in zip(axes, names))
    a0, _, a2 = [a for a in acf.axes if a.get_visible()]
    assert a0.get_xlabel() == "time lag τ (ħ/t_h)"
    assert a0.get_ylabel() == "autocorrelation C(τ) of S_X(q) at q = π/2"
    assert a2.get_ylabel() == "autocorrelation C(τ) of sum of X [a.u.]"
    by_label = {ln.get_label(): ln for ln in a0.get_lines()}
    tl, pl = by_label["truth (exact solver)"], by_label["surrogate"]
    np.testing.assert_allclose(tl.get_xdata(), [0, 0.5, 1.0, 1.5])  # lags in time units
    np.testing.assert_allclose(tl.get_ydata(), c["orders"]["S_X"]["acf"]["truth"])
    np.testing.assert_allclose(pl.get_ydata(), c["orders"]["S_X"]["acf"]["surrogate"])
    d2 = [a for a in dist.axes if a.get_visible()][2]
    assert d2.get_xlabel() == "sum of X [a.u.]" and d2.get_ylabel() == "probability density (1/a.u.)"
    assert f"W1/σ_truth = {c['orders']['X_sum']['distribution']['w1_over_std']:.3f}" in d2.get_title()
    s_axes = [a for a in sq.axes if a.get_visible()]
    assert len(s_axes) == 2  # the spectra only
    assert s_axes[0].get_xlabel() == "wave vector q / π" and s_axes[0].get_ylabel() == "time-averaged S_X(q)"
    np.testing.assert_allclose(s_axes[0].get_lines()[0].get_xdata(), [0, 0.5, 1])


def test_climate_figures_say_when_every_surrogate_rollout_diverged(tmp_path, captured):
    c = climate_section(diverge_all=True)
    assert c["diverged"]["fraction"] == 1.0
    figures.acf_figure(c, tmp_path / "acf.png")
    (fig,) = captured
    ax = fig.axes[0]
    assert ax.get_title() == "S_X: every surrogate rollout diverged" and len(ax.get_lines()) == 2  # truth + zero line
    assert "100% diverged (left out)" in fig._suptitle.get_text()


def test_snapshot_figure_says_where_the_surrogate_is_non_finite(tmp_path, captured):
    true, pred = rollout(0), rollout(1)
    pred.fields["X"] = pred["X"].clone()
    pred.fields["X"][5] = float("nan")
    figures.snapshot_figure(true, pred, [0.0, 1.5], [0, 5], tmp_path / "s.png")
    (fig,) = captured
    grid = np.array(fig.axes[:10]).reshape(5, 2)
    for r in (0, 1, 3, 4):  # fields, their difference, the surrogate's rho and the rho difference
        assert [t.get_text() for t in grid[r, 0].texts] == []
        assert [t.get_text() for t in grid[r, 1].texts] == ["surrogate non-finite\n(diverged)"]


def test_rmse_window_figure_keeps_the_divergence_marker_on_cut_axes(tmp_path, captured):
    curves = {"parc": curve([0.01, 1e3, 1e5, None], diverged=(0.0, 0.0, 0.0, 1.0))}
    figures.rmse_window_figure(curves, 0.1, tmp_path / "r.png")
    (fig,) = captured
    ax = fig.axes[0]
    (marker,) = [ln for ln in ax.get_lines() if ln.get_marker() == "X"]
    assert list(marker.get_xdata()) == [8] and list(marker.get_ydata()) == [50.0] and ax.get_ylim()[1] == 1e2
