"""What a run directory already has, and whether it is still what the config asks for.

Every stage of a run records, in `stages.json`, the digests of exactly the inputs it was made from
(config sections, and the digests of the upstream artifacts it read) and a fingerprint of each file it
wrote (SHA-256, size, mtime). `Ledger.status` compares a stage's record with the inputs the current
config implies and answers `current`, `stale` or `missing`, with the reason. An artifact's own digest
(what downstream stages record as their input) is the hash of its files' contents, so a stage redone
with byte-identical output leaves everything downstream current.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import __version__
from ..artifacts import ArtifactError, LedgerFile, read_json
from ..atomic import atomic_write_json
from .layout import RunLayout

State = Literal["current", "stale", "missing"]
LEDGER_VERSION = 1
_CHUNK = 1 << 22


def config_digest(obj: Any) -> str:
    """Digest of a JSON-able value (a config section), independent of key order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Status:
    stage: str
    state: State
    reason: str

    def __str__(self) -> str:
        return f"{self.stage}: {self.state} ({self.reason})"


class Ledger:
    """The record of a run directory's stages (`stages.json`), read and written atomically."""

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout
        self.path = layout.ledger
        self.stages: dict[str, dict[str, Any]] = {}
        self.reload()

    def reload(self) -> None:
        """Read `stages.json` again (another process may have written it)."""
        self.stages = {}
        if self.path.exists():
            try:
                data = read_json(self.path, LedgerFile)
            except ArtifactError as err:
                raise ArtifactError(self.path, f"{err.problem}; it records what every stage of the run was made "
                                               "from: remove it to redo them all") from None
            self.stages = data.stages if data.version == LEDGER_VERSION else {}

    def _save(self) -> None:
        atomic_write_json(self.path, {"version": LEDGER_VERSION, "stages": self.stages}, sort_keys=True)

    # -- the one decision ------------------------------------------------------------------------
    def status(self, stage: str, inputs: dict[str, str]) -> Status:
        rec = self.stages.get(stage)
        if rec is None:
            return Status(stage, "missing", "not made yet")
        changed = changed_inputs(rec["inputs"], inputs)
        if changed:
            return Status(stage, "stale", "changed: " + ", ".join(changed))
        if not rec.get("finished"):
            return Status(stage, "missing", "started but not finished")
        for rel, fp in rec["outputs"].items():
            path = self.layout.root / rel
            if not path.exists():
                return Status(stage, "missing", f"{rel} is gone")
            if not self._unchanged(path, fp):
                return Status(stage, "stale", f"{rel} was modified after it was written")
        return Status(stage, "current", "up to date")

    def _unchanged(self, path: Path, fp: dict[str, Any]) -> bool:
        st = path.stat()
        if st.st_size == fp["size"] and st.st_mtime_ns == fp["mtime_ns"]:
            return True
        if st.st_size != fp["size"] or file_sha256(path) != fp["sha256"]:
            return False
        fp["mtime_ns"] = st.st_mtime_ns  # touched, not changed: remember the new time
        self._save()
        return True

    # -- recording -------------------------------------------------------------------------------
    def start(self, stage: str, inputs: dict[str, str]) -> None:
        """Mark a stage as begun with these inputs (what `--resume` checks a checkpoint against)."""
        self.stages[stage] = {"inputs": dict(inputs), "outputs": {}, "finished": None, "started": _now()}
        self._save()

    def record(self, stage: str, inputs: dict[str, str], outputs: list[Path], context: dict[str, Any] | None = None) -> None:
        """A stage finished: its inputs and a fingerprint of every file it wrote."""
        fps = {}
        for p in outputs:
            st = Path(p).stat()
            fps[self.layout.relative(p)] = {"sha256": file_sha256(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        prev = self.stages.get(stage, {})
        self.stages[stage] = {
            "inputs": dict(inputs),
            "outputs": fps,
            "started": prev.get("started") if prev.get("inputs") == inputs else None,
            "finished": _now(),
            "qcsurrogate": __version__,
            **({"context": context} if context else {}),
        }
        self._save()

    def forget(self, stage: str) -> None:
        if self.stages.pop(stage, None) is not None:
            self._save()

    def recorded_inputs(self, stage: str) -> dict[str, str] | None:
        rec = self.stages.get(stage)
        return None if rec is None else dict(rec["inputs"])

    def digest(self, stage: str) -> str:
        """Identity of a finished stage's artifact: the hash of its files' contents."""
        rec = self.stages.get(stage)
        if rec is None or not rec.get("finished"):
            return "none"
        return config_digest({rel: fp["sha256"] for rel, fp in rec["outputs"].items()})


def changed_inputs(recorded: dict[str, str], wanted: dict[str, str]) -> list[str]:
    """Names of the inputs that differ (added, removed or changed), e.g. ['data', 'training']."""
    return sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
