"""Queue groups: point-to-point queues (as RabbitMQ and SQS) over the log.

A queue is a topic (or every topic matching a pattern) plus a queue group: each message of
the topic goes to exactly one of the group's consumers at a time, is acknowledged one by one,
and is redelivered after a nack, a consumer leaving, or the visibility timeout. Several groups
on one topic each get every message, as several queues bound to one exchange would.

:class:`QueueManager` (``broker.queues``) declares queue groups (stored in LMDB, so they
resume with the broker), runs one :class:`~._queue_actor.QueueGroupActor` per group under a
``queues`` supervisor, publishes with admission control, and lists, counts and replays dead
letters. A :class:`QueueHub` is what stays of a group across restarts of its actor: its
settings, its consumers' slots and the lease-token counter (so a late ack from before a
restart can never pass for a new lease).

Admission for ``overflow="reject-new"``: the log accepts any append, so refusing a message
has to happen before it is appended. ``broker.queues.publish(topic, ...)`` (and
``QueueConsumer.publish``) checks every reject-new queue group over the topic and raises
QueueFull when its backlog (messages not yet acknowledged, including ones appended but not
yet seen by the group, and publishes in flight) has reached ``max_length``. A plain
``producer.send`` bypasses the check; what it appends to a full reject-new queue is
dead-lettered with reason ``overflow``, so the bound holds either way.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import orjson

from ..errors import InvalidArgument, QueueError, QueueFull, QueueMismatch, UnknownQueue
from ..storage import WriteBatch, check_topic_name
from . import _queue_dlq as dlq
from . import _queue_keys as K
from ._queue_actor import QueueGroupActor
from ._queue_config import DEFAULT_READ_AHEAD, DEFAULT_REFRESH, QueueConfig, make_config
from ._queue_core import QueueCore
from ._queue_model import Slot
from ._queue_routing import check_pattern, is_pattern, match

if TYPE_CHECKING:
    from ..actors import ActorRef, Supervisor
    from ._broker import Broker

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default"
REPLAY_CHUNK = 1_000


@attrs.frozen
class QueueStats:
    """A snapshot of one queue group. ``ready`` counts messages waiting (in memory or still
    unread in the log), ``leased`` those held by consumers, ``delayed`` those nacked with a
    delay; ``backlog`` all not yet acknowledged (what ``max_length`` bounds). The rest are
    totals since the group's actor (re)started."""

    name: str
    group: str
    config: QueueConfig
    topics: tuple[str, ...]
    consumers: int
    ready: int
    leased: int
    delayed: int
    backlog: int
    in_memory: int
    acked: int
    delivered: int
    redelivered: int
    expired_leases: int
    stale_acks: int
    dropped: int
    discarded: int
    dead_lettered: Mapping[str, int]


class QueueHub:
    """A queue group as the manager knows it; outlives restarts of its actor."""

    def __init__(self, manager: QueueManager, name: str, group: str, config: QueueConfig) -> None:
        self.manager = manager
        self.name = name
        self.group = group
        self.config = config
        self.actor_name = f"{name}/{group}"
        self.slots: dict[int, Slot] = {}
        self.tokens = itertools.count(1)
        self.core: QueueCore | None = None
        self.read_ahead = manager.read_ahead
        self.refresh = manager.refresh
        self.inflight = 0

    def ref(self) -> ActorRef[Any] | None:
        sup = self.manager.sup
        return None if sup is None else sup.children.get(self.actor_name)

    def covers(self, topic: str) -> bool:
        return topic != self.config.dead_letter and match(self.name, topic)

    def backlog(self) -> int:
        """Messages not yet acknowledged, counting appends the group has not seen yet."""
        core = self.core
        if core is None:
            return 0
        store = self.manager.broker.store
        unseen = 0
        for p in core.parts:
            if not p.gone and store.has_topic(p.topic):
                unseen += max(0, store.high_watermark(p.topic, p.partition) - p.adm_pos)
        return core.backlog + unseen


