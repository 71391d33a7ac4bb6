"""The embedded producer: per-message ``send`` feeding the batch path.

Like a Kafka producer, ``send`` serialises the message, picks its partition (murmur2 of the
key, as Kafka's Java client, kafka-python and aiokafka do; librdkafka's default differs, see
docs/clients.md), and adds it to that partition's open batch. A batch is appended as one
RecordBatch when it holds ``batch_records`` messages or ``batch_bytes`` bytes, or ``linger``
seconds after its first message, whichever comes first; every ``send`` in it then resolves
with its offset, once the batch is durable. Many concurrent senders therefore share one
append and one fsync. ``acks=0`` returns at once (fire and forget, at-most-once): a failed
batch is only logged. Unkeyed messages stick to one partition per batch and move on to the
next partition when the batch is sent (Kafka's sticky partitioner), so batches fill up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio

from .._murmur2 import positive_hash
from .._serde import Serde, key_bytes, resolve
from .._settings import count, seconds
from ..errors import InvalidArgument, StoreClosed

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger(__name__)

DEFAULT_LINGER = 0.005
DEFAULT_BATCH_RECORDS = 1000
DEFAULT_BATCH_BYTES = 1 << 20


class RecordMetadata(NamedTuple):
    """Where a sent message was stored."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class SentBatch(Sequence[RecordMetadata]):
    """Where each message of a ``send_many`` went."""

    __slots__ = ("topic", "partitions", "offsets", "timestamp")

    def __init__(self, topic: str, partitions: list[int], offsets: list[int], timestamp: int) -> None:
        self.topic = topic
        self.partitions = partitions
        self.offsets = offsets
        self.timestamp = timestamp

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return RecordMetadata(self.topic, self.partitions[i], self.offsets[i], self.timestamp)


class Delivery:
    """A message handed to the producer; ``await`` it for its RecordMetadata."""

    __slots__ = ("_batch", "topic", "partition", "_idx", "timestamp")

    def __init__(self, batch: _Batch, topic: str, partition: int, idx: int, ts: int) -> None:
        self._batch = batch
        self.topic = topic
        self.partition = partition
        self._idx = idx
        self.timestamp = ts

    async def wait(self) -> RecordMetadata:
        """The message's metadata once its batch is durable (or the batch's error)."""
        await self._batch.done.wait()
        if self._batch.error is not None:
            raise self._batch.error
        return RecordMetadata(self.topic, self.partition, self._batch.base + self._idx, self.timestamp)

    def __await__(self) -> Any:
        return self.wait().__await__()


class _Batch:
    __slots__ = ("records", "nbytes", "done", "base", "error")

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]] = []
        self.nbytes = 0
        self.done = anyio.Event()
        self.base = -1
        self.error: BaseException | None = None


