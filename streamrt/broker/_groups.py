"""The consumer-group coordinator: one actor per group, driving the pure state machine.

Each group that anyone joins gets a :class:`GroupActor` under the broker's ``groups``
supervisor (spawned on demand). The actor owns the group's :class:`GroupMachine`
(``_group_fsm.py``, where the states and the rules live), the replies of pending JoinGroup
and SyncGroup requests (they wait until the rebalance gets there), and a timer task that wakes
it when a session or a rebalance timeout is due. Before any member hears of a new
generation, the actor makes it durable (``WriteBatch.set_generation``), so offset commits,
fenced on that persisted generation, refuse a zombie member even across a restart. A
restarted actor (after a crash) starts Empty at the stored generation: members find out from
their next heartbeat (UnknownMemberId) and join again.

:class:`GroupCoordinator` is the API, one method per Kafka group request (JoinGroup,
SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups,
DeleteGroups), so
the Kafka-protocol server maps onto it one to one. Time comes from anyio, so tests can drive
it with trio's MockClock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ..actors import Actor, ActorRef, Failure, Supervisor
from ..errors import (
    ActorStopped,
    CoordinatorNotAvailable,
    InvalidArgument,
    RebalanceInProgress,
    StreamrtError,
    UnknownGroup,
)
from ..storage import WriteBatch
from ._group_fsm import (
    GroupDescription,
    GroupMachine,
    JoinReply,
    JoinResult,
    Output,
    Persist,
    RebalanceStarted,
    SyncReply,
)

if TYPE_CHECKING:
    from ._broker import Broker

log = logging.getLogger(__name__)

#: Extra seconds a JoinGroup/SyncGroup caller waits beyond the rebalance timeout before
#: giving up on an answer (the coordinator normally answers within the timeout).
REPLY_GRACE = 5.0


class _Slot:
    """Where a pending join or sync answer lands."""

    __slots__ = ("event", "value", "error")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        if not self.event.is_set():
            self.value, self.error = value, error
            self.event.set()

    async def wait(self, timeout: float, group: str) -> Any:
        with anyio.move_on_after(timeout):
            await self.event.wait()
        if not self.event.is_set():
            raise RebalanceInProgress(group)
        if self.error is not None:
            raise self.error
        return self.value


# Messages of a group actor.
@attrs.frozen
class _Join:
    member_id: str
    client_id: str
    session_timeout: float
    rebalance_timeout: float
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    slot: _Slot
    group_instance_id: str | None = None


@attrs.frozen
class _Sync:
    member_id: str
    generation: int
    assignments: dict[str, bytes] | None
    slot: _Slot
    group_instance_id: str | None = None


@attrs.frozen
class _Heartbeat:
    member_id: str
    generation: int
    group_instance_id: str | None = None


@attrs.frozen
class _Leave:
    member_id: str
    group_instance_id: str | None = None


@attrs.frozen
class _CheckCommit:
    member_id: str
    generation: int
    group_instance_id: str | None = None


class _Describe:
    pass


class _Delete:
    pass


class _Tick:
    pass


_TICK = _Tick()
_DESCRIBE = _Describe()
_DELETE = _Delete()


def _brief(msg: Any) -> str:
    """A message for the debug log, without the protocol metadata and assignment bytes."""
    keep = ("member_id", "generation", "group_instance_id")
    fields = {k: v for k, v in attrs.asdict(msg, recurse=False).items()
              if k in keep} if attrs.has(type(msg)) else {}
    return f"{type(msg).__name__.lstrip('_')} {fields}"


class GroupActor(Actor[Any]):
    """One consumer group; see the module doc."""

    def __init__(self, coordinator: GroupCoordinator, group: str) -> None:
        self.coord = coordinator
        self.group = group

    async def on_start(self) -> None:
        self.fsm = GroupMachine(self.group, self.coord.broker.store.generation(self.group) or 0)
        self.joins: dict[str, _Slot] = {}
        self.syncs: dict[str, _Slot] = {}
        self.poke = anyio.Event()
        self.timer_scope = anyio.CancelScope()
        self.coord.broker.tg.start_soon(self._timer)

    async def on_stop(self) -> None:
        self.timer_scope.cancel()
        await self._apply(self.fsm.shutdown())
        err = CoordinatorNotAvailable(self.group)
        for slot in [*self.joins.values(), *self.syncs.values()]:
            slot.resolve(error=err)

    async def handle(self, msg: Any) -> Any:
        try:
            return await self._handle(msg, anyio.current_time())
        except StreamrtError as e:  # the caller's error (unknown member, ...), not a crash
            log.debug("group %s: %s -> %s", self.group, _brief(msg), type(e).__name__)
            return Failure(e)
        finally:
            self.poke.set()
            self.poke = anyio.Event()

    async def _handle(self, msg: Any, now: float) -> Any:
        fsm = self.fsm
        if type(msg) is not _Tick and log.isEnabledFor(logging.DEBUG):
            log.debug("group %s (%s, generation %d): %s", self.group, fsm.state.value,
                      fsm.generation, _brief(msg))
        if type(msg) is _Heartbeat:
            fsm.heartbeat(now, msg.member_id, msg.generation, msg.group_instance_id)
        elif type(msg) is _Tick:
            await self._apply(fsm.expire(now))
        elif type(msg) is _Join:
            try:
                member_id, outs = fsm.join(now, msg.member_id, msg.client_id, msg.session_timeout,
                                           msg.rebalance_timeout, msg.protocol_type, msg.protocols,
                                           msg.group_instance_id)
            except StreamrtError as e:
                log.debug("group %s: %s -> %s", self.group, _brief(msg), type(e).__name__)
                msg.slot.resolve(error=e)
                return None
            old = self.joins.pop(member_id, None)
            if old is not None:
                old.resolve(error=RebalanceInProgress(self.group))  # superseded by this join
            self.joins[member_id] = msg.slot
            await self._apply(outs)
        elif type(msg) is _Sync:
            try:
                outs = fsm.sync(now, msg.member_id, msg.generation, msg.assignments,
                                msg.group_instance_id)
            except StreamrtError as e:
                log.debug("group %s: %s -> %s", self.group, _brief(msg), type(e).__name__)
                msg.slot.resolve(error=e)
                return None
            old = self.syncs.pop(msg.member_id, None)
            if old is not None:
                old.resolve(error=RebalanceInProgress(self.group))
            self.syncs[msg.member_id] = msg.slot
            await self._apply(outs)
        elif type(msg) is _Leave:
            await self._apply(fsm.leave(now, msg.member_id, msg.group_instance_id))
        elif type(msg) is _CheckCommit:
            fsm.check_commit(msg.member_id, msg.generation, msg.group_instance_id)
        elif type(msg) is _Describe:
            return fsm.describe()
        elif type(msg) is _Delete:
            fsm.delete()  # Dead from here on: a join or commit now gets CoordinatorNotAvailable
            wb = WriteBatch()
            wb.delete_group(self.group)
            try:
                await self.coord.broker.write(wb)
            except StreamrtError as e:
                # The machine is Dead but storage still holds the group: crash, so the
                # supervisor restarts the group from what storage holds.
                raise RuntimeError(f"group {self.group!r}: could not delete: {e}") from e
        else:  # pragma: no cover - a bug in the coordinator
            raise TypeError(f"group actor got {msg!r}")
        return None

    async def _apply(self, outs: list[Output]) -> None:
        for out in outs:
            if type(out) is Persist:
                # Durable before any member hears of the generation: the commit fence.
                wb = WriteBatch()
                wb.set_generation(self.group, out.generation)
                try:
                    await self.coord.broker.write(wb)
                except StreamrtError as e:
                    # The machine moved on to a generation that is not stored: crash, so the
                    # supervisor restarts the group from what storage holds.
                    raise RuntimeError(
                        f"group {self.group!r}: could not persist generation "
                        f"{out.generation}: {e}") from e
            elif type(out) is JoinReply:
                log.debug("group %s: join answer to %s: %s", self.group, out.member_id,
                          out.result.generation if out.result else type(out.error).__name__)
                slot = self.joins.pop(out.member_id, None)
                if slot is not None:
                    slot.resolve(out.result, out.error)
            elif type(out) is SyncReply:
                log.debug("group %s: sync answer to %s: %s", self.group, out.member_id,
                          type(out.error).__name__ if out.error else "assignment")
                slot = self.syncs.pop(out.member_id, None)
                if slot is not None:
                    slot.resolve(out.assignment, out.error)
            elif type(out) is RebalanceStarted:
                self.coord._signal_rebalance(self.group)

    async def _timer(self) -> None:
        """Send the actor a tick whenever the machine's next deadline passes."""
        with self.timer_scope:
            while True:
                poke = self.poke
                delay = self.fsm.next_deadline() - anyio.current_time()
                if delay > 0:
                    with anyio.move_on_after(delay):
                        await poke.wait()
                    if poke.is_set():
                        continue  # something changed: recompute the deadline
                ref = self.coord._sup.children.get(self.group)
                if ref is None:
                    return
                try:
                    await ref.send(_TICK)
                except ActorStopped:
                    return
                await poke.wait()  # the tick (or another message) was handled


