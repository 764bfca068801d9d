"""The trajectory reader: lazy windows equal numpy outer indexing of the stored arrays; every invalid
file is refused with a message naming the file and the problem; metadata and summary are exact."""

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

from qcsurrogate.io import SCHEMA, Trajectory, TrajectoryFormatError, TrajectoryWriter, open_trajectory
from qcsurrogate.state import State
from h5_edit import copy_and_edit

N_TRAJ, N_TIME, L = 3, 7, 3
DT, SAVE_EVERY = 0.25, 2


def _arrays(n_traj: int = N_TRAJ, n_time: int = N_TIME, L: int = L) -> dict[str, np.ndarray]:
    """Stored layout (n_traj, n_time, ...): every entry distinct, so any reordering shows."""
    i = np.arange(n_traj)[:, None, None]
    t = np.arange(n_time)[None, :, None]
    s = np.arange(L)[None, None, :]
    X = 100.0 * i + t + 0.01 * s
    V = -X - 0.5
    rho = (X[..., None] + 1j * (0.001 * np.arange(L))).astype(np.complex128)
    return {"X": X, "V": V, "rho": rho}


def _write(path: Path, precision: str = "float64", **kw) -> Path:
    arr = _arrays()
    system = ToySystem(L=L)
    # writer takes (n_t, *batch, ...): time first
    chunk = State._raw({n: torch.from_numpy(arr[n].swapaxes(0, 1).copy()) for n in ("X", "V")},
                       torch.from_numpy(arr["rho"].swapaxes(0, 1).copy()))
    with TrajectoryWriter(path, system, dt=DT, save_every=SAVE_EVERY, precision=precision, **kw) as w:
        w.append(chunk)
    return path


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("reader") / "t.h5")


def _outer(a: np.ndarray, ti, si) -> np.ndarray:
    b = a[ti]
    return b[si] if isinstance(ti, int) else b[:, si]


_int = st.integers(-N_TRAJ, N_TRAJ - 1)


def _index(n: int):
    i = st.integers(-n, n - 1)
    return st.one_of(
        i,
        st.builds(slice, st.none() | st.integers(-n - 2, n + 2), st.none() | st.integers(-n - 2, n + 2),
                  st.none() | st.sampled_from([-3, -2, -1, 1, 2, 3])),
        st.lists(i, min_size=0, max_size=5),
        st.lists(st.booleans(), min_size=n, max_size=n).map(np.array),
        st.lists(i, min_size=1, max_size=4).map(lambda v: np.array(v, dtype=np.int32)),
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ti=_index(N_TRAJ), si=_index(N_TIME))
def test_windows_equal_numpy_outer_indexing(stored, ti, si):
    arr = _arrays()
    with open_trajectory(stored) as f:
        got = f.state(ti, si)
    for name in ("X", "V", "rho"):
        exp = _outer(arr[name], ti, si)
        assert tuple(got[name].shape) == exp.shape, name
        np.testing.assert_array_equal(got[name].numpy(), exp)
    assert got["X"].dtype == torch.float64 and got.rho.dtype == torch.complex128


def test_empty_selections_read_nothing(stored):
    with open_trajectory(stored) as f:
        assert tuple(f.state(0, [])["X"].shape) == (0, L)
        assert tuple(f.state([], 2).rho.shape) == (0, L, L)
        assert tuple(f.state([], [])["V"].shape) == (0, 0, L)
        assert tuple(f.state(slice(2, 2), [1, 0])["X"].shape) == (0, 2, L)


def test_load_and_default_window_are_everything(stored):
    arr = _arrays()
    with open_trajectory(stored) as f:
        for s in (f.load(), f.state()):
            assert s.batch_shape == (N_TRAJ, N_TIME)
            for name in ("X", "V", "rho"):
                np.testing.assert_array_equal(s[name].numpy(), arr[name])
        s32 = f.load(dtype=torch.float32)
        assert s32["X"].dtype == torch.float32 and s32.rho.dtype == torch.complex64
        np.testing.assert_allclose(s32["V"].numpy(), arr["V"], rtol=1e-6)
        assert f.load(dtype=None)["X"].dtype == torch.float64


