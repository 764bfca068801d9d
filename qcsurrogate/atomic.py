"""Atomic file writes: a file appears at its path complete, or not at all.

Everything is written to a temporary file in the *same directory* (so the final rename never
crosses a filesystem), flushed and fsync'ed, then renamed over the target with `os.replace`
(or hard-linked, when overwriting is forbidden, so an existing file is never clobbered even by a
concurrent writer). On any exception the temporary file is removed. The directory entry is
fsync'ed after the rename where the platform allows it.

Temporary files are named ``.<name>.<random>.tmp`` next to the target; a crashed process (a
killed one, not an exception) can leave one behind, and it is safe to delete.

Use `atomic_path` for libraries that write by path (h5py, ``torch.save``, safetensors),
`atomic_write` for a file object, and the one-call helpers for bytes, text and JSON.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "AtomicPath",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_path",
    "temp_path_for",
]

TEMP_SUFFIX = ".tmp"


def temp_path_for(path: str | os.PathLike[str]) -> Path:
    """A fresh, unused temporary name next to `path` (``.<name>.<random>.tmp``)."""
    p = Path(path)
    return p.with_name(f".{p.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file (or, where supported, a directory) by path."""
    flags = os.O_RDONLY
    if os.path.isdir(path):
        flags |= getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if os.path.isdir(path):
            return  # platforms (Windows) that cannot open directories
        raise
    try:
        os.fsync(fd)
    except OSError as err:
        if not (os.path.isdir(path) and err.errno in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EACCES)):
            raise
    finally:
        os.close(fd)


class AtomicPath:
    """A reserved temporary path that becomes `path` on `commit()` or vanishes on `discard()`.

    As a context manager it commits when the block succeeds and discards when it raises::

        with AtomicPath("run/model.safetensors") as tmp:
            save_file(tensors, tmp.tmp_path)

    With ``overwrite=False`` an existing `path` raises `FileExistsError`, both up front and at
    commit (the commit hard-links, which fails rather than replaces if the name was taken since).
    """

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = True, make_parents: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        if make_parents:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if not overwrite and self.path.exists():
            raise FileExistsError(f"{self.path} already exists (refusing to overwrite it)")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"directory {self.path.parent} does not exist (cannot write {self.path.name})")
        # Reserve a unique name with O_EXCL; mode 0o666 lets the umask decide the permissions,
        # as for any ordinarily created file.
        for _ in range(100):
            tmp = temp_path_for(self.path)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            os.close(fd)
            break
        else:  # pragma: no cover - 100 collisions of 48 random bits
            raise FileExistsError(f"could not reserve a temporary file next to {self.path}")
        self.tmp_path = tmp
        self._done = False

    @property
    def done(self) -> bool:
        """True once committed or discarded."""
        return self._done

    def commit(self) -> Path:
        """fsync the temporary file and move it to `path` atomically; returns `path`."""
        if self._done:
            raise RuntimeError(f"atomic write of {self.path} already finished")
        try:
            fsync_path(self.tmp_path)
            if self.overwrite:
                os.replace(self.tmp_path, self.path)
            else:
                self._link_no_clobber()
        except BaseException:
            self.discard()
            raise
        self._done = True
        with contextlib.suppress(OSError):
            fsync_path(self.path.parent)
        return self.path

    def _link_no_clobber(self) -> None:
        try:
            os.link(self.tmp_path, self.path)
        except FileExistsError:
            raise FileExistsError(f"{self.path} already exists (refusing to overwrite it)") from None
        except OSError:
            # Filesystems without hard links: check-then-replace (not race-free, but best effort).
            if self.path.exists():
                raise FileExistsError(f"{self.path} already exists (refusing to overwrite it)") from None
            os.replace(self.tmp_path, self.path)
            return
        os.unlink(self.tmp_path)

    def discard(self) -> None:
        """Remove the temporary file (idempotent)."""
        self._done = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)

    def __enter__(self) -> AtomicPath:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def __repr__(self) -> str:
        return f"AtomicPath({str(self.path)!r}, tmp={self.tmp_path.name!r}, done={self._done})"


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, overwrite: bool = True, make_parents: bool = False
) -> Iterator[Path]:
    """Yield a temporary path to write to; it is moved to `path` only if the block succeeds."""
    ap = AtomicPath(path, overwrite=overwrite, make_parents=make_parents)
    with ap:
        yield ap.tmp_path


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str | None = None,
    overwrite: bool = True,
    make_parents: bool = False,
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing (`mode` "w", "wt" or "wb"); it replaces `path` on success."""
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_write supports modes 'w', 'wt' and 'wb', not {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    ap = AtomicPath(path, overwrite=overwrite, make_parents=make_parents)
    try:
        with open(ap.tmp_path, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        ap.discard()
        raise
    ap.commit()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, **kwargs: Any) -> Path:
    with atomic_write(path, "wb", **kwargs) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", **kwargs: Any) -> Path:
    with atomic_write(path, "w", encoding=encoding, **kwargs) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(
    path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2, sort_keys: bool = False, **kwargs: Any
) -> Path:
    """Serialise `obj` first (so a non-serialisable object never touches the disk), then write it."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=True) + "\n"
    return atomic_write_text(path, text, **kwargs)