class Producer:
    """Sends messages to topics; get one from ``broker.producer(...)``.

    ``linger`` (seconds, default 0.005), ``batch_records`` (1000) and ``batch_bytes`` (1 MiB)
    bound how long and how much a batch collects; ``acks`` is ``"all"``/``1`` (resolve when
    durable, the default) or ``0`` (fire and forget); ``value_serde`` is ``"json"`` (default),
    ``"bytes"``, ``"str"`` or an object with ``dumps``/``loads``.
    """

    def __init__(
        self, broker: Broker, *, linger: float = DEFAULT_LINGER,
        batch_records: int = DEFAULT_BATCH_RECORDS, batch_bytes: int = DEFAULT_BATCH_BYTES,
        acks: int | str = "all", value_serde: str | Serde = "json",
    ) -> None:
        if acks not in (0, 1, "all", -1):
            raise InvalidArgument(f"acks must be 0, 1 or 'all', got {acks!r}")
        self._broker = broker
        self.linger = seconds("linger", linger)
        self.batch_records = count("batch_records", batch_records)
        self.batch_bytes = count("batch_bytes", batch_bytes)
        self.acks = acks
        self._serde = resolve(value_serde)
        self._open: dict[tuple[str, int], _Batch] = {}
        self._sticky: dict[str, int] = {}
        self._inflight: set[_Batch] = set()

    def _check_open(self) -> None:
        if self._broker._closed:
            raise StoreClosed(
                f"this producer's broker is closed (its sr.open() block ended): open the "
                f"broker on {self._broker.store.path} again and send with a new producer")

    def _partition(self, topic: str, key: bytes | None, partition: int | None) -> int:
        store = self._broker.store
        info = store._topics.get(topic)  # the hot path: one dict lookup per message
        n = (info or store.topic(topic)).partitions
        if partition is not None:
            if type(partition) is not int or not 0 <= partition < n:
                from ..errors import UnknownPartition

                raise UnknownPartition(topic, partition, n)
            return partition
        if key is not None:
            return positive_hash(key) % n
        return self._sticky.setdefault(topic, 0) % n

    def send_soon(
        self, topic: str, value: Any, key: Any = None,
        headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        partition: int | None = None, timestamp: int | None = None,
    ) -> Delivery:
        """Add one message to its partition's batch without waiting; returns a Delivery to
        ``await`` for its metadata (or ignore, and ``await producer.flush()``)."""
        # Everything is checked before the message joins a batch: a bad argument fails this
        # call alone, never the other messages of the partition's batch.
        self._check_open()
        k = key_bytes(key)
        v = None if value is None else self._serde.dumps(value)
        p = self._partition(topic, k, partition)
        ts = int(time.time() * 1000) if timestamp is None else _timestamp(timestamp)
        hs = _headers(headers)
        batch = self._open.get((topic, p))
        if batch is None:
            batch = self._open[(topic, p)] = _Batch()
            self._broker.tg.start_soon(self._linger_then_flush, topic, p, batch)
        idx = len(batch.records)
        batch.records.append((k, v, hs, ts))
        batch.nbytes += (len(v) if v else 0) + (len(k) if k else 0)
        if len(batch.records) >= self.batch_records or batch.nbytes >= self.batch_bytes:
            self._detach(topic, p, batch)
            self._broker.tg.start_soon(self._flush, topic, p, batch)
        return Delivery(batch, topic, p, idx, ts)

    async def send(
        self, topic: str, value: Any, key: Any = None,
        headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        partition: int | None = None, timestamp: int | None = None,
    ) -> RecordMetadata | None:
        """Send one message; returns its metadata once durable (None with ``acks=0``)."""
        d = self.send_soon(topic, value, key, headers, partition, timestamp)
        if self.acks == 0:
            return None
        return await d

    async def send_many(
        self, topic: str, values: Iterable[Any], keys: Iterable[Any] | None = None,
        partition: int | None = None,
    ) -> SentBatch:
        """Send many messages at once, bypassing linger: the messages of each partition go in
        one durable commit, partitions concurrently. Returns a sequence of each message's
        RecordMetadata, in order (built when indexed; ``.offsets`` and ``.partitions`` are
        plain lists)."""
        self._check_open()
        vals = [None if v is None else self._serde.dumps(v) for v in values]
        ks = [key_bytes(k) for k in keys] if keys is not None else [None] * len(vals)
        if len(ks) != len(vals):
            raise InvalidArgument(f"send_many got {len(vals)} values but {len(ks)} keys")
        n = self._broker.store.topic(topic).partitions
        now = int(time.time() * 1000)
        by_part: dict[int, list[int]] = {}
        if partition is not None or keys is None:
            p = self._partition(topic, None, partition)
            by_part[p] = list(range(len(vals)))
            if partition is None:
                self._sticky[topic] = p + 1
        else:
            for i, k in enumerate(ks):
                q = positive_hash(k) % n if k is not None else self._partition(topic, None, None)
                by_part.setdefault(q, []).append(i)
        parts = [0] * len(vals)
        offsets = [0] * len(vals)
        empty: list[tuple[str, bytes | None]] = []

        async def one(p: int, idxs: list[int]) -> None:
            # Every chunk of this partition in one intent: one commit, offsets in order.
            chunks = [idxs[j:j + self.batch_records] for j in range(0, len(idxs), self.batch_records)]
            bases = await self._broker.produce_many(
                topic, p, [[(ks[i], vals[i], empty, now) for i in chunk] for chunk in chunks])
            for base, chunk in zip(bases, chunks):
                for off, i in zip(range(base, base + len(chunk)), chunk):
                    parts[i] = p
                    offsets[i] = off

        async with anyio.create_task_group() as tg:
            for p, idxs in by_part.items():
                tg.start_soon(one, p, idxs)
        return SentBatch(topic, parts, offsets, now)

    async def _linger_then_flush(self, topic: str, p: int, batch: _Batch) -> None:
        # This task runs in the broker's task group: an error escaping it would stop the
        # broker, so none may (a failed wait just sends the batch now; _flush catches).
        try:
            if self.linger:
                await anyio.sleep(self.linger)
            else:
                await anyio.lowlevel.checkpoint()  # let senders in this same moment join
        except Exception:
            log.exception("producer linger for %s[%d] failed; sending the batch now", topic, p)
        if self._open.get((topic, p)) is batch:  # not already sent for being full
            self._detach(topic, p, batch)
            await self._flush(topic, p, batch)

    def _detach(self, topic: str, p: int, batch: _Batch) -> None:
        """Close the batch to new messages (the next send opens a new one)."""
        del self._open[(topic, p)]
        if self._sticky.get(topic) == p:
            self._sticky[topic] = p + 1
        self._inflight.add(batch)

    async def _flush(self, topic: str, p: int, batch: _Batch) -> None:
        try:
            batch.base = await self._broker.produce(topic, p, batch.records)
        except Exception as e:
            batch.error = e
            if self.acks == 0:
                log.warning("fire-and-forget batch to %s[%d] lost: %s", topic, p, e)
        finally:
            self._inflight.discard(batch)
            batch.done.set()

    async def flush(self) -> None:
        """Send every open batch now and wait until all in flight are done."""
        pending = list(self._open.items())
        async with anyio.create_task_group() as tg:
            for (topic, p), batch in pending:
                self._detach(topic, p, batch)
                tg.start_soon(self._flush, topic, p, batch)
        for batch in list(self._inflight):
            await batch.done.wait()


