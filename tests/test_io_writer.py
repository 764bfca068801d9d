"""The trajectory writer: argument checks with their messages, the stored attributes and layout,
chunking, lifecycle (open/close/abort, idempotence, nothing left behind) and simulate_to_file."""

from __future__ import annotations

import datetime as dt_
import gc
import json
import platform
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from toy_system import ToySystem

import qcsurrogate
from qcsurrogate.io import TrajectoryWriter, open_trajectory, resolve_scenario_kwargs, simulate_to_file
from qcsurrogate.io import writer as W
from qcsurrogate.state import State
from qcsurrogate.system import ScenarioArgumentError, scenario


@pytest.fixture
def chain():
    return ToySystem(L=4)


def _snap(L: int = 4, n_t: int = 1, batch: tuple[int, ...] = (), value: float = 0.0) -> State:
    X = torch.full((n_t, *batch, L), value, dtype=torch.float64)
    rho = torch.full((n_t, *batch, L, L), complex(value, 1.0), dtype=torch.complex128)
    return State._raw({"X": X, "V": X + 1}, rho)


def _entries(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# -- argument checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"dt": 0}, ValueError, r"^dt must be a positive finite number, got 0$"),
        ({"dt": -0.1}, ValueError, r"^dt must be a positive finite number, got -0\.1$"),
        ({"dt": float("inf")}, ValueError, r"^dt must be a positive finite number, got inf$"),
        ({"dt": float("nan")}, ValueError, r"^dt must be a positive finite number, got nan$"),
        ({"dt": "0.1"}, ValueError, r"^dt must be a positive finite number, got '0\.1'$"),
        ({"save_every": 0}, ValueError, r"^save_every must be an integer >= 1, got 0$"),
        ({"save_every": 2.0}, ValueError, r"^save_every must be an integer >= 1, got 2\.0$"),
        ({"precision": "float16"}, ValueError, r"^precision must be one of \['float32', 'float64'\], got 'float16'$"),
        ({"compression": "zstd"}, ValueError,
         r"^compression must be one of \(None, 'gzip', 'lzf'\), got 'zstd'$"),
        ({"compression": "lzf", "compression_opts": 3}, ValueError, r"^compression_opts only applies to compression='gzip'$"),
        ({"compression_opts": 3}, ValueError, r"^compression_opts only applies to compression='gzip'$"),
        ({"n_snapshots_expected": 0}, ValueError, r"^n_snapshots_expected must be >= 1, got 0$"),
        ({"time_chunk": 0}, ValueError, r"^time_chunk must be >= 1, got 0$"),
        ({"extra_attrs": {"k": object()}}, TypeError, r"^extra_attrs\.k: object"),
        ({"extra_attrs": {1: "x"}}, TypeError, r"^extra_attrs: keys must be strings"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, chain, kwargs, exc, match):
    kwargs = {"dt": 0.1, **kwargs}
    with pytest.raises(exc, match=match):
        TrajectoryWriter(tmp_path / "x.h5", chain, **kwargs)
    assert _entries(tmp_path) == []


def test_system_must_be_a_system(tmp_path):
    with pytest.raises(TypeError, match=r"^system must be a qcsurrogate System, got dict$"):
        TrajectoryWriter(tmp_path / "x.h5", {"L": 4}, dt=0.1)  # type: ignore[arg-type]


def test_boundary_arguments_are_accepted(tmp_path, chain):
    w = TrajectoryWriter(tmp_path / "x.h5", chain, dt=1, save_every=1, n_snapshots_expected=1, time_chunk=1)
    assert (w.dt, type(w.dt), w.save_every, w.time_chunk, w.t0, type(w.t0)) == (1.0, float, 1, 1, 0.0, float)
    assert TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1, compression="gzip").compression_opts == 4
    assert TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1, compression="gzip", compression_opts=9).compression_opts == 9
    assert TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1, compression="lzf").compression_opts is None
    assert TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1).compression_opts is None


def test_defaults(tmp_path, chain):
    w = TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1)
    assert (w.save_every, w.precision, w.compression, w.time_chunk, w.t0) == (1, "float64", None, 64, 0.0)
    assert (w.n_snapshots_expected, w.overwrite, w.make_parents, w.scenario, w.solver) == (None, True, True, "", "")
    assert w.field_names == ("X", "V") and w.scenario_kwargs == {}
    assert w.n_written == 0 and w.tmp_path is None
    assert repr(w) == f"TrajectoryWriter({str(tmp_path / 'x.h5')!r}, system='toy', n_written=0, new)"


