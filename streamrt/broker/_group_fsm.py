"""The consumer-group state machine, as Kafka's classic group coordinator: pure, no I/O.

A :class:`GroupMachine` takes the group requests (JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, and the offset-commit check) with the current time passed in, and returns what
must happen as a list of outputs: persist a new generation, answer a pending join or sync,
tell embedded members a rebalance started. The actor in ``_groups.py`` runs it, owns the
pending replies and the timer; a Kafka-protocol server maps each request onto it one to one.

Members, generations and protocols are Kafka's: a member id is handed out on a member's
first join; each completed join phase starts a new generation; members name a protocol type
("consumer") and protocols (assignor names, preferred first) with opaque metadata; one member,
the leader, gets every member's metadata in its join response, computes the assignment itself
and sends it with its SyncGroup; the coordinator only hands each member its part.

The rules, which the table below encodes (every state change goes through it)::

    Empty                 no members. A join starts a rebalance. The group keeps its
                          protocol type (as Kafka's does) until a first member sets it anew.
    PreparingRebalance    waiting for every known member to (re)join. A join completes the
                          phase as soon as every member has a join pending: the group moves
                          to CompletingRebalance with generation + 1, and every joiner gets
                          its answer (the leader with all members' metadata). When the
                          rebalance timeout passes first, members that did not rejoin are
                          removed and the phase completes with those that did (or the group
                          becomes Empty, also with generation + 1, when none did). An empty
                          group's first join therefore completes at once.
    CompletingRebalance   waiting for the leader's SyncGroup with the assignment; followers'
                          syncs wait for it. The leader's sync makes the group Stable and
                          answers every waiting sync. A join with new metadata, a static
                          member's replacement, a leave or an expired session restarts the
                          rebalance (waiting syncs get RebalanceInProgress); so does the
                          rebalance timeout passing without the leader's sync (members that
                          did not sync are removed).
    Stable                members heartbeat. A new member's join, a known member's join with
                          other metadata (or the leader's rejoin), a static member's
                          replacement with other metadata or of the leader, a leave or an
                          expired session starts a rebalance; members learn of it from their
                          next heartbeat (RebalanceInProgress), embedded members at once. A
                          static follower's replacement with the same metadata does not.
    Dead                  the coordinator stopped (broker closing or the group's actor
                          restarting), or the group was deleted (only an Empty group can be);
                          every pending request fails with CoordinatorNotAvailable.

    A member's session expires when it has sent no heartbeat, join or sync for its session
    timeout, unless it is waiting for a join or sync answer (the group is keeping it waiting).
    Every generation is persisted before any member hears of it, and offset commits are
    fenced on the persisted generation, so a member of an older generation (a zombie) can
    never commit, even across a restart.

Static members (Kafka's KIP-345, ``group.instance.id``) name an instance id that outlives
their member id, so a restarted consumer takes its old place instead of waiting for the old
session to expire (static members send no LeaveGroup on close). The group maps each instance
id to the member id that holds it now::

    join, no member id,   the old member id is retired and the joiner takes its place (its
    known instance id     subscription, session, leadership and assignment) under a new member
                          id; the old member's pending join or sync gets FencedInstanceId.
                          Then by state: Stable, the same metadata and not the leader: no
                          rebalance, the joiner gets the current generation and its old
                          assignment from its SyncGroup (Kafka's rule). Stable with other
                          metadata or replacing the leader (so the new leader runs the next
                          assignment, knowing it leads), or CompletingRebalance (the leader
                          may be assigning to the old id): a rebalance. PreparingRebalance:
                          the joiner counts as rejoined.
    join, no member id,   a new member, as a dynamic one, holding the instance id.
    unknown instance id
    any request naming    FencedInstanceId when the instance id is held by another member id
    an instance id        (the retired one, or a duplicate consumer); UnknownMemberId when no
                          member holds it. Heartbeat, join, sync, commit and leave alike.
    leave by instance id  (LeaveGroup v3+ with no member id) removes the member holding it.
    session expiry,       as for any member: it is removed (and the instance id freed), and
    leave                 the group rebalances.

    Replacing a member without a rebalance makes no new generation (Kafka's neither):
    nothing is persisted, and the retired member id is refused by the group's checks
    (commits included).
"""