class GroupCoordinator:
    """Kafka's group coordinator over the broker: membership, rebalances, generations and
    fenced offset commits. Reach it as ``broker.groups``."""

    def __init__(self, broker: Broker, sup: Supervisor) -> None:
        self.broker = broker
        self._sup = sup
        self._signals: dict[str, anyio.Event] = {}

    # ------------------------------------------------------------- plumbing

    async def _get(self, group: str) -> ActorRef[Any]:
        if not isinstance(group, str) or not group:
            raise InvalidArgument(f"a group name is a non-empty string, got {group!r}")
        ref = self._sup.children.get(group)
        if ref is None:
            # spawn() registers the child before its first await, so a concurrent caller
            # finds it here instead of spawning a second actor.
            ref = await self._sup.spawn(lambda: GroupActor(self, group), group)
        return ref

    async def _ask(self, group: str, msg: Any) -> Any:
        ref = await self._get(group)
        try:
            return await ref.ask(msg)
        except ActorStopped:
            raise CoordinatorNotAvailable(group) from None

    async def _send(self, group: str, msg: Any) -> None:
        ref = await self._get(group)
        try:
            await ref.send(msg)
        except ActorStopped:
            raise CoordinatorNotAvailable(group) from None

    def _signal_rebalance(self, group: str) -> None:
        ev = self._signals.pop(group, None)
        if ev is not None:
            ev.set()

    def rebalance_signal(self, group: str) -> anyio.Event:
        """An event set when ``group`` next starts a rebalance. Embedded consumers wait on it
        alongside their heartbeat interval, so they rejoin at once; network clients learn it
        from their next heartbeat, as in Kafka."""
        ev = self._signals.get(group)
        if ev is None:
            ev = self._signals[group] = anyio.Event()
        return ev

    # ------------------------------------------------------------- group requests

    async def join(
        self, group: str, *, member_id: str = "", client_id: str = "", session_timeout: float,
        rebalance_timeout: float, protocol_type: str, protocols: Sequence[tuple[str, bytes]],
        group_instance_id: str | None = None,
    ) -> JoinResult:
        """JoinGroup: waits until the rebalance completes (or fails). An empty ``member_id``
        joins as a new member; the result carries the id to use from then on. A static
        member (Kafka's ``group.instance.id``) joining with an empty ``member_id`` takes the
        place of the member holding its instance id; the replaced member is fenced
        (FencedInstanceId)."""
        slot = _Slot()
        await self._send(group, _Join(member_id, client_id, float(session_timeout),
                                      float(rebalance_timeout), protocol_type,
                                      tuple(protocols), slot, group_instance_id))
        result: JoinResult = await slot.wait(rebalance_timeout + REPLY_GRACE, group)
        return result

    async def sync(
        self, group: str, *, member_id: str, generation: int,
        assignments: Mapping[str, bytes] | None = None, timeout: float = 30.0,
        group_instance_id: str | None = None,
    ) -> bytes:
        """SyncGroup: the leader passes every member's assignment; every member gets its own
        (opaque bytes; for consumers, Kafka's ConsumerProtocolAssignment)."""
        slot = _Slot()
        await self._send(group, _Sync(member_id, generation,
                                      dict(assignments) if assignments is not None else None, slot,
                                      group_instance_id))
        assignment: bytes = await slot.wait(timeout + REPLY_GRACE, group)
        return assignment

    async def heartbeat(self, group: str, *, member_id: str, generation: int,
                        group_instance_id: str | None = None) -> None:
        """Heartbeat; raises RebalanceInProgress (rejoin), UnknownMemberId (join anew),
        IllegalGeneration (rejoin) or FencedInstanceId (stop: replaced)."""
        await self._ask(group, _Heartbeat(member_id, generation, group_instance_id))

    async def leave(self, group: str, *, member_id: str = "",
                    group_instance_id: str | None = None) -> None:
        """LeaveGroup: the member's partitions are reassigned at once. A static member can
        be named by its ``group_instance_id`` alone."""
        await self._ask(group, _Leave(member_id, group_instance_id))

    async def commit(
        self, group: str, offsets: Mapping[tuple[str, int], int], *, member_id: str = "",
        generation: int = -1, group_instance_id: str | None = None,
    ) -> None:
        """OffsetCommit. A member commits with its id and generation (checked by the group,
        then fenced on the persisted generation in the same write); ``generation=-1`` without
        a member is a standalone commit, refused while the group has members."""
        wb = WriteBatch()
        wb.commit(group, offsets, generation if generation >= 0 else None)
        await self.write_fenced(group, wb, member_id=member_id, generation=generation,
                                group_instance_id=group_instance_id)

    async def write_fenced(
        self, group: str, wb: WriteBatch, *, member_id: str = "", generation: int = -1,
        group_instance_id: str | None = None,
    ) -> None:
        """Write ``wb`` (outputs and offset commits of an exactly-once transaction) after the
        group has checked the member; its commits are fenced on the persisted generation."""
        if member_id or group_instance_id is not None or group in self._sup.children:
            await self._ask(group, _CheckCommit(member_id, generation, group_instance_id))
        # Once submitted, the write lands or fails whatever the caller does; so a cancelled
        # caller still waits for the outcome (a local, bounded LMDB commit) and learns it:
        # an exactly-once consumer must know whether to rewind its inputs.
        with anyio.CancelScope(shield=True):
            await self.broker.write(wb)

    def fetch_offsets(
        self, group: str, partitions: Iterable[tuple[str, int]] | None = None,
    ) -> dict[tuple[str, int], int]:
        """OffsetFetch: the group's committed offsets (of ``partitions``, or all)."""
        committed = self.broker.committed(group)
        if partitions is None:
            return committed
        return {tp: committed[tp] for tp in partitions if tp in committed}

    async def describe(self, group: str) -> GroupDescription | None:
        """DescribeGroups: a live group's state, generation, protocol, leader and members
        (with metadata and assignment bytes); None if the group has no actor in this process."""
        if group not in self._sup.children:
            return None
        try:
            desc: GroupDescription = await self._ask(group, _DESCRIBE)
        except CoordinatorNotAvailable:
            return None
        return desc

    async def delete(self, group: str) -> None:
        """DeleteGroups: forget an empty group, with its committed offsets and generation.
        Raises UnknownGroup when nothing is known of it and NonEmptyGroup while it has
        members. Its actor checks and deletes in one step, so no join can slip in between."""
        if group not in self.list_groups():
            raise UnknownGroup(group)
        ref = await self._get(group)
        try:
            await ref.ask(_DELETE)
        except ActorStopped:
            raise CoordinatorNotAvailable(group) from None
        # The actor is Dead: retire it, so the group is gone from ListGroups and its next
        # request starts a new group.
        if self._sup.children.get(group) is ref:
            del self._sup.children[group]
        ref.close()

    def list_groups(self) -> list[str]:
        """ListGroups: live groups and every group with committed offsets or a generation."""
        return sorted(set(self._sup.children) | set(self.broker.store.groups()))

    def generation(self, group: str) -> int | None:
        """The group's persisted generation (what commits are fenced on)."""
        return self.broker.store.generation(group)


async def start_groups(broker: Any) -> Any:
    """Start the group coordinator's supervisor under the broker's root; returns the
    coordinator (``broker.groups``). Group actors are spawned on a group's first request."""

    async def init(_sup: Supervisor) -> None:
        pass  # groups come back on their next request, at their stored generation

    sup = await broker.root.spawn_supervisor("groups", init)
    return GroupCoordinator(broker, sup)


__all__ = ["GroupCoordinator", "GroupActor", "JoinResult", "GroupDescription", "start_groups"]
