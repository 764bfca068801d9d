"""Streaming, atomic writing of trajectories to HDF5 (`TrajectoryWriter`, `simulate_to_file`)."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ..atomic import AtomicPath
from ..graph import kind_of
from ..state import RHO, State
from ..system import System, validate_scenario_kwargs
from . import schema as S

DEFAULT_TIME_CHUNK = 64
CHUNK_TARGET_BYTES = 1 << 20  # keep one chunk of rho near 1 MiB at most
SINK_BUDGET_BYTES = 64 << 20  # snapshots held in memory before a write, whatever the ensemble size
MAX_SNAPSHOTS_PER_WRITE = 256


def snapshots_per_write(state: State, budget: int | None = None) -> int:
    """How many float64 snapshots of `state` (all trajectories) fit the in-memory budget of one write.

    A large ensemble (2048 trajectories at L = 8 is 2.4 MB a snapshot) would otherwise hold 256
    snapshots, about 600 MB, between writes.
    """
    budget = SINK_BUDGET_BYTES if budget is None else budget
    per_snapshot = sum(t.numel() * (16 if t.is_complex() else 8) for t in (state.rho, *state.fields.values()))
    return int(max(1, min(MAX_SNAPSHOTS_PER_WRITE, budget // max(1, per_snapshot))))


def _package_versions() -> dict[str, str]:
    from .. import __version__

    return {
        "qcsurrogate": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "python": platform.python_version(),
    }


def _plugin_of(system: System) -> tuple[str, str]:
    """(plugin name, plugin version) that registered this system's class, or ("", "") if none did."""
    from ..registry import get_registry

    try:
        reg = get_registry()
    except Exception:  # noqa: BLE001 - provenance must never break writing
        return "", ""
    for entry in reg.systems.values():
        if entry.obj is type(system):
            version = reg.plugins.get(entry.plugin, {}).get("version")
            return entry.plugin, version or ""
    return "", ""