from __future__ import annotations

import enum
import logging
import math
import uuid
from collections.abc import Callable, Sequence
import attrs

from ..errors import (
    CoordinatorNotAvailable,
    IllegalGeneration,
    InconsistentGroupProtocol,
    FencedInstanceId,
    InvalidArgument,
    NonEmptyGroup,
    RebalanceInProgress,
    UnknownMemberId,
)


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


log = logging.getLogger("streamrt.broker.groups")

E, P, C, S, D = (GroupState.EMPTY, GroupState.PREPARING_REBALANCE,
                 GroupState.COMPLETING_REBALANCE, GroupState.STABLE, GroupState.DEAD)

#: (state, event) -> next state. Events: ``rebalance`` (a join that needs one, a static
#: member replacing the leader or with other metadata, a leave, an expired session, a sync
#: timeout), ``joined`` (join phase complete with members),
#: ``emptied`` (join phase complete with none left), ``synced`` (the leader's assignment
#: arrived), ``deleted`` (DeleteGroups), ``shutdown``. A pair missing from the table is a bug, never a user error.
TRANSITIONS: dict[tuple[GroupState, str], GroupState] = {
    (E, "rebalance"): P,
    (P, "rebalance"): P,
    (C, "rebalance"): P,
    (S, "rebalance"): P,
    (P, "joined"): C,
    (P, "emptied"): E,
    (C, "synced"): S,
    (E, "deleted"): D,
    (E, "shutdown"): D,
    (P, "shutdown"): D,
    (C, "shutdown"): D,
    (S, "shutdown"): D,
    (D, "shutdown"): D,
}


@attrs.frozen
class JoinResult:
    """A JoinGroup answer: the new generation, the chosen protocol, the leader, the member's
    own id and, for the leader only, every member's ``(member_id, metadata)`` and the
    ``(member_id, group_instance_id)`` of the static ones among them."""

    generation: int
    protocol_type: str
    protocol: str
    leader: str
    member_id: str
    members: tuple[tuple[str, bytes], ...]
    instance_ids: tuple[tuple[str, str], ...] = ()


# Outputs: what the driver must do, in order.
@attrs.frozen
class Persist:
    """Make ``generation`` durable before anything that follows is sent."""

    generation: int


@attrs.frozen
class JoinReply:
    member_id: str
    result: JoinResult | None = None
    error: Exception | None = None


@attrs.frozen
class SyncReply:
    member_id: str
    assignment: bytes | None = None
    error: Exception | None = None


@attrs.frozen
class RebalanceStarted:
    """Tell members waiting on the group's signal (embedded consumers) to rejoin now."""


Output = Persist | JoinReply | SyncReply | RebalanceStarted


@attrs.define(eq=False)
class Member:
    member_id: str
    client_id: str
    session_timeout: float
    rebalance_timeout: float
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    deadline: float
    assignment: bytes = b""
    awaiting_join: bool = False
    awaiting_sync: bool = False
    group_instance_id: str | None = None  # a static member's (KIP-345)

    def metadata(self, protocol: str) -> bytes:
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        raise KeyError(protocol)  # pragma: no cover - protocols were checked at join


@attrs.frozen
class MemberDescription:
    member_id: str
    client_id: str
    metadata: bytes
    assignment: bytes
    group_instance_id: str | None = None


@attrs.frozen
class GroupDescription:
    """A snapshot of a live group (Kafka's DescribeGroups)."""

    group: str
    state: str
    generation: int
    protocol_type: str
    protocol: str
    leader: str
    members: tuple[MemberDescription, ...]


