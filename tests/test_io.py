"""HDF5 trajectory files: round trips, streaming, atomicity, validation of foreign/corrupt files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toy_system import ToySystem

import qcsurrogate
from qcsurrogate.atomic import AtomicPath, atomic_path, atomic_write, atomic_write_bytes, atomic_write_json
from qcsurrogate.io import (
    SCHEMA,
    TrajectoryFormatError,
    TrajectoryWriter,
    open_trajectory,
    simulate_to_file,
)
from qcsurrogate.state import State
from h5_edit import copy_and_edit


# The toy System of tests/toy_system.py (fields X, V); `toy_registered` (conftest) registers it as "toy".
@pytest.fixture
def chain():
    return ToySystem(L=4)


def _random_state(L: int, batch: tuple[int, ...], seed: int = 0) -> State:
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(*batch, L, dtype=torch.float64, generator=gen)
    V = torch.randn(*batch, L, dtype=torch.float64, generator=gen)
    z = torch.randn(*batch, L, L, 2, dtype=torch.float64, generator=gen)
    a = torch.view_as_complex(z)
    return State({"X": X, "V": V}, a + a.mH)


def _litter(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- round trips --------------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    L=st.integers(1, 5),
    batch=st.sampled_from([(), (1,), (3,), (2, 2)]),
    n_time=st.integers(1, 9),
    precision=st.sampled_from(["float64", "float32"]),
    chunking=st.integers(1, 4),
)
def test_round_trip(tmp_path_factory, L, batch, n_time, precision, chunking):
    system = ToySystem(L=L)
    traj = State.stack([_random_state(L, batch, seed=i) for i in range(n_time)])  # (n_time, *batch, L)
    path = tmp_path_factory.mktemp("rt") / "t.h5"
    with TrajectoryWriter(path, system, dt=0.05, save_every=2, precision=precision, time_chunk=3) as w:
        for start in range(0, n_time, chunking):
            w.append(traj.index(slice(start, start + chunking)))
    with open_trajectory(path) as f:
        n_traj = int(np.prod(batch)) if batch else 1
        assert (f.n_traj, f.n_time, f.L) == (n_traj, n_time, L)
        assert f.batch_shape == batch
        assert f.variables == ("X", "V", "rho")
        np.testing.assert_array_equal(f.times, np.arange(n_time) * 2 * 0.05)
        loaded = f.load()
        assert loaded.rho.dtype == torch.complex128 and loaded["X"].dtype == torch.float64
        # expected layout: trajectories first, then time
        expected = traj.map(lambda t: t.reshape(n_time, n_traj, *t.shape[1 + len(batch):]).transpose(0, 1))
        if precision == "float64":
            assert loaded.allclose(expected, rtol=0, atol=0)
        else:
            eps = float(np.finfo(np.float32).eps)
            for name in loaded.names:
                a, b = loaded[name], expected[name]
                assert torch.allclose(a, b, rtol=eps, atol=eps * float(b.abs().max())), name
            assert f.state(0, dtype=None).rho.dtype == torch.complex64


def test_scalar_batch_is_one_trajectory(tmp_path, chain):
    s0 = chain.initial_state("at_rest")
    assert s0.batch_shape == ()
    path = simulate_to_file(chain, s0, tmp_path / "one.h5", 0.1, 10, scenario="at_rest")
    with open_trajectory(path) as f:
        assert f.n_traj == 1 and f.batch_shape == ()
        st0 = f.state(0, 0)
        assert st0.batch_shape == () and st0.allclose(s0, rtol=0, atol=0)


def test_lazy_slicing(tmp_path, chain):
    s0 = chain.initial_state("random_start", n_traj=3)
    ref = qcsurrogate.simulate(chain, s0, 0.1, 20)  # (21, 3, L)
    path = simulate_to_file(chain, s0, tmp_path / "s.h5", 0.1, 20)
    with open_trajectory(path) as f:
        def exp(t_idx, s_idx):
            return ref.map(lambda x: x.transpose(0, 1)[t_idx][:, s_idx] if not isinstance(t_idx, int)
                           else x.transpose(0, 1)[t_idx][s_idx])

        assert f.state(1).allclose(exp(1, slice(None)), rtol=0, atol=0)
        assert f.state(2, slice(5, 9)).allclose(exp(2, slice(5, 9)), rtol=0, atol=0)
        assert f.state(-1, slice(None, None, -3)).allclose(exp(2, list(range(20, -1, -3))), rtol=0, atol=0)
        assert f.state([2, 0], [7, 3, 3]).allclose(ref.map(lambda x: x.transpose(0, 1)[[2, 0]][:, [7, 3, 3]]),
                                                    rtol=0, atol=0)
        assert f.state(slice(None), 4).batch_shape == (3,)
        assert f.state(1, [4, 2]).allclose(exp(1, [4, 2]), rtol=0, atol=0)
        with pytest.raises(IndexError):
            f.state(3)


def test_metadata_and_system_rebuild(tmp_path, toy_registered):
    system = qcsurrogate.load_system("toy", L=5, c=0.9)
    s0 = system.initial_state("random_start", n_traj=2, seed=7)
    path = simulate_to_file(system, s0, tmp_path / "m.h5", 0.05, 12, save_every=3, scenario="random_start",
                            scenario_kwargs={"n_traj": 2, "seed": 7}, extra_attrs={"note": "hi"})
    with open_trajectory(path) as f:
        assert f.schema == SCHEMA
        assert f.system_name == "toy"
        assert f.params == system.params.model_dump(mode="json")
        assert f.graph == system.graph
        assert (f.dt, f.save_every, f.n_steps, f.n_time) == (0.05, 3, 12, 5)
        assert f.scenario == "random_start"
        assert f.scenario_kwargs == {"n_traj": 2, "sigma": 0.5, "seed": 7}  # defaults filled in
        a = f.attrs
        assert a["plugin"] == toy_registered == "toy-plugin"
        assert a["versions"]["qcsurrogate"] == qcsurrogate.__version__
        assert a["solver"] == "rk4" and a["compute_precision"] == "float64"
        assert f.extra == {"note": "hi"}
        rebuilt = f.system()
        assert type(rebuilt) is ToySystem and rebuilt.params == system.params
        assert json.dumps(f.summary())  # serialisable


def test_per_dataset_layout(tmp_path, chain):
    path = simulate_to_file(chain, chain.initial_state("random_start", n_traj=2), tmp_path / "c.h5", 0.1, 100,
                            compression="gzip")
    with h5py.File(path, "r") as h:
        assert h.attrs["qcsurrogate_schema"] == SCHEMA
        assert h["fields/X"].shape == (2, 101, 4) and h["rho"].shape == (2, 101, 4, 4)
        assert h["rho"].dtype == np.complex128 and h["fields/V"].dtype == np.float64
        assert h["rho"].chunks == (1, 64, 4, 4) and h["fields/X"].chunks == (1, 64, 4)
        assert h["rho"].maxshape == (2, None, 4, 4)
        assert h["rho"].compression == "gzip"
        assert h["time"].shape == (101,)
        assert json.loads(h["rho"].attrs["dims"]) == ["trajectory", "time", "site", "site"]


# -- streaming equals in-memory --------------------------------------------------------------------
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(save_every=st.sampled_from([1, 2, 5]), chunk_size=st.sampled_from([1, 3, 256]))
def test_streaming_equals_in_memory(tmp_path_factory, save_every, chunk_size):
    chain = ToySystem(L=4)
    s0 = chain.initial_state("random_start", n_traj=2, seed=3)
    n_steps = 30
    ref = qcsurrogate.simulate(chain, s0, 0.1, n_steps, save_every)
    path = simulate_to_file(chain, s0, tmp_path_factory.mktemp("st") / "s.h5", 0.1, n_steps, save_every,
                            chunk_size=chunk_size)
    with open_trajectory(path) as f:
        got = f.load()
    assert got.allclose(ref.map(lambda t: t.transpose(0, 1)), rtol=0, atol=0)


def test_save_every_is_subsampling(tmp_path, chain):
    s0 = chain.initial_state("random_start", n_traj=2)
    every1 = simulate_to_file(chain, s0, tmp_path / "a.h5", 0.1, 24, 1)
    every4 = simulate_to_file(chain, s0, tmp_path / "b.h5", 0.1, 24, 4)
    with open_trajectory(every1) as a, open_trajectory(every4) as b:
        assert b.state(slice(None)).allclose(a.state(slice(None), slice(None, None, 4)), rtol=0, atol=0)
        np.testing.assert_array_equal(b.times, a.times[::4])


def test_sink_memory_does_not_hold_trajectory(tmp_path, chain):
    class Spy(TrajectoryWriter):
        biggest = 0

        def append(self, chunk):
            Spy.biggest = max(Spy.biggest, chunk.rho.shape[0])
            super().append(chunk)

    s0 = chain.initial_state("at_rest")
    with Spy(tmp_path / "x.h5", chain, dt=0.1) as w:
        final = qcsurrogate.simulate(chain, s0, 0.1, 300, sink=w, chunk_size=32)
    assert Spy.biggest <= 32 and final.batch_shape == ()


# -- atomicity ---------------------------------------------------------------------------------------
def test_exception_mid_write_leaves_nothing(tmp_path, chain):
    path = tmp_path / "boom.h5"

    class Boom(RuntimeError):
        pass

    def exploding_rhs(state, _n=[0]):  # noqa: B006
        _n[0] += 1
        if _n[0] > 40:
            raise Boom("solver blew up")
        return ToySystem.rhs(chain, state)

    chain.rhs = exploding_rhs  # type: ignore[method-assign]
    with pytest.raises(Boom):
        simulate_to_file(chain, chain.initial_state("at_rest"), path, 0.1, 100, chunk_size=4)
    assert not path.exists()
    assert _litter(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_writer_context_exception_and_empty(tmp_path, chain):
    path = tmp_path / "w.h5"
    with pytest.raises(KeyError):
        with TrajectoryWriter(path, chain, dt=0.1) as w:
            w.append(State.stack([chain.initial_state("at_rest")]))
            assert w.tmp_path is not None and w.tmp_path.exists() and not path.exists()
            raise KeyError("user code failed")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no snapshots"):
        with TrajectoryWriter(path, chain, dt=0.1):
            pass
    assert list(tmp_path.iterdir()) == []


def test_existing_file_kept_on_failure_and_overwrite_flag(tmp_path, chain):
    path = tmp_path / "keep.h5"
    path.write_bytes(b"old content")
    with pytest.raises(RuntimeError):
        with TrajectoryWriter(path, chain, dt=0.1) as w:
            w.append(State.stack([chain.initial_state("at_rest")]))
            raise RuntimeError
    assert path.read_bytes() == b"old content"
    with pytest.raises(FileExistsError):
        TrajectoryWriter(path, chain, dt=0.1, overwrite=False).open()
    assert path.read_bytes() == b"old content" and _litter(tmp_path) == []
    simulate_to_file(chain, chain.initial_state("at_rest"), path, 0.1, 3)
    assert open_trajectory(path).n_time == 4


def test_writer_rejects_mismatched_chunks(tmp_path, chain):
    with pytest.raises(ValueError, match="batch shape"):
        with TrajectoryWriter(tmp_path / "m.h5", chain, dt=0.1) as w:
            w.append(State.stack([chain.initial_state("random_start", n_traj=2)]))
            w.append(State.stack([chain.initial_state("random_start", n_traj=3)]))
    with pytest.raises(ValueError, match="L=5"):
        with TrajectoryWriter(tmp_path / "m.h5", chain, dt=0.1) as w:
            w.append(State.stack([_random_state(5, ())]))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="scenario_kwargs.gen"):
        TrajectoryWriter(tmp_path / "m.h5", chain, dt=0.1, scenario="hand-built",  # not a scenario: kept as given
                           scenario_kwargs={"gen": object()})
    with pytest.raises(ValueError, match="precision"):
        TrajectoryWriter(tmp_path / "m.h5", chain, dt=0.1, precision="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float64"):
        simulate_to_file(chain, chain.initial_state("at_rest"), tmp_path / "m.h5", 0.1, 2, dtype=torch.float32)


def test_atomic_helpers(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"x": 1}, make_parents=True)
    assert json.loads(p.read_text()) == {"x": 1}
    with pytest.raises(TypeError):
        atomic_write_json(p, {"x": object()})
    assert json.loads(p.read_text()) == {"x": 1}
    with pytest.raises(ZeroDivisionError):
        with atomic_write(p) as fh:
            fh.write("partial")
            1 / 0  # noqa: B018
    assert json.loads(p.read_text()) == {"x": 1} and _litter(p.parent) == []
    atomic_write_bytes(p, b"bytes")
    assert p.read_bytes() == b"bytes"
    with pytest.raises(FileExistsError):
        atomic_write_bytes(p, b"no", overwrite=False)
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"via path")
    assert (tmp_path / "b.bin").read_bytes() == b"via path"
    ap = AtomicPath(tmp_path / "c.bin", overwrite=False)
    (tmp_path / "c.bin").write_bytes(b"raced")  # someone else created it meanwhile
    ap.tmp_path.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        ap.commit()
    assert (tmp_path / "c.bin").read_bytes() == b"raced" and _litter(tmp_path) == []
    mode = (tmp_path / "b.bin").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


# -- reader errors ----------------------------------------------------------------------------------
@pytest.fixture
def good_file(tmp_path, chain):
    return simulate_to_file(chain, chain.initial_state("random_start", n_traj=2), tmp_path / "good.h5", 0.1, 8)




def test_reader_not_hdf5(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("hello, not hdf5")
    with pytest.raises(TrajectoryFormatError, match="not an HDF5 file"):
        open_trajectory(p)
    with pytest.raises(FileNotFoundError):
        open_trajectory(tmp_path / "missing.h5")


def test_reader_truncated(tmp_path, good_file):
    data = good_file.read_bytes()
    p = tmp_path / "trunc.h5"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TrajectoryFormatError, match="truncated or corrupted"):
        open_trajectory(p)


def test_reader_foreign_hdf5(tmp_path):
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as h:
        h.attrs["dataset_name"] = "something else"
        h["data"] = np.zeros(3)
    with pytest.raises(TrajectoryFormatError, match="not a qcsurrogate trajectory file.*qcsurrogate_schema"):
        open_trajectory(p)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda h: h.attrs.__setitem__("qcsurrogate_schema", "qcsurrogate.trajectory/2"), "version 2.*upgrade"),
        (lambda h: h.attrs.__setitem__("qcsurrogate_schema", "other.format/1"), "not a 'qcsurrogate.trajectory"),
        (lambda h: h.__delitem__("fields/V"), "lacks the required dataset '/fields/V'"),
        (lambda h: h.__delitem__("rho"), "lacks the required dataset '/rho'"),
        (lambda h: h.attrs.__delitem__("dt"), r"lacks required root attribute\(s\) \['dt'\]"),
        (lambda h: h.attrs.__setitem__("n_time", 5), "has shape"),
        (lambda h: h.attrs.__setitem__("params", "{not json"), "'params' is not valid JSON"),
        (lambda h: h.attrs.__setitem__("precision", "float32"), "dtype"),
        (lambda h: h.attrs.__setitem__("n_steps", 99), "inconsistent: n_steps"),
        (lambda h: h["time"].__setitem__(slice(None), np.zeros(9)), "/time"),
        (lambda h: h["rho"].resize(4, axis=1), "'/rho' has shape"),
    ],
    ids=["newer-version", "foreign-schema", "missing-field", "missing-rho", "missing-attr", "shape-mismatch",
         "bad-json", "dtype-mismatch", "n-steps", "time-axis", "rho-shape"],
)
def test_reader_invalid(tmp_path, good_file, mutate, match):
    bad = copy_and_edit(good_file, tmp_path, mutate)
    with pytest.raises(TrajectoryFormatError, match=match) as info:
        open_trajectory(bad)
    assert str(bad) in str(info.value)


def test_package_exports():
    assert qcsurrogate.open_trajectory is open_trajectory
    assert qcsurrogate.TrajectoryWriter is TrajectoryWriter


# -- provenance and time origin -------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["2.3.1", "0.0.1.dev4+gabc123"])
def test_plugin_version_is_written_and_read_back(tmp_path, toy_registered, monkeypatch, version):
    """The version of the plugin that registered the system is recorded, and the reader reports it."""
    from qcsurrogate import registry

    real = registry._plugin_version

    def versioned(name, versions):  # as if the toy plugin were installed from a distribution at `version`
        return version if name == toy_registered else real(name, versions)

    monkeypatch.setattr(registry, "_plugin_version", versioned)
    registry.get_registry(reload=True)
    assert registry.list_plugins()[toy_registered]["version"] == version
    system = qcsurrogate.load_system("toy", L=4)
    path = simulate_to_file(system, system.initial_state("at_rest"), tmp_path / "v.h5", 0.1, 4)
    with h5py.File(path, "r") as h:
        assert h.attrs["plugin_version"] == version
    with open_trajectory(path) as f:
        assert f.attrs["plugin"] == toy_registered and f.attrs["plugin_version"] == version
        summary = f.summary()
        assert (summary["plugin"], summary["plugin_version"]) == (toy_registered, version)


def test_installed_plugin_version_is_recorded(tmp_path):
    """End to end with a plugin installed from a distribution (the bundled Holstein plugin)."""
    from importlib import metadata

    if "holstein" not in qcsurrogate.list_systems():
        pytest.skip("the Holstein plugin is not installed")
    from qcsurrogate.testing import random_state

    system = qcsurrogate.load_system("holstein", L=4)
    path = simulate_to_file(system, random_state(system, (1,)), tmp_path / "h.h5", 0.05, 2)
    with open_trajectory(path) as f:
        s = f.summary()
    assert s["plugin"] == "holstein"
    assert s["plugin_version"] == metadata.version("qcsurrogate-holstein") != ""


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    t0=st.floats(-1e4, 1e4).filter(lambda t: abs(t) > 1e-3),
    dt=st.sampled_from([0.01, 0.05, 0.08, 0.3]),
    save_every=st.integers(1, 5),
    n_time=st.integers(1, 7),
    chunking=st.integers(1, 3),
)
def test_nonzero_start_time_is_stored_and_read_back(tmp_path_factory, t0, dt, save_every, n_time, chunking):
    system = ToySystem(L=3)
    traj = State.stack([_random_state(3, (2,), seed=i) for i in range(n_time)])
    path = tmp_path_factory.mktemp("t0") / "t.h5"
    with TrajectoryWriter(path, system, dt=dt, save_every=save_every, t0=t0, time_chunk=2) as w:
        for start in range(0, n_time, chunking):
            w.append(traj.index(slice(start, start + chunking)))
    expected = t0 + np.arange(n_time) * save_every * dt
    with open_trajectory(path) as f:
        assert f.attrs["t0"] == t0
        np.testing.assert_allclose(f.times, expected, rtol=1e-14, atol=1e-12)
        s = f.summary()
        assert s["t_start"] == t0
        assert s["t_end"] == pytest.approx(expected[-1], rel=1e-14, abs=1e-12)
    with h5py.File(path, "r") as h:
        np.testing.assert_allclose(h["time"][()], expected, rtol=1e-14, atol=1e-12)
