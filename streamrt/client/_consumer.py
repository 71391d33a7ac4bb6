"""The embedded pub/sub consumer: group membership, fetching, commits, delivery guarantees.

A consumer either subscribes to topics in a group (``broker.consumer("orders",
group="billing")``: the group coordinator splits the partitions among the group's members and
re-splits them when members come and go), is standalone (no group: every partition of its
topics), or is given partitions by hand (``assign``).

Membership (``_membership.py``, a mixin of the consumer) runs in a background task, independent
of processing: it heartbeats every ``heartbeat_interval`` and rejoins when the group rebalances
(embedded consumers hear of a rebalance at once through the coordinator's signal; network
clients would learn it from their next heartbeat). So a slow handler never gets a live member
evicted; only a stalled event loop or a dead process does. Rebalances are Kafka's eager ones:
every partition is revoked, then the new assignment comes with the join, computed here by the
leader's assignor (``_assignors.py``). Before revoking, an at-least-once consumer waits (up to
``revoke_timeout``) for the batch in hand to be finished, and commits what was processed.

Fetching is batch-first: :meth:`Consumer.getmany` reads up to ``max_records`` from the
owned partitions (round-robin, so no partition starves), long-polling until ``timeout`` when
there is nothing. Iterating the consumer is a thin wrapper over it that hands out one message
of the current batch per step.

Positions, per partition: *fetched* (next offset to read), *consumed* (one past the last
message handed out) and *processed* (consumed, minus what the application still holds: the
message or batch handed out last, until it asks for more). What each guarantee commits:

* ``at_most_once``: a batch's positions are committed before it is handed out.
* ``at_least_once`` (default): processed positions, automatically when the next batch is
  fetched (at most every ``auto_commit_interval`` seconds), before a revocation and on
  close; ``commit()`` commits consumed positions at once.
* ``exactly_once``: only inside ``async with consumer.transaction() as tx``: the outputs
  sent with ``tx.send`` and the consumed positions are written in one LMDB transaction,
  fenced on the group generation; an aborted or fenced transaction rewinds the consumer to
  its last committed positions, so the inputs are processed again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from .._murmur2 import positive_hash
from .._serde import Serde, key_bytes, resolve
from .._settings import count, seconds
from ..broker._queue_routing import check_pattern, is_pattern, match
from ..broker._assignors import ASSIGNORS, get_assignor
from ..errors import (
    ConsumerClosed,
    DeserializationError,
    InvalidArgument,
    OffsetOutOfRange,
    RebalanceInProgress,
    StaleGeneration,
    StreamrtError,
    UnknownMemberId,
)
from ..storage import WriteBatch
from ._membership import GroupMembership, TopicPartition
from ._producer import _headers, _timestamp

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger(__name__)

GUARANTEES = ("at_most_once", "at_least_once", "exactly_once")
DEFAULT_ASSIGNORS = ("sticky", "range", "roundrobin")
DEFAULT_MAX_POLL_RECORDS = 1000
DEFAULT_SESSION_TIMEOUT = 10.0
DEFAULT_HEARTBEAT_INTERVAL = 3.0
DEFAULT_REBALANCE_TIMEOUT = 30.0
DEFAULT_AUTO_COMMIT_INTERVAL = 1.0


class Message:
    """One consumed message: ``topic``, ``partition``, ``offset``, ``timestamp`` (ms),
    ``key`` (bytes, or as ``key_serde`` made it), ``value`` (deserialised) and ``headers``
    (``(name, bytes)`` pairs)."""

    __slots__ = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")

    def __init__(self, topic: str, partition: int, offset: int, timestamp: int, key: Any,
                 value: Any, headers: Sequence[tuple[str, bytes | None]]) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers

    def __repr__(self) -> str:
        return (f"Message({self.topic}[{self.partition}]@{self.offset}, key={self.key!r}, "
                f"value={self.value!r:.60})")


class ConsumerTransaction:
    """Outputs of one exactly-once transaction; see :meth:`Consumer.transaction`."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._outputs: dict[TopicPartition, list[tuple[Any, ...]]] = {}
        self.status = "open"  # open -> committed | aborted

    def send(
        self, topic: str, value: Any, key: Any = None,
        headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        partition: int | None = None, timestamp: int | None = None,
    ) -> None:
        """Add one output message; it is written, with the input offsets, when the
        transaction's block ends without an error (serialised and partitioned as the
        producer does: ``output_serde``, murmur2 of the key). Arguments are checked here, as
        ``Producer.send`` checks them: a bad one raises InvalidArgument at this call."""
        if self.status != "open":
            raise InvalidArgument(f"this transaction is {self.status}; start a new one")
        c = self._consumer
        k = key_bytes(key)
        v = None if value is None else c._out_serde.dumps(value)
        n = c._broker.store.topic(topic).partitions
        if partition is None:
            if k is not None:
                partition = positive_hash(k) % n
            else:  # unkeyed: one partition per transaction, the next one next time
                partition = c._tx_sticky.get(topic, 0) % n
        elif type(partition) is not int or not 0 <= partition < n:
            from ..errors import UnknownPartition

            raise UnknownPartition(topic, partition, n)
        ts = int(time.time() * 1000) if timestamp is None else _timestamp(timestamp)
        hs = _headers(headers)  # before the output list exists: a refused send leaves none
        self._outputs.setdefault((topic, partition), []).append((k, v, hs, ts))

    def __len__(self) -> int:
        return sum(len(v) for v in self._outputs.values())


