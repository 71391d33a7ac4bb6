"""A consumer's group membership: joining, heartbeats, rebalances and the assignment.

:class:`GroupMembership` is the part of :class:`~streamrt.client._consumer.Consumer` that
talks to the group coordinator (``broker.groups``), as a Kafka consumer's coordinator client
does. It runs in a background task of its own (``_membership``): a heartbeat loop, and a join
loop that rejoins whenever a rebalance, a fenced commit or an expired membership asks for it.
A rejoin is Kafka's eager one: revoke every partition (an at-least-once consumer first waits
for the batch in hand and commits what was processed), join, let the leader's assignor
compute the assignment (``_assignors.py``), sync, and take the new partitions at their
committed offsets (or ``auto_offset_reset``). The consumer module holds the rest: fetching,
positions and commits, which this part calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ..broker._assignors import (
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
    get_assignor,
)
from ..errors import (
    CoordinatorNotAvailable,
    RebalanceInProgress,
    StaleGeneration,
    StreamrtError,
    UnknownMemberId,
    UnknownTopic,
)

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger("streamrt.client._consumer")

TopicPartition = tuple[str, int]

#: Pause after the coordinator was unavailable (restarting) before joining again.
REJOIN_BACKOFF = 0.05


class GroupMembership:
    """The group-membership half of a consumer (a mixin: the consumer holds the state)."""

    if TYPE_CHECKING:  # what the consumer provides
        _broker: Broker
        group: str | None
        client_id: str
        topics: tuple[str, ...]
        guarantee: str
        auto_offset_reset: str
        assignors: tuple[str, ...]
        session_timeout: float
        heartbeat_interval: float
        rebalance_timeout: float
        revoke_timeout: float
        member_id: str
        generation: int
        _rebalancing: bool
        _joining: bool
        _revoking: bool
        _rejoin_needed: bool
        _rejoin_event: anyio.Event
        _scope: anyio.CancelScope
        _membership_done: anyio.Event | None
        _last_owned: list[TopicPartition]
        _assigned_event: anyio.Event
        _failure: BaseException | None
        _assignment: list[TopicPartition]
        _positions: dict[TopicPartition, int]
        _committed: dict[TopicPartition, int]
        _start: dict[TopicPartition, int]
        _paused: set[TopicPartition]
        _epoch: int
        _it_batch: list[Any]
        _it_idx: int
        _inflight_msg: Any
        _inflight_batch: list[Any] | None
        _idle_event: anyio.Event | None

        def _wake(self) -> None: ...
        def _drop_unreturned(self) -> None: ...
        def _processed(self) -> dict[TopicPartition, int]: ...
        async def _commit(self, positions: Mapping[TopicPartition, int]) -> None: ...

    def _request_rejoin(self, reset_member: bool = False) -> None:
        if reset_member:
            self.member_id = ""
            self.generation = -1
        self._rejoin_needed = True
        self._rejoin_event.set()

    async def _membership(self) -> None:
        assert self._membership_done is not None
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._heartbeat_loop)
                    await self._join_loop()
        except Exception as e:  # a bug or storage failure: surface it to the application
            log.debug("consumer of group %r stopped", self.group, exc_info=True)
            while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
                e = e.exceptions[0]  # the task group's wrapping: report the error itself
            self._failure = e
            self._assigned_event.set()  # start() and wait_for_assignment() stop waiting
            self._wake()
        finally:
            self._membership_done.set()

    async def _join_loop(self) -> None:
        while True:
            if not self._rejoin_needed:
                await self._rejoin_event.wait()
            self._rejoin_event = anyio.Event()
            self._rejoin_needed = False
            try:
                await self._rejoin()
            except (RebalanceInProgress, StaleGeneration) as e:
                # UnknownMemberId: join anew; IllegalGeneration/RebalanceInProgress: again.
                self._request_rejoin(reset_member=isinstance(e, UnknownMemberId))
            except CoordinatorNotAvailable:
                self._request_rejoin(reset_member=True)
                await anyio.sleep(REJOIN_BACKOFF)

    async def _heartbeat_loop(self) -> None:
        coord = self._broker.groups
        while True:
            signal = coord.rebalance_signal(self.group)
            with anyio.move_on_after(self.heartbeat_interval):
                await signal.wait()
            if self._joining or not self.member_id:
                continue
            if signal.is_set() and not self._rebalancing:  # rejoin now, not at the heartbeat
                self._request_rejoin()
                continue
            # Heartbeats go on while a rebalance revokes partitions (which may wait for the
            # application's batch): the session must not expire meanwhile.
            generation = self.generation
            try:
                await coord.heartbeat(self.group, member_id=self.member_id, generation=generation)
            except (RebalanceInProgress, StaleGeneration, CoordinatorNotAvailable) as e:
                if self._rebalancing or generation != self.generation:
                    continue  # already rejoining, or an answer about a generation we left
                self._request_rejoin(
                    reset_member=isinstance(e, (UnknownMemberId, CoordinatorNotAvailable)))

    async def _rejoin(self) -> None:
        coord = self._broker.groups
        self._rebalancing = True
        try:
            await self._revoke()
            self._joining = True
            sub = Subscription(self.topics, tuple(self._last_owned), self.generation)
            meta = encode_subscription(sub)
            result = await coord.join(
                self.group, member_id=self.member_id, client_id=self.client_id,
                session_timeout=self.session_timeout, rebalance_timeout=self.rebalance_timeout,
                protocol_type="consumer", protocols=[(n, meta) for n in self.assignors])
            self.member_id = result.member_id
            self.generation = result.generation
            assignments = None
            if result.leader == result.member_id:
                assignments = self._lead(result.protocol, result.members)
            raw = await coord.sync(self.group, member_id=self.member_id,
                                   generation=result.generation, assignments=assignments,
                                   timeout=self.rebalance_timeout)
            self._assign_partitions(decode_assignment(raw))
        finally:
            self._joining = self._rebalancing = False

    def _lead(self, protocol: str, members: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
        """As the leader: compute every member's assignment with the chosen assignor."""
        subs = {mid: decode_subscription(meta) for mid, meta in members}
        counts: dict[str, int] = {}
        for s in subs.values():
            for t in s.topics:
                if t not in counts:
                    try:
                        counts[t] = self._broker.store.topic(t).partitions
                    except UnknownTopic:
                        counts[t] = 0  # deleted meanwhile: nothing to assign
        plan = get_assignor(protocol)(counts, subs)
        return {mid: encode_assignment(plan.get(mid, [])) for mid in subs}

    async def _revoke(self) -> None:
        """Give up every partition (eager rebalance); at-least-once commits what was
        processed first, after waiting a while for the batch in hand."""
        if not self._assignment:
            return
        self._revoking = True  # no more reads from these partitions
        try:
            self._drop_unreturned()
            held = self._inflight_msg is not None or self._inflight_batch is not None
            if held and self.guarantee == "at_least_once":
                idle = self._idle_event = anyio.Event()
                with anyio.move_on_after(self.revoke_timeout):
                    await idle.wait()
            if self.guarantee == "at_least_once" and self.generation >= 0:
                try:
                    await self._commit(self._processed())
                except StreamrtError as e:
                    log.info("group %r: commit before revocation refused (%s); the new owners "
                             "will process those messages again", self.group, e)
            self._last_owned = list(self._assignment)
            self._set_assignment([], {})
        finally:
            self._revoking = False

    def _assign_partitions(self, tps: Iterable[TopicPartition]) -> None:
        tps = sorted(set(tps))
        committed = (self._broker.groups.fetch_offsets(self.group, tps)
                     if self.group is not None else {})
        positions = {}
        for tp in tps:
            pos = committed.get(tp)
            if pos is None or not (self._broker.log_start_offset(*tp) <= pos
                                   <= self._broker.high_watermark(*tp)):
                pos = self._reset_position(tp)
            positions[tp] = pos
        self._committed = dict(committed)
        self._set_assignment(tps, positions)
        self._assigned_event.set()

    def _set_assignment(
        self, tps: list[TopicPartition], positions: dict[TopicPartition, int],
    ) -> None:
        self._assignment = tps
        self._positions = positions
        self._start = dict(positions)
        if not tps:
            self._committed = {}
            self._assigned_event = anyio.Event()
        self._paused &= set(tps)
        self._it_batch = []
        self._it_idx = 0
        self._epoch += 1
        self._wake()

    def _reset_position(self, tp: TopicPartition) -> int:
        if self.auto_offset_reset == "earliest":
            return self._broker.log_start_offset(*tp)
        return self._broker.high_watermark(*tp)