# -- stored attributes and layout ---------------------------------------------------------------------
def test_root_attributes(tmp_path, chain):
    path = tmp_path / "a.h5"
    before = dt_.datetime.now(dt_.timezone.utc).replace(microsecond=0)
    with TrajectoryWriter(path, chain, dt=0.05, save_every=3, t0=2.0, solver="euler", precision="float32",
                          scenario="random_start", scenario_kwargs={"seed": 5},
                          simulation_options={"device": "cpu", "odd": object}, extra_attrs={"run": (1, 2)}) as w:
        w.append(_snap(batch=(2, 3), n_t=2))
        assert repr(w).endswith("n_written=2, open)")
    after = dt_.datetime.now(dt_.timezone.utc)
    with h5py.File(path, "r") as h:
        a = dict(h.attrs)
    assert a["qcsurrogate_schema"] == "qcsurrogate.trajectory/1"
    assert a["system"] == "toy" and a["system_class"] == "toy_system.ToySystem"
    assert a["plugin"] == "" and a["plugin_version"] == ""
    assert a["boundary"] == "periodic" and a["L"] == 4
    assert a["dt"] == 0.05 and a["save_every"] == 3 and a["t0"] == 2.0
    assert a["time_units"] == "hbar/t" and a["solver"] == "euler" and a["scenario"] == "random_start"
    assert a["precision"] == "float32" and a["compute_precision"] == "float64"
    assert (a["n_trajectories"], a["n_time"], a["n_steps"]) == (6, 2, 3)
    created = dt_.datetime.fromisoformat(a["created"])
    assert created.tzinfo is not None and before <= created <= after
    assert a["created"].endswith("+00:00") and len(a["created"]) == len("2020-01-01T00:00:00+00:00")
    decoded = {k: json.loads(a[k]) for k in ("params", "graph", "field_names", "variables", "batch_shape",
                                             "scenario_kwargs", "simulation_options", "versions", "extra")}
    assert decoded["params"] == chain.params.model_dump(mode="json")
    assert decoded["graph"] == chain.graph.to_dict()
    assert decoded["field_names"] == ["X", "V"] and decoded["variables"] == ["X", "V", "rho"]
    assert decoded["batch_shape"] == [2, 3]
    assert decoded["scenario_kwargs"] == {"seed": 5, "n_traj": 2, "sigma": 0.5}
    assert decoded["simulation_options"] == {"device": "cpu", "odd": repr(object)}  # lenient: repr kept
    assert decoded["extra"] == {"run": [1, 2]}
    assert decoded["versions"] == {
        "qcsurrogate": qcsurrogate.__version__, "torch": torch.__version__, "numpy": np.__version__,
        "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version, "python": platform.python_version(),
    }


def test_dataset_layout_and_attributes(tmp_path, chain):
    path = tmp_path / "d.h5"
    with TrajectoryWriter(path, chain, dt=0.1, compression="gzip", compression_opts=7, time_chunk=5) as w:
        w.append(_snap(batch=(2,), n_t=3))
    with h5py.File(path, "r") as h:
        for key, tail, dtype, kind in (("fields/X", (4,), np.float64, "site"), ("fields/V", (4,), np.float64, "site"),
                                       ("rho", (4, 4), np.complex128, "pair")):
            ds = h[key]
            assert ds.shape == (2, 3, *tail) and ds.maxshape == (2, None, *tail) and ds.dtype == dtype
            assert ds.chunks == (1, 5, *tail)
            assert ds.compression == "gzip" and ds.compression_opts == 7 and ds.shuffle
            assert ds.attrs["kind"] == kind
            assert json.loads(ds.attrs["dims"]) == ["trajectory", "time", "site"] + (["site"] if kind == "pair" else [])
            assert ds.attrs["sample_varying"] == True and ds.attrs["time_varying"] == True  # noqa: E712
        t = h["time"]
        assert t.shape == (3,) and t.maxshape == (None,) and t.dtype == np.float64 and t.chunks == (64,)
        assert t.attrs["units"] == "hbar/t" and t.attrs["sample_varying"] == False  # noqa: E712
        assert set(h) == {"fields", "rho", "time"} and set(h["fields"]) == {"X", "V"}


