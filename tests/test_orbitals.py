"""Every core stage with two orbitals per site (d = 2), on the spinful toy (tests/toy_spinful.py): views,
surrogates in the option combinations that change their wiring, save/load, trajectory files (memory and
lazy), observables, figures and a tiny `qcsurrogate run`."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
import torch
import yaml
from toy_spinful import ToySpinful, ToySpinfulVector, spin_z

import qcsurrogate
from qcsurrogate.cli import main
from qcsurrogate.graph import Dependency, get_view
from qcsurrogate.io import TrajectoryFormatError, TrajectoryWriter, open_trajectory
from qcsurrogate.observables import connected_structure_factor, structure_factor
from qcsurrogate.solvers import simulate
from qcsurrogate.state import State, rho_blocks, rho_from_blocks
from qcsurrogate.surrogate import PARC, Normalization, PlainCNN, Surrogate, build_surrogate, parse_model_config
from qcsurrogate.surrogate.base import construct_surrogate
from qcsurrogate.surrogate.parc import BlockLifter, pair_channels
from qcsurrogate.testing import check_system
from qcsurrogate.training import load_model, save_model
from qcsurrogate.training.source import LazySource, MemorySource, loaded_bytes

L = 5
SYSTEM = ToySpinful(L=L)


def _data(system: ToySpinful = SYSTEM, n_traj: int = 3, dt: float = 0.05):
    state = system.initial_state("random_start", seed=1, n_traj=n_traj)
    deriv = system.rhs(state)
    nxt = state.axpy(dt, deriv)
    return state, deriv, nxt, Normalization.fit(system.graph, state, deriv, nxt - state)


def _roll(state: State, shift: int = 1) -> State:
    """The state translated by `shift` sites: fields along their site axis, rho by `shift * d` rows and columns."""
    d = state.orbitals
    return State._raw({k: torch.roll(v, shift, -1) for k, v in state.fields.items()},
                      torch.roll(state.rho, (shift * d, shift * d), (-2, -1)))


# -- the toy itself -------------------------------------------------------------------------------------
@pytest.mark.parametrize("boundary", ["periodic", "open"])
def test_spinful_toy_passes_the_conformance_kit(boundary):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no skipped check, no unused input
        passed = check_system(ToySpinful(L=4, boundary=boundary))
    assert "von_neumann_generator[random_start]" in passed and "graph_matches_rhs" in passed


def test_spinful_toy_conserves_energy_and_mixes_spins():
    state = SYSTEM.initial_state("random_start", seed=0, n_traj=2)
    traj = simulate(SYSTEM, state, dt=0.01, n_steps=200, save_every=100, compile=False)  # RK4: drift ~ dt^4
    e = SYSTEM.energy(traj)
    assert float((e - e[0]).abs().max()) < 1e-8
    assert traj.rho.shape == (3, 2, 2 * L, 2 * L) and traj.orbitals == 2
    assert float((spin_z(traj.rho[-1], L) - spin_z(traj.rho[0], L)).abs().max()) > 1e-3  # spin-flip hopping acts


# -- views ----------------------------------------------------------------------------------------------
def test_blocked_views_reduce_over_orbitals():
    rho = SYSTEM.initial_state("random_start", n_traj=2).rho
    b = rho_blocks(rho, L)
    n = get_view("diagonal")(rho, L)
    assert n.shape == (2, L)
    expected_n = torch.stack([sum(b[:, i, i, a, a].real for a in range(2)) for i in range(L)], -1)
    torch.testing.assert_close(n, expected_n, rtol=0, atol=1e-15)
    torch.testing.assert_close(n, SYSTEM.occupations(rho), rtol=0, atol=1e-14)
    bond = torch.stack([sum(b[:, i, (i + 1) % L, a, a] for a in range(2)) for i in range(L)], -1)
    torch.testing.assert_close(get_view("bond_real")(rho, L), bond.real, rtol=0, atol=1e-15)
    torch.testing.assert_close(get_view("bond_imag")(rho, L), bond.imag, rtol=0, atol=1e-15)
    assert get_view("matrix")(rho, L) is rho  # the full matrix stays the full matrix
    assert all(get_view(v).blocked for v in ("diagonal", "bond_real", "bond_imag"))
    assert not get_view("matrix").blocked and not get_view("identity").blocked


def test_blocked_views_at_one_orbital_are_what_they_were():
    rho = qcsurrogate.testing.random_density_matrix(6, 3, (3,), torch.Generator().manual_seed(0))
    shifted = torch.roll(rho, -1, dims=-1)
    assert torch.equal(get_view("diagonal")(rho), torch.diagonal(rho, dim1=-2, dim2=-1).real)
    assert torch.equal(get_view("diagonal")(rho, 6), torch.diagonal(rho, dim1=-2, dim2=-1).real)
    assert torch.equal(get_view("bond_real")(rho, 6), torch.diagonal(shifted, dim1=-2, dim2=-1).real)
    assert torch.equal(get_view("bond_imag")(rho, 6), torch.diagonal(shifted, dim1=-2, dim2=-1).imag)


def test_graph_gathers_blocked_views_with_the_number_of_sites():
    state = SYSTEM.initial_state("random_start", n_traj=2)
    (dx, x), (dn, n) = SYSTEM.graph.gather("V", state.variables())
    assert dx.source == "X" and torch.equal(x, state["X"])
    assert dn.view == "diagonal" and torch.allclose(n, SYSTEM.occupations(state.rho), atol=1e-14)
    assert SYSTEM.graph.to_dict() == {"X": [["V", "identity"]], "V": [["X", "identity"], ["rho", "diagonal"]],
                                      "rho": [["X", "identity"], ["rho", "matrix"]]}


def test_a_view_that_ignores_orbitals_fails_by_name(clean_registry):
    """A non-blocked pair -> site view written for one orbital gives L*d values at d = 2: a clear error."""
    qcsurrogate.register_view(qcsurrogate.View("test_legacy_diag", "pair", "site",
                                               lambda x: torch.diagonal(x, dim1=-2, dim2=-1).real))
    state = SYSTEM.initial_state("random_start", n_traj=1)
    with pytest.raises(ValueError, match=r"view 'test_legacy_diag' of 'rho' returned shape \(1, 10\).*2 orbital"
                                         r".*blocked=True"):
        Dependency("rho", "test_legacy_diag").evaluate(state.variables())


# -- surrogates -----------------------------------------------------------------------------------------
def test_pair_channels_round_trip_on_the_site_grid():
    rho = SYSTEM.initial_state("random_start", n_traj=2).rho
    chans = pair_channels(rho, 2)
    assert len(chans) == 4 and chans[1].shape == (2, L, L)
    assert torch.equal(chans[1][:, 3, 4], rho[:, 6, 9])  # channel a*d+b = (0, 1): rho_{3 up, 4 dn}
    lf = BlockLifter("rho", SYSTEM.graph.inputs("rho"), "complex", orbitals=2)
    assert (lf.in_channels, lf.out_channels) == (2 + 4, 4)
    assert torch.equal(lf.to_variable(lf.to_channels(rho)), rho)
    split = BlockLifter("rho", SYSTEM.graph.inputs("rho"), "split", bilinear=True, orbitals=2)
    assert (split.in_channels, split.out_channels) == (2 * (2 + 4 + 2 * 4), 8)
    assert torch.equal(rho_from_blocks(rho_blocks(rho, L)), rho)


COMBOS = [
    {},
    {"complex_mode": "split"},
    {"bilinear_inputs": True, "integrator_inputs": "block", "project_rho": "hermitian"},
    {"complex_mode": "split", "bilinear_inputs": True, "integrator_inputs": "state", "linear_skip": True, "init": "lstsq"},
    {"integrator_inputs": "state", "linear_skip": True, "init": "lstsq", "project_rho": "spectrum", "dtype": "float64"},
    {"conserve_energy": True, "dropout": 0.1},
]


@pytest.mark.parametrize("name", ["parc", "cnn"])
@pytest.mark.parametrize("options", COMBOS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_surrogate_steps_learns_and_rolls_out_at_two_orbitals(name, options):
    state, deriv, nxt, norm = _data()
    torch.manual_seed(0)
    model = build_surrogate(name, SYSTEM, parse_model_config({"name": name, "width": 8, **options}), norm)
    assert model.orbitals == 2 and model.spec()["orbitals"] == 2
    report = model.initialize_from_data(state, deriv, nxt)
    if options.get("init") == "lstsq" and options.get("bilinear_inputs"):
        assert max(report.values()) < 1e-10  # the toy's derivatives are exactly linear in these features
    model.train()
    s, dv, nx = model.prepare(state), model.prepare(deriv), model.prepare(nxt)
    pred, aux = model.predict(s)
    assert pred.rho.shape == (3, 2 * L, 2 * L) and pred["X"].shape == (3, L)
    loss, parts = model.loss(s, dv, nx, aux)
    loss.backward()
    assert torch.isfinite(loss) and all(np.isfinite(v) for v in parts.values())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    model.eval()
    out = model.rollout(state, 4)
    assert out.rho.shape == (5, 3, 2 * L, 2 * L) and all(torch.isfinite(v).all() for v in out.variables().values())
    if options.get("project_rho") in ("hermitian", "spectrum"):
        tr = torch.diagonal(out.rho, dim1=-2, dim2=-1).sum(-1).real
        assert float((tr - tr[0]).abs().max()) < 1e-4 and float((out.rho - out.rho.mH).abs().max()) < 1e-5
    if options.get("conserve_energy"):
        e = SYSTEM.energy(out.to(dtype=torch.float64))
        assert float((e - e[0]).abs().max()) < 1e-6 * max(1.0, float(e.abs().max()))  # float32 states


@pytest.mark.parametrize("name", ["parc", "cnn"])
@pytest.mark.parametrize("complex_mode", ["complex", "split"])
def test_one_site_translation_commutes_with_the_surrogate(name, complex_mode):
    """Rho's CNN runs on the (L, L) site grid: translating the ring by one site (d rows of rho) is a
    one-pixel shift, and with periodic padding the step commutes with it (it would not on the
    (L*d, L*d) grid, where one site is d pixels and the kernels would see orbitals as sites)."""
    state, _, _, norm = _data()
    torch.manual_seed(1)
    config = parse_model_config({"name": name, "width": 8, "complex_mode": complex_mode, "bilinear_inputs": True,
                                 "integrator_inputs": "state", "linear_skip": True, "dtype": "float64"})
    model = build_surrogate(name, SYSTEM, config, norm).eval()
    with torch.no_grad():
        a = _roll(model(model.prepare(state)))
        b = model(model.prepare(_roll(state)))
    assert a.allclose(b, rtol=1e-10, atol=1e-12)
    # and a shift by one orbital (not a lattice symmetry) is not what the model commutes with
    half = State._raw(state.fields, torch.roll(state.rho, (1, 1), (-2, -1)))
    with torch.no_grad():
        c = model(model.prepare(half))
        d = model(model.prepare(state))
    assert not torch.allclose(torch.roll(d.rho, (1, 1), (-2, -1)), c.rho, atol=1e-6)


def test_model_saved_at_two_orbitals_loads_and_predicts_the_same(tmp_path):
    state, _, _, norm = _data()
    model = build_surrogate("parc", SYSTEM, parse_model_config({"width": 8, "complex_mode": "split"}), norm).eval()
    save_model(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model.json").read_text())["orbitals"] == 2
    loaded = load_model(tmp_path / "m")
    assert loaded.orbitals == 2 and loaded.n_parameters() == model.n_parameters()
    with torch.no_grad():
        assert model(model.prepare(state)).allclose(loaded(loaded.prepare(state)), rtol=0, atol=0)
    one = qcsurrogate.State({"X": state["X"], "V": state["V"]}, state.rho[..., :L, :L])
    with pytest.raises(ValueError, match="built for 2 orbital.*the state has 1"):
        loaded(loaded.prepare(one))


def test_orbitals_change_the_rho_block_only():
    """d enters the rho block's channels (d*d per complex pair input and output), nothing else."""
    cfg = parse_model_config({"width": 8})
    norm = Normalization.identity(SYSTEM.graph)
    one = PARC(SYSTEM.graph, "periodic", cfg, norm)
    two = PARC(SYSTEM.graph, "periodic", cfg, norm, orbitals=2)
    for t in ("X", "V"):
        assert one.differentiators[t].stem.weight.shape == two.differentiators[t].stem.weight.shape
    assert two.differentiators["rho"].stem.weight.shape[1] == 2 + 4  # X_i, X_j, 4 orbital pairs of rho
    assert two.integrators["rho"].head.weight.shape[0] == 4
    assert PlainCNN(SYSTEM.graph, "periodic", parse_model_config({"name": "cnn", "width": 8}), norm,
                    orbitals=2).nets["rho"].head.weight.shape[0] == 4


