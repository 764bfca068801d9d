"""A trajectory data set written as shards: one file per slice of trajectories, one master file over them.

    OUT.h5                               master: HDF5 virtual datasets over the shards (+ time, attrs)
    OUT.shards/plan.json                 what the shards are slices of (written first, checked on resume)
    OUT.shards/shard-00000-of-00004.h5   trajectories [start, stop) of the ensemble, a complete file each

Every shard is an ordinary trajectory file (written atomically, readable on its own); the master is
an ordinary trajectory file to `open_trajectory`, whose datasets are HDF5 virtual datasets mapping
trajectory ranges to the shards by paths relative to the master's directory (move `OUT.h5` and
`OUT.shards/` together). See docs/trajectory-format.md.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..atomic import AtomicPath, atomic_write_json
from ..state import RHO, State
from . import schema as S

PLAN_FORMAT = "qcsurrogate.shards/1"
PLAN_FILE = "plan.json"


def shard_dir(path: str | os.PathLike[str]) -> Path:
    """`OUT.shards/` next to the master `OUT.h5`."""
    p = Path(path)
    return p.with_name(p.name.removesuffix(".h5") + ".shards")


def shard_name(index: int, n_shards: int) -> str:
    return f"shard-{index:05d}-of-{n_shards:05d}.h5"


def shard_path(path: str | os.PathLike[str], index: int, n_shards: int) -> Path:
    return shard_dir(path) / shard_name(index, n_shards)


def state_digest(state: State) -> str:
    """SHA-256 of an initial ensemble's numbers (fields in name order, then rho): shards of a resumed
    generation must be slices of the same states."""
    h = hashlib.sha256()
    for name in sorted(state.fields):
        h.update(name.encode())
        h.update(np.ascontiguousarray(state.fields[name].detach().cpu().numpy()).tobytes())
    h.update(np.ascontiguousarray(state.rho.detach().cpu().numpy()).tobytes())
    return h.hexdigest()


def make_plan(identity: Mapping[str, Any], state0: State, ranges: Sequence[tuple[int, int]],
              storage: Mapping[str, Any]) -> dict[str, Any]:
    """The plan of a sharded generation: what the data are (`identity`, the initial states' digest),
    how they are stored (`storage`: precision, compression) and which trajectories each shard holds."""
    return {
        "format": PLAN_FORMAT,
        "identity": json.loads(json.dumps(identity, sort_keys=True, default=str)),
        "state0_sha256": state_digest(state0),
        "n_trajectories": int(ranges[-1][1]),
        "ranges": [[int(a), int(b)] for a, b in ranges],
        "storage": dict(storage),
    }


def read_plan(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The plan in `OUT.shards/plan.json`, or None if there is none (or it is unreadable: then it is redone)."""
    p = shard_dir(path) / PLAN_FILE
    try:
        plan = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) and plan.get("format") == PLAN_FORMAT else None


def write_plan(path: str | os.PathLike[str], plan: Mapping[str, Any]) -> None:
    d = shard_dir(path)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_json(d / PLAN_FILE, dict(plan))


def remove_shards(path: str | os.PathLike[str]) -> None:
    """Delete `OUT.shards/` (only the files this layout writes, then the directory if it is empty)."""
    d = shard_dir(path)
    if not d.is_dir():
        return
    for f in d.iterdir():
        if f.name == PLAN_FILE or (f.name.startswith(("shard-", ".shard-")) and f.name.endswith((".h5", ".tmp"))):
            f.unlink(missing_ok=True)
    try:
        d.rmdir()
    except OSError:
        pass  # someone else's file is in there: leave it


