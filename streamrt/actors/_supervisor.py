"""Supervisors: run actors under structured concurrency and restart them when they crash.

A supervisor owns a task group; each child runs in it as a loop: make an instance from the
child's factory, ``on_start``, handle messages until the mailbox closes, ``on_stop``. When the
instance raises, the supervisor restarts that child alone (one-for-one) after an exponential
backoff, with the same mailbox, so refs stay valid and queued messages are kept. Restart
intensity: more than ``max_restarts`` within ``within`` seconds means the failure is not
transient, and the supervisor gives up: it raises :class:`Escalated` into its own parent.
A nested supervisor that escalates is, to its parent, a crashed child: it is restarted (its
``init`` runs again and re-spawns its children) under the parent's policy. The root
supervisor escalating ends :func:`open_runtime` with that error.

Time is read through anyio, so tests drive backoffs with trio's auto-jumping MockClock.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
from anyio.abc import TaskGroup

from ..errors import ActorStopped, Escalated
from ._actor import TRANSITIONS, Actor, ActorRef, Failure, Lifecycle, _Reply, mailbox

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0


@attrs.frozen
class RestartPolicy:
    """How a supervisor restarts a crashed child: at most ``max_restarts`` within ``within``
    seconds, waiting ``backoff`` seconds, doubled per consecutive crash up to ``max_backoff``."""

    max_restarts: int = 5
    within: float = 30.0
    backoff: float = 0.05
    max_backoff: float = 5.0


class _Intensity:
    """Counts recent restarts against a policy."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.times: deque[float] = deque()
        self.consecutive = 0

    def record(self, now: float) -> float | None:
        """Note a crash at ``now``; the backoff to wait, or None to escalate."""
        p = self.policy
        self.times.append(now)
        while self.times and self.times[0] < now - p.within:
            self.times.popleft()
        if len(self.times) > p.max_restarts:
            return None
        delay = min(p.backoff * (2 ** self.consecutive), p.max_backoff)
        self.consecutive += 1
        return delay