class _NoOrbitals(Surrogate):
    """A surrogate written before orbitals existed: its __init__ takes four arguments."""

    name = "test-no-orbitals"

    def __init__(self, graph, boundary, config, normalization) -> None:
        super().__init__(graph, boundary, config, normalization)

    def predict(self, state):
        return state, {}

    def loss(self, state, derivative, next_state, aux=None, derivative_weight=1.0):
        return torch.zeros(()), {}


def test_surrogate_classes_without_orbitals_still_build_for_one_orbital():
    cfg = _NoOrbitals.Config()
    norm = Normalization.identity(SYSTEM.graph)
    assert construct_surrogate(_NoOrbitals, SYSTEM.graph, "periodic", cfg, norm).orbitals == 1
    with pytest.raises(TypeError, match="does not take `orbitals`.*2 orbitals per site"):
        construct_surrogate(_NoOrbitals, SYSTEM.graph, "periodic", cfg, norm, orbitals=2)
    with pytest.raises(ValueError, match="'orbitals' must be a positive integer"):
        PARC.from_spec({"graph": SYSTEM.graph.to_dict(), "boundary": "periodic", "config": {"width": 8},
                        "normalization": norm.to_json(), "orbitals": 0})


# -- files ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spinful_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("orbitals") / "spinful.h5"
    state = SYSTEM.initial_state("random_start", seed=2, n_traj=3)
    traj = simulate(SYSTEM, state, dt=0.05, n_steps=20, save_every=2, compile=False)
    with TrajectoryWriter(path, SYSTEM, dt=0.05, save_every=2, compression="gzip") as w:
        w.append(traj)
    return path, traj


