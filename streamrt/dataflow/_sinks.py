"""Sinks: where results go. Topic sinks take part in checkpoints; the others are
at-least-once (a crash replays into them since the last checkpoint)."""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any

import orjson

from operators import Batch

from .._murmur2 import positive_hash
from .._serde import key_bytes
from ..storage import WriteBatch


class TopicSink:
    """Serialises elements to a topic: at-least-once flushes after every round; exactly-once
    holds them for the checkpoint's transaction."""

    def __init__(self, broker: Any, topic: str, hold: bool) -> None:
        self.broker = broker
        self.topic = topic
        self.hold = hold
        self.n = broker.topic(topic).partitions
        self.pending: dict[int, list[tuple[Any, Any, list[Any], int]]] = {}
        self._rr = 0
        self.written = 0

    def add(self, batch: Batch, headers: list[tuple[str, bytes | None]] | None = None) -> None:
        dumps = orjson.dumps
        now = int(time.time() * 1000)
        ts = batch.ts or [now] * len(batch.values)
        hdrs = headers or []
        n = self.n
        if batch.keys is None:
            p = self._rr % n
            self._rr += 1
            out = self.pending.setdefault(p, [])
            out += [(None, v if type(v) is bytes else dumps(v), hdrs, t)
                    for v, t in zip(batch.values, ts)]
        else:
            for k, v, t in zip(batch.keys, batch.values, ts):
                kb = key_bytes(k)
                p = positive_hash(kb) % n if kb is not None else 0
                self.pending.setdefault(p, []).append(
                    (kb, v if type(v) is bytes else dumps(v), hdrs, t))
        self.written += len(batch.values)

    async def flush(self) -> None:
        if self.hold or not self.pending:
            return
        pending, self.pending = self.pending, {}
        for p, recs in pending.items():
            await self.broker.produce_many(self.topic, p, _chunks(recs))

    def drain_into(self, wb: WriteBatch) -> None:
        pending, self.pending = self.pending, {}
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