class Supervisor:
    """Starts children (actors and nested supervisors) and restarts them on failure."""

    def __init__(self, name: str, tg: TaskGroup, policy: RestartPolicy) -> None:
        self.name = name
        self._tg = tg
        self.policy = policy
        self.children: dict[str, ActorRef[Any]] = {}
        self.restarts: dict[str, int] = {}
        self.states: dict[str, Lifecycle] = {}
        self.subs: dict[str, Supervisor] = {}
        self._shutting_down = anyio.Event()

    async def spawn(
        self, factory: Callable[[], Actor[Any]], name: str, policy: RestartPolicy | None = None
    ) -> ActorRef[Any]:
        """Start an actor made by ``factory`` (called again on each restart); returns its ref
        once its first ``on_start`` has returned."""
        if name in self.children:
            raise ValueError(f"supervisor {self.name} already has a child named {name!r}")
        first = factory()
        send, recv = mailbox(first.mailbox_size)
        ref: ActorRef[Any] = ActorRef(f"{self.name}/{name}", send)
        self.children[name] = ref
        self.restarts[name] = 0
        started = anyio.Event()
        self._tg.start_soon(self._run_actor, name, factory, first, recv, policy or self.policy, started)
        await started.wait()
        return ref

    async def spawn_supervisor(
        self, name: str, init: Callable[[Supervisor], Awaitable[None]],
        policy: RestartPolicy | None = None,
    ) -> Supervisor:
        """Start a nested supervisor; ``init`` spawns its children (and runs again when the
        nested supervisor is restarted after escalating)."""
        ready: list[Supervisor] = []
        started = anyio.Event()
        self.restarts[name] = 0
        self._tg.start_soon(self._run_sub, name, init, policy or self.policy, ready, started)
        await started.wait()
        return ready[0]

    def _move(self, name: str, event: str) -> None:
        self.states[name] = TRANSITIONS[(self.states[name], event)]

    async def _run_actor(
        self, name: str, factory: Callable[[], Actor[Any]], actor: Actor[Any],
        recv: Any, policy: RestartPolicy, started: anyio.Event,
    ) -> None:
        intensity = _Intensity(policy)
        while True:
            self.states[name] = Lifecycle.STARTING
            current: list[_Reply | None] = []
            try:
                try:
                    await actor.on_start()
                    self._move(name, "started")
                    started.set()
                    limit = actor.batch_size
                    async for first in recv:
                        # Take what else is queued (up to batch_size): one handle_batch call
                        # serves them all, e.g. one durable write for many appends.
                        batch = [first]
                        while len(batch) < limit:
                            try:
                                batch.append(recv.receive_nowait())
                            except anyio.WouldBlock:
                                break
                        current = [r for _m, r in batch]
                        if limit == 1:
                            results = [await actor.handle(first[0])]
                        else:
                            results = await actor.handle_batch([m for m, _r in batch])
                        current = []
                        for (_m, reply), result in zip(batch, results):
                            if reply is not None:
                                if isinstance(result, Failure):
                                    reply.error = result.error
                                else:
                                    reply.value = result
                                reply.event.set()
                    self._move(name, "drained")
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_TIMEOUT):
                        try:
                            await actor.on_stop()
                        except Exception:
                            log.exception("on_stop of %s/%s failed", self.name, name)
            except anyio.get_cancelled_exc_class():
                self.states[name] = Lifecycle.STOPPED
                _refuse_queued(recv, f"{self.name}/{name}")
                raise
            except Exception as exc:
                self._move(name, "crashed")
                for reply in current:
                    if reply is not None:
                        reply.error = exc
                        reply.crashed = True
                        reply.event.set()
                delay = intensity.record(anyio.current_time())
                if delay is None:
                    self.states[name] = Lifecycle.STOPPED
                    recv.close()
                    _refuse_queued(recv, f"{self.name}/{name}")
                    started.set()
                    raise Escalated(
                        f"actor {self.name}/{name} crashed {len(intensity.times)} times within "
                        f"{policy.within} s (policy allows {policy.max_restarts}); giving up: "
                        f"last error {exc!r}"
                    ) from exc
                self._move(name, "stopped")
                log.warning("actor %s/%s crashed (%r); restarting in %.3f s",
                            self.name, name, exc, delay)
                self.restarts[name] += 1
                await anyio.sleep(delay)
                actor = factory()
                continue
            self.states[name] = Lifecycle.STOPPED
            return

    async def _run_sub(
        self, name: str, init: Callable[[Supervisor], Awaitable[None]], policy: RestartPolicy,
        ready: list[Supervisor], started: anyio.Event,
    ) -> None:
        intensity = _Intensity(policy)
        sub = Supervisor(f"{self.name}/{name}", None, self.policy)  # type: ignore[arg-type]
        ready.append(sub)
        self.subs[name] = sub
        while True:
            try:
                async with anyio.create_task_group() as tg:
                    sub._reset(tg)
                    await init(sub)
                    started.set()
                    # Stay up (children may be added later) until shut down; the task group
                    # then waits for the children to drain.
                    await sub._shutting_down.wait()
                return
            except Exception as exc:
                inner = _escalation(exc)
                if sub._shutting_down.is_set():
                    log.warning("supervisor %s/%s failed while shutting down: %s",
                                self.name, name, inner)
                    return
                delay = intensity.record(anyio.current_time())
                if delay is None:
                    started.set()
                    raise Escalated(
                        f"supervisor {self.name}/{name} failed {len(intensity.times)} times within "
                        f"{policy.within} s; giving up: {inner}"
                    ) from exc
                log.warning("supervisor %s/%s failed (%s); restarting in %.3f s",
                            self.name, name, inner, delay)
                self.restarts[name] += 1
                await anyio.sleep(delay)

    def _reset(self, tg: TaskGroup) -> None:
        """Begin a new incarnation (after a restart): new task group, no children yet."""
        self._tg = tg
        self.children.clear()
        self.states.clear()
        self.subs.clear()

    def shutdown(self) -> None:
        """Close every child's mailbox: each drains what is queued, runs on_stop and ends."""
        self._shutting_down.set()
        for ref in self.children.values():
            ref.close()
        for sub in self.subs.values():
            sub.shutdown()


def _refuse_queued(recv: Any, name: str) -> None:
    """Fail the asks still queued in a mailbox that will not be read again."""
    while True:
        try:
            _msg, reply = recv.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return
        if reply is not None:
            reply.error = ActorStopped(f"actor {name} stopped before handling this ask")
            reply.event.set()


def _escalation(exc: BaseException) -> str:
    """The first Escalated message inside an exception (group)."""
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            found = _escalation(e)
            if found:
                return found
        return repr(exc)
    return str(exc)


class RuntimeFailure(Escalated):
    """The root supervisor gave up: the runtime stopped."""


@asynccontextmanager
async def open_runtime(
    name: str = "root", policy: RestartPolicy | None = None
) -> AsyncIterator[Supervisor]:
    """Run a root supervisor for the duration of the block. Leaving the block shuts it down
    gracefully (mailboxes closed and drained, on_stop called); if the root escalates, the
    block is cancelled and RuntimeFailure is raised with the reason."""
    try:
        async with anyio.create_task_group() as tg:
            root = Supervisor(name, tg, policy or RestartPolicy())
            try:
                yield root
            finally:
                root.shutdown()
    except BaseExceptionGroup as eg:
        escalated = eg.subgroup(lambda e: isinstance(e, Escalated))
        if escalated is None:
            raise
        raise RuntimeFailure(f"runtime {name} stopped: {_escalation(escalated)}") from eg
    except Escalated as e:
        raise RuntimeFailure(f"runtime {name} stopped: {e}") from e
