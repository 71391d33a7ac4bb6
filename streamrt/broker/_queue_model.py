"""The records a queue group keeps in memory: entries (messages read), partitions, consumer
slots, the ready set, and the plan of one group commit. Plain ``__slots__`` classes, cheap
on the per-message path; the logic that moves them is in ``_queue_core.py``.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterator
from typing import Any

from ..storage import WriteBatch
from . import _queue_keys as K
from ._queue_state import STORED

#: Message ids are ``partition index << 48 | offset``: offsets up to 2**48 (281 trillion).
_SHIFT = 48
_OFF_MASK = (1 << _SHIFT) - 1
PRIORITY_HEADER = "priority"

# A hand-out, as consumers receive it: the entry and the token of this lease. The consumer
# reads the rest (record, partition, delivery count) from the entry when it takes it.
Handout = tuple["Entry", int]


class Entry:
    """One message read into memory."""

    __slots__ = ("mid", "part", "offset", "seq", "prio", "rec", "deliveries", "state",
                 "token", "cid", "deadline")

    def __init__(self, mid: int, part: Part, rec: Any, seq: int, prio: int, deliveries: int) -> None:
        self.mid = mid
        self.part = part
        self.offset = rec.offset
        self.seq = seq
        self.prio = prio
        self.rec = rec
        self.deliveries = deliveries
        self.state = STORED
        self.token = 0
        self.cid = 0
        self.deadline = 0.0

    def __lt__(self, other: Entry) -> bool:  # heaps of (key, entry) never tie on key
        return self.seq < other.seq


class Part:
    """One partition of one of the group's topics."""

    __slots__ = ("index", "topic", "tid", "partition", "floor", "mark", "read_pos", "adm_pos",
                 "done", "marked", "persisted", "dirty", "fd_dirty", "fkey", "rprefix", "gone")

    def __init__(self, index: int, topic: str, tid: int, partition: int, prefix: bytes) -> None:
        self.index = index
        self.topic = topic
        self.tid = tid
        self.partition = partition
        self.floor = 0          # every offset below is done
        self.mark = 0           # every offset in [floor, mark) was delivered at least once
        self.read_pos = 0       # next offset to read into memory
        self.adm_pos = 0        # next offset to count into the backlog
        self.done: set[int] = set()          # done offsets above the floor
        self.marked: set[int] = set()        # delivered offsets above the mark
        self.persisted: dict[int, bytes] = {}  # records in LMDB, by offset
        self.dirty: dict[int, bytes | None] = {}  # record changes for the next commit
        self.fd_dirty = False
        self.fkey = K.floor_key(prefix, tid, partition)
        self.rprefix = K.record_prefix(prefix, tid, partition)
        self.gone = False


class Slot:
    """A consumer as the queue group sees it: the prefetch limit, the demand (None: push, up
    to prefetch; n: a pull wanting n more), and the inbox the hand-outs go to. Shared with the
    consumer object; outlives restarts of the actor."""

    __slots__ = ("cid", "prefetch", "want", "inbox", "wake", "closed")

    def __init__(self, cid: int, prefetch: int) -> None:
        self.cid = cid
        self.prefetch = prefetch
        self.want: int | None = 0
        self.inbox: deque[Handout] = deque()
        self.wake: Any = None  # an anyio.Event the consumer waits on when its inbox is empty
        self.closed = False

    def deliver(self, items: list[Handout]) -> None:
        self.inbox.extend(items)
        if self.wake is not None:
            self.wake.set()


class _Consumer:
    __slots__ = ("slot", "outstanding")

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.outstanding = 0  # leased (leasing or leased) to it and not settled

    def credit(self) -> int:
        s = self.slot
        n = s.prefetch - max(self.outstanding, len(s.inbox))
        if s.want is not None and s.want < n:
            n = s.want
        return n


class ReadyQueue:
    """READY entries: highest priority first; within one, the order they were read in. Fresh
    entries arrive in that order (a deque per level); ones that come back go to a heap per
    level and are merged by read order, so a redelivery keeps its place."""

    def __init__(self, levels: int) -> None:
        self.fresh: list[deque[Entry]] = [deque() for _ in range(levels)]
        self.back: list[list[tuple[int, Entry]]] = [[] for _ in range(levels)]
        self.levels = levels
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def push_fresh(self, e: Entry) -> None:
        self.fresh[e.prio].append(e)
        self.n += 1

    def push_back(self, e: Entry) -> None:
        heapq.heappush(self.back[e.prio], (e.seq, e))
        self.n += 1

    def _pop_level(self, lvl: int) -> Entry | None:
        f = self.fresh[lvl]
        b = self.back[lvl]
        if b and (not f or b[0][0] < f[0].seq):
            self.n -= 1
            return heapq.heappop(b)[1]
        if f:
            self.n -= 1
            return f.popleft()
        return None

    def pop(self) -> Entry | None:
        """The next entry to hand out."""
        if self.n == 0:
            return None
        for lvl in range(self.levels - 1, -1, -1):
            e = self._pop_level(lvl)
            if e is not None:
                return e
        return None

    def heads(self) -> Iterator[tuple[int, Entry]]:
        """(level, entry) at the head of each level's fresh and returned runs."""
        for lvl in range(self.levels):
            if self.fresh[lvl]:
                yield lvl, self.fresh[lvl][0]
            if self.back[lvl]:
                yield lvl, self.back[lvl][0][1]

    def pop_oldest(self) -> Entry | None:
        """The entry read first, whatever its priority (drop-oldest)."""
        best = -1
        seq = math.inf
        for lvl, e in self.heads():
            if e.seq < seq:
                best, seq = lvl, e.seq
        return None if best < 0 else self._pop_level_oldest(best)

    def _pop_level_oldest(self, lvl: int) -> Entry | None:
        return self._pop_level(lvl)

    def pop_expired(self, lvl: int, cutoff_ms: int) -> Entry | None:
        """A head entry of ``lvl`` stamped before ``cutoff_ms``, removed; None if none is."""
        f = self.fresh[lvl]
        if f and f[0].rec.timestamp < cutoff_ms:
            self.n -= 1
            return f.popleft()
        b = self.back[lvl]
        if b and b[0][1].rec.timestamp < cutoff_ms:
            self.n -= 1
            return heapq.heappop(b)[1]
        return None


class FlushPlan:
    """What one group commit carries: the WriteBatch, and the leases it makes durable. The
    actor adds the flush barriers it answers (``waiters``) and tracks its write."""

    __slots__ = ("batch", "handouts", "dead", "waiters", "claimed", "done", "error")

    def __init__(self, batch: WriteBatch, handouts: list[tuple[Entry, int]], dead: int) -> None:
        self.batch = batch
        self.handouts = handouts
        self.dead = dead
        self.waiters: list[Any] = []
        self.claimed = False  # taken up for writing (by the committer or on_stop)
        self.done: Any = None  # an anyio.Event the actor sets when the write finished
        self.error: BaseException | None = None


def _priority(headers: Any, top: int) -> int:
    for k, v in headers:
        if k == PRIORITY_HEADER:
            try:
                p = int(v)
            except (TypeError, ValueError):
                return 0
            return 0 if p < 0 else top if p > top else p
    return 0


def mid_offset(mid: int) -> int:
    return mid & _OFF_MASK