class Consumer(GroupMembership):
    """Consumes topics, in a consumer group or standalone. Get one from
    ``broker.consumer(*topics, **config)`` and use it in ``async with``; see docs/clients.md.

    ``group``: the consumer group (None: standalone, every partition of ``topics``, or those
    given to :meth:`assign`). ``auto_offset_reset``: where a partition without a committed
    offset (or with one no longer stored) starts: ``"latest"`` (default) or ``"earliest"``.
    ``guarantee``: ``"at_least_once"`` (default), ``"at_most_once"`` or ``"exactly_once"``.
    ``value_serde`` / ``key_serde``: how values (default JSON) and keys (default: bytes as
    stored) are deserialised; ``output_serde`` serialises transaction outputs (default: as
    ``value_serde``). ``assignors``: the assignors this member supports, preferred first
    (``sticky``, ``range``, ``roundrobin``). ``session_timeout``, ``heartbeat_interval``,
    ``rebalance_timeout`` (seconds): as Kafka's. ``max_poll_records``: batch size of the
    iterator and default of ``getmany``. ``auto_commit_interval``: at most how often
    at-least-once commits on fetch (0: every batch). ``revoke_timeout``: how long a rebalance
    waits for the batch in hand to be finished (default: half the rebalance timeout).
    ``topics`` may hold patterns (RabbitMQ topic-exchange style: ``logs.*.error``, ``logs.#``):
    every matching topic is consumed, and topics created later are picked up within
    ``pattern_refresh`` seconds (a group rebalances to assign them).
    """

    def __init__(
        self, broker: Broker, topics: Sequence[str] = (), *, group: str | None = None,
        client_id: str = "streamrt", auto_offset_reset: str = "latest",
        guarantee: str = "at_least_once", value_serde: str | Serde = "json",
        key_serde: str | Serde | None = None, output_serde: str | Serde | None = None,
        assignors: str | Sequence[str] = DEFAULT_ASSIGNORS,
        session_timeout: float = DEFAULT_SESSION_TIMEOUT,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        rebalance_timeout: float = DEFAULT_REBALANCE_TIMEOUT,
        max_poll_records: int = DEFAULT_MAX_POLL_RECORDS,
        auto_commit_interval: float = DEFAULT_AUTO_COMMIT_INTERVAL,
        revoke_timeout: float | None = None, pattern_refresh: float = 1.0,
    ) -> None:
        if auto_offset_reset not in ("earliest", "latest"):
            raise InvalidArgument(
                f"auto_offset_reset must be 'earliest' or 'latest', got {auto_offset_reset!r}")
        if guarantee not in GUARANTEES:
            raise InvalidArgument(f"guarantee must be one of {GUARANTEES}, got {guarantee!r}")
        if group is not None and (not isinstance(group, str) or not group):
            raise InvalidArgument(f"a group name is a non-empty string, got {group!r}")
        if guarantee != "at_least_once" and group is None:
            raise InvalidArgument(
                f"guarantee={guarantee!r} needs a group: its offsets are committed for one")
        session_timeout = seconds("session_timeout", session_timeout, zero_ok=False)
        heartbeat_interval = seconds("heartbeat_interval", heartbeat_interval, zero_ok=False)
        rebalance_timeout = seconds("rebalance_timeout", rebalance_timeout, zero_ok=False)
        if not heartbeat_interval < session_timeout:
            raise InvalidArgument(
                f"heartbeat_interval must be less than session_timeout, got "
                f"{heartbeat_interval} and {session_timeout}")
        count("max_poll_records", max_poll_records)
        auto_commit_interval = seconds("auto_commit_interval", auto_commit_interval)
        if revoke_timeout is not None:
            revoke_timeout = seconds("revoke_timeout", revoke_timeout)
        names = (assignors,) if isinstance(assignors, str) else tuple(assignors)
        for n in names:
            get_assignor(n)
        if not names:
            raise InvalidArgument(f"assignors must name at least one of {sorted(ASSIGNORS)}")
        # Names with '*' or '#' are patterns (logs.*.error, logs.#): they subscribe to every
        # matching topic, and topics created later are picked up within ``pattern_refresh``.
        self._patterns = tuple(check_pattern(t) for t in topics if is_pattern(t))
        self._plain = tuple(t for t in topics if not is_pattern(t))
        for t in self._plain:
            broker.store.topic(t)  # UnknownTopic now, not at the first fetch
        self.pattern_refresh = seconds("pattern_refresh", pattern_refresh, zero_ok=False)
        self._pattern_scope = anyio.CancelScope()
        self._broker = broker
        self.topics = self._resolve()
        self.group = group
        self.client_id = client_id
        self.auto_offset_reset = auto_offset_reset
        self.guarantee = guarantee
        self._loads = resolve(value_serde).loads
        self._key_loads = None if key_serde is None else resolve(key_serde).loads
        self._out_serde = resolve(output_serde if output_serde is not None else value_serde)
        self.assignors = names
        self.session_timeout = float(session_timeout)
        self.heartbeat_interval = float(heartbeat_interval)
        self.rebalance_timeout = float(rebalance_timeout)
        self.max_poll_records = max_poll_records
        self.auto_commit_interval = float(auto_commit_interval)
        self.revoke_timeout = (self.rebalance_timeout / 2 if revoke_timeout is None
                               else float(revoke_timeout))

        # membership
        self.member_id = ""
        self.generation = -1
        self._subscribed = bool(self._plain or self._patterns) and group is not None
        self._manual = False
        self._rebalancing = False  # revoking, joining, syncing
        self._joining = False  # a join or sync request in flight (it keeps the session alive)
        self._revoking = False
        self._rejoin_needed = False
        self._rejoin_event = anyio.Event()
        self._scope = anyio.CancelScope()
        self._membership_done: anyio.Event | None = None
        self._last_owned: list[TopicPartition] = []
        self._assigned_event = anyio.Event()
        self._failure: BaseException | None = None
        self._started = False
        self._closed = False

        # positions
        self._assignment: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}  # next offset to fetch
        self._committed: dict[TopicPartition, int] = {}  # what is stored for the group
        self._start: dict[TopicPartition, int] = {}  # where an aborted transaction rewinds to
        self._paused: set[TopicPartition] = set()
        self._epoch = 0  # changes with every assignment and revocation
        self._rr = 0
        self._undecodable: DeserializationError | None = None  # raised by the next read
        self._wake_event = anyio.Event()
        self._it_batch: list[Message] = []
        self._it_idx = 0
        self._inflight_msg: Message | None = None  # handed out by the iterator, in hand
        self._inflight_batch: list[Message] | None = None  # handed out by getmany, in hand
        self._idle_event: anyio.Event | None = None
        self._last_auto_commit = 0.0
        self._tx_sticky: dict[str, int] = {}

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Consumer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        with anyio.CancelScope(shield=True):
            await self.close(processed_only=exc is not None)

    async def start(self) -> None:
        """Join the group (waiting up to ``rebalance_timeout`` for the first assignment) or,
        standalone, take every partition of the topics. ``async with`` calls it."""
        self._check_open()
        if self._started:
            return
        self._started = True
        if self._subscribed:
            self._membership_done = anyio.Event()
            self._request_rejoin()
            self._broker.tg.start_soon(self._membership)
            with anyio.move_on_after(self.rebalance_timeout):
                await self._assigned_event.wait()
            if self._failure is not None:  # e.g. InconsistentGroupProtocol: tell the caller
                self._closed = True
                raise self._failure
        elif self.topics:
            self._assign_partitions([(t, p) for t in self.topics
                                     for p in range(self._broker.store.topic(t).partitions)])
        if self._patterns:
            self._broker.tg.start_soon(self._watch_patterns)

    def _resolve(self) -> tuple[str, ...]:
        """The subscribed topics: the plain names, then every topic matching a pattern."""
        if not self._patterns:
            return self._plain
        found = [i.name for i in self._broker.topics()
                 if i.name not in self._plain and any(match(p, i.name) for p in self._patterns)]
        return self._plain + tuple(found)

    async def _watch_patterns(self) -> None:
        """Pick up topics created (or deleted) since: a group member rejoins, so the leader
        assigns the new partitions; a standalone consumer adds them (from its reset policy).
        It runs in the broker's task group, so an error is handed to the application (the next
        call raises it), never let out to stop the broker."""
        try:
            await self._watch_patterns_loop()
        except Exception as e:
            log.debug("pattern watcher of consumer %r stopped", self.topics, exc_info=True)
            self._failure = e
            self._wake()

    async def _watch_patterns_loop(self) -> None:
        with self._pattern_scope:
            while not self._closed:
                await anyio.sleep(self.pattern_refresh)
                topics = self._resolve()
                if topics == self.topics:
                    continue
                self.topics = topics
                if self._subscribed:
                    self._request_rejoin()
                elif not self._manual:
                    self._drop_unreturned()
                    store = self._broker.store
                    live = {(t, p) for t in topics for p in range(store.topic(t).partitions)}
                    positions = {tp: off for tp, off in self._positions.items() if tp in live}
                    for tp in live - positions.keys():
                        positions[tp] = self._reset_position(tp)
                    self._set_assignment(sorted(positions), positions)

    async def close(self, processed_only: bool = False) -> None:
        """Commit (at-least-once: what was consumed, or with ``processed_only`` what was
        processed), stop heartbeating and leave the group. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._scope.cancel()
        self._pattern_scope.cancel()
        if self._membership_done is not None:
            await self._membership_done.wait()
        if self.guarantee == "at_least_once" and self.group is not None and self._assignment:
            try:
                await self._commit(self._processed() if processed_only else self._consumed())
            except StreamrtError as e:
                log.warning("consumer of group %r: final commit failed: %s", self.group, e)
        if self.member_id:
            try:
                await self._broker.groups.leave(self.group, member_id=self.member_id)
            except StreamrtError as e:
                log.debug("leave of group %r failed: %s", self.group, e)
        self._assignment = []
        self._wake()

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumerClosed(f"consumer of {list(self.topics)} (group {self.group!r}) is "
                                 f"closed; open a new one with broker.consumer(...)")
        if self._broker._closed:
            raise ConsumerClosed(
                f"consumer of {list(self.topics)} (group {self.group!r}) belongs to a broker "
                f"that is closed (its sr.open() block ended); open the broker again and get a "
                f"new consumer from it")
        if self._failure is not None:
            raise self._failure

    # ------------------------------------------------------------- positions

    def _drop_unreturned(self) -> None:
        """Forget fetched messages not yet handed out; their partitions fetch them again."""
        rest = self._it_batch[self._it_idx:]
        first: dict[TopicPartition, int] = {}
        for m in rest:
            first.setdefault((m.topic, m.partition), m.offset)
        for tp, off in first.items():
            if tp in self._positions:
                self._positions[tp] = off
        del self._it_batch[self._it_idx:]

    def _consumed(self) -> dict[TopicPartition, int]:
        """One past the last message handed out, per assigned partition."""
        pos = dict(self._positions)
        seen: set[TopicPartition] = set()
        for m in self._it_batch[self._it_idx:]:
            tp = (m.topic, m.partition)
            if tp not in seen:
                seen.add(tp)
                if tp in pos:
                    pos[tp] = m.offset
        return pos

    def _processed(self) -> dict[TopicPartition, int]:
        """Consumed, minus the message or batch the application still holds."""
        pos = self._consumed()
        held = ([self._inflight_msg] if self._inflight_msg is not None
                else self._inflight_batch or [])
        for m in reversed(held):
            tp = (m.topic, m.partition)
            if tp in pos:
                pos[tp] = min(pos[tp], m.offset)
        return pos

    async def _commit(self, positions: Mapping[TopicPartition, int]) -> None:
        offsets = {tp: off for tp, off in positions.items()
                   if tp in self._positions and self._committed.get(tp) != off}
        if not offsets:
            return
        assert self.group is not None
        if self._subscribed and (not self.member_id or self.generation < 0):
            # Never a standalone commit in a member's stead: it would slip past the fence.
            raise UnknownMemberId(self.group, "(this consumer, between memberships)")
        await self._broker.groups.commit(
            self.group, offsets, member_id=self.member_id if not self._manual else "",
            generation=self.generation if not self._manual else -1)
        self._committed.update(offsets)

    def _fenced(self, e: StreamrtError) -> None:
        """After a refused commit: a subscribed member rejoins (unless it is rejoining);
        a hand-assigned one cannot, so the error is the application's to handle."""
        if not isinstance(e, (StaleGeneration, RebalanceInProgress)):
            return
        if not self._subscribed:
            raise e
        if not self._rebalancing:
            # Replaced: the partitions are lost (another member may own them now), so give
            # them up without committing, and rejoin.
            if isinstance(e, StaleGeneration):
                self._set_assignment([], {})
            self._request_rejoin(reset_member=isinstance(e, UnknownMemberId))

    # ------------------------------------------------------------- fetching

    def _wake(self) -> None:
        self._wake_event.set()
        self._wake_event = anyio.Event()

    async def getmany(
        self, max_records: int | None = None, timeout: float | None = 1.0,
    ) -> list[Message]:
        """Up to ``max_records`` (default ``max_poll_records``) messages from the owned
        partitions, waiting up to ``timeout`` seconds (None: until some come, or the consumer
        is closed, as ``QueueConsumer.get``) for any; ``[]`` if none came. Asking again marks
        the previous batch processed (at-least-once commits it)."""
        if max_records is None:
            max_records = self.max_poll_records
        elif type(max_records) is not int or max_records < 1:
            raise InvalidArgument(
                f"max_records must be an integer >= 1 (or None for max_poll_records="
                f"{self.max_poll_records}), got {max_records!r:.60}")
        if timeout is None:
            timeout = math.inf
        elif (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
              or not timeout >= 0):  # (NaN fails this too)
            raise InvalidArgument(
                f"timeout must be a number of seconds >= 0, or None to wait until messages "
                f"come, got {timeout!r:.60}")
        self._drop_unreturned()  # a getmany caller is done with the iterator's batch too
        batch = await self._next_batch(max_records, timeout)
        if batch:
            self._inflight_batch = batch
        return batch

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        i = self._it_idx
        if i < len(self._it_batch):
            m = self._it_batch[i]
            self._it_idx = i + 1
            self._inflight_msg = m
            return m
        while True:
            if self._closed:
                raise StopAsyncIteration
            batch = await self._next_batch(self.max_poll_records, 1.0)
            if batch:
                self._it_batch = batch
                self._it_idx = 1
                self._inflight_msg = batch[0]
                return batch[0]

    async def _next_batch(self, max_records: int, timeout: float) -> list[Message]:
        """The batch path under both getmany and iteration."""
        self._check_open()
        # Asking for more means what was handed out before is processed.
        self._inflight_msg = None
        self._inflight_batch = None
        if self._idle_event is not None:
            self._idle_event.set()
            self._idle_event = None
        if self.guarantee == "at_least_once" and self.group is not None and self._assignment:
            now = anyio.current_time()
            if now - self._last_auto_commit >= self.auto_commit_interval:
                self._last_auto_commit = now
                try:
                    await self._commit(self._consumed())
                except StreamrtError as e:
                    log.info("group %r: auto-commit refused (%s)", self.group, e)
                    self._fenced(e)
        deadline = anyio.current_time() + timeout
        while True:
            if self._closed:
                return []
            if self._failure is not None:
                raise self._failure
            epoch = self._epoch
            batch = self._read(max_records)
            if batch:
                if self.guarantee == "at_most_once":
                    try:
                        await self._commit(self._positions)
                    except StreamrtError as e:
                        # Not committed, so not handed out: fetched again by the owner.
                        log.info("group %r: commit before delivery refused (%s)", self.group, e)
                        if epoch == self._epoch:
                            self._rewind(batch)
                        self._fenced(e)
                        batch = []
                if batch:
                    return batch
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return []
            await self._wait_for_data(remaining)

    def _rewind(self, batch: list[Message]) -> None:
        first: dict[TopicPartition, int] = {}
        for m in batch:
            first.setdefault((m.topic, m.partition), m.offset)
        for tp, off in first.items():
            if tp in self._positions:
                self._positions[tp] = off

    def _read(self, max_records: int) -> list[Message]:
        parts = [tp for tp in self._assignment if tp not in self._paused]
        if not parts or self._revoking:
            return []
        pending = self._undecodable
        if pending is not None:
            # The last round stopped at a record the serde could not decode, after good
            # messages it handed out; the error comes now, unless the position moved on
            # (seek) or the partition is no longer read.
            self._undecodable = None
            tp = (pending.topic, pending.partition)
            if tp in parts and self._positions.get(tp) == pending.offset:
                raise pending
        out: list[Message] = []
        read = self._broker.store.read
        loads, kloads = self._loads, self._key_loads
        n = len(parts)
        self._rr = (self._rr + 1) % n
        for i in range(n):
            budget = max_records - len(out)
            if budget <= 0:
                break
            tp = parts[(self._rr + i) % n]
            t, p = tp
            try:
                recs = read(t, p, self._positions[tp], max_records=budget)
            except OffsetOutOfRange as e:
                # Retention removed what we were about to read (or the log was reset).
                self._positions[tp] = (e.log_start if self.auto_offset_reset == "earliest"
                                       else e.high_watermark)
                log.warning("%s; continuing at offset %d", e, self._positions[tp])
                continue
            if not recs:
                # Nothing, but maybe a gap to move past (compaction removed the tail).
                self._positions[tp] = recs.next_offset
                continue
            try:  # the hot path: one comprehension per partition
                if kloads is None:
                    out += [Message(t, p, r.offset, r.timestamp, r.key,
                                    None if r.value is None else loads(r.value), r.headers)
                            for r in recs]
                else:
                    out += [Message(t, p, r.offset, r.timestamp,
                                    None if r.key is None else kloads(r.key),
                                    None if r.value is None else loads(r.value), r.headers)
                            for r in recs]
            except Exception:
                good, bad = self._decode_each(t, p, recs)
                out += good
                if bad is not None:
                    # Never move past a record not handed out: the position stays at the
                    # bad one. What was decoded before it goes out first; its error then
                    # comes with the next call, so nothing is lost or handed out twice.
                    self._positions[tp] = bad.offset
                    if not out:
                        raise bad
                    self._undecodable = bad
                    return out
            self._positions[tp] = recs.next_offset
        return out

    def _decode_each(
        self, t: str, p: int, recs: Iterable[Any],
    ) -> tuple[list[Message], DeserializationError | None]:
        """The slow path after a decode failed: the messages before the first record that
        cannot be decoded, and that record's error."""
        loads, kloads = self._loads, self._key_loads
        good: list[Message] = []
        for r in recs:
            part = "key"
            try:
                key = r.key if kloads is None or r.key is None else kloads(r.key)
                part = "value"
                value = None if r.value is None else loads(r.value)
            except Exception as e:
                err = DeserializationError(t, p, r.offset, part, e)
                err.__cause__ = e
                return good, err
            good.append(Message(t, p, r.offset, r.timestamp, key, value, r.headers))
        return good, None

    async def _wait_for_data(self, timeout: float) -> None:
        """Long poll: until any owned partition has data past its position, the assignment
        changes, the consumer is woken (seek, resume, close) or ``timeout`` passes. One event
        serves both: :meth:`_wake` sets it, and so do the partitions when data comes (no task
        per partition per wait: at 10,000 msg/s the consumer waits thousands of times a
        second)."""
        if self._wake_event.is_set():  # used up by the partitions at the last wait
            self._wake_event = anyio.Event()
        wake = self._wake_event
        parts = {} if self._revoking else {
            tp: self._positions[tp] for tp in self._assignment if tp not in self._paused}
        if not parts:
            with anyio.move_on_after(timeout):
                await wake.wait()
            return
        await self._broker.wait_any(parts, timeout, wake)

    # ------------------------------------------------------------- public controls

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (``{(topic, partition): next offset}``) or, by default, the
        consumed positions: everything handed out so far counts as processed. Raises
        StaleGeneration (UnknownMemberId, IllegalGeneration) when this member was replaced:
        the messages will be processed again by the partitions' new owners."""
        self._check_open()
        if self.group is None:
            raise InvalidArgument("a consumer without a group has nothing to commit to; "
                                  "pass group= to broker.consumer()")
        positions = self._consumed() if offsets is None else self._check_offsets(offsets)
        try:
            await self._commit(positions)
        except StreamrtError as e:
            self._fenced(e)
            raise
        if offsets is None:  # everything handed out is processed: a revocation need not wait
            self._inflight_msg = self._inflight_batch = None
            if self._idle_event is not None:
                self._idle_event.set()

    def _check_offsets(self, offsets: Any) -> dict[TopicPartition, int]:
        """``commit(offsets)``'s argument, checked: nothing of a wrong one is committed."""
        if not isinstance(offsets, Mapping):
            raise InvalidArgument(
                f"commit() takes {{(topic, partition): next_offset}}, got "
                f"{type(offsets).__name__} {offsets!r:.60}")
        out: dict[TopicPartition, int] = {}
        for tp, off in offsets.items():
            if not (isinstance(tp, tuple) and len(tp) == 2 and isinstance(tp[0], str)
                    and type(tp[1]) is int):
                raise InvalidArgument(
                    f"commit() keys are (topic, partition) tuples, got {tp!r:.60}: pass "
                    f"{{('orders', 0): 42}}")
            if tp not in self._positions:
                raise InvalidArgument(
                    f"cannot commit {tp[0]}[{tp[1]}]: it is not assigned to this consumer "
                    f"(it owns {sorted(self._assignment)}); commit offsets of owned partitions")
            hw = self._broker.high_watermark(*tp)
            if type(off) is not int or not 0 <= off <= hw:
                raise InvalidArgument(
                    f"cannot commit {off!r:.60} for {tp[0]}[{tp[1]}]: an offset to commit is "
                    f"the next one to read, an int from 0 to the high watermark {hw}")
            out[tp] = off
        return out

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ConsumerTransaction]:
        """An exactly-once step: ``async with consumer.transaction() as tx: tx.send(...)``.

        When the block ends without an error, the outputs and the positions of every message
        handed out so far are written in one atomic, durable write, fenced on this member's
        generation; a crash at any point leaves either all of it or none. If the block
        raises, or the write is refused because a rebalance replaced this member
        (StaleGeneration), nothing is written and the consumer goes back to its last
        committed positions, so those messages come again (to this member or their new
        owner). So does any other failure of the write (a cancellation that comes while it
        is being written waits for its outcome)."""
        self._check_open()
        if self.guarantee != "exactly_once":
            raise InvalidArgument(
                f"transaction() needs guarantee='exactly_once' (this consumer is "
                f"{self.guarantee!r})")
        assert self.group is not None
        tx = ConsumerTransaction(self)
        epoch = self._epoch
        try:
            yield tx
        except BaseException:
            tx.status = "aborted"
            if epoch == self._epoch:
                self._rewind_to_start()
            raise
        if epoch != self._epoch:
            tx.status = "aborted"
            raise StaleGeneration(
                f"group {self.group!r} rebalanced during this transaction: its outputs were "
                f"discarded and its input messages will be delivered again")
        positions = self._consumed()
        offsets = {tp: off for tp, off in positions.items() if self._committed.get(tp) != off}
        if not offsets and not tx._outputs:
            tx.status = "committed"
            return
        # Any failure from here on (a refused write, a bad output, an unexpected error, a
        # cancellation before the write was submitted) means nothing was written: rewind, or
        # the next transaction would commit past inputs that produced no output.
        try:
            wb = WriteBatch()
            for (t, p), recs in tx._outputs.items():
                wb.append(t, p, recs)
            if offsets:
                wb.commit(self.group, offsets, self.generation if not self._manual else None)
            await self._broker.groups.write_fenced(
                self.group, wb, member_id="" if self._manual else self.member_id,
                generation=-1 if self._manual else self.generation)
        except BaseException as e:
            tx.status = "aborted"
            if epoch == self._epoch:
                self._rewind_to_start()
            if isinstance(e, StreamrtError):
                self._fenced(e)
            raise
        for t in {t for t, _ in tx._outputs}:
            self._tx_sticky[t] = self._tx_sticky.get(t, 0) + 1
        self._committed.update(offsets)
        self._start.update(offsets)
        tx.status = "committed"

    def _rewind_to_start(self) -> None:
        self._it_batch = []
        self._it_idx = 0
        self._inflight_msg = self._inflight_batch = None
        for tp in self._assignment:
            self._positions[tp] = self._start[tp]
        self._wake()

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Consume exactly these partitions (no group membership; with a ``group``, offsets
        are still read from and committed to it, as a standalone member)."""
        self._check_open()
        if self._subscribed:
            raise InvalidArgument(
                "this consumer subscribes to topics in a group; assign() is for consumers "
                "created without topics (broker.consumer(group=...)) or without a group")
        tps = [(t, p) for t, p in partitions]
        for t, p in tps:
            self._broker.store._tp(t, p)  # UnknownTopic / UnknownPartition
        self._manual = True
        self._started = True
        self._assign_partitions(tps)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer owns now."""
        return set(self._assignment)

    async def wait_for_assignment(self, timeout: float | None = None) -> set[TopicPartition]:
        """Wait until the consumer owns partitions (after a rebalance); returns them."""
        with anyio.fail_after(timeout):
            while not self._assignment:
                self._check_open()
                await self._assigned_event.wait()
        return self.assignment()

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read ``topic[partition]`` from ``offset`` next (it must be assigned); messages of
        it already fetched but not handed out are dropped."""
        tp = (topic, partition)
        self._owned(tp)
        start, end = self._broker.log_start_offset(*tp), self._broker.high_watermark(*tp)
        if type(offset) is not int or not start <= offset <= end:
            raise OffsetOutOfRange(topic, partition, offset, start, end)
        self._drop_unreturned()
        self._positions[tp] = offset
        self._wake()

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Seek to the log start of these partitions (default: all assigned)."""
        for tp in partitions or self._assignment:
            self.seek(*tp, self._broker.log_start_offset(*tp))

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Seek to the high watermark of these partitions (default: all assigned)."""
        for tp in partitions or self._assignment:
            self.seek(*tp, self._broker.high_watermark(*tp))

    def position(self, topic: str, partition: int) -> int:
        """The offset of the next message this consumer will hand out from the partition."""
        tp = (topic, partition)
        self._owned(tp)
        return self._consumed()[tp]

    def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset of the partition (None if none)."""
        if self.group is None:
            return None
        return self._broker.committed(self.group, topic).get((topic, partition))

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop fetching these partitions (their fetched, unreturned messages come again
        after :meth:`resume`); membership and heartbeats go on."""
        for tp in partitions:
            self._owned(tp)
        self._drop_unreturned()
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        """Fetch these paused partitions again."""
        self._paused.difference_update(partitions)
        self._wake()

    def paused(self) -> set[TopicPartition]:
        """The paused partitions."""
        return set(self._paused)

    def lag(self) -> dict[TopicPartition, int]:
        """Per owned partition: messages in the log past this consumer's position."""
        hw = self._broker.high_watermark
        return {tp: hw(*tp) - pos for tp, pos in self._consumed().items()}

    def _owned(self, tp: TopicPartition) -> None:
        if tp not in self._positions:
            raise InvalidArgument(
                f"{tp[0]}[{tp[1]}] is not assigned to this consumer (it owns "
                f"{sorted(self._assignment)}); seek/pause/position work on owned partitions")
