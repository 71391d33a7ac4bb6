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
         rebalance: float = 30.0, instance: str | None = None) -> tuple[str, list]:
    return g.join(now, member, "client", session, rebalance, "consumer", protocols, instance)


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


# ------------------------------------------------------------- static members (KIP-345)


def static_pair(now: float = 0.0) -> tuple[GroupMachine, str, str]:
    """A Stable group of two static members: a (instance "ia", the leader) and b ("ib")."""
    g = GroupMachine("g")
    a, _ = join(g, now, instance="ia")
    g.sync(now, a, 1, {a: b"A"}, "ia")
    b, _ = join(g, now, instance="ib")
    _, outs = join(g, now, a, instance="ia")
    assert set(replies(outs, JoinReply)) == {a, b}
    g.sync(now, b, 2, None, "ib")
    g.sync(now, a, 2, {a: b"A2", b: b"B2"}, "ia")
    assert g.state is GroupState.STABLE and g.leader == a and g.static == {"ia": a, "ib": b}
    return g, a, b


def test_static_member_ids_name_their_instance_and_the_leader_sees_instance_ids() -> None:
    g = GroupMachine("g")
    a, outs = join(g, 0.0, instance="ia")
    assert a.startswith("ia-")
    (r,) = replies(outs, JoinReply).values()
    assert r.result.instance_ids == ((a, "ia"),)
    d = g.describe()
    assert [(m.member_id, m.group_instance_id) for m in d.members] == [(a, "ia")]


def test_static_follower_restart_in_stable_takes_its_place_without_rebalance() -> None:
    g, a, b = static_pair()
    b2, outs = join(g, 5.0, instance="ib")  # b restarted: no member id, same metadata
    assert b2 != b and g.static["ib"] == b2 and b not in g.members
    assert g.state is GroupState.STABLE and g.generation == 2
    assert not any(isinstance(o, (Persist, RebalanceStarted)) for o in outs)
    (r,) = replies(outs, JoinReply).values()
    assert r.member_id == b2 and r.result.generation == 2 and r.result.leader == a
    assert r.result.members == ()
    assert g.sync(5.0, b2, 2, None, "ib") == [SyncReply(b2, b"B2")]  # its old assignment
    g.heartbeat(5.0, a, 2, "ia")  # the other member is undisturbed
    # The retired member id is fenced everywhere it names the instance.
    with pytest.raises(errors.FencedInstanceId):
        g.heartbeat(5.0, b, 2, "ib")
    with pytest.raises(errors.FencedInstanceId):
        g.sync(5.0, b, 2, None, "ib")
    with pytest.raises(errors.FencedInstanceId):
        g.check_commit(b, 2, "ib")
    with pytest.raises(errors.FencedInstanceId):
        g.leave(5.0, b, "ib")
    with pytest.raises(errors.FencedInstanceId):
        join(g, 5.0, b, instance="ib")
    # Without the instance id it is just a member the group does not know.
    with pytest.raises(errors.UnknownMemberId):
        g.heartbeat(5.0, b, 2)
    g.check_commit(b2, 2, "ib")
    assert g.state is GroupState.STABLE and set(g.members) == {a, b2}


def test_a_fenced_error_is_kafkas_fenced_instance_id() -> None:
    from streamrt.kafka._errors import error_code
    from streamrt.kafka._messages import ErrorCode

    g, a, b = static_pair()
    join(g, 1.0, instance="ib")
    with pytest.raises(errors.FencedInstanceId) as ei:
        g.heartbeat(1.0, b, 2, "ib")
    assert error_code(ei.value) == ErrorCode.FENCED_INSTANCE_ID == 82
    assert "ib" in str(ei.value) and isinstance(ei.value, errors.StaleGeneration)