MAX_TIMESTAMP = 2**63 - 1


def _timestamp(ts: Any) -> int:
    """A record timestamp, checked: int milliseconds since the epoch, 0 to 2**63 - 1 (Kafka's
    producer also refuses negative ones)."""
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise InvalidArgument(
            f"timestamp must be int milliseconds since the epoch (or None for now), got "
            f"{type(ts).__name__} {ts!r:.60}; from a datetime use int(dt.timestamp() * 1000)")
    if not 0 <= ts <= MAX_TIMESTAMP:
        raise InvalidArgument(
            f"timestamp must be from 0 to 2**63 - 1 milliseconds since the epoch, got {ts}")
    return int(ts)


def _headers(
    headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
) -> list[tuple[str, bytes | None]]:
    """Headers as stored: a list of ``(str, bytes | None)``; str values are UTF-8 encoded."""
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        items: Iterable[Any] = headers.items()
    elif isinstance(headers, (str, bytes, bytearray)) or not isinstance(headers, Iterable):
        raise InvalidArgument(
            f"headers are a mapping or a list of (name, value) pairs, got "
            f"{type(headers).__name__} {headers!r:.60}")
    else:
        items = headers
    out = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InvalidArgument(
                f"headers are (name, value) pairs, got {item!r:.60}: pass e.g. "
                f"[('trace-id', b'abc')] or {{'trace-id': 'abc'}}")
        k, v = item
        if not isinstance(k, str):
            raise InvalidArgument(f"header names are str, got {type(k).__name__}")
        if isinstance(v, str):
            v = v.encode()
        elif v is not None and not isinstance(v, bytes):
            raise InvalidArgument(f"header {k!r}: values are bytes, str or None, got {type(v).__name__}")
        out.append((k, v))
    return out
