"""Joins: two keyed streams in tumbling windows, and a keyed stream against a table.

``WindowJoin`` pairs every left element with every right element of the same key whose
timestamps fall in the same tumbling window. A pair is emitted as soon as its second element
arrives (no waiting for the window to close); closing a window only frees its state. An
element that arrives after its window closed is late: it goes to the late output. Inner join:
an element that never meets a partner emits nothing.

``TableJoin`` keeps the latest value per key of a table topic (a record with a null value
deletes its key) and joins each stream element with the table's value for the element's key,
as the table is when the element is processed (no time alignment, as in Kafka Streams'
stream-table join). ``how="inner"`` drops elements without a table entry; ``how="left"`` pairs
them with None. Keys match by their stored bytes (a str key equals its UTF-8 record key).

Both take batches from two inputs: the runner sets ``side`` (0 or 1) before each call.

Both keep their state in a bounded :class:`~operators._cache.StateCache` over LMDB (a table,
or the elements waiting in open windows, can be larger than memory). The windowed join stores
a window's elements, both sides in one entry ``(key, start) -> [lefts, rights]``, under the
window's start first, as tumbling windows do, and the cache groups them by start: what stays in
memory for closing is the set of open starts, and a window end frees its start's group whole,
cached and stored. An entry holds a window's elements, so the bound counts (key, window)
pairs, not elements.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable
from typing import Any

from streamrt._serde import key_bytes
from streamrt.errors import InvalidArgument

from ._batch import Batch
from ._cache import DEFAULT_MAX_ENTRIES, StateCache
from ._protocol import BaseOperator, StateHandle
from ._time import TimedOperator, wall_clock_ms
from ._windows import Tumbling, _start_prefix, _window_from, _window_key


class WindowJoin(TimedOperator):
    """Pairs ``(left, right)`` of equal keys in the same tumbling window."""

    flush_at_end = False  # closing emits nothing: keep the state for a later run

    name = "join"
    stateful = True

    def __init__(
        self, spec: Tumbling, timestamp: Callable[[Any], int] | None = None,
        max_out_of_orderness: int = 0, allowed_lateness: int = 0, *,
        processing_time: bool = False, clock: Callable[[], int] = wall_clock_ms,
        cache_size: int | None = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if not isinstance(spec, Tumbling):
            raise InvalidArgument("join() takes a tumbling window, e.g. window=sr.tumbling(seconds=10)")
        super().__init__(timestamp, max_out_of_orderness, processing_time, clock)
        self.size = spec.size
        self.lateness = allowed_lateness
        self.side = 0
        # (key, start) -> [lefts, rights], grouped by start (see the module doc)
        self.cache = StateCache(None, cache_size, encode=_window_key, decode=_window_from,
                                group=operator.itemgetter(1), group_prefix=_start_prefix)
        self.open_starts: set[int] = set()
        self.start_heap: list[int] = []

    @property
    def wants_checkpoint(self) -> bool:
        """The changed windows exceed the cache bound: the runner should checkpoint."""
        return self.cache.wants_checkpoint

    def describe(self) -> Any:
        return ["join", self.size]

    def process(self, batch: Batch) -> list[Batch]:
        values = batch.values
        if not values:
            return []
        side = self.side
        ts = self._times(batch, "join()")
        keys = batch.keys if batch.keys is not None else [None] * len(values)
        size = self.size
        cache = self.cache
        data, load, add_new, uncached = cache.data, cache.load, cache.add_new, cache.uncached
        dirty_add = cache.dirty.add
        open_starts = self.open_starts
        edge = self.wm - self.lateness
        out_v: list[Any] = []
        out_k: list[Any] = []
        out_t: list[int] = []
        late: list[int] = []
        for i, (k, v, t) in enumerate(zip(keys, values, ts)):
            start = t - t % size
            if start + size <= edge:
                late.append(i)
                continue
            sk = (k, start)
            sides = data.get(sk)
            if sides is None and (not uncached or (sides := load(sk)) is None):
                sides = [[], []]
                add_new(sk, sides, start)
                if start not in open_starts:
                    open_starts.add(start)
                    heapq.heappush(self.start_heap, start)
            for other in sides[1 - side]:
                out_v.append((v, other) if side == 0 else (other, v))
                out_k.append(k)
                out_t.append(t)
            sides[side].append(v)
            dirty_add(sk)
        if late:
            self.late.append(Batch([values[i] for i in late], [keys[i] for i in late],
                                   [ts[i] for i in late], batch.part))
        out = [Batch(out_v, out_k, out_t, batch.part)] if out_v else []
        return out + self._advance(batch.part)

    def _close(self, part: int) -> list[Batch]:
        starts = self.start_heap
        last_open = self.wm - self.size - self.lateness  # starts up to this one have closed
        while starts and starts[0] <= last_open:
            start = heapq.heappop(starts)
            self.open_starts.discard(start)
            pop = self.cache.data.pop
            for sk in self.cache.take_group(start):  # (each window's elements freed at once)
                pop(sk)
        return []

    def snapshot(self) -> dict[bytes, bytes | None]:
        return self._with_time(self.cache.snapshot())

    def restore(self, handle: StateHandle) -> None:
        self._restore_time(handle)
        self.cache.attach(handle)
        for start in self.cache.groups():
            if start not in self.open_starts:
                self.open_starts.add(start)
                heapq.heappush(self.start_heap, start)


class TableJoin(BaseOperator):
    """Side 0: table updates ``(key bytes, value)``; side 1: the keyed stream."""

    name = "join_table"
    stateful = True

    def __init__(self, how: str = "inner", *, cache_size: int | None = DEFAULT_MAX_ENTRIES) -> None:
        if how not in ("inner", "left"):
            raise InvalidArgument(f"join_table(how=...) is 'inner' or 'left', got {how!r}")
        self.left = how == "left"
        self.side = 1
        # record key bytes (None: a record without a key) -> latest value
        self.table = StateCache(None, cache_size, encode=_table_key, decode=_table_key_from)

    @property
    def wants_checkpoint(self) -> bool:
        """The changed rows exceed the cache bound: the runner should checkpoint."""
        return self.table.wants_checkpoint

    def describe(self) -> Any:
        return ["join_table"]

    def process(self, batch: Batch) -> list[Batch]:
        if self.side == 0:
            table = self.table
            for kb, v in batch.values:
                if v is None:
                    table.delete(kb)
                else:
                    table.set(kb, v)
            return []
        values = batch.values
        keys = batch.keys if batch.keys is not None else [None] * len(values)
        get = self.table.get
        found = [get(key_bytes(k)) for k in keys]
        out = batch.with_values([(v, f) for v, f in zip(values, found)])
        if self.left:
            return [out]
        mask = [f is not None for f in found]
        return [out] if all(mask) else [out.select(mask)]

    def snapshot(self) -> dict[bytes, bytes | None]:
        return self.table.snapshot()

    def restore(self, handle: StateHandle) -> None:
        self.table.attach(handle)


def _table_key(kb: bytes | None) -> bytes:
    # b"k" + key: keys may be empty or None (a record without a key)
    return b"n" if kb is None else b"k" + kb


def _table_key_from(raw: bytes) -> bytes | None:
    return None if raw == b"n" else raw[1:]
