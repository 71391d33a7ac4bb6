"""The embedded queue consumer: point-to-point consumption with per-message ack and nack.

``broker.queue(name, group=..., **settings)`` returns a :class:`QueueConsumer`; inside its
``async with`` block it is attached to the queue group's actor, which hands it messages up
to ``prefetch`` unacknowledged ones at a time. Push: ``async for msg in q`` (the inbox is
kept full up to the prefetch limit). Pull: ``await q.get(max=10, timeout=1.0)`` (asks for
up to ``max`` at a time). Both hand out :class:`QueueMessage` objects to ``ack()`` or
``nack()``.

Acks are the hot path, so ``await msg.ack()`` does not make a round trip: it adds the ack to
the consumer's buffer, which goes to the actor as one message when it holds ``ack_batch``
acks, when the consumer waits for more messages, or as soon as the consumer's task yields
(a linger task), whichever is first. The actor commits the acks of all its consumers in one
LMDB transaction. ``await q.flush_acks()`` returns once every ack made before it is durable;
until then a crash can deliver those messages again (at-least-once).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._serde import Serde, resolve
from ..broker._queue_config import MAX_SECONDS, is_seconds, make_config
from ..errors import ActorStopped, InvalidArgument, MailboxFull, MessageSettled, QueueClosed

if TYPE_CHECKING:
    from ..broker import Broker
    from ..broker._queue_model import Slot
    from ..broker._queues import QueueHub, QueueStats

log = logging.getLogger(__name__)

DEFAULT_PREFETCH = 256
MAX_PREFETCH = 100_000
DEFAULT_ACK_BATCH = 256
_UNSET: Any = object()


class QueueMessage:
    """One delivery of a queue message: read it, then ``await ack()`` or ``await nack()``.

    ``topic``, ``partition``, ``offset``, ``key`` (bytes), ``value`` (decoded by the
    consumer's ``value_serde``), ``raw_value``, ``headers``, ``timestamp`` (ms),
    ``delivery_count`` (1 on the first delivery) and ``priority``.
    """

    __slots__ = ("_q", "_entry", "_token", "delivery_count", "_settled", "_value")

    def __init__(self, q: QueueConsumer, item: tuple[Any, int]) -> None:
        self._entry, self._token = item
        self._q = q
        self.delivery_count: int = item[0].deliveries
        self._settled = False
        self._value = _UNSET

    @property
    def topic(self) -> str:
        return self._entry.part.topic  # type: ignore[no-any-return]

    @property
    def partition(self) -> int:
        return self._entry.part.partition  # type: ignore[no-any-return]

    @property
    def priority(self) -> int:
        return self._entry.prio  # type: ignore[no-any-return]

    @property
    def _rec(self) -> Any:
        return self._entry.rec

    @property
    def offset(self) -> int:
        return int(self._rec.offset)

    @property
    def key(self) -> bytes | None:
        return self._rec.key  # type: ignore[no-any-return]

    @property
    def raw_value(self) -> bytes | None:
        return self._rec.value  # type: ignore[no-any-return]

    @property
    def value(self) -> Any:
        if self._value is _UNSET:
            raw = self._rec.value
            self._value = None if raw is None else self._q._serde.loads(raw)
        return self._value

    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        return list(self._rec.headers)

    @property
    def timestamp(self) -> int:
        return int(self._rec.timestamp)

    @property
    def redelivered(self) -> bool:
        """Whether the message was handed out before (to this or another consumer)."""
        return self.delivery_count > 1

    @property
    def settled(self) -> bool:
        """Whether ``ack`` or ``nack`` was called."""
        return self._settled

    def _settle(self, what: str) -> None:
        if self._settled:
            raise MessageSettled(
                f"message {self.topic}[{self.partition}]@{self.offset} was already settled; "
                f"{what} it once per delivery")
        self._settled = True

    async def ack(self) -> None:
        """Acknowledge: the message is done and will not be delivered again (once the ack is
        durable: see QueueConsumer.flush_acks). An ack after the lease ended (ack_timeout) is
        ignored: the message was or will be redelivered."""
        if self._settled:
            self._settle("ack")
        self._settled = True
        q = self._q
        q._acks.append((self._entry.mid, self._token))
        n = len(q._acks)
        if n >= q.ack_batch:
            await q._send_acks()
        elif n == 1:
            q._linger()

    async def nack(self, requeue: bool = True, delay: float | None = None) -> None:
        """Give the message back: ``requeue=True`` makes it ready again (after ``delay``
        seconds if given) unless it reached ``max_deliveries``, in which case it is
        dead-lettered; ``requeue=False`` dead-letters it at once (reason ``rejected``).
        ``delay`` is a finite number of seconds from 0 to 100 years; a bad one raises
        InvalidArgument and leaves the message unsettled."""
        if delay is not None and not is_seconds(delay):
            raise InvalidArgument(
                f"delay must be a finite number of seconds from 0 to {MAX_SECONDS} "
                f"(100 years), got {delay!r}")
        self._settle("nack")
        q = self._q
        await q._send_acks()
        await q._send(("nacks", q._slot.cid,
                       [(self._entry.mid, self._token, bool(requeue), delay or 0)]))

    def __repr__(self) -> str:
        return (f"<QueueMessage {self.topic}[{self.partition}]@{self.offset} "
                f"delivery {self.delivery_count} value={self._rec.value!r:.60}>")


class QueueConsumer:
    """A consumer of a queue group; use it as ``async with broker.queue(...) as q``.

    Per consumer: ``prefetch`` (most unacknowledged messages it holds, default 256),
    ``value_serde`` (``"json"`` default, ``"bytes"``, ``"str"`` or an object with
    dumps/loads), ``ack_batch`` (acks sent to the queue group at once, default 256), and
    ``partitions`` (used only if the queue's topic does not exist yet). Every other keyword
    is a queue-group setting (see docs/queues.md): ``max_deliveries``, ``ack_timeout``,
    ``dead_letter``, ``ttl``, ``max_length``, ``overflow``, ``max_priority``.
    """

    def __init__(
        self, broker: Broker, name: str, *, group: str = "default",
        prefetch: int = DEFAULT_PREFETCH, value_serde: str | Serde = "json",
        ack_batch: int = DEFAULT_ACK_BATCH, partitions: int = 1, **settings: Any,
    ) -> None:
        if type(prefetch) is not int or not 1 <= prefetch <= MAX_PREFETCH:
            raise InvalidArgument(f"prefetch must be an integer from 1 to {MAX_PREFETCH}, "
                                  f"got {prefetch!r}")
        if type(ack_batch) is not int or ack_batch < 1:
            raise InvalidArgument(f"ack_batch must be an integer >= 1, got {ack_batch!r}")
        make_config(settings)  # a bad queue setting fails here, not at open()
        self._broker = broker
        self.name = name
        self.group = group
        self.prefetch = prefetch
        self.ack_batch = ack_batch
        self._serde = resolve(value_serde)
        self._partitions = partitions
        self._settings = settings
        self._hub: QueueHub | None = None
        self._slot: Slot = None  # type: ignore[assignment]
        self._acks: list[tuple[int, int]] = []
        self._lingering = False
        self._closed = False
        self._order = anyio.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> QueueConsumer:
        """Declare the queue group if needed and attach to it (``async with`` does this)."""
        if self._hub is not None:
            return self
        manager = self._broker.queues
        hub = await manager.declare(self.name, self.group, partitions=self._partitions,
                                    **self._settings)
        self._slot = manager.new_slot(self.prefetch)
        self._hub = hub
        await self._ask(("attach", self._slot))
        return self

    async def close(self) -> None:
        """Send buffered acks, leave the group (messages held and not acked are redelivered
        to other consumers) and stop iteration."""
        if self._closed or self._hub is None:
            self._closed = True
            return
        self._closed = True
        try:
            with anyio.CancelScope(shield=True):
                await self._send_acks()
                await self._ask(("detach", self._slot.cid))
        except (ActorStopped, QueueClosed):
            pass
        finally:
            self._slot.closed = True
            self._slot.deliver([])

    async def __aenter__(self) -> QueueConsumer:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ receiving

    def __aiter__(self) -> QueueConsumer:
        self._check()
        if self._slot.want is not None:
            self._slot.want = None  # push: keep the inbox full up to prefetch
            self._poke()
        return self

    async def __anext__(self) -> QueueMessage:
        inbox = self._slot.inbox
        if not inbox:
            if not await self._wait():
                raise StopAsyncIteration
        return QueueMessage(self, inbox.popleft())

    async def get(self, max: int = 1, timeout: float | None = None) -> list[QueueMessage]:  # noqa: A002
        """Pull up to ``max`` messages: as many as are there, or wait up to ``timeout``
        seconds (None: as long as it takes) for the first; [] if none came."""
        self._check()
        if type(max) is not int or max < 1:
            raise InvalidArgument(f"max must be an integer >= 1, got {max!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(
                timeout, (int, float)) or not timeout >= 0):  # (NaN fails this too)
            raise InvalidArgument(f"timeout must be a number of seconds >= 0, or None to wait "
                                  f"until a message comes, got {timeout!r:.60}")
        slot = self._slot
        inbox = slot.inbox
        if not inbox:
            pull = slot.want is not None
            if pull:
                slot.want = min(max, self.prefetch)
                self._poke()
            try:
                with anyio.move_on_after(math.inf if timeout is None else timeout):
                    await self._wait()
            finally:
                if pull:
                    slot.want = 0
        out = []
        while inbox and len(out) < max:
            out.append(QueueMessage(self, inbox.popleft()))
        return out

    async def _wait(self) -> bool:
        """Wait until the inbox has a message; False if the consumer was closed."""
        await self._send_acks()  # give the queue group its credit back first
        slot = self._slot
        while not slot.inbox:
            if slot.closed or self._closed:
                return False
            ev = slot.wake = anyio.Event()
            await ev.wait()
        return True

    async def consume(self, handler: Callable[[QueueMessage], Awaitable[Any]]) -> None:
        """Push delivery to a callback, until the consumer is closed: ``await handler(msg)``
        for each message, then ack it (unless the handler settled it). If the handler raises,
        the message is nacked (requeued, so ``max_deliveries`` catches a poison message) and
        the error logged."""
        async for msg in self:
            try:
                await handler(msg)
            except Exception:
                log.exception("queue %s/%s: handler failed on %r; requeued", self.name,
                              self.group, msg)
                if not msg.settled:
                    await msg.nack(requeue=True)
                continue
            if not msg.settled:
                await msg.ack()

    # ------------------------------------------------------------------ acks

    async def flush_acks(self) -> None:
        """Wait until every ack and nack made so far is durable in LMDB."""
        self._check()
        await self._send_acks()
        waiter = await self._ask(("flush",))
        await waiter.wait()

    async def _send_acks(self) -> None:
        if self._acks:
            async with self._order:
                # Taken inside the lock: what this consumer sends reaches the actor in the
                # order it was made (an ack must not be overtaken by a detach).
                batch, self._acks = self._acks, []
                if batch:
                    await self._deliver(self._ref(), ("acks", self._slot.cid, batch))

    def _linger(self) -> None:
        """Send the ack buffer as soon as this task yields (a consumer that acks, then works
        a long time on something else must not sit on its acks until the lease ends)."""
        if self._lingering:
            return
        self._lingering = True
        self._broker.tg.start_soon(self._linger_task)

    async def _linger_task(self) -> None:
        try:
            await anyio.lowlevel.checkpoint()
            await self._send_acks()
        except (ActorStopped, QueueClosed) as e:
            log.debug("acks of a closed queue consumer dropped: %s", e)
        except Exception as e:  # in the broker's task group: never let it stop the broker
            log.warning("queue %r: buffered acks not sent (%s); their messages will be "
                        "delivered again", self.name, e)
        finally:
            self._lingering = False

    # ------------------------------------------------------------------ publishing and views

    async def publish(
        self, value: Any, key: Any = None,
        headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None, *,
        priority: int | None = None,
    ) -> Any:
        """Send a message to this queue's topic, refused with QueueFull when a queue with
        ``overflow="reject-new"`` over it is full. Returns its RecordMetadata once durable."""
        from ..broker._queue_routing import is_pattern

        if is_pattern(self.name):
            raise InvalidArgument(
                f"queue {self.name} reads a pattern of topics: publish to one of them with "
                f"broker.queues.publish(topic, value)")
        raw = None if value is None else self._serde.dumps(value)
        return await self._broker.queues.publish(self.name, raw, key, headers, priority=priority)

    def stats(self) -> QueueStats:
        """A snapshot of the queue group's counts (see QueueStats)."""
        return self._broker.queues.stats(self.name, self.group)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ plumbing

    def _check(self) -> None:
        if self._hub is None:
            raise QueueClosed(f"queue consumer {self.name}/{self.group} is not open: use "
                              f"`async with broker.queue(...) as q`")
        if self._closed:
            raise QueueClosed(f"queue consumer {self.name}/{self.group} is closed; open a new "
                              f"one with broker.queue(...)")

    def _ref(self) -> Any:
        assert self._hub is not None
        ref = self._hub.ref()
        if ref is None:
            raise QueueClosed(f"queue group {self.name}/{self.group} is not running (deleted, "
                              f"or the broker is closing)")
        return ref

    async def _ask(self, msg: tuple[Any, ...]) -> Any:
        async with self._order:
            return await self._ref().ask(msg)

    async def _send(self, msg: tuple[Any, ...]) -> None:
        async with self._order:
            await self._deliver(self._ref(), msg)

    @staticmethod
    async def _deliver(ref: Any, msg: tuple[Any, ...]) -> None:
        try:
            ref.send_nowait(msg)
        except MailboxFull:
            await ref.send(msg)  # backpressure: the queue group is behind

    def _poke(self) -> None:
        ref = self._ref()
        try:
            ref.send_nowait(("demand",))
        except Exception:  # full: the actor is busy and will assign anyway
            pass