def test_trajectory_file_holds_rho_of_l_times_d(spinful_file):
    path, traj = spinful_file
    with h5py.File(path, "r") as f:
        assert f["rho"].shape == (3, 11, 2 * L, 2 * L) and f.attrs["orbitals"] == 2 and f.attrs["L"] == L
    with open_trajectory(path) as tr:
        assert (tr.L, tr.orbitals) == (L, 2) and tr.summary()["orbitals"] == 2
        loaded = tr.load()
        assert loaded.orbitals == 2 and torch.equal(loaded.rho, traj.rho.transpose(0, 1))
        assert tr.state(1, slice(2, 5)).rho.shape == (3, 2 * L, 2 * L)
    mem, lazy = MemorySource(loaded), LazySource(path, block=4)
    try:
        assert lazy.orbitals == 2
        for a, b in zip(mem.windows(torch.tensor([0, 2]), torch.tensor([1, 5]), 3),
                        lazy.windows(torch.tensor([0, 2]), torch.tensor([1, 5]), 3)):
            assert a.allclose(b, rtol=0, atol=0)
        pa, pb = mem.pairs([0, 1], torch.tensor([0, 4])), lazy.pairs([0, 1], torch.tensor([0, 4]))
        assert all(x.allclose(y, rtol=0, atol=0) for x, y in zip(pa, pb))
    finally:
        lazy.close()
    assert loaded_bytes(3, 11, L, 2, orbitals=2) == 3 * 11 * (2 * L * 8 + (2 * L) ** 2 * 16)


