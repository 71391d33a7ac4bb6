"""Sinks: where results go. Topic sinks take part in checkpoints; the others are
at-least-once (a crash replays into them since the last checkpoint)."""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any

import orjson

from operators._batch import Batch
from operators._protocol import BatchFailed

from .._murmur2 import positive_hash
from .._serde import key_bytes
from ..errors import InvalidArgument, PipelineError
from ..storage import WriteBatch
from ..storage._codec import MAX_BATCH_BYTES, DefaultRecordBatchBuilder


#: At-least-once topic sinks write when this many records wait, or when the oldest has waited
#: FLUSH_DELAY seconds, and at every checkpoint (in its transaction). One write per pipeline
#: step cost one fsync per batch of 1,000 inputs, which dominated small-result pipelines;
#: FLUSH_DELAY bounds the latency when results come fast too.
FLUSH_RECORDS = 50_000
FLUSH_DELAY = 0.25
#: Keys whose bytes and partition a topic sink remembers (cleared when full).
KEY_CACHE = 100_000
#: Records per stored batch: a partition's builder is closed into a batch at this count.
BATCH_RECORDS = 5_000
#: At-least-once topic sinks do not wait for each write's commit (its fsync) before going
#: on; at most this many are in flight, and all have landed before a checkpoint is taken.
MAX_IN_FLIGHT = 2


class _Builder:
    """One partition's records being encoded into a RecordBatch v2 as they come (aiokafka's C
    builder): a result's JSON bytes are copied into the batch at once and freed, never held
    as Python objects (holding ``orjson.dumps`` results cost about 2.5 µs each: every one is
    a fresh allocation), and there is no second pass to build the batch."""

    __slots__ = ("append", "build", "n")

    def __init__(self) -> None:
        b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, MAX_BATCH_BYTES)
        self.append = b.append
        self.build = b.build
        self.n = 0