class GroupMachine:
    """One group's membership and rebalance state; see the module doc. Not thread-safe: one
    actor drives it."""

    def __init__(self, group: str, generation: int = 0,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:12]) -> None:
        self.group = group
        self._new_id = new_id  # injected so tests get repeatable member ids
        self.state = GroupState.EMPTY
        self.generation = generation
        self.protocol_type = ""
        self.protocol = ""
        self.leader = ""
        self.members: dict[str, Member] = {}
        self.static: dict[str, str] = {}  # group_instance_id -> member id holding it
        self.phase_deadline = math.inf  # rebalance (join or sync) timeout of the current phase

    # ------------------------------------------------------------- helpers

    def _move(self, event: str) -> None:
        self.state = TRANSITIONS[(self.state, event)]

    def _member(self, member_id: str) -> Member:
        m = self.members.get(member_id)
        if m is None:
            raise UnknownMemberId(self.group, member_id)
        return m

    def _check_instance(self, member_id: str, instance_id: str | None) -> None:
        """Kafka's static-member check of a request that names an instance id: the id must
        be held, and by this member (else the member was replaced: fenced)."""
        if instance_id is None:
            return
        holder = self.static.get(instance_id)
        if holder is None:
            raise UnknownMemberId(self.group, member_id or f"(instance {instance_id})")
        if holder != member_id:
            raise FencedInstanceId(self.group, instance_id, member_id)

    def _check_generation(self, generation: int) -> None:
        if generation != self.generation:
            raise IllegalGeneration(self.group, generation, self.generation)

    def _check_alive(self) -> None:
        if self.state is D:
            raise CoordinatorNotAvailable(self.group)

    def _renew(self, m: Member, now: float) -> None:
        m.deadline = now + m.session_timeout

    def _rebalance_timeout(self) -> float:
        return max((m.rebalance_timeout for m in self.members.values()), default=0.0)

    def next_deadline(self) -> float:
        """When :meth:`expire` next has something to do (``math.inf``: nothing pending)."""
        t = self.phase_deadline if self.state in (P, C) else math.inf
        for m in self.members.values():
            if not (m.awaiting_join or m.awaiting_sync):
                t = min(t, m.deadline)
        return t

    # ------------------------------------------------------------- requests

    def join(
        self, now: float, member_id: str, client_id: str, session_timeout: float,
        rebalance_timeout: float, protocol_type: str, protocols: Sequence[tuple[str, bytes]],
        group_instance_id: str | None = None,
    ) -> tuple[str, list[Output]]:
        """JoinGroup. Returns the member's id (new members get one) and the outputs; the
        member's join answer is among them now or in a later call's outputs. A static
        member (``group_instance_id``) without a member id replaces the member holding its
        instance id, if any."""
        self._check_alive()
        if not session_timeout > 0 or not rebalance_timeout > 0:
            raise InvalidArgument(
                f"group {self.group!r}: session and rebalance timeouts must be > 0 seconds, got "
                f"{session_timeout!r} and {rebalance_timeout!r}")
        protocols = [(str(n), bytes(meta)) for n, meta in protocols]
        if not protocol_type or not protocols:
            raise InconsistentGroupProtocol(
                f"group {self.group!r}: a join must name a protocol type and at least one "
                f"protocol (for consumers: 'consumer' and assignor names)")
        if self.members:
            if protocol_type != self.protocol_type:
                raise InconsistentGroupProtocol(
                    f"group {self.group!r} runs protocol type {self.protocol_type!r}, not "
                    f"{protocol_type!r}: use another group name for this client")
            common = self._supported() & {n for n, _ in protocols}
            if not common:
                raise InconsistentGroupProtocol(
                    f"group {self.group!r}: none of {[n for n, _ in protocols]} is supported by "
                    f"every member (they support {sorted(self._supported())}); configure a "
                    f"common assignor")
        out: list[Output] = []
        if not member_id and group_instance_id in self.static:
            return self._replace(now, group_instance_id, client_id, session_timeout,
                                 rebalance_timeout, protocols, out)
        if not member_id:
            member_id = f"{group_instance_id or client_id or 'member'}-{self._new_id()}"
            m = Member(member_id, client_id, session_timeout, rebalance_timeout, protocol_type,
                       protocols, now + session_timeout, group_instance_id=group_instance_id)
            if not self.members:  # an empty group takes its first member's protocol type
                self.protocol_type = protocol_type
            self.members[member_id] = m
            if group_instance_id is not None:
                self.static[group_instance_id] = member_id
            log.info("group %s: member %s joined (state %s)", self.group, member_id,
                     self.state.value)
            m.awaiting_join = True
            self._prepare_rebalance(now, out)
        else:
            self._check_instance(member_id, group_instance_id)
            m = self._member(member_id)
            m.session_timeout, m.rebalance_timeout = session_timeout, rebalance_timeout
            self._renew(m, now)
            same = m.protocols == protocols
            m.protocols = protocols
            m.awaiting_join = True
            if self.state is S and same and member_id != self.leader:
                # A follower that lost its answer: tell it the current generation again.
                m.awaiting_join = False
                out.append(JoinReply(member_id, self._result(member_id, leader_view=False)))
                return member_id, out
            if self.state is C and same:
                m.awaiting_join = False
                out.append(JoinReply(member_id, self._result(member_id,
                                                             member_id == self.leader)))
                return member_id, out
            if self.state is not P:
                self._prepare_rebalance(now, out)
        self._maybe_complete_join(now, out)
        return member_id, out

    def sync(
        self, now: float, member_id: str, generation: int, assignments: dict[str, bytes] | None,
        group_instance_id: str | None = None,
    ) -> list[Output]:
        """SyncGroup. The leader passes every member's assignment; the answer (the member's
        assignment) is in the outputs now or when the leader's sync arrives."""
        self._check_alive()
        self._check_instance(member_id, group_instance_id)
        m = self._member(member_id)
        self._check_generation(generation)
        self._renew(m, now)
        if self.state is P:
            raise RebalanceInProgress(self.group)
        if self.state is S:
            return [SyncReply(member_id, m.assignment)]
        # CompletingRebalance
        m.awaiting_sync = True
        if member_id != self.leader:
            return []
        for mid, member in self.members.items():
            member.assignment = bytes((assignments or {}).get(mid, b""))
        self._move("synced")
        self.phase_deadline = math.inf
        out: list[Output] = []
        for member in self.members.values():
            if member.awaiting_sync:
                member.awaiting_sync = False
                self._renew(member, now)
                out.append(SyncReply(member.member_id, member.assignment))
        return out

    def heartbeat(self, now: float, member_id: str, generation: int,
                  group_instance_id: str | None = None) -> None:
        """Heartbeat: renews the member's session, or raises what the member must do
        (RebalanceInProgress: rejoin; UnknownMemberId: join anew; IllegalGeneration: rejoin;
        FencedInstanceId: stop, another consumer took this static member's place)."""
        self._check_alive()
        self._check_instance(member_id, group_instance_id)
        m = self._member(member_id)
        if self.state is P:
            self._renew(m, now)
            raise RebalanceInProgress(self.group)
        self._check_generation(generation)
        self._renew(m, now)

    def leave(self, now: float, member_id: str,
              group_instance_id: str | None = None) -> list[Output]:
        """LeaveGroup: the member goes at once (no session timeout to wait for). A static
        member can be named by its instance id alone (an empty ``member_id``), as Kafka's
        LeaveGroup v3+ allows (an administrator removing it)."""
        self._check_alive()
        if not member_id and group_instance_id is not None:
            member_id = self.static.get(group_instance_id, "")
            if not member_id:
                raise UnknownMemberId(self.group, f"(instance {group_instance_id})")
        self._check_instance(member_id, group_instance_id)
        self._member(member_id)
        out: list[Output] = []
        log.info("group %s: member %s left", self.group, member_id)
        self._remove(now, [member_id], out)
        return out

    def check_commit(self, member_id: str, generation: int,
                     group_instance_id: str | None = None) -> None:
        """Whether an OffsetCommit may go ahead (the write itself is fenced on the persisted
        generation). ``generation < 0`` with no member is a standalone commit, allowed only
        while the group has no members."""
        self._check_alive()
        self._check_instance(member_id, group_instance_id)
        if generation < 0 and not member_id:
            if self.members:
                raise UnknownMemberId(self.group, member_id or "(none)")
            return
        if self.state is C:
            raise RebalanceInProgress(self.group)
        self._member(member_id)
        self._check_generation(generation)

    def expire(self, now: float) -> list[Output]:
        """Apply every timeout due at ``now``: expired sessions, and the rebalance timeout of
        the current phase."""
        out: list[Output] = []
        if self.state is D:
            return out
        if self.state is P and now >= self.phase_deadline:
            laggards = [mid for mid, m in self.members.items() if not m.awaiting_join]
            if laggards:
                log.info("group %s: removing %s: they did not rejoin within the rebalance "
                         "timeout", self.group, ", ".join(laggards))
            self._remove(now, laggards, out)
            self._maybe_complete_join(now, out, force=True)
        elif self.state is C and now >= self.phase_deadline:
            # The leader never synced: drop the members that did not sync (the leader among
            # them) and start over with the rest.
            log.info("group %s: the leader %s did not sync within the rebalance timeout",
                     self.group, self.leader)
            self._remove(now, [mid for mid, m in self.members.items() if not m.awaiting_sync], out)
        dead = [mid for mid, m in self.members.items()
                if not (m.awaiting_join or m.awaiting_sync) and now >= m.deadline]
        if dead:
            log.info("group %s: removing %s: session timed out", self.group, ", ".join(dead))
            self._remove(now, dead, out)
        return out

    def delete(self) -> None:
        """DeleteGroups: an Empty group becomes Dead (the driver then forgets its stored
        offsets and generation); a group with members raises NonEmptyGroup."""
        self._check_alive()
        if self.members:
            raise NonEmptyGroup(self.group, len(self.members))
        log.info("group %s: deleted", self.group)
        self._move("deleted")

    def shutdown(self) -> list[Output]:
        """The coordinator stops: every pending request fails."""
        self._move("shutdown")
        err = CoordinatorNotAvailable(self.group)
        out: list[Output] = []
        for m in self.members.values():
            if m.awaiting_join:
                out.append(JoinReply(m.member_id, error=err))
            if m.awaiting_sync:
                out.append(SyncReply(m.member_id, error=err))
            m.awaiting_join = m.awaiting_sync = False
        return out

    def describe(self) -> GroupDescription:
        members = tuple(
            MemberDescription(m.member_id, m.client_id,
                              m.metadata(self.protocol) if self.protocol and
                              any(n == self.protocol for n, _ in m.protocols) else b"",
                              m.assignment, m.group_instance_id)
            for m in self.members.values())
        return GroupDescription(self.group, self.state.value, self.generation,
                                self.protocol_type, self.protocol, self.leader, members)

    # ------------------------------------------------------------- internals

    def _supported(self) -> set[str]:
        sets = [{n for n, _ in m.protocols} for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def _select_protocol(self) -> str:
        """Kafka's selectProtocol: among protocols every member supports, each member votes
        for its most preferred; the most votes win (ties: the earliest-joined member's
        preference order)."""
        candidates = self._supported()
        votes: dict[str, int] = {}
        for m in self.members.values():
            first = next(n for n, _ in m.protocols if n in candidates)
            votes[first] = votes.get(first, 0) + 1
        order = [n for n, _ in next(iter(self.members.values())).protocols if n in candidates]
        return max(order, key=lambda n: (votes.get(n, 0), -order.index(n)))

    def _replace(
        self, now: float, instance_id: str, client_id: str, session_timeout: float,
        rebalance_timeout: float, protocols: list[tuple[str, bytes]], out: list[Output],
    ) -> tuple[str, list[Output]]:
        """A static member rejoins without a member id: it takes the place of the member
        holding its instance id (see the module doc)."""
        old_id = self.static[instance_id]
        new_id = f"{instance_id}-{self._new_id()}"
        m = self.members[old_id]
        fenced = FencedInstanceId(self.group, instance_id, old_id)
        if m.awaiting_join:
            out.append(JoinReply(old_id, error=fenced))
        if m.awaiting_sync:
            out.append(SyncReply(old_id, error=fenced))
        m.awaiting_join = m.awaiting_sync = False
        # Same place in the join order (which decides protocol-vote ties and the next leader).
        self.members = {new_id if k == old_id else k: v for k, v in self.members.items()}
        self.static[instance_id] = new_id
        was_leader = self.leader == old_id
        if was_leader:
            self.leader = new_id
        same = m.protocols == protocols
        m.member_id, m.client_id = new_id, client_id
        m.session_timeout, m.rebalance_timeout = session_timeout, rebalance_timeout
        m.protocols = protocols
        self._renew(m, now)
        log.info("group %s: static member %s (instance %s) replaced %s (state %s)", self.group,
                 new_id, instance_id, old_id, self.state.value)
        if self.state is S and same and not was_leader:
            out.append(JoinReply(new_id, self._result(new_id, leader_view=False)))
            return new_id, out
        m.awaiting_join = True
        if self.state is not P:
            self._prepare_rebalance(now, out)
        self._maybe_complete_join(now, out)
        return new_id, out

    def _prepare_rebalance(self, now: float, out: list[Output]) -> None:
        if self.state is C:
            err = RebalanceInProgress(self.group)
            for m in self.members.values():
                if m.awaiting_sync:
                    m.awaiting_sync = False
                    self._renew(m, now)  # its session counts from the answer, as in Kafka
                    out.append(SyncReply(m.member_id, error=err))
        if self.state is not P:
            self.phase_deadline = now + self._rebalance_timeout()
            out.append(RebalanceStarted())
            log.debug("group %s: rebalance started (generation %d)", self.group, self.generation)
        self._move("rebalance")

    def _remove(self, now: float, member_ids: list[str], out: list[Output]) -> None:
        if not member_ids:
            return
        for mid in member_ids:
            m = self.members.pop(mid)
            if m.group_instance_id is not None:
                del self.static[m.group_instance_id]
            err = UnknownMemberId(self.group, mid)
            if m.awaiting_join:
                out.append(JoinReply(mid, error=err))
            if m.awaiting_sync:
                out.append(SyncReply(mid, error=err))
        if self.state in (S, C):
            self._prepare_rebalance(now, out)
        if self.state is P:
            self._maybe_complete_join(now, out)

    def _maybe_complete_join(self, now: float, out: list[Output], force: bool = False) -> None:
        if self.state is not P:
            return
        if not force and not all(m.awaiting_join for m in self.members.values()):
            return
        self.generation += 1
        out.append(Persist(self.generation))
        if not self.members:
            self._move("emptied")
            # Kafka's Empty group keeps its protocol type (DescribeGroups still says
            # "consumer"); the protocol and leader belonged to the members.
            self.protocol = self.leader = ""
            self.phase_deadline = math.inf
            return
        self._move("joined")
        self.protocol = self._select_protocol()
        if self.leader not in self.members:
            self.leader = next(iter(self.members))
        log.info("group %s: generation %d with %d members (leader %s)", self.group,
                 self.generation, len(self.members), self.leader)
        self.phase_deadline = now + self._rebalance_timeout()
        for m in self.members.values():
            m.awaiting_join = False
            m.assignment = b""
            self._renew(m, now)
            out.append(JoinReply(m.member_id, self._result(m.member_id,
                                                           m.member_id == self.leader)))

    def _result(self, member_id: str, leader_view: bool) -> JoinResult:
        members: tuple[tuple[str, bytes], ...] = ()
        static: tuple[tuple[str, str], ...] = ()
        if leader_view:
            members = tuple((m.member_id, m.metadata(self.protocol))
                            for m in self.members.values())
            static = tuple((m.member_id, m.group_instance_id) for m in self.members.values()
                           if m.group_instance_id is not None)
        return JoinResult(self.generation, self.protocol_type, self.protocol, self.leader,
                          member_id, members, static)