def test_uncompressed_datasets_have_no_filters(tmp_path, chain):
    path = tmp_path / "u.h5"
    with TrajectoryWriter(path, chain, dt=0.1) as w:
        w.append(_snap())
    with h5py.File(path, "r") as h:
        assert h["rho"].compression is None and not h["rho"].shuffle
    path = tmp_path / "l.h5"
    with TrajectoryWriter(path, chain, dt=0.1, compression="lzf") as w:
        w.append(_snap())
    with h5py.File(path, "r") as h:
        assert h["rho"].compression == "lzf" and h["rho"].compression_opts is None and h["rho"].shuffle


@pytest.mark.parametrize(
    ("L", "precision", "time_chunk", "expected", "chunk"),
    [
        (4, "float64", 64, None, 64),
        (4, "float64", 64, 10, 10),  # an expected length caps the chunk
        (4, "float64", 7, 100, 7),
        (256, "float64", 64, None, 1),  # 256*256*16 B = 1 MiB per snapshot: one per chunk
        (128, "float64", 64, None, 4),  # 256 KiB per snapshot: four make 1 MiB
        (128, "float32", 64, None, 8),
        (300, "float64", 64, None, 1),  # bigger than the target: still at least one
    ],
)
def test_time_chunk_keeps_rho_chunks_near_one_mebibyte(L, precision, time_chunk, expected, chunk):
    w = TrajectoryWriter("unused.h5", ToySystem(L=4), dt=0.1, precision=precision, time_chunk=time_chunk,
                         n_snapshots_expected=expected)
    assert w._time_chunk(L) == chunk


def test_preallocated_length_is_trimmed_and_time_chunk_at_least_64(tmp_path, chain):
    path = tmp_path / "p.h5"
    with TrajectoryWriter(path, chain, dt=0.5, n_snapshots_expected=10, t0=-1.0) as w:
        w.append(_snap(n_t=2, value=1.0))
        w.append(_snap(n_t=0))  # nothing to add
        w.append(_snap(n_t=1, value=2.0))
        assert w.n_written == 3
    with h5py.File(path, "r") as h:
        assert h["rho"].shape == (1, 3, 4, 4) and h["fields/X"].shape == (1, 3, 4)
        assert h["fields/X"].chunks == (1, 10, 4) and h["time"].chunks == (64,)
        np.testing.assert_array_equal(h["time"][()], [-1.0, -0.5, 0.0])
        np.testing.assert_array_equal(h["fields/X"][0, :, 0], [1.0, 1.0, 2.0])
        np.testing.assert_array_equal(h["fields/V"][0, :, 0], [2.0, 2.0, 3.0])
        assert (h.attrs["n_time"], h.attrs["n_steps"]) == (3, 2)


def test_growing_past_the_expected_length(tmp_path, chain):
    path = tmp_path / "g.h5"
    with TrajectoryWriter(path, chain, dt=0.1, save_every=2, n_snapshots_expected=1) as w:
        for i in range(5):
            w.append(_snap(value=float(i)))
    with open_trajectory(path) as f:
        assert f.n_time == 5 and f.n_steps == 8
        np.testing.assert_allclose(f.times, [0.0, 0.2, 0.4, 0.6, 0.8], rtol=1e-15)
        np.testing.assert_array_equal(f.load()["X"][0, :, 2].numpy(), np.arange(5.0))


def test_scalar_batch_is_one_trajectory_and_empty_batch_is_refused(tmp_path, chain):
    path = tmp_path / "s.h5"
    with TrajectoryWriter(path, chain, dt=0.1) as w:
        w.append(_snap(batch=()))
    with h5py.File(path, "r") as h:
        assert h.attrs["n_trajectories"] == 1 and json.loads(h.attrs["batch_shape"]) == []
    with pytest.raises(ValueError, match=r"^cannot write a trajectory with an empty batch \(2, 0\)$"):
        with TrajectoryWriter(tmp_path / "e.h5", chain, dt=0.1) as w:
            w.append(_snap(batch=(2, 0)))
    assert _entries(tmp_path) == ["s.h5"]