def test_reader_checks_rho_against_l_times_orbitals(spinful_file, tmp_path):
    path, _ = spinful_file
    bad = tmp_path / "no_orbitals.h5"
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "r+") as f:
        del f.attrs["orbitals"]  # as a file written before orbitals: it then means one orbital per site
    with pytest.raises(TrajectoryFormatError, match=r"'/rho' has shape \(3, 11, 10, 10\); the attributes imply "
                                                    r"\(3, 11, 5, 5\) \(rho is \(L \* orbitals\).*no orbitals attribute"):
        open_trajectory(bad)
    with h5py.File(bad, "r+") as f:
        f.attrs["orbitals"] = 3
    with pytest.raises(TrajectoryFormatError, match=r"imply \(3, 11, 15, 15\).*from the orbitals attribute"):
        open_trajectory(bad)


def test_writer_refuses_a_state_of_other_orbitals(tmp_path):
    state = SYSTEM.initial_state("random_start", n_traj=1)
    one = State({"X": state["X"][None], "V": state["V"][None]}, state.rho[None, :, :L, :L])
    w = TrajectoryWriter(tmp_path / "x.h5", SYSTEM, dt=0.1)
    try:
        with pytest.raises(ValueError, match="1 orbital.*has 2"):
            w.append(one)
    finally:
        w.abort()


