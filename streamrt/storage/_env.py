"""The data directory: its lock, its on-disk format version, and the LMDB environment.

One process owns a data directory, through an ``flock`` on ``LOCK`` (the kernel releases it
even after ``kill -9``, which a PID file would not survive); the holder writes its PID there so
a refused process can say who holds it. The environment is opened in the owning process after
any fork, with ``sync=True`` unless the caller asked for ``durability="none"`` (tests and
benchmarks only), and ``reader_check()`` clears reader slots left by killed processes.

The map size grows on demand. LMDB only allows ``set_mapsize`` while this process has no
transaction open, so read transactions pass through a :class:`Gate` that the writer closes
while it grows the map.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator

import lmdb

from ..errors import (
    DataDirLocked,
    DataDirMissing,
    InvalidArgument,
    StorageError,
    UnsupportedFormat,
)
from ._types import Durability

FORMAT_VERSION = b"1"
DB_NAMES = (b"meta", b"topics", b"log", b"parts", b"offsets", b"groups", b"producers", b"state")
DEFAULT_MAP_SIZE = 256 << 20


class Gate:
    """A readers-writer gate: many readers, or the one map grower."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._closed = False

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._closed = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


class DataDir:
    """An opened, locked data directory with its LMDB environment and named databases."""

    def __init__(
        self, path: str | os.PathLike[str], *, durability: Durability = "sync",
        map_size: int = DEFAULT_MAP_SIZE, create: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.pid = os.getpid()
        check_path(self.path)
        if not create and not exists(self.path):
            raise DataDirMissing(f"no streamrt log in {self.path} (nothing stored there yet)")
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:  # a file on the way, no permission, read-only file system
            raise StorageError(
                f"cannot create the data directory {self.path}: {e.strerror or e}; give a "
                f"directory that can be created (or exists) and is writable") from e
        self._lock_fd = _lock(self.path)
        try:
            self.durability = durability
            sync = durability == "sync"
            try:
                self.env = lmdb.open(
                    os.path.join(self.path, "log"), map_size=map_size, max_dbs=len(DB_NAMES) + 2,
                    sync=sync, metasync=sync, writemap=False, map_async=False, readahead=False,
                    max_readers=1024, subdir=True, lock=True,
                )
            except lmdb.Error as e:
                raise StorageError(f"cannot open the log in {self.path}: {e}") from e
            try:
                self.env.reader_check()
                self._check_format()
                self.dbs = {n.decode(): self.env.open_db(n) for n in DB_NAMES}
            except BaseException:
                self.env.close()
                raise
        except BaseException:
            self.release()
            raise
        self.gate = Gate()

    def _check_format(self) -> None:
        """Refuse a directory of another format before creating anything in it."""
        try:
            meta = self.env.open_db(b"meta", create=False)
        except lmdb.NotFoundError:
            with self.env.begin() as txn:
                if txn.cursor().first():
                    raise UnsupportedFormat(
                        f"{self.path} holds an LMDB environment that is not a streamrt log; "
                        f"use another --data-dir"
                    ) from None
            meta = self.env.open_db(b"meta")
        with self.env.begin(write=True) as txn:
            found = txn.get(b"format", db=meta)
            if found is None:
                txn.put(b"format", FORMAT_VERSION, db=meta)
            elif found != FORMAT_VERSION:
                raise UnsupportedFormat(
                    f"data directory {self.path} has on-disk format {found.decode(errors='replace')!r}; "
                    f"this streamrt reads format {FORMAT_VERSION.decode()}: use the streamrt "
                    f"version that wrote it, or another --data-dir"
                )

    def grow(self) -> int:
        """Double the map size; the caller (the writer) must hold no transaction."""
        with self.gate.exclusive():
            new = self.env.info()["map_size"] * 2
            self.env.set_mapsize(new)
        return new

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.env.close()
        self.release()

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the fd drops the flock
            self._lock_fd = None


def _lock(path: str) -> int:
    lock_path = os.path.join(path, "LOCK")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        pid = None
        with contextlib.suppress(Exception):
            pid = int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DataDirLocked(path, pid) from None
        raise StorageError(f"cannot lock {lock_path}: {e}") from e
    data = f"{os.getpid()}\n".encode()
    os.pwrite(fd, data, 0)  # write first, then trim: a refused reader never sees it empty
    os.ftruncate(fd, len(data))
    return fd


def holder_pid(path: str | os.PathLike[str]) -> int | None:
    """The PID recorded by the process that holds (or last held) the directory."""
    try:
        with open(os.path.join(os.fspath(path), "LOCK")) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def check_path(path: str | os.PathLike[str]) -> None:
    """Raise a clear error if ``path`` cannot be a data directory: it is empty, or it or the
    nearest of its parents that exists is not a directory (a file, say)."""
    p = os.fspath(path)
    if not p:
        raise InvalidArgument(
            "the data directory path is empty: give a directory, such as ./data")
    here = os.path.abspath(p)
    while not os.path.exists(here) and os.path.dirname(here) != here:
        here = os.path.dirname(here)
    if os.path.exists(here) and not os.path.isdir(here):
        what = p if here == os.path.abspath(p) else f"{here} (in {p})"
        raise StorageError(
            f"{what} is a file, not a data directory: give the path of a directory (it is "
            f"created if missing), or move the file away")


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a streamrt log (without opening or locking it)."""
    return os.path.isfile(os.path.join(os.fspath(path), "log", "data.mdb"))