def test_append_checks(tmp_path, chain):
    w = TrajectoryWriter(tmp_path / "c.h5", chain, dt=0.1)
    with pytest.raises(TypeError, match=r"^append takes a State, got dict$"):
        w.append({"X": 1})  # type: ignore[arg-type]
    one = _snap().index(0)  # no time axis
    with pytest.raises(ValueError, match=r"^append needs a leading time axis; got rho of shape \(4, 4\)$"):
        w.append(one)
    bad = State._raw({"X": torch.zeros(1, 4, dtype=torch.float64)}, torch.zeros(1, 4, 4, dtype=torch.complex128))
    with pytest.raises(ValueError, match=r"^chunk has fields \['X'\]; system 'toy' has \['X', 'V'\]$"):
        w.append(bad)
    with pytest.raises(ValueError, match=r"^chunk has L=3; system 'toy' has L=4$"):
        w.append(_snap(L=3))
    assert w.tmp_path is None and _entries(tmp_path) == []  # refused before opening anything
    w.append(_snap(batch=(2,)))
    with pytest.raises(ValueError, match=r"^chunk has batch shape \(3,\); earlier chunks had \(2,\)$"):
        w.append(_snap(batch=(3,)))
    # a failing append aborts the writer: nothing is left, later use is refused
    assert _entries(tmp_path) == []
    with pytest.raises(RuntimeError, match=rf"^writer for {tmp_path / 'c.h5'} is closed$"):
        w.append(_snap(batch=(2,)))
    with pytest.raises(RuntimeError, match=rf"^writer for {tmp_path / 'c.h5'} is already closed$"):
        w.open()


# -- lifecycle -------------------------------------------------------------------------------------------
def test_open_close_without_context_manager(tmp_path, chain):
    path = tmp_path / "sub" / "o.h5"
    w = TrajectoryWriter(path, chain, dt=0.1)
    assert w.open() is w and w.open() is w  # idempotent
    tmp = w.tmp_path
    assert tmp is not None and tmp.parent == path.parent and tmp.exists() and not path.exists()
    assert repr(w).endswith("n_written=0, open)")
    w.append(_snap(n_t=2))
    assert w.close() == path and w.close() == path  # idempotent
    assert path.exists() and not tmp.exists() and _entries(path.parent) == ["o.h5"]
    assert repr(w) == f"TrajectoryWriter({str(path)!r}, system='toy', n_written=2, closed)"
    with open_trajectory(path) as f:
        assert f.n_time == 2
    w.abort()  # after a successful close: harmless
    assert path.exists()


def _open_hdf5_files() -> int:
    return len(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))


def test_abort_releases_the_hdf5_file(tmp_path, chain):
    before = _open_hdf5_files()
    w = TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1).open()
    w.append(_snap())
    assert _open_hdf5_files() == before + 1
    w.abort()
    assert _open_hdf5_files() == before and _entries(tmp_path) == []


def test_append_opens_and_close_without_snapshots_fails_cleanly(tmp_path, chain):
    w = TrajectoryWriter(tmp_path / "a.h5", chain, dt=0.1)
    w.append(_snap())  # opens by itself
    assert w.tmp_path is not None and w.tmp_path.exists()
    w.abort()
    w.abort()  # idempotent
    assert _entries(tmp_path) == []
    w2 = TrajectoryWriter(tmp_path / "b.h5", chain, dt=0.1)
    with pytest.raises(ValueError, match=rf"^no snapshots were appended; not writing an empty trajectory to {tmp_path / 'b.h5'}$"):
        w2.close()
    assert _entries(tmp_path) == []
    with pytest.raises(RuntimeError, match="already closed"):
        w2.open()


def test_make_parents_false_and_overwrite_false(tmp_path, chain):
    with pytest.raises(FileNotFoundError):
        TrajectoryWriter(tmp_path / "no" / "x.h5", chain, dt=0.1, make_parents=False).open()
    (tmp_path / "x.h5").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1, overwrite=False).open()
    assert (tmp_path / "x.h5").read_bytes() == b"keep" and _entries(tmp_path) == ["x.h5"]


def test_exit_after_close_or_abort_does_nothing(tmp_path, chain):
    path = tmp_path / "e.h5"
    with TrajectoryWriter(path, chain, dt=0.1) as w:
        w.append(_snap())
        w.close()
    assert path.exists()
    with TrajectoryWriter(tmp_path / "f.h5", chain, dt=0.1) as w:
        w.abort()
    assert _entries(tmp_path) == ["e.h5"]


def test_failure_while_writing_root_attributes_leaves_nothing(tmp_path, chain, monkeypatch):
    def boom(self):
        raise OSError("disk full")

    monkeypatch.setattr(TrajectoryWriter, "_write_root_attrs", boom)
    w = TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1)
    with pytest.raises(OSError, match="disk full"):
        w.open()
    assert _entries(tmp_path) == [] and repr(w).endswith("closed)")


def test_failure_while_closing_leaves_nothing(tmp_path, chain, monkeypatch):
    w = TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1)
    w.append(_snap())

    def boom(*a, **k):
        raise OSError("rename failed")

    monkeypatch.setattr(type(w._atomic), "commit", boom)
    with pytest.raises(OSError, match="rename failed"):
        w.close()
    assert _entries(tmp_path) == []


