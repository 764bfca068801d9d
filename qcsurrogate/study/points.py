"""A study's points: the product of its axes, each a validated run config with a readable directory name.

Every point's run config is built and validated before anything is written, so a typo in a dotted path
or a bad value is one clean error naming the point, the path and the study key that set it.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import parse_config
from ..pipeline.config import RunConfig
from ..pipeline.ledger import config_digest
from ..system import ConfigError
from .config import StudyConfig

RESERVED_LABELS = ("case", "seed")


@dataclass(frozen=True)
class Axis:
    """One factor of the product: a label (directory level) and its entries, each the directory value, the
    table values it fills (`case` or the swept paths) and the overrides it applies."""

    label: str
    entries: list[tuple[str, dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True)
class Point:
    """One run of the study: `group` names it without the seed (`model_step=0.64`), `name` with it."""

    group: str
    seed: int
    values: dict[str, Any]
    """Table column -> value: `case` and every swept or zipped dotted path (not the seed)."""
    config: RunConfig = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.group}/seed={self.seed}"

    @property
    def directory(self) -> Path:
        return Path(self.config.output_dir)


def short_labels(paths: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each path that no other path (nor 'case', 'seed') shares."""
    out: dict[str, str] = {}
    for p in paths:
        parts = p.split(".")
        for n in range(1, len(parts) + 1):
            label = ".".join(parts[-n:])
            clash = label in RESERVED_LABELS or any(
                q != p and ".".join(q.split(".")[-n:]) == label for q in paths)
            if not clash or n == len(parts):
                out[p] = label
                break
    return out


def dir_value(v: Any) -> str:
    """A value as a directory name part: numbers as written (0.64, 1e-05), lists joined by '+'."""
    if isinstance(v, bool):
        s = str(v).lower()
    elif v is None:
        s = "null"
    elif isinstance(v, (int, float)):
        s = repr(v)
    elif isinstance(v, (list, tuple)):
        s = "+".join(dir_value(x) for x in v) or "none"
    elif isinstance(v, dict):
        s = "cfg-" + config_digest(v)[:8]
    else:
        s = str(v)
    s = re.sub(r"[^A-Za-z0-9._+=-]", "_", s).lstrip(".")
    return s or "_"


def axes(study: StudyConfig) -> list[Axis]:
    """The study's axes in directory order: cases, one per sweep key, the zip group (seeds come last)."""
    labels = short_labels([*study.sweep, *list(study.zip)[:1]])
    out = []
    if study.cases:
        out.append(Axis("case", [(dir_value(n), {"case": n}, dict(o)) for n, o in study.cases.items()]))
    for path, values in study.sweep.items():
        out.append(Axis(labels[path], [(dir_value(v), {path: v}, {path: v}) for v in values]))
    if study.zip:
        first = next(iter(study.zip))
        rows = [{p: vals[i] for p, vals in study.zip.items()} for i in range(len(study.zip[first]))]
        out.append(Axis(labels[first], [(dir_value(r[first]), r, r) for r in rows]))
    return out


def set_path(cfg: dict[str, Any], path: str, value: Any) -> None:
    """Put `value` at dotted `path` of a nested mapping, creating missing sections; replaces what was there."""
    node = cfg
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        elif not isinstance(nxt, dict):
            raise ConfigError(f"cannot set '{path}': '{'.'.join(parts[: i + 1])}' is {nxt!r}, not a section of keys")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def _origins(study: StudyConfig) -> dict[str, str]:
    out = {p: "set" for p in study.set}
    for name, overrides in study.cases.items():
        for p in overrides:
            out.setdefault(p, f"cases.{name}")
    out.update({p: "sweep" for p in study.sweep})
    out.update({p: "zip" for p in study.zip})
    out.update({p: "seed_fields" for p in study.seed_fields})
    return out


def _trace_to_study(message: str, study: StudyConfig) -> str:
    """Append to each `loc: msg` line the study key that set that location, if any."""
    origins = _origins(study)
    lines = message.splitlines()
    for i, line in enumerate(lines[1:], 1):
        loc = line.strip().split(":", 1)[0]
        hits = [p for p in origins if loc == p or loc.startswith(p + ".")]
        if hits:
            p = max(hits, key=len)
            lines[i] = f"{line}  [set by the study's {origins[p]}: '{p}']"
    return "\n".join(lines)


def expand(study: StudyConfig, base: dict[str, Any], output_dir: Path, *, study_source: str = "<study>",
           base_source: str = "<base>", device: str | None = None) -> list[Point]:
    """Every point of `study` (axes product, then seeds), its run config validated; ConfigError otherwise."""
    study_axes = axes(study)
    points: list[Point] = []
    failures: list[tuple[str, str]] = []
    names: dict[str, tuple[Any, ...]] = {}
    for combo in itertools.product(*(a.entries for a in study_axes)):
        group = "/".join(f"{a.label}={d}" for a, (d, _, _) in zip(study_axes, combo)) or "base"
        values = {k: v for _, shown, _ in combo for k, v in shown.items()}
        if group in names:
            raise ConfigError(f"{study_source}: two points are both named '{group}' (values that differ only in "
                              "characters a directory name cannot hold); make them distinguishable")
        names[group] = combo
        for seed in study.seeds:
            raw = copy.deepcopy(base)
            try:
                for path, value in study.set.items():
                    set_path(raw, path, value)
                for _, _, overrides in combo:
                    for path, value in overrides.items():
                        set_path(raw, path, value)
                for path in study.seed_fields:
                    set_path(raw, path, seed)
            except ConfigError as err:
                raise ConfigError(f"{study_source}: {err}") from None
            name = f"{group}/seed={seed}"
            raw["name"] = f"{study.name}: {name}"
            raw["output_dir"] = str(output_dir / "points" / group / f"seed={seed}")
            if device is not None:
                raw["device"] = device
            try:
                cfg = parse_config(raw, RunConfig, source=f"the run config of point '{name}' (base {base_source}, "
                                                          f"study {study_source})")
            except ConfigError as err:
                failures.append((name, _trace_to_study(str(err), study)))
                continue
            points.append(Point(group, seed, values, cfg))
    if failures:
        name, msg = failures[0]
        total = len(failures) + len(points)
        if len(failures) == total and len({m.split("\n", 1)[-1] for _, m in failures}) == 1:
            msg += f"\n(the same in all {total} points)"
        elif len(failures) > 1:
            msg += f"\n(and {len(failures) - 1} more of the {total} points fail: " + ", ".join(
                n for n, _ in failures[1:6]) + (", ..." if len(failures) > 6 else "") + ")"
        raise ConfigError(msg)
    return points
