"""The queue group's logic without I/O: the state table, and a hypothesis state machine that
drives QueueCore as the actor does against a simulated log and LMDB (each planned commit is
applied to a dict), crashing it at random and rebuilding it from what was committed.

Invariants checked after every step: no message is held by two consumers; a message whose
ack was accepted is never handed out again unless a crash came before that ack was
committed; a delivery count never goes down, across crashes too; the backlog equals the
messages not done. At the end, with a consumer acking everything, every record of the log is
acked or dead-lettered exactly as the committed state says, none lost.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from streamrt.broker import _queue_keys as K
from streamrt.broker._queue_config import QueueConfig
from streamrt.broker._queue_core import QueueCore
from streamrt.broker._queue_model import Slot
from streamrt.broker._queue_dlq import parse
from streamrt.broker._queue_state import (
    FINAL,
    LEASED,
    LEASING,
    NAMES,
    READY,
    TRANSITIONS,
    IllegalTransition,
    next_state,
)
from streamrt.storage import WriteBatch, iter_records

TOPIC = "jobs"
DLQ = "jobs.dlq"


class Rec:
    """A stored record as reads return them."""

    __slots__ = ("offset", "timestamp", "key", "value", "headers")

    def __init__(self, offset: int, timestamp: int, value: bytes, headers: Any = ()) -> None:
        self.offset = offset
        self.timestamp = timestamp
        self.key = None
        self.value = value
        self.headers = list(headers)


class World:
    """The log and LMDB state dict a QueueCore runs against, and the actor's pump."""

    def __init__(self, config: QueueConfig, partitions: int = 2, read_ahead: int = 5) -> None:
        self.config = config
        self.read_ahead = read_ahead
        self.log: list[list[Rec]] = [[] for _ in range(partitions)]
        self.state: dict[bytes, bytes] = {}
        self.dead: list[Any] = []  # DeadLetters committed to the DLQ
        self.deliveries: dict[tuple[int, int], int] = {}  # as committed, per message
        self.now = 1000.0
        self.core = self.boot()

    def boot(self) -> QueueCore:
        """A core rebuilt from the committed state (start-up, or after a crash)."""
        core = QueueCore("jobs", "g", self.config, wall_offset=0.0, read_ahead=self.read_ahead)
        prefix = core.prefix
        floors: dict[int, tuple[int, int, int]] = {}
        recs: dict[int, list[tuple[int, bytes]]] = {}
        for key in sorted(self.state):
            if not key.startswith(prefix):
                continue
            kind, _tid, p, off = K.parse_state_key(prefix, key)
            if kind == "F":
                floors[p] = K.unpack_floor(self.state[key])
            else:
                assert off is not None
                recs.setdefault(p, []).append((off, self.state[key]))
        for p, log in enumerate(self.log):
            f = floors.get(p)
            core.add_partition(TOPIC, 7, p, floor=None if f is None else f[0],
                               mark=0 if f is None else f[1], admitted=0 if f is None else f[2],
                               records=recs.get(p, ()), log_start=0, hw=len(log))
        return core

    def produce(self, p: int, n: int, priority: int | None = None) -> None:
        headers = [] if priority is None else [("priority", b"%d" % priority)]
        ms = int(self.now * 1000)
        for _ in range(n):
            self.log[p].append(Rec(len(self.log[p]), ms, b"v", headers))

    def pump(self) -> dict[int, list[Any]]:
        """One turn of the actor: time, admission, reads, leases, commit, hand-outs."""
        core = self.core
        now = self.now
        core.tick(now)
        for part in core.parts:
            log = self.log[part.partition]
            over = core.admit(part, len(log), now)
            if over is not None:
                core.overflow(part, log[over[0]:over[1]], over[1], now)
            room = core.read_room()
            if room > 0 and part.read_pos < part.adm_pos:
                core.read_in(part, log[part.read_pos:min(part.adm_pos, part.read_pos + room)], now)
        core.assign(now)
        plan = core.take_flush(now)
        if plan is None:
            return {}
        for e, _token in plan.handouts:
            # Each lease commits its delivery count, one more than the last committed one
            # (a crash in between must not lose or invent a delivery).
            key = (e.part.partition, e.offset)
            assert e.deliveries == self.deliveries.get(key, 0) + 1, (key, e.deliveries)
            self.deliveries[key] = e.deliveries
        self.apply(plan.batch)
        return core.flushed(plan, now)

    def apply(self, wb: WriteBatch) -> None:
        for key, value in wb.puts:
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value
        for topic, p, buf in wb.appends:
            assert topic == DLQ
            for r in iter_records(buf):
                d = parse(DLQ, p, r, False)
                assert d is not None
                self.dead.append(d)