def resolve_scenario_kwargs(system: System, scenario: str | None, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The scenario's keyword arguments as it receives them, defaults filled in (so seeds are always
    recorded), validated by the scenario's own signature (`validate_scenario_kwargs`): a record of
    arguments the scenario would refuse is a `ScenarioArgumentError`, not a file that lies. A name
    that is not a scenario of the system (a state built by hand) records the arguments as given."""
    kwargs = dict(kwargs or {})
    if not scenario or scenario not in system.scenarios():
        return kwargs
    return validate_scenario_kwargs(system, scenario, kwargs)


def _discard_temp(tmp_path: Path) -> None:  # weakref finalizer: never leave litter behind
    try:
        os.unlink(tmp_path)
    except OSError:
        pass


class TrajectoryWriter:
    """Write a trajectory to an HDF5 file, snapshot chunk by snapshot chunk (a `simulate` sink).

    Use it as a context manager; data go to a temporary file next to `path`, which is renamed
    to `path` (atomically) when the block exits normally. If the block raises, the temporary file
    is removed and nothing appears at `path`::

        with TrajectoryWriter("traj.h5", system, dt=0.08, save_every=1) as w:
            simulate(system, state0, 0.08, 1000, sink=w)

    `append(chunk)` takes a State with a leading time axis, `(n_t, *batch, L)` for fields; the
    batch axes are flattened into the trajectory axis of the file (batch shape `()` is stored as
    one trajectory). `precision` is the *storage* precision ("float64" = float64/complex128,
    "float32" = float32/complex64); the data handed in are what they are (ground truth is
    computed in float64). `compression` is None, "gzip" (with `compression_opts` 0-9, default 4)
    or "lzf". Datasets are resizable along time, so the length need not be known;
    `n_snapshots_expected` only pre-sizes them and caps the time chunk.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        system: System,
        *,
        dt: float,
        save_every: int = 1,
        n_snapshots_expected: int | None = None,
        scenario: str | None = None,
        scenario_kwargs: Mapping[str, Any] | None = None,
        precision: S.Precision = "float64",
        compression: str | None = None,
        compression_opts: int | None = None,
        time_chunk: int = DEFAULT_TIME_CHUNK,
        solver: str | None = None,
        simulation_options: Mapping[str, Any] | None = None,
        t0: float = 0.0,
        extra_attrs: Mapping[str, Any] | None = None,
        overwrite: bool = True,
        make_parents: bool = True,
    ) -> None:
        if not isinstance(system, System):
            raise TypeError(f"system must be a qcsurrogate System, got {type(system).__name__}")
        if not (isinstance(dt, (int, float)) and dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive finite number, got {dt!r}")
        if not (isinstance(save_every, int) and save_every >= 1):
            raise ValueError(f"save_every must be an integer >= 1, got {save_every!r}")
        if precision not in S.PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(S.PRECISIONS)}, got {precision!r}")
        if compression not in S.COMPRESSIONS:
            raise ValueError(f"compression must be one of {S.COMPRESSIONS}, got {compression!r}")
        if compression != "gzip" and compression_opts is not None:
            raise ValueError("compression_opts only applies to compression='gzip'")
        if n_snapshots_expected is not None and n_snapshots_expected < 1:
            raise ValueError(f"n_snapshots_expected must be >= 1, got {n_snapshots_expected}")
        if time_chunk < 1:
            raise ValueError(f"time_chunk must be >= 1, got {time_chunk}")
        self.path = Path(path)
        self.system = system
        self.dt = float(dt)
        self.save_every = int(save_every)
        self.t0 = float(t0)
        self.n_snapshots_expected = n_snapshots_expected
        self.precision = precision
        self.compression = compression
        self.compression_opts = (4 if compression_opts is None else compression_opts) if compression == "gzip" else None
        self.time_chunk = int(time_chunk)
        self.overwrite = overwrite
        self.make_parents = make_parents
        self.field_names: tuple[str, ...] = tuple(system.field_names)
        self._real_dtype, self._complex_dtype = S.PRECISIONS[precision]
        # Serialise metadata now so a bad value fails before any simulation time is spent.
        resolved = resolve_scenario_kwargs(system, scenario, scenario_kwargs)
        user_keys = set(scenario_kwargs or {})
        for k in user_keys:
            S.to_jsonable(resolved[k], where=f"scenario_kwargs.{k}")
        self._meta_json = {
            "params": S.dumps(system.params.model_dump(mode="json"), where="params"),
            "graph": S.dumps(system.graph.to_dict(), where="graph"),
            "field_names": S.dumps(list(self.field_names)),
            "variables": S.dumps([*self.field_names, RHO]),
            "scenario_kwargs": S.dumps(resolved, where="scenario_kwargs", lenient=True),
            "simulation_options": S.dumps(dict(simulation_options or {}), where="simulation_options", lenient=True),
            "versions": S.dumps(_package_versions()),
            "extra": S.dumps(dict(extra_attrs or {}), where="extra_attrs"),
        }
        self.scenario = scenario or ""
        self.scenario_kwargs = resolved
        self.solver = solver or ""
        self._atomic: AtomicPath | None = None
        self._finalizer: weakref.finalize | None = None
        self._h5: h5py.File | None = None
        self._batch_shape: tuple[int, ...] | None = None
        self._n_traj = 0
        self._count = 0
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> TrajectoryWriter:
        """Create the temporary file (done automatically by `with` or the first `append`)."""
        if self._closed:
            raise RuntimeError(f"writer for {self.path} is already closed")
        if self._h5 is not None:
            return self
        self._atomic = AtomicPath(self.path, overwrite=self.overwrite, make_parents=self.make_parents)
        self._finalizer = weakref.finalize(self, _discard_temp, self._atomic.tmp_path)
        try:
            self._h5 = h5py.File(self._atomic.tmp_path, "w")
            self._write_root_attrs()
        except BaseException:
            self.abort()
            raise
        return self

    def __enter__(self) -> TrajectoryWriter:
        return self.open()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def n_written(self) -> int:
        """Snapshots appended so far."""
        return self._count

    @property
    def tmp_path(self) -> Path | None:
        return self._atomic.tmp_path if self._atomic is not None else None

    def close(self) -> Path:
        """Finish the file and move it to `path` atomically; returns `path`.

        Raises ValueError (and leaves nothing at `path`) if no snapshot was appended.
        """
        if self._closed:
            return self.path
        if self._h5 is None:
            self.open()
        try:
            if self._count == 0:
                raise ValueError(f"no snapshots were appended; not writing an empty trajectory to {self.path}")
            f = self._h5
            assert f is not None
            for ds in self._datasets():
                if ds.shape[1] != self._count:
                    ds.resize(self._count, axis=1)
            f[S.TIME_DATASET].resize((self._count,))
            f.attrs["n_time"] = self._count
            f.attrs["n_steps"] = (self._count - 1) * self.save_every
            f.flush()
            f.close()
            self._h5 = None
            assert self._atomic is not None
            self._atomic.commit()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        if self._finalizer is not None:
            self._finalizer.detach()
        return self.path

    def abort(self) -> None:
        """Drop everything written: close and delete the temporary file (idempotent)."""
        self._closed = True
        if self._h5 is not None:
            try:
                self._h5.close()
            except Exception:  # noqa: BLE001
                pass
            self._h5 = None
        if self._atomic is not None:
            self._atomic.discard()
        if self._finalizer is not None:
            self._finalizer.detach()

    # -- writing ----------------------------------------------------------------------------------
    def _write_root_attrs(self) -> None:
        f = self._h5
        assert f is not None
        cls = type(self.system)
        plugin, plugin_version = _plugin_of(self.system)
        a = f.attrs
        a[S.SCHEMA_ATTR] = S.SCHEMA
        a["system"] = self.system.name
        a["system_class"] = f"{cls.__module__}.{cls.__qualname__}"
        a["plugin"] = plugin
        a["plugin_version"] = plugin_version
        a["boundary"] = str(self.system.boundary)
        a["L"] = int(self.system.L)
        a["orbitals"] = self._orbitals
        a["dt"] = self.dt
        a["save_every"] = self.save_every
        a["t0"] = self.t0
        a["time_units"] = S.TIME_UNITS
        a["solver"] = self.solver
        a["scenario"] = self.scenario
        a["precision"] = self.precision
        a["compute_precision"] = "float64"
        a["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        a["n_trajectories"] = 0
        a["n_time"] = 0
        a["n_steps"] = 0
        a["batch_shape"] = S.dumps([])
        for k, v in self._meta_json.items():
            a[k] = v

    @property
    def _orbitals(self) -> int:
        return int(getattr(self.system, "orbitals", 1))

    def _time_chunk(self, L: int) -> int:
        N = L * self._orbitals
        per_snapshot = N * N * self._complex_dtype.itemsize
        tc = min(self.time_chunk, max(1, CHUNK_TARGET_BYTES // per_snapshot))
        if self.n_snapshots_expected is not None:
            tc = min(tc, self.n_snapshots_expected)
        return tc

    def _create_datasets(self, batch_shape: tuple[int, ...]) -> None:
        f = self._h5
        assert f is not None
        L = self.system.L
        n_traj = int(np.prod(batch_shape, dtype=np.int64)) if batch_shape else 1
        if n_traj < 1:
            raise ValueError(f"cannot write a trajectory with an empty batch {batch_shape}")
        n0 = self.n_snapshots_expected or 0
        tc = self._time_chunk(L)
        opts: dict[str, Any] = {}
        if self.compression is not None:
            opts["compression"] = self.compression
            if self.compression_opts is not None:
                opts["compression_opts"] = self.compression_opts
            opts["shuffle"] = True
        dims = {"site": ["trajectory", "time", "site"], "pair": ["trajectory", "time", "site", "site"]}
        grp = f.create_group(S.FIELDS_GROUP)
        for name in (*self.field_names, RHO):
            kind = kind_of(name)
            N = L * self._orbitals
            tail = (L,) if kind == "site" else (N, N)
            dtype = self._complex_dtype if name == RHO else self._real_dtype
            where = f if name == RHO else grp
            ds = where.create_dataset(
                name, shape=(n_traj, n0, *tail), maxshape=(n_traj, None, *tail), dtype=dtype,
                chunks=(1, tc, *tail), **opts,
            )
            ds.attrs["kind"] = kind
            ds.attrs["dims"] = S.dumps(dims[kind])
            ds.attrs["sample_varying"] = True
            ds.attrs["time_varying"] = True
        t = f.create_dataset(S.TIME_DATASET, shape=(n0,), maxshape=(None,), dtype="float64", chunks=(max(tc, 64),))
        t.attrs["units"] = S.TIME_UNITS
        t.attrs["sample_varying"] = False
        f.attrs["n_trajectories"] = n_traj
        f.attrs["batch_shape"] = S.dumps(list(batch_shape))
        self._batch_shape = batch_shape
        self._n_traj = n_traj

    def _datasets(self) -> list[h5py.Dataset]:
        f = self._h5
        assert f is not None
        return [f[S.FIELDS_GROUP][n] for n in self.field_names] + [f[RHO]]

    def append(self, chunk: State) -> None:
        """Append snapshots: a State with a leading time axis (fields `(n_t, *batch, L)`)."""
        if self._closed:
            raise RuntimeError(f"writer for {self.path} is closed")
        if not isinstance(chunk, State):
            raise TypeError(f"append takes a State, got {type(chunk).__name__}")
        if chunk.rho.ndim < 3:
            raise ValueError(f"append needs a leading time axis; got rho of shape {tuple(chunk.rho.shape)}")
        if set(chunk.fields) != set(self.field_names):
            raise ValueError(f"chunk has fields {sorted(chunk.fields)}; system '{self.system.name}' has {list(self.field_names)}")
        if chunk.L != self.system.L:
            raise ValueError(f"chunk has L={chunk.L}; system '{self.system.name}' has L={self.system.L}")
        if chunk.orbitals != self._orbitals:
            raise ValueError(f"chunk has {chunk.orbitals} orbital(s) per site (rho {tuple(chunk.rho.shape[-2:])}); "
                             f"system '{self.system.name}' has {self._orbitals}")
        n_t = int(chunk.rho.shape[0])
        batch = tuple(int(s) for s in chunk.rho.shape[1:-2])
        if self._h5 is None:
            self.open()
        try:
            if self._batch_shape is None:
                self._create_datasets(batch)
            elif batch != self._batch_shape:
                raise ValueError(f"chunk has batch shape {batch}; earlier chunks had {self._batch_shape}")
            if n_t == 0:
                return
            start, stop = self._count, self._count + n_t
            f = self._h5
            assert f is not None
            for name, ds in zip((*self.field_names, RHO), self._datasets()):
                t = chunk[name].detach()
                t = t.reshape(n_t, self._n_traj, *t.shape[1 + len(batch):])
                arr = t.cpu().numpy().swapaxes(0, 1)
                target = self._complex_dtype if name == RHO else self._real_dtype
                if ds.shape[1] < stop:
                    ds.resize(stop, axis=1)
                ds[:, start:stop] = np.ascontiguousarray(arr, dtype=target)
            tds = f[S.TIME_DATASET]
            if tds.shape[0] < stop:
                tds.resize((stop,))
            steps = np.arange(start, stop, dtype=np.float64) * self.save_every
            tds[start:stop] = self.t0 + steps * self.dt
            self._count = stop
        except BaseException:
            self.abort()
            raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._h5 is not None else "new")
        return f"TrajectoryWriter({str(self.path)!r}, system={self.system.name!r}, n_written={self._count}, {state})"


def simulate_to_file(
    system: System,
    state0: State,
    path: str | os.PathLike[str],
    dt: float,
    n_steps: int,
    save_every: int = 1,
    *,
    scenario: str | None = None,
    scenario_kwargs: Mapping[str, Any] | None = None,
    precision: S.Precision = "float64",
    compression: str | None = None,
    compression_opts: int | None = None,
    overwrite: bool = True,
    extra_attrs: Mapping[str, Any] | None = None,
    discard_steps: int = 0,
    **simulate_kwargs: Any,
) -> Path:
    """Integrate with `qcsurrogate.simulate` and stream the snapshots into an HDF5 file at `path`.

    `discard_steps` steps are integrated first and not stored (a transient): the file starts at
    t0 = discard_steps * dt and holds `n_steps` steps from there.

    Memory stays flat in `n_steps` and bounded in the ensemble size: snapshots are written in chunks
    of `chunk_size`, by default as many as fit 64 MiB (`snapshots_per_write`, at most 256).
    The ground truth is computed in float64 whatever the storage `precision`. Extra keyword
    arguments go to `simulate` (`solver`, `device`, `compile`, `threads`, `progress`, `chunk_size`);
    `compile="auto"` (the default) is decided on the whole run, transient included, and the choice is
    recorded in the file's `simulation_options`.
    Returns `path`; on any error nothing is left at `path`.
    """
    from ..solvers import get_solver, simulate

    dtype = simulate_kwargs.pop("dtype", None)
    if dtype is not None and dtype != torch.float64:
        raise ValueError(f"ground truth is computed in float64; got dtype={dtype} (use precision= for storage)")
    if "sink" in simulate_kwargs:
        raise TypeError("simulate_to_file provides its own sink")
    from ..execution import resolve_compile

    solver = get_solver(simulate_kwargs.get("solver", "rk4")).name
    if not (isinstance(n_steps, int) and n_steps >= 0):
        raise ValueError(f"n_steps must be an integer >= 0, got {n_steps!r}")
    if not (isinstance(save_every, int) and save_every >= 1) or n_steps % save_every:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of save_every ({save_every}) >= 1")
    if not (isinstance(discard_steps, int) and discard_steps >= 0):
        raise ValueError(f"discard_steps must be an integer >= 0, got {discard_steps!r}")
    device = str(simulate_kwargs.get("device") or state0.device)
    # `auto` is decided once for the transient and the stored window together (the whole run's length).
    simulate_kwargs["compile"], _ = resolve_compile(
        simulate_kwargs.get("compile", "auto"), device, int(state0.rho.shape[-1]), max(1, int(state0.batch_shape.numel())),
        discard_steps + n_steps)
    options = {"solver": solver, "device": device, "compile": simulate_kwargs["compile"]}
    if discard_steps:
        warm = {k: v for k, v in simulate_kwargs.items()
                if k in ("solver", "device", "compile", "threads", "steps_per_call")}
        state0 = simulate(system, state0, dt, discard_steps, discard_steps, dtype=torch.float64, **warm).index(-1)
    writer = TrajectoryWriter(
        path,
        system,
        dt=dt,
        t0=discard_steps * dt,
        save_every=save_every,
        n_snapshots_expected=n_steps // save_every + 1,
        scenario=scenario,
        scenario_kwargs=scenario_kwargs,
        precision=precision,
        compression=compression,
        compression_opts=compression_opts,
        solver=solver,
        simulation_options=options,
        extra_attrs=extra_attrs,
        overwrite=overwrite,
    )
    simulate_kwargs.setdefault("chunk_size", snapshots_per_write(state0))
    with writer:
        simulate(system, state0, dt, n_steps, save_every, dtype=torch.float64, sink=writer, **simulate_kwargs)
    return writer.path