def test_dtype_none_keeps_the_stored_precision(tmp_path):
    path = _write(tmp_path / "f32.h5", precision="float32")
    arr = _arrays()
    with open_trajectory(path) as f:
        assert f.precision == "float32"
        s = f.state(1, dtype=None)
        assert s["X"].dtype == torch.float32 and s.rho.dtype == torch.complex64
        np.testing.assert_array_equal(s["X"].numpy(), arr["X"][1].astype(np.float32))
        s = f.state(1)  # default: float64 whatever the storage
        assert s["X"].dtype == torch.float64 and s.rho.dtype == torch.complex128


@pytest.mark.parametrize(
    ("ti", "si", "exc", "match"),
    [
        (3, slice(None), IndexError, r"^trajectory index 3 out of range for 3 trajectorys$"),
        (-4, slice(None), IndexError, r"^trajectory index -4 out of range for 3 trajectorys$"),
        (0, 7, IndexError, r"^time index 7 out of range for 7 times$"),
        (np.int64(5), 0, IndexError, r"^trajectory index 5 out of range"),
        ([0, 3], 0, IndexError, r"^trajectory indices out of range for 3 trajectorys: \[0, 3\]$"),
        ([-4], 0, IndexError, r"^trajectory indices out of range for 3 trajectorys: \[-4\]$"),
        (0, [[1, 2]], IndexError, r"^time index must be an int, a slice or a 1-D sequence of ints; got \[\[1, 2\]\]$"),
        (0, [0.5], IndexError, r"^time index must be an int, a slice or a 1-D sequence of ints"),
        (True, 0, IndexError, r"^boolean trajectory mask must have shape \(3,\), got \(\)$"),
        ([True, False], 0, IndexError, r"^boolean trajectory mask must have shape \(3,\), got \(2,\)$"),
        (np.array([], dtype=bool), 0, IndexError, r"^boolean trajectory mask must have shape \(3,\), got \(0,\)$"),
    ],
)
def test_bad_indices_are_refused(stored, ti, si, exc, match):
    with open_trajectory(stored) as f, pytest.raises(exc, match=match):
        f.state(ti, si)


def test_metadata_properties(stored):
    system = ToySystem(L=L)
    with open_trajectory(stored) as f:
        assert isinstance(f, Trajectory) and len(f) == N_TRAJ
        assert (f.n_traj, f.n_time, f.L, f.dt, f.save_every, f.n_steps) == (
            N_TRAJ, N_TIME, L, DT, SAVE_EVERY, (N_TIME - 1) * SAVE_EVERY)
        assert f.schema == SCHEMA and f.system_name == "toy" and f.precision == "float64"
        assert f.params == system.params.model_dump(mode="json")
        assert f.graph_dict == system.graph.to_dict() and f.graph == system.graph
        assert f.field_names == ("X", "V") and f.variables == ("X", "V", "rho") and f.batch_shape == (N_TRAJ,)
        assert f.scenario == "" and f.scenario_kwargs == {} and f.extra == {}
        np.testing.assert_array_equal(f.times, np.arange(N_TIME) * SAVE_EVERY * DT)
        assert f.dataset("rho").shape == (N_TRAJ, N_TIME, L, L)
        assert f.dataset("V").name == "/fields/V"
        with pytest.raises(KeyError, match=r"no variable 'Y'; this file has \['X', 'V', 'rho'\]"):
            f.dataset("Y")
        # accessors hand out copies: mutating them does not change the file's view
        for getter in ("attrs", "params", "graph_dict", "scenario_kwargs", "extra"):
            value = getattr(f, getter)
            value["junk"] = 1
            assert "junk" not in getattr(f, getter), getter
        t = f.times
        t[:] = -1
        assert f.times[1] == SAVE_EVERY * DT


def test_close_repr_and_reading_after_close(stored):
    f = open_trajectory(stored)
    assert repr(f) == f"Trajectory({str(stored)!r}, system='toy', n_traj={N_TRAJ}, n_time={N_TIME}, L={L})"
    f.close()
    f.close()  # idempotent
    assert repr(f) == f"Trajectory({str(stored)!r}, system='toy', closed)"
    with pytest.raises(ValueError, match=rf"^trajectory file {stored} is closed$"):
        f.state(0)
    with open_trajectory(stored) as g:
        pass
    assert "closed" in repr(g)


