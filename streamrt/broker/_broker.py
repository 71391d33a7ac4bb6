"""The Broker: the one facade every caller goes through (embedded clients, pipelines, the
Kafka-protocol server), so each guarantee is implemented once.

It owns the log store, the actor runtime (a root supervisor with a ``partitions`` supervisor
holding one actor per partition), a task group for background work (linger flushes of
fire-and-forget sends, consumer heartbeats), and the per-partition signals that wake
long-polling fetchers when data arrives.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..actors import ActorRef, Pending, RestartPolicy, Supervisor, open_runtime
from ..errors import InvalidArgument, StreamrtError
from ..storage import LogStore, Records, TopicConfig, TopicInfo, WriteBatch, WriteResult
from ..storage._types import Durability
from ._partition import PartitionActor, actor_name

log = logging.getLogger(__name__)


class PendingAppend:
    """An append queued with :meth:`Broker.submit`; ``await result()`` for its WriteResult
    once durable (or its typed error)."""

    __slots__ = ("_pending",)

    def __init__(self, pending: Pending) -> None:
        self._pending = pending

    async def result(self) -> WriteResult:
        waiter = await self._pending.result()  # the partition actor queued it in the writer
        result: WriteResult = await waiter.wait()
        return result


class Broker:
    """Topics, produce, long-poll fetch and commits over one data directory. Get one with
    :func:`streamrt.open`; it lives as long as that ``async with`` block."""

    def __init__(self, store: LogStore, root: Supervisor, tg: TaskGroup) -> None:
        self.store = store
        self.root = root
        self.tg = tg
        self._partitions: Supervisor | None = None
        self._signals: dict[tuple[str, int], anyio.Event] = {}
        self._watchers: dict[tuple[str, int], set[anyio.Event]] = {}
        self._closing = False
        self._closed = False  # producers flushed; the block is over: clients refuse work
        self._producers: list[Any] = []
        self.groups: Any = None  # the consumer-group coordinator (_groups.py)
        self.queues: Any = None  # the queue-group manager (_queues.py)

    async def _start(self) -> None:
        async def init(sup: Supervisor) -> None:
            for info in self.store.topics():
                await self._spawn_partitions(sup, info)

        self._partitions = await self.root.spawn_supervisor("partitions", init)
        # Consumer groups (pub/sub) and queue groups: each package part starts its own actors.
        from ._groups import start_groups
        from ._queues import start_queues

        self.groups = await start_groups(self)
        self.queues = await start_queues(self)

    async def _spawn_partitions(self, sup: Supervisor, info: TopicInfo) -> None:
        for p in range(info.partitions):
            name = actor_name(info.name, p)
            if name not in sup.children:
                await sup.spawn(lambda t=info.name, q=p: PartitionActor(self, t, q), name)

    # ----------------------------------------------------------------- topics

    async def create_topic(
        self, name: str, partitions: int = 1, config: TopicConfig | None = None, **settings: Any
    ) -> TopicInfo:
        """Create a topic (no-op if it exists with the same settings). ``settings`` are
        TopicConfig fields, e.g. ``retention_ms=60_000``."""
        if settings:
            if config is not None:
                raise InvalidArgument("pass either config= or topic settings, not both")
            config = TopicConfig(**settings)
        info = await self.store.create_topic(name, partitions, config)
        assert self._partitions is not None
        await self._spawn_partitions(self._partitions, info)
        return info

    async def delete_topic(self, name: str) -> None:
        """Delete a topic, its records and the offsets committed for it."""
        info = self.store.topic(name)
        await self.store.delete_topic(name)
        assert self._partitions is not None
        for p in range(info.partitions):
            ref = self._partitions.children.pop(actor_name(name, p), None)
            if ref is not None:
                ref.close()
            self._notify(name, p)

    def topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name."""
        return self.store.topics()

    def topic(self, name: str) -> TopicInfo:
        """One topic's info (UnknownTopic if absent)."""
        return self.store.topic(name)

    # ----------------------------------------------------------------- writes

    async def produce(self, topic: str, partition: int, records: Sequence[Any]) -> int:
        """Append records (``(key, value[, headers[, timestamp]])`` tuples of bytes, or
        Records) to one partition as one batch; returns the base offset once durable."""
        wb = WriteBatch()
        wb.append(topic, partition, records)
        return (await self._append(topic, partition, wb)).base_offsets[0]

    async def produce_many(
        self, topic: str, partition: int, batches: Sequence[Sequence[Any]]
    ) -> list[int]:
        """Append several batches to one partition in one atomic, durable commit; returns
        each batch's base offset."""
        wb = WriteBatch()
        for records in batches:
            wb.append(topic, partition, records)
        return list((await self._append(topic, partition, wb)).base_offsets)

    async def produce_raw(self, topic: str, partition: int, batch: bytes) -> int:
        """Append a ready Kafka RecordBatch v2 (checked); returns its base offset."""
        wb = WriteBatch()
        wb.append_raw(topic, partition, batch)
        return (await self._append(topic, partition, wb)).base_offsets[0]

    async def _append(self, topic: str, partition: int, wb: WriteBatch) -> WriteResult:
        waiter = await (await self._ref(topic, partition)).ask(wb)  # queued in the writer
        result: WriteResult = await waiter.wait()  # durable
        return result

    async def submit(self, topic: str, partition: int, wb: WriteBatch) -> PendingAppend:
        """Queue an append intent for one partition and return once it is queued, with a
        :class:`PendingAppend` whose ``result()`` is the WriteResult once durable. Intents
        submitted in order from one task are written in that order, while the caller goes on
        submitting (pipelining: the Kafka server's produce path)."""
        return PendingAppend(await (await self._ref(topic, partition)).request(wb))

    async def _ref(self, topic: str, partition: int) -> ActorRef[WriteBatch]:
        self.store._tp(topic, partition)  # a clear UnknownTopic/UnknownPartition first
        assert self._partitions is not None
        ref = self._partitions.children.get(actor_name(topic, partition))
        if ref is None:  # created by another path (CLI before open): start its actors now
            await self._spawn_partitions(self._partitions, self.store.topic(topic))
            ref = self._partitions.children[actor_name(topic, partition)]
        return ref

    async def write(self, batch: WriteBatch) -> WriteResult:
        """Commit one atomic intent spanning any partitions, offsets and state (transactions,
        checkpoints); fetchers of the partitions it appended to are woken."""
        result = await self.store.write(batch)
        for topic, p, _ in batch.appends:
            self._notify(topic, p)
        return result

    def write_soon(self, batch: WriteBatch) -> Any:
        """Queue one atomic intent and return at once with its waiter (``await
        waiter.wait()`` for the WriteResult). Later writes commit after it; fetchers of the
        partitions it appends to are woken once it is durable."""
        waiter = self.store.submit(batch)
        tps = {(topic, p) for topic, p, _ in batch.appends}
        if tps:
            waiter.on_settled(lambda: self._notify_written(waiter, tps))
        return waiter

    def _notify_written(self, waiter: Any, tps: set[tuple[str, int]]) -> None:
        if waiter.error is None:  # (the writer of a failed intent hears of it)
            for topic, p in tps:
                self._notify(topic, p)

    async def commit(
        self, group: str, offsets: Mapping[tuple[str, int], int], generation: int | None = None
    ) -> None:
        """Commit a group's offsets (fenced on ``generation`` when given)."""
        await self.store.commit(group, offsets, generation)

    def committed(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        """A group's committed offsets."""
        return self.store.committed(group, topic)

    # ----------------------------------------------------------------- reads

    def _notify(self, topic: str, partition: int) -> None:
        ev = self._signals.pop((topic, partition), None)
        if ev is not None:
            ev.set()
        watchers = self._watchers.pop((topic, partition), None)
        if watchers:
            for w in watchers:
                w.set()

    async def wait_any(self, positions: Mapping[tuple[str, int], int], timeout: float,
                       wake: anyio.Event | None = None) -> bool:
        """Wait until any partition's high watermark passes its offset in ``positions`` or
        ``timeout`` ends; True if data is there (a multi-partition long poll: Kafka's Fetch).
        With ``wake``, the wait also ends when that event is set (by the caller, for its own
        reasons, or by this wait: the event is what the partitions set when data comes, so
        it is used up either way)."""
        hw = self.store.high_watermark

        def ready() -> bool:
            for (t, p), off in positions.items():
                try:
                    if hw(t, p) > off:
                        return True
                except StreamrtError:
                    return True  # deleted meanwhile: let the caller report it
            return False

        if ready():
            # A checkpoint even so: a caller whose read finds nothing at a position below the
            # high watermark (a gap) must not loop without letting its deadline fire.
            await anyio.lowlevel.checkpoint()
            return True
        with anyio.move_on_after(timeout):
            while not ready():
                ev = wake if wake is not None else anyio.Event()
                for tp in positions:
                    self._watchers.setdefault(tp, set()).add(ev)
                try:
                    if not ready():  # nothing can slip in between: no await since the check
                        await ev.wait()
                finally:
                    for tp in positions:
                        ws = self._watchers.get(tp)
                        if ws is not None:
                            ws.discard(ev)
                            if not ws:
                                del self._watchers[tp]
                if wake is not None:
                    break
        return ready()

    async def wait_for_data(self, topic: str, partition: int, offset: int, timeout: float) -> bool:
        """Wait until the partition's high watermark passes ``offset`` or ``timeout`` ends;
        True if data is there."""
        hw = self.store.high_watermark
        with anyio.move_on_after(timeout):
            while hw(topic, partition) <= offset:
                ev = self._signals.get((topic, partition))
                if ev is None:
                    ev = self._signals[(topic, partition)] = anyio.Event()
                await ev.wait()
        return hw(topic, partition) > offset

    async def fetch(
        self, topic: str, partition: int, offset: int, *, max_records: int = 10_000,
        max_bytes: int = 4 << 20, max_wait: float = 0.0,
    ) -> Records:
        """Records from ``offset``, returning as soon as any exist or after ``max_wait``
        seconds with none (long poll)."""
        recs = self.store.read(topic, partition, offset, max_records, max_bytes)
        if recs or max_wait <= 0:
            return recs
        if await self.wait_for_data(topic, partition, offset, max_wait):
            return self.store.read(topic, partition, offset, max_records, max_bytes)
        return recs

    def high_watermark(self, topic: str, partition: int) -> int:
        return self.store.high_watermark(topic, partition)

    def log_start_offset(self, topic: str, partition: int) -> int:
        return self.store.log_start_offset(topic, partition)

    def offset_for_timestamp(self, topic: str, partition: int, timestamp: int) -> int | None:
        return self.store.offset_for_timestamp(topic, partition, timestamp)

    # ----------------------------------------------------------------- clients

    def producer(self, **config: Any) -> Any:
        """A producer: ``await producer.send(topic, value, key=...)``. See streamrt.Producer."""
        from ..client._producer import Producer

        p = Producer(self, **config)
        self._producers.append(p)
        return p

    def consumer(self, *topics: str, **config: Any) -> Any:
        """A pub/sub consumer of ``topics`` (in a ``group=`` or standalone); see docs/clients.md."""
        from ..client._consumer import Consumer

        return Consumer(self, topics, **config)

    def queue(self, name: str, **config: Any) -> Any:
        """A point-to-point queue consumer of topic ``name``; see docs/queues.md."""
        from ..client._queue import QueueConsumer

        return QueueConsumer(self, name, **config)

    async def _close(self) -> None:
        self._closing = True
        for p in self._producers:
            await p.flush()
        self._closed = True


@asynccontextmanager
async def open(  # noqa: A001 - streamrt.open mirrors the built-in on purpose
    path: str | os.PathLike[str] = ".streamrt", *, durability: Durability = "sync",
    maintenance_interval: float | None = 30.0, policy: RestartPolicy | None = None,
) -> AsyncIterator[Broker]:
    """Open the broker on the data directory ``path`` (created if needed) for the block.

    Leaving the block flushes producers, stops every actor gracefully and closes the log.
    """
    store = LogStore.open(path, durability=durability, maintenance_interval=maintenance_interval)
    try:
        async with _unwrapped(), open_runtime("broker", policy) as root:
            async with anyio.create_task_group() as tg:
                broker = Broker(store, root, tg)
                await broker._start()
                try:
                    yield broker
                finally:
                    with anyio.CancelScope(shield=True):
                        await broker._close()
                    tg.cancel_scope.cancel()
    finally:
        store.close()


@asynccontextmanager
async def _unwrapped() -> AsyncIterator[None]:
    """Task groups wrap even a single error in an ExceptionGroup; give callers the error
    itself (with its own traceback) when there is exactly one."""
    try:
        yield
    except BaseExceptionGroup as eg:
        leaves = _leaves(eg)
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from None
        raise


def _leaves(eg: BaseExceptionGroup) -> list[BaseException]:  # type: ignore[type-arg]
    out: list[BaseException] = []
    for e in eg.exceptions:
        out += _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out
