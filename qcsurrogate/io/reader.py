"""Lazy, validating reading of trajectory files (`open_trajectory`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ..graph import DependencyGraph
from ..state import RHO, State, complex_dtype_of
from . import schema as S

Index = int | slice | Sequence[int] | np.ndarray


def _open_h5(path: Path) -> h5py.File:
    if not path.exists():
        raise FileNotFoundError(f"trajectory file not found: {path}")
    if path.is_dir():
        raise TrajectoryFormatErrorFor(path, "is a directory, not a file")
    try:
        if not h5py.is_hdf5(path):
            raise TrajectoryFormatErrorFor(path, "is not an HDF5 file (no HDF5 signature found)")
        return h5py.File(path, "r")
    except S.TrajectoryFormatError:
        raise
    except OSError as err:
        raise TrajectoryFormatErrorFor(path, f"cannot be opened as HDF5; it may be truncated or corrupted ({err})") from None


def TrajectoryFormatErrorFor(path: Path, msg: str) -> S.TrajectoryFormatError:  # noqa: N802 - error factory
    return S.TrajectoryFormatError(f"{path}: {msg}")


def _normalize_index(idx: Index, n: int, what: str) -> Any:
    """An h5py-compatible selector for one axis: a non-negative int, a slice or an int array."""
    if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
        i = int(idx)
        if not -n <= i < n:
            raise IndexError(f"{what} index {i} out of range for {n} {what}s")
        return i % n
    if isinstance(idx, slice):
        start, stop, step = idx.indices(n)
        if step > 0:
            return slice(start, stop, step)
        return np.arange(start, stop, step, dtype=np.int64)  # h5py reads only increasing slices
    arr = np.asarray(idx)
    if arr.shape == (0,) and arr.dtype != bool:
        arr = arr.astype(np.int64)  # numpy makes [] a float64 array; it selects nothing
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"boolean {what} mask must have shape ({n},), got {arr.shape}")
        arr = np.flatnonzero(arr)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise IndexError(f"{what} index must be an int, a slice or a 1-D sequence of ints; got {idx!r}")
    if arr.size and (arr.min() < -n or arr.max() >= n):
        raise IndexError(f"{what} indices out of range for {n} {what}s: {arr.tolist()}")
    return (arr % n).astype(np.int64)


def _position(selector: Any, k: int) -> int:
    """The file index of the k-th element a normalised selector picked."""
    if isinstance(selector, int):
        return selector
    if isinstance(selector, slice):
        return selector.start + k * selector.step
    return int(selector[k])


def check_finite(path: Path, name: str, data: np.ndarray, traj_sel: Any, time_sel: Any, times: np.ndarray | None,
                 has_traj_axis: bool = True) -> None:
    """A NaN or Inf read from a trajectory file is a format error naming the file, the variable, and where
    (trajectory and snapshot) it first appears in what was read: the ground truth never holds one."""
    finite = np.isfinite(data.real) & np.isfinite(data.imag) if np.iscomplexobj(data) else np.isfinite(data)
    if finite.all():
        return
    axes = list(np.unravel_index(int(np.argmin(finite)), finite.shape))
    traj = _position(traj_sel, int(axes.pop(0))) if has_traj_axis else _position(traj_sel, 0)
    snap = _position(time_sel, int(axes.pop(0)) if not isinstance(time_sel, int) else 0)
    when = f", t = {times[snap]:g}" if times is not None and 0 <= snap < len(times) else ""
    raise S.TrajectoryFormatError(f"{path}: '{name}' holds non-finite values (first in what was read: trajectory "
                                  f"{traj}, snapshot {snap}{when}); the ground truth never does, so the file is "
                                  "damaged or was made by a diverging integration")


class Trajectory:
    """A trajectory file opened for lazy reading; validated on open.

    Nothing but metadata and the time axis is read until you ask: `state(i, slice(0, 100))`
    reads one window of one trajectory. Use as a context manager (or call `close()`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._f = _open_h5(self.path)
        try:
            self._validate()
        except BaseException:
            self._f.close()
            raise

    # -- validation -----------------------------------------------------------------------------
    def _err(self, msg: str) -> S.TrajectoryFormatError:
        return TrajectoryFormatErrorFor(self.path, msg)

    def _validate(self) -> None:
        f = self._f
        try:
            raw = dict(f.attrs.items())
        except OSError as err:
            raise self._err(f"cannot read root attributes; the file may be corrupted ({err})") from None
        if S.SCHEMA_ATTR not in raw:
            found = ", ".join(sorted(raw)) or "none"
            raise self._err(
                f"is not a qcsurrogate trajectory file: the root attribute '{S.SCHEMA_ATTR}' is missing "
                f"(root attributes found: {found})"
            )
        schema = S.decode_attr(S.SCHEMA_ATTR, raw[S.SCHEMA_ATTR])
        name, _, ver = str(schema).partition("/")
        if name != S.SCHEMA_NAME or not ver.isdigit():
            raise self._err(f"has schema '{schema}', not a '{S.SCHEMA_NAME}/<version>' trajectory")
        if int(ver) != S.SCHEMA_VERSION:
            hint = " (written by a newer qcsurrogate; upgrade to read it)" if int(ver) > S.SCHEMA_VERSION else ""
            raise self._err(
                f"has trajectory schema version {ver}; this qcsurrogate reads version {S.SCHEMA_VERSION}{hint}"
            )
        attrs: dict[str, Any] = {}
        for key, value in raw.items():
            try:
                attrs[key] = S.decode_attr(key, value)
            except S.TrajectoryFormatError as err:
                raise self._err(str(err)) from None
        missing = [k for k in S.REQUIRED_ATTRS if k not in attrs]
        if missing:
            raise self._err(f"lacks required root attribute(s) {missing} for schema {S.SCHEMA}")
        for key, typ in S.REQUIRED_ATTRS.items():
            try:
                attrs[key] = S.check_attr_type(key, attrs[key], typ)
            except S.TrajectoryFormatError as err:
                raise self._err(str(err)) from None
        for key, (typ, default) in S.OPTIONAL_ATTRS.items():
            try:
                attrs[key] = S.check_attr_type(key, attrs.get(key, default), typ)
            except S.TrajectoryFormatError as err:
                raise self._err(str(err)) from None
        self._attrs = attrs
        prec = attrs["precision"]
        if prec not in S.PRECISIONS:
            raise self._err(f"has unknown storage precision '{prec}' (expected one of {sorted(S.PRECISIONS)})")
        fields = attrs["field_names"]
        if not fields or not all(isinstance(n, str) for n in fields) or RHO in fields:
            raise self._err(f"has an invalid 'field_names' attribute: {fields!r}")
        n_traj, n_time, L, d = attrs["n_trajectories"], attrs["n_time"], attrs["L"], attrs["orbitals"]
        if n_traj < 1 or n_time < 1 or L < 1:
            raise self._err(f"has empty dimensions: n_trajectories={n_traj}, n_time={n_time}, L={L}")
        if d < 1:
            raise self._err(f"has orbitals={d}; the number of orbitals per site must be at least 1")
        params = attrs.get("params")
        if isinstance(params, dict) and "L" in params and params["L"] != L:
            raise self._err(f"is inconsistent: the system parameters say L={params['L']!r}, the arrays L={L}")
        real_dt, cplx_dt = S.PRECISIONS[prec]
        expected = {f"{S.FIELDS_GROUP}/{n}": ((n_traj, n_time, L), real_dt) for n in fields}
        expected[RHO] = ((n_traj, n_time, L * d, L * d), cplx_dt)
        expected[S.TIME_DATASET] = ((n_time,), np.dtype("float64"))
        for key, (shape, dtype) in expected.items():
            if key not in f:
                raise self._err(f"lacks the required dataset '/{key}'")
            ds = f[key]
            if not isinstance(ds, h5py.Dataset):
                raise self._err(f"'/{key}' is not a dataset")
            if ds.shape != shape:
                why = (f" (rho is (L * orbitals) x (L * orbitals) = {L} * {d}; "
                       f"{'no orbitals attribute means 1' if 'orbitals' not in raw else 'from the orbitals attribute'})"
                       if key == RHO else "")
                raise self._err(f"dataset '/{key}' has shape {ds.shape}; the attributes imply {shape}{why}")
            if ds.dtype != dtype:
                raise self._err(f"dataset '/{key}' has dtype {ds.dtype}; precision '{prec}' implies {dtype}")
            if ds.is_virtual:  # a sharded data set's master: HDF5 would read a missing shard as fill values
                lost = sorted({s.file_name for s in ds.virtual_sources()
                               if not (self.path.parent / s.file_name).is_file()})
                if lost:
                    raise self._err(f"dataset '/{key}' reads shard file(s) that are missing: {lost[:3]}"
                                    f"{' ...' if len(lost) > 3 else ''} (relative to {self.path.parent})")
        if attrs["n_steps"] != (n_time - 1) * attrs["save_every"]:
            raise self._err(
                f"is inconsistent: n_steps={attrs['n_steps']} but (n_time - 1) * save_every = "
                f"{(n_time - 1) * attrs['save_every']}"
            )
        bshape = attrs["batch_shape"]
        if int(np.prod(bshape, dtype=np.int64)) != n_traj:
            raise self._err(f"is inconsistent: batch_shape {bshape} does not hold {n_traj} trajectories")
        try:
            times = f[S.TIME_DATASET][()]
        except OSError as err:
            raise self._err(f"cannot read '/time'; the file may be truncated or corrupted ({err})") from None
        expect_t = attrs["t0"] + np.arange(n_time, dtype=np.float64) * attrs["save_every"] * attrs["dt"]
        if not np.allclose(times, expect_t, rtol=1e-12, atol=1e-12 * max(1.0, abs(float(expect_t[-1])))):
            raise self._err("is inconsistent: '/time' does not match t0 + i * save_every * dt")
        self._times = times

    # -- metadata -------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """All root attributes, JSON ones decoded (a copy)."""
        return dict(self._attrs)

    @property
    def schema(self) -> str:
        return self._attrs[S.SCHEMA_ATTR]

    @property
    def n_traj(self) -> int:
        return self._attrs["n_trajectories"]

    @property
    def n_time(self) -> int:
        return self._attrs["n_time"]

    @property
    def L(self) -> int:
        """Number of lattice sites (the fields' last axis)."""
        return self._attrs["L"]

    @property
    def orbitals(self) -> int:
        """Orbitals per site `d`: rho is `(L*d) x (L*d)` (files without the attribute: 1)."""
        return self._attrs["orbitals"]

    @property
    def dt(self) -> float:
        return self._attrs["dt"]

    @property
    def save_every(self) -> int:
        return self._attrs["save_every"]

    @property
    def n_steps(self) -> int:
        return self._attrs["n_steps"]

    @property
    def times(self) -> np.ndarray:
        """Snapshot times `t0 + i * save_every * dt` (units hbar/t), shape (n_time,)."""
        return self._times.copy()

    @property
    def system_name(self) -> str:
        return self._attrs["system"]

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._attrs["params"])

    @property
    def graph_dict(self) -> dict[str, list[list[str]]]:
        return dict(self._attrs["graph"])

    @property
    def graph(self) -> DependencyGraph:
        """The stored dependency graph (needs the views it names to be registered)."""
        return DependencyGraph.from_dict(self._attrs["graph"])

    @property
    def scenario(self) -> str:
        return self._attrs["scenario"]

    @property
    def scenario_kwargs(self) -> dict[str, Any]:
        return dict(self._attrs["scenario_kwargs"])

    @property
    def precision(self) -> str:
        return self._attrs["precision"]

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(self._attrs["field_names"])

    @property
    def variables(self) -> tuple[str, ...]:
        """Variable names in State order: fields, then 'rho'."""
        return (*self.field_names, RHO)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The batch shape of the simulated state (the trajectory axis is its flattening)."""
        return tuple(self._attrs["batch_shape"])

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self._attrs["extra"])

    def dataset(self, name: str) -> h5py.Dataset:
        """The raw h5py dataset of a variable (for custom lazy access)."""
        if name == RHO:
            return self._f[RHO]
        if name in self.field_names:
            return self._f[S.FIELDS_GROUP][name]
        raise KeyError(f"no variable '{name}'; this file has {list(self.variables)}")

    # -- data -------------------------------------------------------------------------------------
    def state(
        self, traj_idx: Index = slice(None), time_slice: Index = slice(None), *, dtype: torch.dtype | None = torch.float64
    ) -> State:
        """Read a window lazily as a State.

        Shapes follow numpy indexing of `(n_traj, n_time, ...)`: `state(0)` has batch `(n_time,)`,
        `state(slice(None), 5)` has batch `(n_traj,)`, `state(0, 5)` is one snapshot. `dtype`
        is the real dtype of the result (float64 by default, whatever the storage precision;
        None keeps the stored precision).
        """
        self._check_open()
        ti = _normalize_index(traj_idx, self.n_traj, "trajectory")
        si = _normalize_index(time_slice, self.n_time, "time")
        arrays = {name: self._read(name, ti, si) for name in self.variables}
        rdt = dtype if dtype is not None else torch.float32 if self.precision == "float32" else torch.float64
        fields = {n: torch.from_numpy(np.ascontiguousarray(arrays[n])).to(rdt) for n in self.field_names}
        rho = torch.from_numpy(np.ascontiguousarray(arrays[RHO])).to(complex_dtype_of(rdt))
        return State._raw(fields, rho)

    def _read(self, name: str, ti: Any, si: Any) -> np.ndarray:
        ds = self.dataset(name)
        t_arr, s_arr = isinstance(ti, np.ndarray), isinstance(si, np.ndarray)
        # h5py wants list selectors increasing and allows one per read: read sorted unique
        # indices (a bounding slice for the time axis when both are lists), then reorder.
        t_sel, t_inv = np.unique(ti, return_inverse=True) if t_arr else (ti, None)
        s_sel, s_inv = np.unique(si, return_inverse=True) if s_arr else (si, None)
        s_off = None
        if t_arr and s_arr:
            if s_sel.size:
                s_off = int(s_sel[0])
                s_sel = slice(s_off, int(s_sel[-1]) + 1)
            else:
                s_sel = slice(0, 0)
        try:
            if t_arr and t_sel.size == 0:
                data = ds[0:0, s_sel]
            elif s_arr and not t_arr and s_sel.size == 0:
                data = ds[t_sel, 0:0]
            else:
                data = ds[t_sel, s_sel]
        except OSError as err:
            raise self._err(f"cannot read '{name}'; the file may be corrupted ({err})") from None
        time_axis = 0 if isinstance(ti, int) else 1
        if t_arr:
            data = np.take(data, t_inv.reshape(-1), axis=0)
        if s_arr:
            idx = s_inv.reshape(-1)
            if s_off is not None:
                idx = np.asarray(si, dtype=np.int64) - s_off
            data = np.take(data, idx, axis=time_axis)
        check_finite(self.path, name, data, ti, si, self._times, has_traj_axis=not isinstance(ti, int))
        return data

    def load(self, *, dtype: torch.dtype | None = torch.float64) -> State:
        """The whole file as one State with batch `(n_traj, n_time)`."""
        return self.state(slice(None), slice(None), dtype=dtype)

    def system(self):  # -> System
        """Rebuild the System that produced the file (its plugin must be installed)."""
        from ..registry import load_system

        return load_system(self.system_name, **self.params)

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable description (what `qcsurrogate inspect` prints)."""
        a = self._attrs
        variables = {}
        for name in self.variables:
            ds = self.dataset(name)
            variables[name] = {
                "shape": list(ds.shape),
                "dtype": str(ds.dtype),
                "chunks": list(ds.chunks) if ds.chunks else None,
                "compression": ds.compression,
            }
        t = self._times
        return {
            "path": str(self.path),
            "size_bytes": self.path.stat().st_size,
            "schema": a[S.SCHEMA_ATTR],
            "system": a["system"],
            "system_class": a["system_class"],
            "plugin": a.get("plugin", ""),
            "plugin_version": a.get("plugin_version", ""),
            "params": a["params"],
            "boundary": a["boundary"],
            "graph": a["graph"],
            "scenario": a["scenario"],
            "scenario_kwargs": a["scenario_kwargs"],
            "n_trajectories": a["n_trajectories"],
            "batch_shape": a["batch_shape"],
            "n_time": a["n_time"],
            "L": a["L"],
            "orbitals": a["orbitals"],
            "dt": a["dt"],
            "save_every": a["save_every"],
            "n_steps": a["n_steps"],
            "t_start": float(t[0]),
            "t_end": float(t[-1]),
            "time_units": a["time_units"],
            "solver": a["solver"],
            "simulation_options": a["simulation_options"],
            "precision": a["precision"],
            "compute_precision": a["compute_precision"],
            "variables": variables,
            "created": a["created"],
            "versions": a["versions"],
            "extra": a["extra"],
        }

    # -- lifecycle ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if not self._f:
            raise ValueError(f"trajectory file {self.path} is closed")

    def close(self) -> None:
        if self._f:
            self._f.close()

    def __enter__(self) -> Trajectory:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_traj

    def __repr__(self) -> str:
        where = "closed" if not self._f else f"n_traj={self.n_traj}, n_time={self.n_time}, L={self.L}"
        return f"Trajectory({str(self.path)!r}, system={self.system_name!r}, {where})"


def open_trajectory(path: str | os.PathLike[str]) -> Trajectory:
    """Open and validate a trajectory file; raises TrajectoryFormatError if it is not a valid one."""
    return Trajectory(path)