def test_system_rebuild_needs_no_registration_of_params(stored, toy_registered):
    with open_trajectory(stored) as f:
        rebuilt = f.system()
    assert type(rebuilt) is ToySystem and rebuilt.params == ToySystem(L=L).params


def test_summary_is_exact(stored):
    with open_trajectory(stored) as f:
        s = f.summary()
        a = f.attrs
    assert json.loads(json.dumps(s)) == s
    system = ToySystem(L=L)
    tc = 64  # the default time chunk (no expected length given, and a tiny rho)
    expected_vars = {
        "X": {"shape": [N_TRAJ, N_TIME, L], "dtype": "float64", "chunks": [1, tc, L], "compression": None},
        "V": {"shape": [N_TRAJ, N_TIME, L], "dtype": "float64", "chunks": [1, tc, L], "compression": None},
        "rho": {"shape": [N_TRAJ, N_TIME, L, L], "dtype": "complex128", "chunks": [1, tc, L, L], "compression": None},
    }
    assert s == {
        "path": str(stored),
        "size_bytes": os.path.getsize(stored),
        "schema": SCHEMA,
        "system": "toy",
        "system_class": "toy_system.ToySystem",
        "plugin": "",
        "plugin_version": "",
        "params": system.params.model_dump(mode="json"),
        "boundary": "periodic",
        "graph": system.graph.to_dict(),
        "scenario": "",
        "scenario_kwargs": {},
        "n_trajectories": N_TRAJ,
        "batch_shape": [N_TRAJ],
        "n_time": N_TIME,
        "L": L,
        "orbitals": 1,
        "dt": DT,
        "save_every": SAVE_EVERY,
        "n_steps": (N_TIME - 1) * SAVE_EVERY,
        "t_start": 0.0,
        "t_end": (N_TIME - 1) * SAVE_EVERY * DT,
        "time_units": "hbar/t",
        "solver": "",
        "simulation_options": {},
        "precision": "float64",
        "compute_precision": "float64",
        "variables": expected_vars,
        "created": a["created"],
        "versions": a["versions"],
        "extra": {},
    }


def test_summary_of_files_without_plugin_attrs_and_contiguous_compressed_data(tmp_path):
    path = _write(tmp_path / "c.h5", compression="lzf")
    with h5py.File(path, "r+") as h:
        del h.attrs["plugin"], h.attrs["plugin_version"]  # optional: older files lack them
        x = h["fields/X"][()]
        del h["fields/X"]
        h["fields"].create_dataset("X", data=x)  # contiguous: no chunks
    with open_trajectory(path) as f:
        s = f.summary()
    assert (s["plugin"], s["plugin_version"]) == ("", "")
    assert s["variables"]["X"]["chunks"] is None and s["variables"]["X"]["compression"] is None
    assert s["variables"]["rho"]["compression"] == "lzf"


# -- refusing invalid files ---------------------------------------------------------------------------


def _set(name, value):
    return lambda h: h.attrs.__setitem__(name, value)


def _replace(key, fn):
    def go(h):
        data = h[key][()]
        del h[key]
        fn(h, key, data)

    return go


def _retime(fn):
    def go(h):
        h["time"][...] = fn(h["time"][()])

    return go


