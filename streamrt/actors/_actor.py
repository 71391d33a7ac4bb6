"""Actors and their references.

An actor owns its state and handles the messages of one bounded mailbox one at a time, so it
needs no locks. Callers hold an :class:`ActorRef`, never the actor: the ref outlives restarts
(the supervisor makes a new instance that reads the same mailbox), and it is all a caller can
do to an actor: ``send`` (tell, with backpressure when the mailbox is full), ``send_nowait``,
and ``ask`` (request and reply).

Lifecycle of one actor instance, all transitions in one table::

    state      event                      next
    starting   on_start returned          running
    starting   on_start raised            failed     (the supervisor may restart)
    running    handle raised              failed     (the asker gets ActorCrashed)
    running    mailbox closed and drained stopping
    running    cancelled (shutdown)       stopping
    stopping   on_stop returned/raised    stopped
    failed     on_stop returned/raised    stopped    (then restarted or escalated)
"""

from __future__ import annotations

import enum
import math
from typing import Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..errors import ActorCrashed, ActorStopped, AskTimeout, MailboxFull

M = TypeVar("M")

DEFAULT_MAILBOX_SIZE = 1024


class Lifecycle(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FAILED = "failed"
    STOPPED = "stopped"


TRANSITIONS: dict[tuple[Lifecycle, str], Lifecycle] = {
    (Lifecycle.STARTING, "started"): Lifecycle.RUNNING,
    (Lifecycle.STARTING, "crashed"): Lifecycle.FAILED,
    (Lifecycle.RUNNING, "crashed"): Lifecycle.FAILED,
    (Lifecycle.RUNNING, "drained"): Lifecycle.STOPPING,
    (Lifecycle.RUNNING, "cancelled"): Lifecycle.STOPPING,
    (Lifecycle.STARTING, "cancelled"): Lifecycle.STOPPING,
    (Lifecycle.STOPPING, "stopped"): Lifecycle.STOPPED,
    (Lifecycle.FAILED, "stopped"): Lifecycle.STOPPED,
}


class Actor(Generic[M]):
    """Base class of actors: override :meth:`handle`, and :meth:`on_start` / :meth:`on_stop`
    to recover state (from storage) after a (re)start and to flush it on shutdown."""

    #: The bounded mailbox's capacity; ``send`` waits while it is full.
    mailbox_size: int = DEFAULT_MAILBOX_SIZE

    async def on_start(self) -> None:
        """Called before the first message of each instance (after every restart too)."""

    #: How many queued messages one :meth:`handle_batch` call may take (1: use ``handle``).
    batch_size: int = 1

    async def handle(self, message: M) -> Any:
        """Handle one message; the return value is the reply to an ``ask``."""
        raise NotImplementedError

    async def handle_batch(self, messages: list[M]) -> list[Any]:
        """Handle every message queued (at most ``batch_size``) at once; return one reply per
        message, a :class:`Failure` for a message that failed alone (its asker gets that
        error; the actor goes on). Raising crashes the actor and fails every ask of the batch."""
        return [await self.handle(m) for m in messages]

    async def on_stop(self) -> None:
        """Called once when the instance stops, normally or after a crash."""


class Failure:
    """A reply that is an error for one message, not a crash of the actor."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Reply:
    """The slot an ``ask`` waits on."""

    __slots__ = ("event", "value", "error", "crashed")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.crashed = False


class ActorRef(Generic[M]):
    """How callers reach an actor: by message, never by calling it."""

    def __init__(self, name: str, send: MemoryObjectSendStream[tuple[Any, _Reply | None]]) -> None:
        self.name = name
        self._send = send

    def __repr__(self) -> str:
        return f"<ActorRef {self.name}>"

    async def send(self, message: M) -> None:
        """Deliver a message, waiting while the mailbox is full (backpressure)."""
        try:
            await self._send.send((message, None))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ActorStopped(f"actor {self.name} is stopped; its messages are refused") from None

    def send_nowait(self, message: M) -> None:
        """Deliver a message now or raise MailboxFull."""
        try:
            self._send.send_nowait((message, None))
        except anyio.WouldBlock:
            raise MailboxFull(
                f"mailbox of actor {self.name} is full; await send() to wait for room"
            ) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ActorStopped(f"actor {self.name} is stopped; its messages are refused") from None

    async def ask(self, message: M, timeout: float | None = None) -> Any:
        """Send a message and wait for the reply. Raises ActorCrashed (with the actor's error
        as ``__cause__``) if handling it raised, AskTimeout after ``timeout`` seconds."""
        reply = _Reply()
        with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
            try:
                await self._send.send((message, reply))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                raise ActorStopped(f"actor {self.name} is stopped; ask refused") from None
            await reply.event.wait()
        if scope.cancelled_caught:
            raise AskTimeout(f"actor {self.name} did not reply within {timeout} s")
        return _outcome(reply, self.name, type(message).__name__)

    async def request(self, message: M) -> Pending:
        """Enqueue a message (waiting while the mailbox is full) and return at once with a
        :class:`Pending` to await its reply later. Callers that submit in order from one task
        keep that order in the actor, yet wait for several replies at the same time (the
        Kafka server pipelines a connection's produce requests this way)."""
        reply = _Reply()
        try:
            await self._send.send((message, reply))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ActorStopped(f"actor {self.name} is stopped; request refused") from None
        return Pending(self.name, type(message).__name__, reply)

    def statistics(self) -> Any:
        """Mailbox statistics (buffer used and capacity, waiting senders)."""
        return self._send.statistics()

    def close(self) -> None:
        """Stop accepting messages; the actor drains what is queued, then stops."""
        self._send.close()


class Pending:
    """The reply to a message sent with :meth:`ActorRef.request`."""

    __slots__ = ("_actor", "_what", "_reply")

    def __init__(self, actor: str, what: str, reply: _Reply) -> None:
        self._actor = actor
        self._what = what
        self._reply = reply

    async def result(self) -> Any:
        """Wait for the reply; raises as :meth:`ActorRef.ask` does."""
        await self._reply.event.wait()
        return _outcome(self._reply, self._actor, self._what)


def _outcome(reply: _Reply, actor: str, what: str) -> Any:
    """A settled reply's value, or its error: the handler's own typed error (a Failure), or
    ActorCrashed with the crash chained when handling the message crashed the actor."""
    if reply.error is not None:
        if not reply.crashed:
            raise reply.error
        raise ActorCrashed(f"actor {actor} failed handling {what}: {reply.error!r}") from reply.error
    return reply.value


def mailbox(size: int) -> tuple[MemoryObjectSendStream[Any], MemoryObjectReceiveStream[Any]]:
    if size < 1:
        raise ValueError(f"mailbox_size must be at least 1, got {size}")
    return anyio.create_memory_object_stream(size)