def test_static_restart_with_other_metadata_rebalances() -> None:
    g, a, b = static_pair()
    b2, outs = join(g, 1.0, instance="ib", protocols=[("range", b"other topics")])
    assert g.state is GroupState.PREPARING_REBALANCE and RebalanceStarted() in outs
    assert not replies(outs, JoinReply)  # b2 waits for a to rejoin
    with pytest.raises(errors.RebalanceInProgress):
        g.heartbeat(1.0, a, 2, "ia")
    _, outs = join(g, 1.0, a, instance="ia")
    assert outs.index(Persist(3)) < outs.index(next(o for o in outs if isinstance(o, JoinReply)))
    r = replies(outs, JoinReply)
    assert set(r) == {a, b2} and r[a].result.leader == a and r[b2].result.generation == 3
    assert dict(r[a].result.members)[b2] == b"other topics"
    assert dict(r[a].result.instance_ids) == {a: "ia", b2: "ib"}


def test_static_leader_restart_rebalances_and_the_new_member_leads() -> None:
    g, a, b = static_pair()
    a2, outs = join(g, 1.0, instance="ia")
    assert g.leader == a2 and g.state is GroupState.PREPARING_REBALANCE
    assert RebalanceStarted() in outs and not replies(outs, JoinReply)
    with pytest.raises(errors.FencedInstanceId):
        g.heartbeat(1.0, a, 2, "ia")
    _, outs = join(g, 1.0, b, instance="ib")
    r = replies(outs, JoinReply)
    assert r[a2].result.leader == a2 and {m for m, _ in r[a2].result.members} == {a2, b}
    assert Persist(3) in outs


def test_a_lone_static_member_restarts_at_once() -> None:
    """The repro of the stall: one static member closes (no LeaveGroup) and restarts."""
    g = GroupMachine("g")
    a, _ = join(g, 0.0, instance="ia", session=20.0)
    g.sync(0.0, a, 1, {a: b"A"}, "ia")
    a2, outs = join(g, 1.0, instance="ia", session=20.0)
    r = replies(outs, JoinReply)
    assert set(r) == {a2} and r[a2].result.generation == 2 and r[a2].result.leader == a2
    assert outs.index(Persist(2)) < outs.index(r[a2])
    assert g.sync(1.0, a2, 2, {a2: b"A"}, "ia") == [SyncReply(a2, b"A")]
    assert list(g.members) == [a2]


def test_a_duplicate_instance_fences_the_pending_join_and_sync_of_the_first() -> None:
    g, a, b = static_pair()
    join(g, 1.0, a, instance="ia", protocols=[("range", b"new")])  # a rebalance starts
    assert g.state is GroupState.PREPARING_REBALANCE and g.members[a].awaiting_join
    a2, outs = join(g, 1.0, instance="ia", protocols=[("range", b"new")])
    assert isinstance(replies(outs, JoinReply)[a].error, errors.FencedInstanceId)
    assert g.members[a2].awaiting_join and g.leader == a2
    _, outs = join(g, 1.0, b, instance="ib")  # every member has rejoined: generation 3
    r = replies(outs, JoinReply)
    assert set(r) == {a2, b} and r[a2].result.leader == a2
    # CompletingRebalance: b waits in sync; its duplicate fences that sync and rebalances.
    assert g.sync(1.0, b, 3, None, "ib") == []
    b2, outs = join(g, 1.0, instance="ib")
    assert isinstance(replies(outs, SyncReply)[b].error, errors.FencedInstanceId)
    assert g.state is GroupState.PREPARING_REBALANCE and g.static["ib"] == b2


def test_static_members_leave_by_member_or_instance_id_and_expire() -> None:
    g, a, b = static_pair()
    with pytest.raises(errors.UnknownMemberId):
        g.leave(1.0, "", "nobody")
    outs = g.leave(1.0, "", "ib")  # LeaveGroup v3+ naming only the instance
    assert b not in g.members and "ib" not in g.static and RebalanceStarted() in outs
    with pytest.raises(errors.UnknownMemberId):  # its instance id is free now
        g.heartbeat(1.0, b, 2, "ib")
    _, outs = join(g, 1.0, a, instance="ia")
    g.sync(1.0, a, 3, {a: b"all"}, "ia")
    # A static member's session still expires (it sends no LeaveGroup when it closes).
    outs = g.expire(11.0)
    assert Persist(4) in outs and g.state is GroupState.EMPTY and g.static == {}
    with pytest.raises(errors.UnknownMemberId):
        g.check_commit(a, 3, "ia")
    # The instance id joins again as a new member.
    a3, outs = join(g, 12.0, instance="ia")
    assert g.static == {"ia": a3} and replies(outs, JoinReply)[a3].result.generation == 5


