"""Reading one partition into a queue group's window, record by record across calls.

The window takes a few records at a time (it is bounded), and a storage read from an offset
inside a stored batch decodes that batch from its start again: reading a 5,000-record batch
100 records at a time would decode it 50 times. The cursor instead keeps the batches of its
last read and an iterator inside the current one, so each stored batch is decoded once.
"""

from __future__ import annotations

import itertools
from typing import Any

from ..storage import iter_records

#: Bytes of stored batches one read takes (whole batches).
READ_BYTES = 1 << 20


class PartitionCursor:
    """Reads one partition record by record across calls, decoding each stored batch once.

    The window takes a few records at a time, and a read from an offset inside a batch
    would decode that batch from its start again (quadratic in the batch size). So the
    cursor keeps the batch it is in, and the records it looked at but did not take.
    """

    __slots__ = ("store", "topic", "partition", "pos", "batches", "it", "pending")

    def __init__(self, store: Any, topic: str, partition: int) -> None:
        self.store = store
        self.topic = topic
        self.partition = partition
        self.pos = -1  # every record taken from here on has an offset >= pos
        self.batches: list[bytes] = []
        self.it: Any = None
        self.pending: list[Any] = []  # looked at, not taken (offset >= end), in order

    def take(self, start: int, end: int, n: int) -> list[Any]:
        """Up to ``n`` records with ``start <= offset < end``, in order. Raises
        OffsetOutOfRange when ``start`` is below the log start (retention)."""
        if start != self.pos:  # moved by someone else (drops, retention): start afresh
            self.batches, self.it, self.pending = [], None, []
            self.pos = start
        out: list[Any] = []
        while len(out) < n and self.pos < end:
            if self.pending:
                chunk, self.pending = self.pending, []
            else:
                if self.it is None and not self._load():
                    break
                # Offsets are dense but for compaction's gaps, so this many will do.
                chunk = list(itertools.islice(self.it, min(n - len(out), end - self.pos)))
                if not chunk:
                    self.it = None
                    continue
            if chunk[0].offset < self.pos:  # a read starts at the batch holding pos
                chunk = [r for r in chunk if r.offset >= self.pos]
                if not chunk:
                    continue
            if chunk[-1].offset >= end or len(out) + len(chunk) > n:
                keep = [r for r in chunk if r.offset < end][:n - len(out)]
                self.pending = chunk[len(keep):]
                chunk = keep
                if not chunk:
                    break
            out += chunk
            self.pos = chunk[-1].offset + 1
        return out

    def _load(self) -> bool:
        """Point ``it`` at the next stored batch; False at the end of the log."""
        if not self.batches:
            self.batches = self.store.read_raw(self.topic, self.partition, self.pos, READ_BYTES)
            if not self.batches:
                return False
            self.batches.reverse()
        # aiokafka's batch is its own iterator and refuses a second iter(): wrap its
        # __next__ so islice can take from it again and again.
        self.it = iter(iter(iter_records(self.batches.pop())).__next__, None)
        return True