T_END = (N_TIME - 1) * SAVE_EVERY * DT


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set("qcsurrogate_schema", "qcsurrogate.trajectory/2"),
         "has trajectory schema version 2; this qcsurrogate reads version 1 (written by a newer qcsurrogate; "
         "upgrade to read it)"),
        (_set("qcsurrogate_schema", "qcsurrogate.trajectory/0"),
         "has trajectory schema version 0; this qcsurrogate reads version 1"),
        (_set("qcsurrogate_schema", "qcsurrogate.trajectory/v1"),
         "has schema 'qcsurrogate.trajectory/v1', not a 'qcsurrogate.trajectory/<version>' trajectory"),
        (_set("qcsurrogate_schema", "qcsurrogate.trajectory"),
         "has schema 'qcsurrogate.trajectory', not a 'qcsurrogate.trajectory/<version>' trajectory"),
        (_set("qcsurrogate_schema", b"other/1"), "has schema 'other/1', not a 'qcsurrogate.trajectory/<version>' trajectory"),
        (_set("params", "{oops"), "attribute 'params' is not valid JSON ("),
        (_set("graph", 3), "attribute 'graph' should be JSON text, found int64"),
        (lambda h: (h.attrs.__delitem__("t0"), h.attrs.__delitem__("dt")),
         "lacks required root attribute(s) ['dt', 't0'] for schema qcsurrogate.trajectory/1"),
        (_set("L", "3"), "attribute 'L' should be int, found str '3'"),
        (_set("t0", np.nan), "attribute 't0' is not finite: nan"),
        (_set("precision", "float16"), "has unknown storage precision 'float16' (expected one of ['float32', 'float64'])"),
        (_set("field_names", "[]"), "has an invalid 'field_names' attribute: []"),
        (_set("field_names", '["X", 3]'), "has an invalid 'field_names' attribute: ['X', 3]"),
        (_set("field_names", '["X", "rho"]'), "has an invalid 'field_names' attribute: ['X', 'rho']"),
        (_set("n_trajectories", 0), f"has empty dimensions: n_trajectories=0, n_time={N_TIME}, L={L}"),
        (_set("n_time", 0), f"has empty dimensions: n_trajectories={N_TRAJ}, n_time=0, L={L}"),
        (_set("L", 0), f"has empty dimensions: n_trajectories={N_TRAJ}, n_time={N_TIME}, L=0"),
        (lambda h: h.__delitem__("fields/V"), "lacks the required dataset '/fields/V'"),
        (lambda h: h.__delitem__("time"), "lacks the required dataset '/time'"),
        (_replace("fields/X", lambda h, k, d: h.create_group(k)), "'/fields/X' is not a dataset"),
        (_replace("rho", lambda h, k, d: h.create_dataset(k, data=d[:, :-1])),
         f"dataset '/rho' has shape ({N_TRAJ}, {N_TIME - 1}, {L}, {L}); the attributes imply "
         f"({N_TRAJ}, {N_TIME}, {L}, {L})"),
        (_replace("fields/V", lambda h, k, d: h.create_dataset(k, data=d.astype(np.float32))),
         "dataset '/fields/V' has dtype float32; precision 'float64' implies float64"),
        (_replace("rho", lambda h, k, d: h.create_dataset(k, data=d.astype(np.complex64))),
         "dataset '/rho' has dtype complex64; precision 'float64' implies complex128"),
        (_replace("time", lambda h, k, d: h.create_dataset(k, data=d.astype(np.float32))),
         "dataset '/time' has dtype float32; precision 'float64' implies float64"),
        (_set("params", f'{{"L": {L + 2}}}'), f"is inconsistent: the system parameters say L={L + 2}, the arrays L={L}"),
        (_set("n_steps", 13), "is inconsistent: n_steps=13 but (n_time - 1) * save_every = 12"),
        (_set("save_every", 3), "is inconsistent: n_steps=12 but (n_time - 1) * save_every = 18"),
        (_set("batch_shape", "[2, 2]"), f"is inconsistent: batch_shape [2, 2] does not hold {N_TRAJ} trajectories"),
        (_retime(lambda t: 3 * t), "is inconsistent: '/time' does not match t0 + i * save_every * dt"),
        (_retime(lambda t: t + 1e-6), "is inconsistent: '/time' does not match t0 + i * save_every * dt"),
        (_retime(lambda t: t * (1 + 1e-9)), "is inconsistent: '/time' does not match t0 + i * save_every * dt"),
        (_set("dt", DT * 1.5), "is inconsistent: '/time' does not match t0 + i * save_every * dt"),
        (_set("t0", 0.5), "is inconsistent: '/time' does not match t0 + i * save_every * dt"),
    ],
)
def test_invalid_files_are_refused_with_the_reason(tmp_path, stored, mutate, message):
    bad = copy_and_edit(stored, tmp_path, mutate)
    with pytest.raises(TrajectoryFormatError) as info:
        open_trajectory(bad)
    text = str(info.value)
    assert text.startswith(f"{bad}: ") and message in text, text