def test_a_member_id_that_does_not_hold_the_named_instance_is_refused() -> None:
    g, a, b = static_pair()
    with pytest.raises(errors.FencedInstanceId):
        join(g, 1.0, a, instance="ib")  # a's id, b's instance
    with pytest.raises(errors.UnknownMemberId):
        join(g, 1.0, a, instance="unknown")
    with pytest.raises(errors.FencedInstanceId):
        g.check_commit("", -1, "ia")  # a standalone commit that names a held instance
    assert g.state is GroupState.STABLE


def test_table_covers_exactly_the_documented_states() -> None:
    assert {s for s, _ in TRANSITIONS} == set(GroupState)
    assert all((s, "shutdown") in TRANSITIONS for s in GroupState)


class GroupProtocol(RuleBasedStateMachine):
    """Random members (dynamic, and static ones that restart under a few instance ids) join,
    sync, heartbeat, leave and go silent while time passes; after every step the group's
    invariants hold."""

    def __init__(self) -> None:
        super().__init__()
        ids = iter(range(10**9))
        self.g = GroupMachine("g", new_id=lambda: f"{next(ids):04d}")
        self.now = 0.0
        self.gen_seen = 0
        self.known: dict[str, int] = {}  # member -> generation it was told
        self.persisted = 0
        self.retired: dict[str, str] = {}  # replaced static member id -> its instance id

    def instance(self, m: str) -> str | None:
        return self.g.members[m].group_instance_id

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

    @rule(instance=st.sampled_from(["i0", "i1", "i2"]), meta=st.sampled_from([b"meta", b"x"]))
    def static_join(self, instance: str, meta: bytes) -> None:
        """A static member starts (or restarts, or a duplicate starts) with no member id."""
        old = self.g.static.get(instance)
        new, outs = join(self.g, self.now, session=5.0, rebalance=8.0, instance=instance,
                         protocols=[("range", meta)])
        if old is not None:
            self.retired[old] = instance
            assert old not in self.g.members and self.g.static[instance] == new
        self.apply(outs)

    @precondition(lambda self: bool(self.retired))
    @rule(data=st.data())
    def retired_member_is_refused(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(sorted(self.retired)))
        instance = self.retired[m]
        expected = errors.FencedInstanceId if instance in self.g.static else errors.UnknownMemberId
        with pytest.raises(expected):
            self.g.heartbeat(self.now, m, self.known.get(m, -1), instance)
        with pytest.raises(expected):
            self.g.check_commit(m, self.known.get(m, -1), instance)

    @precondition(lambda self: bool(self.g.members))
    @rule(data=st.data())
    def rejoin(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(sorted(self.g.members)))
        _, outs = join(self.g, self.now, m, session=5.0, rebalance=8.0,
                       protocols=self.g.members[m].protocols, instance=self.instance(m))
        self.apply(outs)

    @precondition(lambda self: bool(self.g.members))
    @rule(data=st.data())
    def sync(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(sorted(self.g.members)))
        try:
            self.apply(self.g.sync(self.now, m, self.known.get(m, -1),
                                   {x: x.encode() for x in self.g.members}, self.instance(m)))
        except (errors.RebalanceInProgress, errors.IllegalGeneration):
            pass

    @precondition(lambda self: bool(self.g.members))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(sorted(self.g.members)))
        try:
            self.g.heartbeat(self.now, m, self.known.get(m, -1), self.instance(m))
        except (errors.RebalanceInProgress, errors.IllegalGeneration):
            pass

    @precondition(lambda self: bool(self.g.members))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(sorted(self.g.members)))
        instance = self.instance(m)
        by_instance = instance is not None and data.draw(st.booleans())
        self.apply(self.g.leave(self.now, "" if by_instance else m, instance))

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
        # Each instance id is held by exactly one member, which names it.
        assert {i: m for m, x in g.members.items() if (i := x.group_instance_id)} == g.static


TestGroupProtocol = GroupProtocol.TestCase
TestGroupProtocol.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