# --------------------------------------------------------------------------- the table


def test_every_state_but_final_ones_has_a_way_out() -> None:
    sources = {s for s, _ in TRANSITIONS}
    for state in range(len(NAMES)):
        assert (state in sources) == (state not in FINAL), NAMES[state]
    for (_s, _e), nxt in TRANSITIONS.items():
        assert nxt in range(len(NAMES))


def test_illegal_transition_names_the_state_and_event() -> None:
    assert next_state(READY, "lease") == LEASING
    with pytest.raises(IllegalTransition, match="'ready' cannot take event 'ack'"):
        next_state(READY, "ack")


# --------------------------------------------------------------------------- examples


def test_in_order_acks_write_one_key_per_partition() -> None:
    w = World(QueueConfig(), partitions=1, read_ahead=1000)
    slot = Slot(1, prefetch=500)
    slot.want = None
    w.core.attach(slot)
    w.produce(0, 300)
    out = w.pump()
    items = out[1]
    assert len(items) == 300
    w.core.ack(1, [(e.mid, tok) for e, tok in items])
    plan = w.core.take_flush(w.now)
    assert plan is not None
    assert [k for k, _ in plan.batch.puts] == [w.core.parts[0].fkey]
    w.apply(plan.batch)
    assert K.unpack_floor(w.state[w.core.parts[0].fkey]) == (300, 300, 300)


def test_out_of_order_acks_and_redeliveries_get_records_until_the_floor_passes() -> None:
    w = World(QueueConfig(max_deliveries=5), partitions=1, read_ahead=100)
    slot = Slot(1, prefetch=10)
    slot.want = None
    w.core.attach(slot)
    w.produce(0, 4)
    items = w.pump()[1]
    w.core.ack(1, [(items[2][0].mid, items[2][1])])
    w.core.nack(1, [(items[1][0].mid, items[1][1], True, 0)], w.now)
    again = w.pump()[1]
    assert [e.offset for e, _ in again] == [1]  # the redelivery keeps its place
    recs = {K.parse_state_key(w.core.prefix, k)[3]: v for k, v in w.state.items()
            if K.parse_state_key(w.core.prefix, k)[0] == "M"}
    assert recs == {1: K.pack_lease(2), 2: K.DONE}
    w.core.ack(1, [(items[0][0].mid, items[0][1]), (again[0][0].mid, again[0][1]),
                   (items[3][0].mid, items[3][1])])
    w.pump()
    assert [k for k in w.state if K.parse_state_key(w.core.prefix, k)[0] == "M"] == []
    assert K.unpack_floor(w.state[w.core.parts[0].fkey])[0] == 4


def test_an_unbounded_nack_delay_cannot_crash_the_core() -> None:
    """Clients refuse such delays; the core still bounds one instead of failing to pack it
    (a crash would lose the acks buffered with it)."""
    w = World(QueueConfig(), partitions=1)
    slot = Slot(1, prefetch=10)
    slot.want = None
    w.core.attach(slot)
    w.produce(0, 2)
    a, b = w.pump()[1]
    w.core.ack(1, [(b[0].mid, b[1])])
    w.core.nack(1, [(a[0].mid, a[1], True, float("inf"))], w.now)
    w.pump()
    assert w.core.counts()["delayed"] == 1
    assert w.core.acked == 1


def test_a_stale_ack_is_ignored() -> None:
    w = World(QueueConfig(ack_timeout=5), partitions=1)
    a, b = Slot(1, 1), Slot(2, 1)
    a.want = b.want = None
    w.core.attach(a)
    w.produce(0, 1)
    (first,) = w.pump()[1]
    w.core.attach(b)
    w.now += 6  # the lease ends
    w.core.ack(1, [])  # a's inbox still holds the message; its credit is used
    out = w.pump()
    (second,) = out[2]
    assert second[0] is first[0] and second[1] != first[1]
    w.core.ack(1, [(first[0].mid, first[1])])  # too late
    assert w.core.stale == 1 and first[0].state == LEASED


def test_priorities_then_read_order() -> None:
    w = World(QueueConfig(max_priority=9), partitions=1, read_ahead=100)
    for prio in (1, 5, 9, 5, 0, 9):
        w.produce(0, 1, priority=prio)
    w.produce(0, 1)  # no header: priority 0
    slot = Slot(1, prefetch=1)
    slot.want = None
    w.core.attach(slot)
    order = []
    for _ in range(7):
        (item,) = w.pump()[1]
        order.append(item[0].offset)
        w.core.ack(1, [(item[0].mid, item[1])])
    assert order == [2, 5, 1, 3, 0, 4, 6]


