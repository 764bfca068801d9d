"""Editing a copy of a good trajectory file, for the reader's refusal tests."""

from __future__ import annotations

from pathlib import Path

import h5py


def copy_and_edit(good: Path, tmp_path: Path, fn) -> Path:
    """Copy `good` to `tmp_path/bad.h5` and apply `fn(h5py.File)` to the copy."""
    bad = tmp_path / "bad.h5"
    bad.write_bytes(good.read_bytes())
    with h5py.File(bad, "r+") as h:
        fn(h)
    return bad