class TopicSink:
    """Serialises elements to a topic: at-least-once writes them in groups between
    checkpoints (see FLUSH_RECORDS); exactly-once holds them for the checkpoint's transaction.
    Either way records are encoded into per-partition record batches as they are added."""

    def __init__(self, broker: Any, topic: str, hold: bool) -> None:
        self.broker = broker
        self.topic = topic
        self.hold = hold
        self.n = broker.topic(topic).partitions
        self.builders: dict[int, _Builder] = {}
        self.npending = 0
        self.since = 0.0  # when the oldest pending record was added
        self._rr = 0
        self._keys: dict[type, dict[Any, tuple[bytes | None, int]]] = {}  # see _key_infos
        self.encoded: list[tuple[int, bytes]] = []  # (partition, batch) closed, in order
        self.written = 0
        self.in_flight: list[Any] = []  # waiters of writes not yet known durable

    def add(self, batch: Batch, headers: list[tuple[str, bytes | None]] | None = None) -> None:
        """Encode a batch's elements into the pending record batches. An element that is not
        JSON (nor bytes) raises :class:`~operators.BatchFailed` with its index: the elements
        before it are added, the rest not."""
        try:
            self._add(batch, headers)
        except orjson.JSONEncodeError as e:
            values = batch.values
            i = next((i for i, v in enumerate(values) if not _encodes(v)), 0)
            self.npending -= len(values) - i  # (counted in advance)
            self.written += i
            raise BatchFailed(i, [], e) from e

    def _add(self, batch: Batch, headers: list[tuple[str, bytes | None]] | None) -> None:
        dumps = orjson.dumps
        now = int(time.time() * 1000)
        ts = batch.ts or [now] * len(batch.values)
        hdrs = headers or []
        n = self.n
        if not self.npending:
            self.since = time.monotonic()
        self.npending += len(batch.values)
        builders = self.builders
        if batch.keys is None:
            p = self._rr % n
            self._rr += 1
            for v, t in zip(batch.values, ts):
                b = builders.get(p) or self._new(p)
                if b.append(b.n, t, None, v if type(v) is bytes else dumps(v), hdrs) is None:
                    b = self._full(p, t, None, v if type(v) is bytes else dumps(v), hdrs)
                b.n += 1
                if b.n >= BATCH_RECORDS:
                    self._close(p)
        else:
            limit = BATCH_RECORDS
            for (kb, p), v, t in zip(self._key_infos(batch.keys), batch.values, ts):
                b = builders.get(p) or self._new(p)
                i = b.n
                if b.append(i, t, kb, v if type(v) is bytes else dumps(v), hdrs) is None:
                    b = self._full(p, t, kb, v if type(v) is bytes else dumps(v), hdrs)
                    i = 0
                b.n = i = i + 1
                if i >= limit:
                    self._close(p)
        self.written += len(batch.values)

    def _key_infos(self, keys: list[Any]) -> list[tuple[bytes | None, int]]:
        """Each key's (bytes, partition), remembered per key type: 1, 1.0 and True are
        equal dict keys with different bytes, so one cache per type keeps them apart. A batch
        of keys of one type (the usual case) is looked up in one pass (``map``), no Python
        code per key."""
        types = set(map(type, keys))
        if len(types) != 1:
            return [self._key_info(k) for k in keys]
        (kt,) = types
        cache = self._keys.get(kt)
        if cache is None:
            cache = self._keys[kt] = {}
        try:
            return list(map(cache.__getitem__, keys))
        except KeyError:
            pass
        except TypeError:  # unhashable keys (lists): computed every time
            return [self._key_info(k) for k in keys]
        if len(cache) > KEY_CACHE:
            cache.clear()
        for k in keys:
            if k not in cache:
                cache[k] = self._key_info(k)
        return list(map(cache.__getitem__, keys))

    def _key_info(self, k: Any) -> tuple[bytes | None, int]:
        kb = key_bytes(k)
        return kb, (positive_hash(kb) % self.n if kb is not None else 0)

    def _new(self, p: int) -> _Builder:
        b = self.builders[p] = _Builder()
        return b

    def _full(self, p: int, t: int, kb: bytes | None, value: bytes,
              hdrs: list[tuple[str, bytes | None]]) -> _Builder:
        """The batch reached its byte limit: close it and start the next with this record."""
        self._close(p)
        b = self._new(p)
        if b.append(0, t, kb, value, hdrs) is None:
            raise InvalidArgument(f"a result of {len(value):,} bytes does not fit in a record batch")
        return b

    def _close(self, p: int) -> None:
        b = self.builders.pop(p)
        if b.n:
            self.encoded.append((p, bytes(b.build())))

    async def flush(self) -> None:
        """Write what waits (at-least-once), if enough waits or it waited long enough."""
        if self.hold or not self.npending:
            return
        if self.npending < FLUSH_RECORDS and time.monotonic() - self.since < FLUSH_DELAY:
            return
        wb = WriteBatch()
        self.drain_into(wb)
        # one commit (one fsync) for every partition, not awaited here: processing goes on
        # while it commits (errors surface at the next flush or before the checkpoint)
        while len(self.in_flight) >= MAX_IN_FLIGHT:
            await self.in_flight.pop(0).wait()
        self.in_flight.append(self.broker.write_soon(wb))

    async def settle(self) -> None:
        """Wait until every write this sink started is durable (raises the first error)."""
        while self.in_flight:
            await self.in_flight.pop(0).wait()

    def drain_into(self, wb: WriteBatch) -> None:
        """Move what waits into the checkpoint's transaction."""
        for p in list(self.builders):
            self._close(p)
        for p, b in self.encoded:  # in the order they were closed: per partition, in order
            wb.append_raw(self.topic, p, b)
        self.encoded = []
        self.npending = 0


def _encodes(v: Any) -> bool:
    if type(v) is bytes:
        return True
    try:
        orjson.dumps(v)
    except orjson.JSONEncodeError:
        return False
    return True


class CallSink:
    """Calls a user function per element (or per batch), sync or async."""

    def __init__(self, fn: Any, batch: bool, where: str = "sink") -> None:
        self.fn = fn
        self.batch = batch
        self.where = where  # the step, for errors: "step 'sink0' (sink, send at app.py:5)"
        self.pending: list[Any] = []
        self.written = 0

    def add(self, batch: Batch, headers: Any = None) -> None:
        self.pending += batch.values
        self.written += len(batch.values)

    async def flush(self) -> None:
        items, self.pending = self.pending, []
        if not items:
            return
        try:
            await self._call(items)
        except Exception as e:
            raise PipelineError(f"{self.where} raised {e!r}") from e

    async def _call(self, items: list[Any]) -> None:
        if self.batch:
            r = self.fn(items)
            if inspect.isawaitable(r):
                await r
            return
        for item in items:
            r = self.fn(item)
            if inspect.isawaitable(r):
                await r


class PrintSink(CallSink):
    def __init__(self) -> None:
        super().__init__(self._print, batch=True)

    @staticmethod
    def _print(items: list[Any]) -> None:
        out = sys.stdout
        for item in items:
            out.write(f"{item}\n")
        out.flush()


class FileSink(CallSink):
    def __init__(self, path: str) -> None:
        super().__init__(self._write, batch=True)
        self.path = path

    def _write(self, items: list[Any]) -> None:
        with open(self.path, "ab") as f:
            f.write(b"".join(orjson.dumps(i) + b"\n" for i in items))