def test_out_of_order_first_deliveries_keep_exact_counts_across_a_crash() -> None:
    w = World(QueueConfig(max_priority=9), partitions=1, read_ahead=10)
    w.produce(0, 1, priority=0)
    w.produce(0, 1, priority=9)
    slot = Slot(1, prefetch=1)
    slot.want = None
    w.core.attach(slot)
    assert [e.offset for e, _ in w.pump()[1]] == [1]  # leased past the mark: a record
    w.core = w.boot()
    slot = Slot(1, prefetch=5)
    slot.want = None
    w.core.attach(slot)
    # World.pump checks each count is one more than the committed one.
    assert sorted((e.offset, e.deliveries) for e, _ in w.pump()[1]) == [(0, 1), (1, 2)]


def test_prefetch_and_pull_demand_bound_the_leases() -> None:
    w = World(QueueConfig(), partitions=1, read_ahead=100)
    w.produce(0, 50)
    push, pull = Slot(1, prefetch=7), Slot(2, prefetch=20)
    push.want = None
    pull.want = 3
    w.core.attach(push)
    w.core.attach(pull)
    out = w.pump()
    assert len(out[1]) == 7 and len(out[2]) == 3 and pull.want == 0
    assert w.pump() == {}


# --------------------------------------------------------------------------- the machine


