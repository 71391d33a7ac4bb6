"""The pure group state machine (Kafka's classic group protocol): time is passed in, so
session and rebalance timeouts are tested without waiting; a hypothesis stateful test drives
random request sequences and checks the invariants after each step."""

from __future__ import annotations

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streamrt import errors
from streamrt.broker._group_fsm import (
    TRANSITIONS,
    GroupMachine,
    GroupState,
    JoinReply,
    Persist,
    RebalanceStarted,
    SyncReply,
)

PROTO = [("range", b"meta")]


def join(g: GroupMachine, now: float, member: str = "", protocols=PROTO, session: float = 10.0,
         rebalance: float = 30.0) -> tuple[str, list]:
    return g.join(now, member, "client", session, rebalance, "consumer", protocols)


def replies(outs: list, kind: type) -> dict:
    return {o.member_id: o for o in outs if isinstance(o, kind)}


def test_first_join_completes_at_once_and_persists_generation_first() -> None:
    g = GroupMachine("g", generation=7)
    a, outs = join(g, 0.0)
    assert isinstance(outs[0], RebalanceStarted)
    assert outs[1] == Persist(8)  # before any answer
    (reply,) = replies(outs, JoinReply).values()
    assert reply.result.generation == 8 and reply.result.leader == a
    assert reply.result.members == ((a, b"meta"),)  # the leader sees every member
    assert g.state is GroupState.COMPLETING_REBALANCE
    out = g.sync(0.0, a, 8, {a: b"assignment"})
    assert out == [SyncReply(a, b"assignment")]
    assert g.state is GroupState.STABLE


def stable_pair(now: float = 0.0) -> tuple[GroupMachine, str, str]:
    g = GroupMachine("g")
    a, _ = join(g, now)
    g.sync(now, a, 1, {a: b"A"})
    b, outs = join(g, now)
    assert g.state is GroupState.PREPARING_REBALANCE and not replies(outs, JoinReply)
    with pytest.raises(errors.RebalanceInProgress):
        g.heartbeat(now, a, 1)
    _, outs = join(g, now, a)
    r = replies(outs, JoinReply)
    assert set(r) == {a, b} and r[a].result.generation == 2 and r[a].result.leader == a
    assert r[b].result.members == ()  # followers do not see the others' metadata
    assert g.sync(now, b, 2, None) == []  # waits for the leader
    out = g.sync(now, a, 2, {a: b"A2", b: b"B2"})
    assert replies(out, SyncReply) == {a: SyncReply(a, b"A2"), b: SyncReply(b, b"B2")}
    return g, a, b


def test_join_of_second_member_rebalances_and_leader_assigns() -> None:
    g, a, b = stable_pair()
    assert g.state is GroupState.STABLE and g.generation == 2


def test_errors_are_kafkas() -> None:
    g, a, b = stable_pair()
    with pytest.raises(errors.IllegalGeneration) as ei:
        g.heartbeat(1.0, a, 1)
    assert isinstance(ei.value, errors.StaleGeneration)
    with pytest.raises(errors.UnknownMemberId):
        g.heartbeat(1.0, "ghost", 2)
    with pytest.raises(errors.UnknownMemberId):
        join(g, 1.0, "ghost")
    with pytest.raises(errors.InconsistentGroupProtocol):
        g.join(1.0, "", "c", 10, 30, "connect", PROTO)
    with pytest.raises(errors.InconsistentGroupProtocol):
        join(g, 1.0, protocols=[("sticky", b"")])
    with pytest.raises(errors.IllegalGeneration):
        g.check_commit(a, 1)
    g.check_commit(a, 2)
    with pytest.raises(errors.UnknownMemberId):
        g.check_commit("", -1)  # a standalone commit while the group has members


