"""The single writer thread and its group commit.

LMDB write transactions belong to the thread that began them, so one dedicated thread does
every write. Callers hand it *operations* (a function of the write transaction and an
overlay of in-memory changes) with a waiter; the thread takes the first one, drains whatever
else is already queued (up to ``MAX_GROUP_OPS`` / ``MAX_GROUP_BYTES``), runs each in a nested
transaction so that one failing operation is rolled back alone, commits the whole group with
one fsync, publishes the in-memory changes, and only then wakes the waiters. Throughput grows
with the number of concurrent callers while each acknowledgement waits for at most one fsync.

If LMDB reports the map full, the whole group is aborted, the map doubled and the group
retried: a failed transaction is dead in LMDB and must not be reused. A full disk fails the
group's operations with ``StorageFull`` and leaves the log as it was before the group.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import lmdb

from .._wake import Waiter
from ..errors import StorageError, StorageFull, StoreClosed, StreamrtError
from ._env import DataDir

log = logging.getLogger(__name__)

MAX_GROUP_OPS = 4096
MAX_GROUP_BYTES = 64 << 20
MAX_MAP_SIZE = 1 << 44  # 16 TiB of address space

Op = Callable[[Any, "Overlay"], Any]  # (txn, overlay) -> result


class _Stop:
    pass


_STOP = _Stop()


class Writer:
    """Runs operations in group commits on one thread; see the module doc."""

    def __init__(self, data: DataDir, publish: Callable[[dict], None]) -> None:
        self._data = data
        self._publish = publish  # applies an overlay to the in-memory catalog after commit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self.commits = 0  # transactions committed (statistics)
        self.ops = 0
        self._thread = threading.Thread(target=self._run, name="streamrt-writer", daemon=True)
        self._thread.start()

    def submit(self, op: Op, waiter: Waiter, nbytes: int = 0) -> None:
        if self._closed:
            raise StoreClosed("the store is closed; open it again to write")
        self._queue.put((op, waiter, nbytes))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()

    def _run(self) -> None:
        q = self._queue
        stopping = False
        while not stopping:
            item = q.get()
            if item is _STOP:
                break
            group = [item]
            size = item[2]
            while len(group) < MAX_GROUP_OPS and size < MAX_GROUP_BYTES:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                group.append(nxt)
                size += nxt[2]
            self._commit(group)
        # Anything still queued after close is refused, never silently dropped.
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item[1].resolve(error=StoreClosed("the store was closed before this write ran"))

    def _commit(self, group: list[tuple[Op, Waiter, int]]) -> None:
        env = self._data.env
        while True:
            overlay: dict = {}
            outcomes: list[tuple[Any, BaseException | None]] = []
            txn = env.begin(write=True)
            try:
                for op, _w, _n in group:
                    child = env.begin(write=True, parent=txn)
                    mine: dict = {}
                    try:
                        res = op(child, Overlay(overlay, mine))
                    except lmdb.MapFullError:
                        child.abort()
                        raise
                    except lmdb.Error as e:
                        child.abort()
                        if _is_disk_full(e):
                            raise
                        outcomes.append((None, StorageError(f"storage failure: {e}")))
                        continue
                    except StreamrtError as e:
                        child.abort()
                        outcomes.append((None, e))
                        continue
                    except Exception as e:  # a bug in an op must not take the group down
                        child.abort()
                        log.exception("write operation failed")
                        outcomes.append((None, StorageError(f"write failed: {e!r}")))
                        continue
                    child.commit()
                    overlay.update(mine)
                    outcomes.append((res, None))
                txn.commit()
            except lmdb.MapFullError:
                txn.abort()
                size = self._data.env.info()["map_size"]
                if size >= MAX_MAP_SIZE:
                    self._fail(group, StorageFull("the log reached its maximum map size"))
                    return
                new = self._data.grow()
                log.info("LMDB map grown to %d MiB", new >> 20)
                continue
            except lmdb.Error as e:
                txn.abort()
                if _is_disk_full(e):
                    err: StorageError = StorageFull(
                        f"the disk holding {self._data.path} is full: nothing of this write was "
                        f"stored; free space or set retention, then retry"
                    )
                else:
                    err = StorageError(f"commit failed in {self._data.path}: {e}")
                self._fail(group, err)
                return
            except BaseException as e:
                txn.abort()
                self._fail(group, StorageError(f"commit failed: {e!r}"))
                raise
            break
        self.commits += 1
        self.ops += len(group)
        self._publish(overlay)
        for (_op, waiter, _n), (res, exc) in zip(group, outcomes):
            waiter.resolve(res, exc)

    @staticmethod
    def _fail(group: list[tuple[Op, Waiter, int]], err: BaseException) -> None:
        for _op, waiter, _n in group:
            waiter.resolve(error=err)


class Overlay:
    """In-memory changes of one operation, layered over those of earlier ones in the group.

    Reads fall through to the group's changes; writes stay local until the operation's nested
    transaction commits, so a rejected operation leaves no trace in memory either.
    """

    __slots__ = ("_below", "_mine")

    def __init__(self, below: dict, mine: dict) -> None:
        self._below = below
        self._mine = mine

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self._mine:
            return self._mine[key]
        return self._below.get(key, default)

    def __contains__(self, key: Any) -> bool:
        return key in self._mine or key in self._below

    def set(self, key: Any, value: Any) -> None:
        self._mine[key] = value


def _is_disk_full(e: lmdb.Error) -> bool:
    return getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e)
