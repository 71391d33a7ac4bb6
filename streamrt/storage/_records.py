"""The result of a read: stored batches, decoded into records as the caller iterates.

Why not a list of records: every decoded record is a GC-tracked object; a read of 10,000
records kept alive at once gets promoted through the collector's generations and sets off
full collections of the whole heap, which took two thirds of read time in bench/
log_throughput.py. Decoding batch by batch while iterating keeps only the current batch's
records alive, so a read costs what decoding costs. Length and the next offset are known
from the batch headers without decoding (except in compacted batches, which have gaps).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

from . import _codec


class Records(Sequence[Any]):
    """Records returned by a read, in offset order: iterate it (decodes batch by batch), take
    ``len()``, index it (decodes everything once), or use ``next_offset`` to read on."""

    __slots__ = ("_parts", "_len", "_list", "next_offset")

    def __init__(self, parts: list[tuple[bytes, int, int]], length: int, next_offset: int) -> None:
        # each part: (batch bytes, first offset wanted, how many records to take from it)
        self._parts = parts
        self._len = length
        self._list: list[Any] | None = None
        #: The offset to read from next: one past the last record returned.
        self.next_offset = next_offset

    def __iter__(self) -> Iterator[Any]:
        if self._list is not None:
            yield from self._list
            return
        for buf, start, take in self._parts:
            # aiokafka's batch iterates only once, so walk it by hand: skip what precedes
            # ``start``, then yield exactly ``take`` records (counted when the read was made).
            nxt = iter(_codec.iter_records(buf)).__next__
            r = nxt()
            while r.offset < start:
                r = nxt()
            yield r
            for _ in range(take - 1):
                yield nxt()

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if self._list is None:
            self._list = list(self)
        return self._list[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Records, list, tuple)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"<Records {self._len} records, next offset {self.next_offset}>"

    @property
    def batches(self) -> list[bytes]:
        """The stored RecordBatch v2 bytes these records come from."""
        return [p[0] for p in self._parts]


def take_from_batch(buf: bytes, h: _codec.BatchHeader, start: int, limit: int) -> tuple[int, int]:
    """How many records at or after ``start`` (at most ``limit``) the batch gives, and the
    offset after the last of them. Dense batches are counted from the header alone."""
    if h.record_count == h.offset_count:
        first = max(start, h.base_offset)
        n = max(0, min(h.base_offset + h.offset_count - first, limit))
        return n, first + n
    n = 0
    nxt = start
    for r in _codec.iter_records(buf):  # compacted: offsets have gaps, so look
        if r.offset >= start:
            n += 1
            nxt = r.offset + 1
            if n == limit:
                break
    return n, nxt