def test_leave_and_expiry_rebalance() -> None:
    g, a, b = stable_pair()
    outs = g.leave(1.0, b)
    # b left; a alone has not rejoined yet: the phase waits for it
    assert g.state is GroupState.PREPARING_REBALANCE and RebalanceStarted() in outs
    _, outs = join(g, 1.0, a)
    assert Persist(3) in outs and g.state is GroupState.COMPLETING_REBALANCE
    g.sync(1.0, a, 3, {a: b"all"})
    # a stops heartbeating: its session (10 s) expires; the group becomes Empty, gen 4
    assert g.next_deadline() == 11.0
    assert g.expire(10.9) == []
    outs = g.expire(11.0)
    assert Persist(4) in outs and g.state is GroupState.EMPTY and not g.members
    g.check_commit("", -1)  # standalone commits are fine in an empty group
    with pytest.raises(errors.UnknownMemberId):
        g.check_commit(a, 3)  # the zombie is refused


def test_an_empty_group_keeps_its_protocol_type_until_a_first_member_sets_it() -> None:
    g = GroupMachine("g")
    a, _ = join(g, 0.0)
    g.leave(1.0, a)
    assert g.state is GroupState.EMPTY
    d = g.describe()
    assert (d.protocol_type, d.protocol, d.leader) == ("consumer", "", "")  # as Kafka's Empty
    # An empty group takes any protocol type (Kafka checks it against live members only).
    c, outs = g.join(2.0, "", "c", 10, 30, "connect", PROTO)
    assert replies(outs, JoinReply)[c].result.protocol_type == "connect"
    assert g.describe().protocol_type == "connect"


def test_only_an_empty_group_can_be_deleted_and_then_it_is_dead() -> None:
    g, a, b = stable_pair()
    with pytest.raises(errors.NonEmptyGroup, match="2 member"):
        g.delete()
    assert g.state is GroupState.STABLE
    g.leave(1.0, a)
    g.leave(1.0, b)
    assert g.state is GroupState.EMPTY
    g.delete()
    assert g.state is GroupState.DEAD
    with pytest.raises(errors.CoordinatorNotAvailable):  # clients retry on a new group actor
        join(g, 2.0)


def test_rebalance_timeout_drops_members_that_do_not_rejoin() -> None:
    g, a, b = stable_pair()
    c, outs = join(g, 5.0, rebalance=20.0)
    assert g.state is GroupState.PREPARING_REBALANCE
    assert g.phase_deadline == 5.0 + 30.0  # the largest rebalance timeout of the members
    _, outs = join(g, 6.0, a)
    assert not replies(outs, JoinReply)  # b has not rejoined
    # b keeps heartbeating (its session stays alive) but never rejoins
    for t in range(7, 35, 3):
        with pytest.raises(errors.RebalanceInProgress):
            g.heartbeat(float(t), b, 2)
    outs = g.expire(35.0)
    r = replies(outs, JoinReply)
    assert {m for m, o in r.items() if o.result} == {a, c}
    assert set(g.members) == {a, c} and g.generation == 3


def test_sync_timeout_without_leader_restarts_rebalance() -> None:
    g = GroupMachine("g")
    a, _ = join(g, 0.0)
    g.sync(0.0, a, 1, {a: b""})
    b, _ = join(g, 0.0)
    join(g, 0.0, a)
    assert g.state is GroupState.COMPLETING_REBALANCE
    assert g.sync(1.0, b, 2, None) == []
    outs = g.expire(30.0)  # the leader never synced: it is dropped, b waits for a new phase
    assert a not in g.members
    assert replies(outs, SyncReply)[b].error is not None
    assert isinstance(replies(outs, SyncReply)[b].error, errors.RebalanceInProgress)
    assert g.state in (GroupState.PREPARING_REBALANCE, GroupState.COMPLETING_REBALANCE)


def test_known_follower_rejoin_in_stable_gets_current_generation() -> None:
    g, a, b = stable_pair()
    _, outs = join(g, 1.0, b)
    (r,) = replies(outs, JoinReply).values()
    assert r.result.generation == 2 and g.state is GroupState.STABLE
    # ... but new metadata (another subscription) rebalances
    _, outs = join(g, 1.0, b, protocols=[("range", b"other")])
    assert g.state is GroupState.PREPARING_REBALANCE