def test_abandoned_writer_removes_its_temporary_file(tmp_path, chain):
    w = TrajectoryWriter(tmp_path / "x.h5", chain, dt=0.1)
    w.append(_snap())
    w._h5.close()  # as if the process dropped the writer: only the finalizer is left to clean up
    w._h5 = None
    del w
    gc.collect()
    assert _entries(tmp_path) == []
    W._discard_temp(tmp_path / "never-existed.tmp")  # a missing file is fine


# -- provenance ----------------------------------------------------------------------------------------
def test_plugin_provenance(tmp_path, toy_registered, monkeypatch):
    system = qcsurrogate.load_system("toy", L=4)
    assert W._plugin_of(system) == (toy_registered, "")  # an in-process plugin has no version
    assert W._plugin_of(ToySystem.__new__(type("Other", (ToySystem,), {}))) == ("", "")
    from qcsurrogate import registry

    def broken(*a, **k):
        raise RuntimeError("registry broken")

    monkeypatch.setattr(registry, "get_registry", broken)
    assert W._plugin_of(system) == ("", "")


class Scenarios(ToySystem):
    @scenario
    def kw(self, a: int = 1, *, b: float = 2.0, **more) -> State:
        return self.at_rest()

    def plain(self, a: int = 1) -> State:
        return self.at_rest()


def test_resolve_scenario_kwargs():
    s = Scenarios(L=4)
    assert resolve_scenario_kwargs(s, "kw", {"b": 3.0, "c": 4}) == {"a": 1, "b": 3.0, "c": 4}
    assert resolve_scenario_kwargs(s, "kw", None) == {"a": 1, "b": 2.0}
    assert resolve_scenario_kwargs(s, None, {"x": 1}) == {"x": 1}
    assert resolve_scenario_kwargs(s, "", None) == {}
    assert resolve_scenario_kwargs(s, "plain", {"x": 1}) == {"x": 1}  # not a scenario: as given
    assert resolve_scenario_kwargs(s, "missing", {"x": 1}) == {"x": 1}
    plain = ToySystem(L=4)
    kwargs = {"seed": 3}
    assert resolve_scenario_kwargs(plain, "random_start", kwargs) == {"seed": 3, "n_traj": 2, "sigma": 0.5}
    assert kwargs == {"seed": 3}  # not modified


def test_resolve_scenario_kwargs_records_what_the_scenario_receives():
    """The record goes through the scenario's own validation: coerced values, and no record of
    arguments the scenario would refuse."""
    plain = ToySystem(L=4)
    resolved = resolve_scenario_kwargs(plain, "random_start", {"sigma": "1e-4", "n_traj": 3.0})
    assert resolved == {"seed": 0, "n_traj": 3, "sigma": 1e-4}
    assert type(resolved["n_traj"]) is int and type(resolved["sigma"]) is float
    with pytest.raises(ScenarioArgumentError, match="random_start.*\n  nope: scenario 'random_start' has no argument"):
        resolve_scenario_kwargs(plain, "random_start", {"nope": 1})
    with pytest.raises(ScenarioArgumentError, match="seed: Input should be a valid integer"):
        resolve_scenario_kwargs(plain, "random_start", {"seed": "abc"})
    assert resolve_scenario_kwargs(Scenarios(L=4), "kw", {"a": "2"}) == {"a": 2, "b": 2.0}


