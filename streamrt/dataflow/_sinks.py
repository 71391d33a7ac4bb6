"""Sinks: where results go. Topic sinks take part in checkpoints; the others are
at-least-once (a crash replays into them since the last checkpoint)."""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any

import orjson

from operators._batch import Batch

from .._murmur2 import positive_hash
from .._serde import key_bytes
from ..storage import WriteBatch, build_batch


#: At-least-once topic sinks write when this many records wait, or when the oldest has waited
#: FLUSH_DELAY seconds, and at every checkpoint (in its transaction). One write per pipeline
#: step cost one fsync per batch of 1,000 inputs, which dominated small-result pipelines.
FLUSH_RECORDS = 10_000
FLUSH_DELAY = 0.25
#: Keys whose bytes and partition a topic sink remembers (cleared when full).
KEY_CACHE = 100_000
#: Exactly-once topic sinks hold outputs until the checkpoint, encoded into a record batch
#: every ENCODE_RECORDS records of a partition: a value ``orjson.dumps`` returns occupies
#: about 4 KiB however short it is (orjson 3.x keeps its whole buffer), so 200,000 held
#: results cost 800 MB as values and 20 MB as batches.
ENCODE_RECORDS = 2_000


class TopicSink:
    """Serialises elements to a topic: at-least-once writes them in groups between
    checkpoints (see FLUSH_RECORDS); exactly-once holds them for the checkpoint's transaction."""

    def __init__(self, broker: Any, topic: str, hold: bool) -> None:
        self.broker = broker
        self.topic = topic
        self.hold = hold
        self.n = broker.topic(topic).partitions
        self.pending: dict[int, list[tuple[Any, Any, list[Any], int]]] = {}
        self.npending = 0
        self.since = 0.0  # when the oldest pending record was added
        self._rr = 0
        self._keys: dict[Any, tuple[bytes | None, int]] = {}
        self.encoded: list[tuple[int, bytes]] = []  # (partition, batch), exactly-once only
        self.written = 0

    def add(self, batch: Batch, headers: list[tuple[str, bytes | None]] | None = None) -> None:
        dumps = orjson.dumps
        now = int(time.time() * 1000)
        ts = batch.ts or [now] * len(batch.values)
        hdrs = headers or []
        n = self.n
        if not self.npending:
            self.since = time.monotonic()
        self.npending += len(batch.values)
        pending = self.pending
        if batch.keys is None:
            p = self._rr % n
            self._rr += 1
            out = pending.setdefault(p, [])
            out += [(None, v if type(v) is bytes else dumps(v), hdrs, t)
                    for v, t in zip(batch.values, ts)]
        else:
            cache = self._keys
            if len(cache) > KEY_CACHE:
                cache.clear()
            for k, v, t in zip(batch.keys, batch.values, ts):
                ck = (type(k), k)  # with its type: 1, 1.0 and True are equal dict keys
                try:
                    kb, p = cache[ck]
                except (KeyError, TypeError):  # TypeError: an unhashable key (a list)
                    kb = key_bytes(k)
                    p = positive_hash(kb) % n if kb is not None else 0
                    try:
                        cache[ck] = kb, p
                    except TypeError:
                        pass
                out = pending.get(p)
                if out is None:
                    out = pending[p] = []
                out.append((kb, v if type(v) is bytes else dumps(v), hdrs, t))
        self.written += len(batch.values)
        if self.hold:
            for p, recs in pending.items():
                if len(recs) >= ENCODE_RECORDS:
                    self.encoded.append((p, build_batch(recs)))
                    pending[p] = []

    async def flush(self) -> None:
        """Write what waits (at-least-once), if enough waits or it waited long enough."""
        if self.hold or not self.npending:
            return
        if self.npending < FLUSH_RECORDS and time.monotonic() - self.since < FLUSH_DELAY:
            return
        wb = WriteBatch()
        self.drain_into(wb)
        await self.broker.write(wb)  # one commit (one fsync) for every partition

    def drain_into(self, wb: WriteBatch) -> None:
        """Move what waits into the checkpoint's transaction."""
        for p, b in self.encoded:  # older than what is pending in the same partition
            wb.append_raw(self.topic, p, b)
        self.encoded = []
        pending, self.pending, self.npending = self.pending, {}, 0
        for p, recs in pending.items():
            for chunk in _chunks(recs):
                wb.append(self.topic, p, chunk)


def _chunks(recs: list[Any], size: int = 5000) -> list[list[Any]]:
    return [recs[i:i + size] for i in range(0, len(recs), size)]


class CallSink:
    """Calls a user function per element (or per batch), sync or async."""

    def __init__(self, fn: Any, batch: bool) -> None:
        self.fn = fn
        self.batch = batch
        self.pending: list[Any] = []
        self.written = 0

    def add(self, batch: Batch, headers: Any = None) -> None:
        self.pending += batch.values
        self.written += len(batch.values)

    async def flush(self) -> None:
        items, self.pending = self.pending, []
        if not items:
            return
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