def test_protocol_vote() -> None:
    g = GroupMachine("g")
    a, _ = join(g, 0.0, protocols=[("sticky", b""), ("range", b"")])
    g.sync(0.0, a, 1, {})
    b, _ = join(g, 0.0, protocols=[("range", b""), ("sticky", b"")])
    c, _ = join(g, 0.0, protocols=[("range", b"")])
    join(g, 0.0, a, protocols=[("sticky", b""), ("range", b"")])
    assert g.protocol == "range"  # the only one all three support


def test_shutdown_fails_pending_and_is_dead() -> None:
    g = GroupMachine("g")
    a, _ = join(g, 0.0)
    g.sync(0.0, a, 1, {})
    b, _ = join(g, 0.0)
    outs = g.shutdown()
    assert isinstance(replies(outs, JoinReply)[b].error, errors.CoordinatorNotAvailable)
    assert g.state is GroupState.DEAD
    with pytest.raises(errors.CoordinatorNotAvailable):
        g.heartbeat(0.0, a, 1)


def test_table_covers_exactly_the_documented_states() -> None:
    assert {s for s, _ in TRANSITIONS} == set(GroupState)
    assert all((s, "shutdown") in TRANSITIONS for s in GroupState)


class GroupProtocol(RuleBasedStateMachine):
    """Random members join, sync, heartbeat, leave and go silent while time passes; after
    every step the group's invariants hold."""

    def __init__(self) -> None:
        super().__init__()
        ids = iter(range(10**9))
        self.g = GroupMachine("g", new_id=lambda: f"{next(ids):04d}")
        self.now = 0.0
        self.gen_seen = 0
        self.known: dict[str, int] = {}  # member -> generation it was told
        self.persisted = 0

    def apply(self, outs: list) -> None:
        for o in outs:
            if isinstance(o, Persist):
                assert o.generation == self.persisted + 1
                self.persisted = o.generation
            elif isinstance(o, JoinReply) and o.result is not None:
                # the generation a member hears of is always persisted already
                assert o.result.generation <= self.persisted
                self.known[o.member_id] = o.result.generation

    @rule()
    def new_member(self) -> None:
        _, outs = join(self.g, self.now, session=5.0, rebalance=8.0)
        self.apply(outs)

    @precondition(lambda self: bool(self.g.members))
    @rule(data=st.data())
    def rejoin(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(sorted(self.g.members)))
        _, outs = join(self.g, self.now, m, session=5.0, rebalance=8.0)
        self.apply(outs)

    @precondition(lambda self: bool(self.g.members))
    @rule(data=st.data())
    def sync(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(sorted(self.g.members)))
        try:
            self.apply(self.g.sync(self.now, m, self.known.get(m, -1),
                                   {x: x.encode() for x in self.g.members}))
        except (errors.RebalanceInProgress, errors.IllegalGeneration):
            pass

    @precondition(lambda self: bool(self.g.members))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(sorted(self.g.members)))
        try:
            self.g.heartbeat(self.now, m, self.known.get(m, -1))
        except (errors.RebalanceInProgress, errors.IllegalGeneration):
            pass

    @precondition(lambda self: bool(self.g.members))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(sorted(self.g.members)))
        self.apply(self.g.leave(self.now, m))

    @rule(dt=st.floats(0.1, 10.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        while self.g.next_deadline() <= self.now:
            before = self.g.next_deadline()
            self.apply(self.g.expire(self.now))
            assert self.g.next_deadline() > before or self.g.next_deadline() > self.now

    @invariant()
    def consistent(self) -> None:
        g = self.g
        assert g.generation == self.persisted
        if g.state is GroupState.EMPTY:
            assert not g.members
        if g.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            assert g.members and g.leader in g.members
        if g.state is GroupState.STABLE:
            assert not any(m.awaiting_join or m.awaiting_sync for m in g.members.values())
        if g.state is GroupState.PREPARING_REBALANCE:
            assert g.phase_deadline < math.inf


TestGroupProtocol = GroupProtocol.TestCase
TestGroupProtocol.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