class QueueMachine(RuleBasedStateMachine):
    """Random consumers, acks, nacks, time and crashes against one queue group."""

    @initialize(max_deliveries=st.sampled_from([None, 2, 3]), ttl=st.sampled_from([None, 50.0]),
                priority=st.booleans(), read_ahead=st.sampled_from([3, 8, 1000]),
                max_length=st.sampled_from([None, None, 5]))
    def setup(self, max_deliveries: int | None, ttl: float | None, priority: bool,
              read_ahead: int, max_length: int | None) -> None:
        self.cfg = QueueConfig(max_deliveries=max_deliveries, ack_timeout=10.0, dead_letter=DLQ,
                               ttl=ttl, max_priority=9 if priority else None,
                               max_length=max_length)
        self.w = World(self.cfg, partitions=2, read_ahead=read_ahead)
        self.inbox: dict[int, list[Any]] = {}
        self.next_cid = 1
        self.accepted: set[tuple[int, int]] = set()  # acks the core took, not yet committed
        self.durable: set[tuple[int, int]] = set()  # (partition, offset) acked and committed
        self.max_seen: dict[tuple[int, int], int] = {}  # highest delivery count handed out

    # ---- helpers

    def _pump(self) -> None:
        before = set(self.accepted)
        out = self.w.pump()
        self.durable |= before  # the commit above carried every ack accepted before it
        self.accepted -= before
        for cid, items in out.items():
            for e, token in items:
                key = (e.part.partition, e.offset)
                assert key not in self.durable, f"durably acked {key} handed out again"
                assert key not in self.accepted, f"acked {key} handed out again"
                assert e.deliveries >= self.max_seen.get(key, 0), "delivery count went down"
                self.max_seen[key] = e.deliveries
                if self.cfg.max_deliveries is not None:
                    assert e.deliveries <= self.cfg.max_deliveries
                self.inbox[cid].append((e, token))

    def _settle(self, cid: int, picks: list[int]) -> list[Any]:
        """Take the inbox items at ``picks`` (indices modulo its length), in that order."""
        box = self.inbox[cid]
        chosen: list[int] = []
        for i in picks:
            i %= len(box)
            if i not in chosen:
                chosen.append(i)
        items = [box[i] for i in chosen]
        self.inbox[cid] = [x for i, x in enumerate(box) if i not in chosen]
        return items

    # ---- rules

    # The actor pumps after every batch of its mailbox; most rules do the same, some leave
    # the pump to a later step (so crashes also find acks taken but not committed).

    @rule(p=st.integers(0, 1), n=st.integers(1, 6), prio=st.sampled_from([None, 0, 3, 9]),
          then_pump=st.booleans())
    def produce(self, p: int, n: int, prio: int | None, then_pump: bool) -> None:
        self.w.produce(p, n, prio)
        if then_pump:  # else a crash may come before the group saw these appends
            self._pump()

    @precondition(lambda self: len(self.inbox) < 3)
    @rule(prefetch=st.integers(1, 4), pull=st.booleans())
    def attach(self, prefetch: int, pull: bool) -> None:
        slot = Slot(self.next_cid, prefetch)
        slot.want = 2 if pull else None
        self.next_cid += 1
        self.inbox[slot.cid] = []
        self.w.core.attach(slot)
        self._pump()

    @precondition(lambda self: self.inbox)
    @rule(data=st.data())
    def detach(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(sorted(self.inbox)))
        self.w.core.detach(cid, self.w.now)
        del self.inbox[cid]

    @rule()
    def pump(self) -> None:
        self._pump()

    @precondition(lambda self: any(self.inbox.values()))
    @rule(data=st.data(), picks=st.lists(st.integers(0, 7), min_size=1, max_size=4),
          then_pump=st.booleans())
    def ack(self, data: st.DataObject, picks: list[int], then_pump: bool) -> None:
        cid = data.draw(st.sampled_from([c for c, i in self.inbox.items() if i]))
        items = self._settle(cid, picks)
        core = self.w.core
        for e, token in items:
            if core.entries.get(e.mid) is e and e.token == token and e.state == LEASED:
                self.accepted.add((e.part.partition, e.offset))
        core.ack(cid, [(e.mid, token) for e, token in items])
        if then_pump:
            self._pump()

    @precondition(lambda self: any(self.inbox.values()))
    @rule(data=st.data(), pick=st.integers(0, 7), requeue=st.booleans(),
          delay=st.sampled_from([0, 0, 3.0]))
    def nack(self, data: st.DataObject, pick: int, requeue: bool, delay: float) -> None:
        cid = data.draw(st.sampled_from([c for c, i in self.inbox.items() if i]))
        (e, token), = self._settle(cid, [pick])
        self.w.core.nack(cid, [(e.mid, token, requeue, delay)], self.w.now)
        self._pump()

    @rule(dt=st.sampled_from([0.5, 4.0, 11.0, 60.0]))
    def advance(self, dt: float) -> None:
        self.w.now += dt
        self._pump()

    @rule()
    def crash(self) -> None:
        """The process dies: memory is lost, LMDB keeps what was committed."""
        self.w.core = self.w.boot()
        self.accepted.clear()  # not committed: those messages may come again
        for cid in self.inbox:
            self.inbox[cid] = []
            slot = Slot(cid, 4)
            slot.want = None
            self.w.core.attach(slot)
        self._pump()

    # ---- invariants

    @invariant()
    def one_holder_per_message(self) -> None:
        core = self.w.core
        holders: dict[int, int] = {}
        for e in core.entries.values():
            if e.state in (LEASED, LEASING):
                assert e.mid not in holders
                holders[e.mid] = e.cid
        for mid, e in core.leased.items():
            assert e.state == LEASED and core.entries[mid] is e

    @invariant()
    def backlog_counts_what_is_not_done(self) -> None:
        core = self.w.core
        expect = 0
        for part in core.parts:
            expect += (part.adm_pos - part.floor) - sum(1 for o in part.done if o < part.adm_pos)
        assert core.backlog == expect

    @invariant()
    def backlog_stays_within_max_length(self) -> None:
        if self.cfg.max_length is not None:
            assert self.w.core.backlog <= self.cfg.max_length

    def teardown(self) -> None:
        if not hasattr(self, "w"):
            return
        # Drain: one consumer acks everything until nothing is left.
        w = self.w
        slot = Slot(999, 50)
        slot.want = None
        w.core.attach(slot)
        self.inbox[999] = []
        for _ in range(200):
            w.now += 100.0
            self._pump()
            for cid in list(self.inbox):
                items = self._settle(cid, list(range(len(self.inbox[cid]))))
                for e, token in items:
                    if w.core.entries.get(e.mid) is e and e.token == token and e.state == LEASED:
                        self.accepted.add((e.part.partition, e.offset))
                w.core.ack(cid, [(e.mid, t) for e, t in items])
            if not w.core.entries and w.core.backlog == 0 and not self.accepted:
                break
        self._pump()
        dead = {(d.source_partition, d.source_offset) for d in w.dead}
        every = {(p, o) for p, log in enumerate(w.log) for o in range(len(log))}
        assert self.durable | dead == every, "a message was lost"
        for part in w.core.parts:
            f, _m, _a = K.unpack_floor(w.state[part.fkey])
            assert f == len(w.log[part.partition])
        assert all(K.parse_state_key(w.core.prefix, k)[0] == "F" for k in w.state)


QueueMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_queue_machine = QueueMachine.TestCase