def test_training_windows_and_normalisation_at_two_orbitals(spinful_file):
    from qcsurrogate.training.data import WindowSampler, fit_normalization

    path, _ = spinful_file
    lazy = LazySource(path, block=4)
    try:
        sampler = WindowSampler(lazy, [0, 2], max_window=3, seed=0)
        batch = sampler.batch(0, 4, 2)
        assert len(batch) == 3 and batch[0].rho.shape == (4, 2 * L, 2 * L)
        norm = fit_normalization(SYSTEM, sampler)
    finally:
        lazy.close()
    from qcsurrogate.views import SPIN_REDUCING_VIEWS

    assert set(norm.inputs) == {"X:identity", "V:identity", "rho:matrix", "rho:diagonal", "rho:bond_real",
                                "rho:bond_imag", *(f"rho:{v}" for v in SPIN_REDUCING_VIEWS)}  # spin-1/2: all of them
    mean_n, _ = norm.inputs["rho:diagonal"]
    assert abs(mean_n - 1.0) < 1e-9  # half filling: L electrons on L sites, n_i averages to 1


# -- observables and figures ----------------------------------------------------------------------------
def test_vector_fields_get_a_summed_structure_factor():
    system = ToySpinfulVector(L=L)
    state = system.initial_state("random_start", n_traj=2)
    obs = {o.name: o for o in system.observables()}
    assert set(obs) == {"S_X", "S_V", "S_XV"}
    torch.testing.assert_close(obs["S_XV"](state), connected_structure_factor(state["X"]) + connected_structure_factor(state["V"]))