def remove_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary shard files a killed process left behind (`.shard-*.tmp`); returns them."""
    d = shard_dir(path)
    if not d.is_dir():
        return []
    gone = [f for f in d.iterdir() if f.name.startswith(".shard-") and f.name.endswith(".tmp")]
    for f in gone:
        f.unlink(missing_ok=True)
    return gone


def shard_is_complete(shard: Path, plan: Mapping[str, Any], index: int, n_time: int) -> str | None:
    """None if `shard` is a finished, valid shard `index` of `plan` with `n_time` snapshots; else why not."""
    from .reader import open_trajectory

    if not shard.exists():
        return "missing"
    a, b = plan["ranges"][index]
    try:
        with open_trajectory(shard) as tr:
            info = tr.extra.get("shard", {})
            if tr.n_traj != b - a or tr.n_time != n_time:
                return f"holds {tr.n_traj} x {tr.n_time}, expected {b - a} x {n_time}"
            if info.get("plan_sha256") != plan_digest(plan) or info.get("index") != index:
                return "belongs to another plan"
    except (S.TrajectoryFormatError, OSError) as err:
        return f"unreadable ({err})"
    return None


def plan_digest(plan: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


def write_master(path: str | os.PathLike[str], plan: Mapping[str, Any], *, overwrite: bool = True,
                 extra_attrs: Mapping[str, Any] | None = None, simulation_options: Mapping[str, Any] | None = None,
                 batch_shape: Sequence[int] | None = None) -> Path:
    """Write the master file over the finished shards of `plan` (atomically) and return its path.

    Root attributes are shard 0's with the whole ensemble's counts; `extra` gets `extra_attrs` and a
    `shards` entry (directory, files, ranges). The time axis is copied; every variable is a virtual
    dataset whose trajectory ranges map to the shards' datasets (missing shards read as NaN, and
    `open_trajectory` refuses a master whose shard files are missing).
    """
    path = Path(path)
    ranges = [tuple(r) for r in plan["ranges"]]
    n_shards, n_traj = len(ranges), int(plan["n_trajectories"])
    files = [shard_path(path, i, n_shards) for i in range(n_shards)]
    rel = [os.path.relpath(f, path.parent) for f in files]
    with h5py.File(files[0], "r") as f0:
        attrs = dict(f0.attrs.items())
        names = [RHO, *(f"{S.FIELDS_GROUP}/{n}" for n in json.loads(attrs["field_names"]))]
        specs = {n: (f0[n].shape[1:], f0[n].dtype, dict(f0[n].attrs.items())) for n in names}
        time = f0[S.TIME_DATASET][()]
        time_attrs = dict(f0[S.TIME_DATASET].attrs.items())
    extra = json.loads(attrs.get("extra", "{}"))
    extra.pop("shard", None)
    extra.update(dict(extra_attrs or {}))
    extra["shards"] = {"layout": PLAN_FORMAT, "directory": os.path.relpath(shard_dir(path), path.parent),
                       "files": rel, "ranges": [list(r) for r in ranges], "plan_sha256": plan_digest(plan)}
    with AtomicPath(path, overwrite=overwrite) as ap:
        with h5py.File(ap.tmp_path, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            f.attrs["n_trajectories"] = n_traj
            f.attrs["batch_shape"] = S.dumps(list(batch_shape) if batch_shape else [n_traj])
            f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            f.attrs["extra"] = S.dumps(extra, where="extra_attrs")
            if simulation_options is not None:
                f.attrs["simulation_options"] = S.dumps(dict(simulation_options), where="simulation_options",
                                                        lenient=True)
            f.create_group(S.FIELDS_GROUP)
            for name, (tail, dtype, ds_attrs) in specs.items():
                layout = h5py.VirtualLayout(shape=(n_traj, *tail), dtype=dtype)
                for (a, b), src in zip(ranges, rel):
                    layout[a:b] = h5py.VirtualSource(src, name, shape=(b - a, *tail))
                fill = np.nan if dtype.kind == "f" else complex(np.nan, np.nan)
                ds = f.create_virtual_dataset(name, layout, fillvalue=fill)
                for k, v in ds_attrs.items():
                    ds.attrs[k] = v
            t = f.create_dataset(S.TIME_DATASET, data=time)
            for k, v in time_attrs.items():
                t.attrs[k] = v
    return path


def shard_files(path: str | os.PathLike[str]) -> list[Path]:
    """The shard files a master file reads (from its virtual datasets); [] for an ordinary file."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        ds = f.get(RHO)
        if not isinstance(ds, h5py.Dataset) or not ds.is_virtual:
            return []
        return [path.parent / s.file_name for s in ds.virtual_sources()]