@pytest.mark.parametrize(
    "mutate",
    [
        _retime(lambda t: t + 0.4e-12 * max(1.0, T_END)),  # rounding-level noise is accepted
        _retime(lambda t: t * (1 + 0.5e-12)),
        _set("dt", np.float64(DT)),
        _set("L", np.int32(L)),
    ],
)
def test_tolerated_variations_still_open(tmp_path, stored, mutate):
    ok = copy_and_edit(stored, tmp_path, mutate)
    with open_trajectory(ok) as f:
        assert f.n_time == N_TIME


def test_integer_attribute_for_a_float_reads_as_float(tmp_path):
    path = _write(tmp_path / "i.h5")
    with h5py.File(path, "r+") as h:
        h.attrs["t0"] = 1
        h["time"][...] = h["time"][()] + 1.0
    with open_trajectory(path) as f:
        assert f.attrs["t0"] == 1.0 and type(f.attrs["t0"]) is float
        assert f.times[0] == 1.0


def test_missing_schema_lists_the_root_attributes(tmp_path):
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as h:
        h.attrs["zeta"] = 1
        h.attrs["alpha"] = 2
    with pytest.raises(TrajectoryFormatError) as info:
        open_trajectory(p)
    assert str(info.value) == (f"{p}: is not a qcsurrogate trajectory file: the root attribute "
                               "'qcsurrogate_schema' is missing (root attributes found: alpha, zeta)")
    with h5py.File(p, "w"):
        pass
    with pytest.raises(TrajectoryFormatError, match=r"\(root attributes found: none\)$"):
        open_trajectory(p)


def test_opening_non_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"^trajectory file not found: {tmp_path / 'nope.h5'}$"):
        open_trajectory(tmp_path / "nope.h5")
    with pytest.raises(TrajectoryFormatError, match=rf"^{tmp_path}: is a directory, not a file$"):
        open_trajectory(tmp_path)
    p = tmp_path / "text.h5"
    p.write_text("not hdf5")
    with pytest.raises(TrajectoryFormatError,
                       match=rf"^{p}: is not an HDF5 file \(no HDF5 signature found\)$"):
        open_trajectory(str(p))


def test_truncated_file_message(tmp_path, stored):
    p = tmp_path / "trunc.h5"
    data = stored.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TrajectoryFormatError,
                       match=rf"^{p}: cannot be opened as HDF5; it may be truncated or corrupted \(.+\)$"):
        open_trajectory(p)


def test_failed_validation_closes_the_file(tmp_path, stored):
    bad = copy_and_edit(stored, tmp_path, _set("n_steps", 1))
    with pytest.raises(TrajectoryFormatError):
        open_trajectory(bad)
    # the handle was released: the file can be opened for writing again
    with h5py.File(bad, "w"):
        pass


# -- read errors inside a file that opened (corruption found late) ------------------------------------------
def _failing(monkeypatch, cls, attr, when):
    real = getattr(cls, attr)

    def fail(self, *args, **kwargs):
        if when(self):
            raise OSError("Can't synchronously read data (checksum failed)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, attr, fail)


def test_unreadable_root_attributes(stored, monkeypatch):
    _failing(monkeypatch, h5py.AttributeManager, "items", lambda self: True)
    with pytest.raises(TrajectoryFormatError) as info:
        open_trajectory(stored)
    assert str(info.value) == (f"{stored}: cannot read root attributes; the file may be corrupted "
                               "(Can't synchronously read data (checksum failed))")


def test_unreadable_time_axis(stored, monkeypatch):
    _failing(monkeypatch, h5py.Dataset, "__getitem__", lambda self: self.name == "/time")
    with pytest.raises(TrajectoryFormatError) as info:
        open_trajectory(stored)
    assert str(info.value) == (f"{stored}: cannot read '/time'; the file may be truncated or corrupted "
                               "(Can't synchronously read data (checksum failed))")


def test_unreadable_data(stored, monkeypatch):
    with open_trajectory(stored) as f:
        _failing(monkeypatch, h5py.Dataset, "__getitem__", lambda self: self.name == "/fields/V")
        with pytest.raises(TrajectoryFormatError) as info:
            f.state(0)
    assert str(info.value) == (f"{stored}: cannot read 'V'; the file may be corrupted "
                               "(Can't synchronously read data (checksum failed))")