def test_snapshot_figure_shows_sites_at_two_orbitals(tmp_path):
    from qcsurrogate.evaluation import figures

    state = SYSTEM.initial_state("random_start", n_traj=1)
    traj = simulate(SYSTEM, state, dt=0.05, n_steps=4, compile=False).index((slice(None), 0))
    norms = figures.site_block_norm(traj)
    assert norms.shape == (5, L, L)
    np.testing.assert_allclose(norms[0], rho_blocks(traj.rho[0], L).abs().pow(2).sum((-2, -1)).sqrt().numpy())
    lines = figures.plotted_fields(traj, {"XV": ("X", "V")})
    assert list(lines) == ["|XV|"] and np.allclose(lines["|XV|"], np.hypot(traj["X"].numpy(), traj["V"].numpy()))
    out = figures.snapshot_figure(traj, traj, [0.0, 0.1], [0, 2], tmp_path / "s.png", vector_fields={"XV": ("X", "V")})
    assert out.stat().st_size > 1000
    one = qcsurrogate.testing.random_density_matrix(4, 2, (1,), torch.Generator().manual_seed(0))
    s1 = State({"X": torch.zeros(1, 4)}, one)
    assert np.allclose(figures.site_block_norm(s1), one.abs().numpy())  # one orbital: |rho_ij| as before


# -- a tiny run -----------------------------------------------------------------------------------------
class SpinfulPlugin:
    @staticmethod
    @qcsurrogate.hookimpl
    def register_systems(register):
        register(ToySpinfulVector)


def test_tiny_run_at_two_orbitals(tmp_path, clean_registry, capsys):
    qcsurrogate.register_plugin(SpinfulPlugin, name="toy-spinful-plugin")
    cfg = {
        "name": "tiny-spinful",
        "output_dir": str(tmp_path / "run"),
        "device": "cpu",
        "data": {
            "system": {"name": "toy-spinful-vector", "params": {"L": 4}},
            "scenario": {"name": "random_start", "kwargs": {"seed": 0, "n_traj": 4}},
            "simulation": {"dt": 0.05, "n_steps": 30},
        },
        "split": {"val_fraction": 0.25, "test_fraction": 0.25, "seed": 0},
        "model": {"width": 8, "bilinear_inputs": True, "linear_skip": True, "init": "lstsq",
                  "integrator_inputs": "state", "project_rho": "hermitian"},
        "training": {"steps": 4, "batch_size": 8, "warmup_steps": 1, "log_every": 2, "val_every": 2,
                     "checkpoint_every": 2},
        "baselines": ["cnn"],
        "evaluation": {"horizon": 6, "starts": [0, 10], "baselines": ["persistence"], "figure_snapshots": 3},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path)]) == 0, capsys.readouterr().err
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["next_step"]["rmse_rho"]) and len(metrics["rollout"]["rmse_rho"]) == 6
    assert set(metrics["baselines"]) == {"persistence", "cnn"}
    for f in ("snapshots.png", "rmse_vs_window.png", "observables.png"):
        assert (run / "figures" / f).stat().st_size > 1000
    assert json.loads((run / "model" / "model.json").read_text())["orbitals"] == 2
    assert json.loads((run / "baseline_cnn" / "model" / "model.json").read_text())["orbitals"] == 2
    data = next((run / "data").glob("*.h5"))
    with open_trajectory(data) as tr:
        assert tr.orbitals == 2 and tr.dataset("rho").shape[-1] == 8
    assert load_model(run / "model").orbitals == 2


def test_evaluating_a_file_of_other_orbitals_is_refused(tmp_path):
    from qcsurrogate.pipeline.external import compatibility
    from qcsurrogate.system import ConfigError

    run = {"system": "s", "graph": {}, "fields": ["X"], "params": {"boundary": "periodic"}, "model_step": 0.1,
           "orbitals": 1}
    assert compatibility(run, dict(run), tmp_path / "f.h5") == []
    with pytest.raises(ConfigError, match=r"has 2 orbital\(s\) per site, the models were built for 1"):
        compatibility(run, {**run, "orbitals": 2}, tmp_path / "f.h5")