class QueueManager:
    """``broker.queues``: declares queue groups, publishes with admission, dead letters."""

    #: Messages each queue group keeps in memory (see QueueConfig); tests may lower it.
    read_ahead = DEFAULT_READ_AHEAD
    #: Seconds between looks for new topics matching a pattern queue.
    refresh = DEFAULT_REFRESH

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.sup: Supervisor | None = None
        self.hubs: dict[tuple[str, str], QueueHub] = {}
        #: Queue groups whose stored declaration cannot be used, with why: refused when
        #: used, so one bad declaration never keeps the broker from opening.
        self.refused: dict[tuple[str, str], str] = {}
        self._cids = itertools.count(1)
        self._lock = anyio.Lock()
        self._replay_lock = anyio.Lock()
        self._producer: Any = None

    async def _init(self, sup: Supervisor) -> None:
        """The ``queues`` supervisor's init: one actor per declared group (also after the
        supervisor itself was restarted)."""
        self.sup = sup
        good, bad = dlq.load_declarations(self.broker.store)
        for name, group, config in good:
            if (name, group) not in self.hubs:
                self.hubs[(name, group)] = QueueHub(self, name, group, config)
        for name, group, why in bad:
            if (name, group) not in self.hubs and (name, group) not in self.refused:
                log.error("queue group %s/%s is not started: its stored declaration cannot "
                          "be used (%s); delete the group (await broker.queues.delete(%r, "
                          "%r)) and declare it again", name, group, why, name, group)
                self.refused[(name, group)] = why
        for hub in list(self.hubs.values()):
            await self._spawn(hub)

    async def _spawn(self, hub: QueueHub) -> None:
        assert self.sup is not None
        if hub.actor_name not in self.sup.children:
            await self.sup.spawn(lambda: QueueGroupActor(self.broker, hub), hub.actor_name)

    # ------------------------------------------------------------------ declaring

    async def declare(
        self, name: str, group: str = DEFAULT_GROUP, *, partitions: int = 1, **settings: Any,
    ) -> QueueHub:
        """Declare the queue group ``name``/``group`` (a topic name, or a pattern such as
        ``logs.*.error``) with QueueConfig settings, or return it if declared already.

        A new queue on a missing topic creates the topic with ``partitions``; the
        dead-letter topic is created too. Settings given for an existing group must equal
        its declared ones (QueueMismatch); none given means "as declared".
        """
        _check_name(name)
        if not isinstance(group, str) or not group:
            raise InvalidArgument(f"a queue group name is a non-empty string, got {group!r}")
        make_config(settings)  # a bad setting fails the same way whether declared or not
        self._check_refused(name, group)
        async with self._lock:
            hub = self.hubs.get((name, group))
            if hub is not None:
                diffs = hub.config.differences(settings)
                if diffs:
                    raise QueueMismatch(
                        f"queue {name}/{group} is declared with other settings: "
                        f"{'; '.join(diffs)}. Pass the declared settings (or none), or delete "
                        f"the queue group first (await broker.queues.delete({name!r}, "
                        f"{group!r}))")
                await self._spawn(hub)
                return hub
            config = make_config(settings)
            if config.dead_letter is not None and match(name, config.dead_letter):
                raise InvalidArgument(
                    f"queue {name}/{group} would take its own dead letters from "
                    f"{config.dead_letter!r}: choose a dead_letter topic outside the queue")
            store = self.broker.store
            if not is_pattern(name) and not store.has_topic(name):
                await self.broker.create_topic(name, partitions)
            if config.dead_letter is not None and not store.has_topic(config.dead_letter):
                await self.broker.create_topic(config.dead_letter, 1)
            wb = WriteBatch()
            wb.put(K.decl_key(name, group), orjson.dumps(
                {"name": name, "group": group, "config": config.to_dict(),
                 "declared_at": int(time.time() * 1000)}))
            await self.broker.write(wb)
            hub = self.hubs[(name, group)] = QueueHub(self, name, group, config)
            await self._spawn(hub)
            return hub

    async def delete(self, name: str, group: str = DEFAULT_GROUP) -> None:
        """Delete a queue group: its state and declaration (the topic and its records stay).
        Its consumers stop receiving."""
        async with self._lock:
            hub = self.hubs.pop((name, group), None)
            if hub is None and self.refused.pop((name, group), None) is not None:
                await self._delete_stored(name, group)
                return
            if hub is None:
                raise UnknownQueue(f"no queue group {name}/{group}; declared ones: "
                                   f"{', '.join(sorted(h.actor_name for h in self.hubs.values())) or 'none'}")
            ref = hub.ref()
            if ref is not None:
                # The actor deletes its state itself, after its last commit, and writes
                # nothing after that.
                await ref.ask(("delete",))
                assert self.sup is not None
                ref.close()
                del self.sup.children[hub.actor_name]
            else:
                await self._delete_stored(name, group)
            for slot in hub.slots.values():
                slot.closed = True
                slot.inbox.clear()  # their leases went with the group
                slot.deliver([])

    async def _delete_stored(self, name: str, group: str) -> None:
        """Delete a group's stored state and declaration (no actor owns them)."""
        wb = WriteBatch()
        for key, _ in self.broker.store.scan(K.state_prefix(name, group)):
            wb.delete(key)
        wb.delete(K.decl_key(name, group))
        await self.broker.write(wb)

    def _check_refused(self, name: str, group: str) -> None:
        why = self.refused.get((name, group))
        if why is not None:
            raise QueueError(
                f"queue group {name}/{group} cannot be used: its stored declaration is "
                f"unusable ({why}). Delete the group (await broker.queues.delete({name!r}, "
                f"{group!r}); the topic and its records stay) and declare it again")

    def get(self, name: str, group: str = DEFAULT_GROUP) -> QueueHub:
        """The declared queue group ``name``/``group`` (UnknownQueue if there is none;
        QueueError if its stored declaration is unusable)."""
        self._check_refused(name, group)
        hub = self.hubs.get((name, group))
        if hub is None:
            raise UnknownQueue(f"no queue group {name}/{group}: declare it with "
                               f"broker.queue({name!r}, group={group!r})")
        return hub

    def list(self) -> list[tuple[str, str, QueueConfig]]:
        """Every declared queue group: (name, group, settings)."""
        return sorted((h.name, h.group, h.config) for h in self.hubs.values())

    def new_slot(self, prefetch: int) -> Slot:
        """A new consumer's slot (its id, prefetch limit and inbox)."""
        return Slot(next(self._cids), prefetch)

    # ------------------------------------------------------------------ publishing

    async def publish(
        self, topic: str, value: Any, key: Any = None,
        headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None, *,
        priority: int | None = None, partition: int | None = None,
    ) -> Any:
        """Send one message to ``topic`` once every reject-new queue over it has room
        (QueueFull otherwise); returns its RecordMetadata when durable. ``priority`` (0-9)
        sets the ``priority`` header priority queues order by."""
        if priority is not None:
            if type(priority) is not int or not 0 <= priority <= 9:
                raise InvalidArgument(f"priority must be an integer from 0 to 9, got {priority!r}")
            items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
            headers = [(k, v) for k, v in items if k != "priority"] + [("priority", str(priority))]
        guarded = [h for h in self.hubs.values()
                   if h.config.overflow == "reject-new" and h.config.max_length is not None
                   and h.covers(topic)]
        for h in guarded:
            assert h.config.max_length is not None
            if h.backlog() + h.inflight >= h.config.max_length:
                raise QueueFull(
                    f"queue {h.name}/{h.group} is full ({h.config.max_length} messages not yet "
                    f"acknowledged; overflow='reject-new'): the message to {topic!r} was not "
                    f"sent. Retry after consumers catch up, raise max_length, or declare the "
                    f"queue with overflow='dead-letter' or 'drop-oldest'")
        if self._producer is None:
            self._producer = self.broker.producer(linger=0)
        for h in guarded:
            h.inflight += 1
        try:
            return await self._producer.send(topic, value, key, headers, partition)
        finally:
            for h in guarded:
                h.inflight -= 1

    # ------------------------------------------------------------------ views

    def stats(self, name: str, group: str = DEFAULT_GROUP) -> QueueStats:
        """A snapshot of the queue group's counts."""
        hub = self.get(name, group)
        core = hub.core
        if core is None:
            zero = dict.fromkeys(("ready", "leased", "delayed", "backlog", "in_memory"), 0)
            return QueueStats(name, group, hub.config, (), len(hub.slots), **zero, acked=0,
                              delivered=0, redelivered=0, expired_leases=0, stale_acks=0,
                              dropped=0, discarded=0, dead_lettered={})
        c = core.counts()
        return QueueStats(
            name, group, hub.config,
            tuple(sorted({p.topic for p in core.parts if not p.gone})), len(core.consumers),
            c["ready"], c["leased"], c["delayed"], hub.backlog(), c["in_memory"], core.acked,
            core.delivered, core.redelivered, core.expired_leases, core.stale, core.dropped,
            core.discarded, dict(core.dead))

    # ------------------------------------------------------------------ dead letters

    def dead_letters(
        self, name: str, *, include_replayed: bool = False, reasons: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[dlq.DeadLetter]:
        """The dead letters of a queue (``NAME`` or ``NAME/GROUP``) or dead-letter topic."""
        store = self.broker.store
        out: list[dlq.DeadLetter] = []
        for topic in dlq.resolve(store, name):
            left = None if limit is None else limit - len(out)
            if left == 0:
                break
            out += dlq.read(store, topic, include_replayed=include_replayed, reasons=reasons,
                            limit=left)
        return out

    async def replay(
        self, name: str, *, reasons: Sequence[str] | None = None, limit: int | None = None,
    ) -> int:
        """Append dead letters back to their source topics, each exactly once (the append
        and the replayed mark commit together); returns how many were replayed."""
        store = self.broker.store
        total = 0
        async with self._replay_lock:
            for topic in dlq.resolve(store, name):
                while limit is None or total < limit:
                    n = REPLAY_CHUNK if limit is None else min(REPLAY_CHUNK, limit - total)
                    letters = list(dlq.read(store, topic, reasons=reasons, limit=n))
                    if not letters:
                        break
                    dlq.check_sources(store, letters)
                    await self.broker.write(
                        dlq.replay_batch(store, letters, int(time.time() * 1000)))
                    total += len(letters)
        return total


def _check_name(name: object) -> None:
    if isinstance(name, str) and is_pattern(name):
        check_pattern(name)
    else:
        check_topic_name(name)


async def start_queues(broker: Broker) -> QueueManager:
    """Start the queue-group actors under the broker's supervisor; returns their manager."""
    manager = QueueManager(broker)
    await broker.root.spawn_supervisor("queues", manager._init)
    return manager