# -- simulate_to_file -------------------------------------------------------------------------------------
def test_simulate_to_file_records_options_and_checks_arguments(tmp_path, chain):
    s0 = chain.initial_state("random_start", n_traj=2)
    path = simulate_to_file(chain, s0, tmp_path / "s.h5", 0.1, 6, 3, solver="midpoint", dtype=torch.float64,
                            precision="float32", compression="gzip", compression_opts=1, extra_attrs={"k": 1})
    assert path == tmp_path / "s.h5"
    ref = qcsurrogate.simulate(chain, s0, 0.1, 6, 3, solver="midpoint")
    with open_trajectory(path) as f:
        a = f.attrs
        assert a["solver"] == "midpoint" and a["simulation_options"] == {"solver": "midpoint", "device": "cpu",
                                                                         "compile": False}
        assert (f.n_time, f.n_steps, f.save_every, f.precision, f.extra) == (3, 6, 3, "float32", {"k": 1})
        assert f.dataset("rho").compression_opts == 1 and f.dataset("rho").chunks[1] == 3
        got = f.load()
    exp = ref.map(lambda t: t.transpose(0, 1))
    assert got.allclose(exp, rtol=1e-6, atol=1e-6)
    (tmp_path / "s.h5").unlink()
    for kwargs, exc, match in [
        ({"dtype": torch.float32}, ValueError,
         r"^ground truth is computed in float64; got dtype=torch\.float32 \(use precision= for storage\)$"),
        ({"sink": object()}, TypeError, r"^simulate_to_file provides its own sink$"),
        ({"n_steps": -1}, ValueError, r"^n_steps must be an integer >= 0, got -1$"),
        ({"n_steps": 2.0}, ValueError, r"^n_steps must be an integer >= 0, got 2\.0$"),
        ({"n_steps": 5, "save_every": 2}, ValueError, r"^n_steps \(5\) must be a multiple of save_every \(2\) >= 1$"),
        ({"save_every": 0}, ValueError, r"^n_steps \(4\) must be a multiple of save_every \(0\) >= 1$"),
        ({"save_every": 2.0}, ValueError, r"must be a multiple of save_every \(2\.0\)"),
        ({"solver": "nope"}, ValueError, r"unknown solver 'nope'"),
    ]:
        args = {"n_steps": 4, "save_every": 1, **kwargs}
        with pytest.raises(exc, match=match):
            simulate_to_file(chain, s0, tmp_path / "s.h5", 0.1, **args)
    assert _entries(tmp_path) == []


def test_simulate_to_file_defaults(tmp_path, chain):
    s0 = chain.initial_state("at_rest")
    path = simulate_to_file(chain, s0, tmp_path / "d.h5", 0.1, 0)  # n_steps=0: just the initial state
    with open_trajectory(path) as f:
        a = f.attrs
        assert (f.n_time, f.save_every, f.precision, f.scenario, f.scenario_kwargs, f.extra) == (1, 1, "float64", "", {}, {})
        assert a["simulation_options"] == {"solver": "rk4", "device": "cpu", "compile": False}
        assert f.dataset("rho").compression is None and f.dataset("rho").chunks[1] == 1
        assert f.state(0, 0).allclose(s0, rtol=0, atol=0)
    with pytest.raises(FileExistsError):
        simulate_to_file(chain, s0, path, 0.1, 2, overwrite=False)
    with open_trajectory(path) as f:
        assert f.n_time == 1


# -- memory held between writes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("batch", "L", "budget", "expected"),
    [
        ((), 4, 1 << 26, 256),  # small states: capped at 256 snapshots a write
        ((2048,), 8, 64 << 20, 28),  # the paper's ensemble: 2048 x (8*8*16 + 2*8*8) bytes = 2.36 MB a snapshot
        ((3,), 4, 3 * (16 * 16 + 2 * 4 * 8) * 5, 5),  # exactly five snapshots fit
        ((3,), 4, 3 * (16 * 16 + 2 * 4 * 8) * 5 - 1, 4),
        ((3,), 4, 1, 1),  # never less than one
    ],
)
def test_snapshots_per_write_follows_the_budget(batch, L, budget, expected):
    state = _snap(L=L, n_t=1, batch=batch).index(0)
    assert W.snapshots_per_write(state, budget) == expected


def test_simulate_to_file_writes_large_ensembles_in_budget_sized_chunks(tmp_path, chain, monkeypatch):
    s0 = chain.initial_state("at_rest")
    per_snapshot = 16 * 16 + 2 * 4 * 8  # rho 4x4 complex128, fields X and V of 4 float64
    monkeypatch.setattr(W, "SINK_BUDGET_BYTES", 3 * per_snapshot)
    sizes: list[int] = []
    real_append = W.TrajectoryWriter.append
    monkeypatch.setattr(W.TrajectoryWriter, "append", lambda self, c: (sizes.append(c.rho.shape[0]), real_append(self, c)))
    path = simulate_to_file(chain, s0, tmp_path / "b.h5", 0.1, 7)
    assert sizes == [3, 3, 2]  # 8 snapshots (t = 0 included), at most 3 held at once
    reference = qcsurrogate.simulate(chain, s0, 0.1, 7)
    with open_trajectory(path) as f:
        assert f.state(0).allclose(reference, rtol=0, atol=0)
    sizes.clear()
    simulate_to_file(chain, s0, tmp_path / "c.h5", 0.1, 7, chunk_size=5)  # an explicit chunk_size wins
    assert sizes == [5, 3]
