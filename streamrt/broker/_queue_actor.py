"""The queue-group actor: one per queue group, the only owner of its messages' state.

Its mailbox carries consumers' acks, nacks, attach/detach and demand, flush barriers, and
wake-ups from helper tasks: ``data`` (a watched partition grew), ``tick`` (a lease, delay or
TTL deadline passed) and ``committed`` (a group commit finished). It takes everything
queued at once (``handle_batch``), applies it to the :class:`QueueCore`, reads what the
window has room for, and leases messages to consumers with room.

Commits are pipelined, one in flight at a time. When none is in flight, the actor plans one
WriteBatch from everything that changed (acks, lease records, floors, dead letters: a dead
letter's append and its done mark are atomic) and hands it to its committer task; it goes on
handling acks meanwhile, and those form the next commit. So the commit rate follows the
fsync rate and the batch size follows the load (group commit), and no per-message ack costs
an fsync. Hand-outs go to consumers only once the commit recording their lease is durable,
so a delivery count survives any crash. A flush barrier (``flush_acks``) is answered with a
waiter that fires when the commit covering everything before it is durable.

On start (and after a crash) the actor rebuilds the core from LMDB: floors, marks and
records of every partition of its topics; messages that were leased become ready again with
their delivery counts. The consumers themselves (their slots) live in the hub, which
outlives restarts; their inboxes are emptied on restart, since the leases behind them are
gone. A commit in flight when an incarnation stops is finished (or, if its committer never
took it up, written or dropped by ``on_stop``) before the next incarnation reads LMDB.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import anyio

from ..actors import Actor, Failure
from ..errors import (
    ActorStopped,
    InvalidArgument,
    OffsetOutOfRange,
    QueueError,
    UnknownPartition,
    UnknownTopic,
)
from ..storage import TopicInfo, WriteBatch
from . import _queue_keys as K
from ._queue_core import QueueCore
from ._queue_model import FlushPlan, Part
from ._queue_reader import PartitionCursor
from ._queue_routing import is_pattern, match

if TYPE_CHECKING:
    from ._broker import Broker
    from ._queues import QueueHub

log = logging.getLogger(__name__)

#: Messages one mailbox batch may hold (acks of many consumers, wake-ups, asks).
QUEUE_BATCH = 4096
OVERFLOW_READ = 5_000
#: Records read from one partition before the next partition's turn.
READ_SLICE = 128


class FlushWaiter:
    """Fires when every change made before a flush barrier is durable (or failed)."""

    __slots__ = ("event", "error")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.error: BaseException | None = None

    def resolve(self, error: BaseException | None = None) -> None:
        self.error = error
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()
        if self.error is not None:
            raise self.error


class QueueGroupActor(Actor[tuple]):
    """Runs one queue group; see the module doc."""

    batch_size = QUEUE_BATCH
    mailbox_size = 8192

    def __init__(self, broker: Broker, hub: QueueHub) -> None:
        self.broker = broker
        self.hub = hub
        self.core: QueueCore | None = None
        self._scope: anyio.CancelScope | None = None
        self._htg: Any = None
        self._deadline = math.inf
        self._timer_kick: anyio.Event | None = None
        self._pending: set[str] = set()
        self._crashed = False
        self._next_refresh = math.inf
        self._cursors: dict[int, PartitionCursor] = {}
        self._inflight: FlushPlan | None = None
        self._waiters: list[FlushWaiter] = []  # for the next commit
        self._plans: Any = None  # send side of the committer's channel
        self._deleted = False

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        try:
            await self._start()
        except BaseException:
            self._crashed = True
            raise

    async def _start(self) -> None:
        hub = self.hub
        store = self.broker.store
        cfg = hub.config
        now = anyio.current_time()
        core = QueueCore(hub.name, hub.group, cfg, wall_offset=time.time() - now,
                         read_ahead=hub.read_ahead, tokens=hub.tokens)
        if cfg.dead_letter is not None:
            if not store.has_topic(cfg.dead_letter):
                await self.broker.create_topic(cfg.dead_letter, 1)
            core.dlq_partitions = store.topic(cfg.dead_letter).partitions
        self._floors: dict[tuple[int, int], tuple[int, int, int]] = {}
        self._records: dict[tuple[int, int], list[tuple[int, bytes]]] = defaultdict(list)
        prefix = core.prefix
        for key, value in store.scan(prefix):
            kind, tid, p, off = K.parse_state_key(prefix, key)
            if kind == "F":
                self._floors[(tid, p)] = K.unpack_floor(value)
            elif off is not None:
                self._records[(tid, p)].append((off, value))
        self.core = core
        for info in self._topics():
            self._attach(info)
        # State left by topics that were deleted: drop it with the first commit.
        live = {(p.tid, p.partition) for p in core.parts}
        for tid_p in set(self._floors) | set(self._records):
            if tid_p not in live:
                tid, p = tid_p
                core.orphans.append(K.floor_key(prefix, tid, p))
                rp = K.record_prefix(prefix, tid, p)
                core.orphans.extend(K.record_key(rp, o) for o, _ in self._records.get(tid_p, ()))
        self._floors.clear()
        self._records.clear()
        for slot in hub.slots.values():
            slot.inbox.clear()  # hand-outs of the previous incarnation: their leases are gone
            core.attach(slot)
        hub.core = core
        # Look for new matching topics (a pattern), or the topic created again after a
        # delete (a name), every ``refresh`` seconds.
        self._next_refresh = now + hub.refresh
        self._scope = anyio.CancelScope()
        self._plans, plans = anyio.create_memory_object_stream(1)
        await self.broker.tg.start(self._helpers, plans)
        self._pump(now)
        self._commit()
        self._rearm(force=True)

    async def on_stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
        for slot in self.hub.slots.values():
            slot.inbox.clear()  # hand-outs of this incarnation: their leases end with it
        core = self.core
        if core is None:
            return
        if self.hub.core is core:
            self.hub.core = None
        if self._deleted:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._finish(core)
            except Exception as e:
                log.exception("queue %s/%s: final commit failed; what was not committed will "
                              "be redelivered", self.hub.name, self.hub.group)
                self._fail_waiters(e)
        self._fail_waiters(QueueError(
            f"queue group {self.hub.name}/{self.hub.group} stopped before this flush was "
            f"durable; unacknowledged messages will be redelivered"))

    async def _finish(self, core: QueueCore) -> None:
        """Settle the commit in flight, then (unless crashed) commit what is left."""
        plan = self._inflight
        if plan is not None:
            if not plan.claimed:  # the committer never took it up
                plan.claimed = True
                if not self._crashed:
                    await self._write(plan)
            else:
                await plan.done.wait()  # its write is shielded: it lands, or fails
            self._inflight = None
            if plan.error is not None:
                self._crashed = True  # what follows it in memory assumes it landed
            elif not self._crashed:
                core.flushed(plan, anyio.current_time())
                for w in plan.waiters:
                    w.resolve()
        if self._crashed:
            return  # memory may be inconsistent: LMDB holds the last good state
        plan = core.take_flush(anyio.current_time())
        if plan is not None:
            plan.claimed = True
            plan.done = anyio.Event()
            await self._write(plan)
            if plan.error is not None:
                raise plan.error
        for w in self._waiters:
            w.resolve()
        self._waiters = []

    def _fail_waiters(self, error: BaseException) -> None:
        plans = [self._inflight] if self._inflight is not None else []
        for w in [w for p in plans for w in p.waiters] + self._waiters:
            if not w.event.is_set():
                w.resolve(error)
        self._waiters = []

    # ------------------------------------------------------------------ topics

    def _topics(self) -> list[TopicInfo]:
        hub = self.hub
        store = self.broker.store
        if not is_pattern(hub.name):
            return [store.topic(hub.name)] if store.has_topic(hub.name) else []
        return [t for t in store.topics()
                if match(hub.name, t.name) and t.name != hub.config.dead_letter]

    def _attach(self, info: TopicInfo) -> None:
        core = self.core
        assert core is not None
        store = self.broker.store
        for p in range(info.partitions):
            if (info.name, p) in core.by_tp:
                continue
            stored = self._floors.get((info.topic_id, p))
            part = core.add_partition(
                info.name, info.topic_id, p,
                floor=None if stored is None else stored[0],
                mark=0 if stored is None else stored[1],
                admitted=0 if stored is None else stored[2],
                records=self._records.get((info.topic_id, p), ()),
                log_start=store.log_start_offset(info.name, p),
                hw=store.high_watermark(info.name, p))
            if self._htg is not None:
                self._htg.start_soon(self._guard, self._watch, part)

    def _refresh_topics(self) -> None:
        core = self.core
        assert core is not None
        known = {p.topic for p in core.parts if not p.gone}
        for info in self._topics():
            if info.name not in known:
                log.info("queue %s/%s picks up topic %s", self.hub.name, self.hub.group, info.name)
                self._attach(info)

    # ------------------------------------------------------------------ helpers

    async def _helpers(self, plans: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        assert self._scope is not None and self.core is not None
        with self._scope:
            async with anyio.create_task_group() as tg:
                self._htg = tg
                tg.start_soon(self._guard, self._committer, plans)
                tg.start_soon(self._guard, self._timer)
                for part in self.core.parts:
                    tg.start_soon(self._guard, self._watch, part)
                task_status.started()

    async def _guard(self, fn: Any, *args: Any) -> None:
        """Run a helper; its failure must not reach the broker's task group. The actor
        stopping (ActorStopped) ends it quietly; any other error is sent to the actor,
        which crashes on it and is restarted with new helpers."""
        try:
            await fn(*args)
        except ActorStopped:
            pass
        except Exception as e:
            log.exception("queue %s/%s: helper %s failed", self.hub.name, self.hub.group,
                          getattr(fn, "__name__", fn))
            ref = self.hub.ref()
            if ref is not None:
                try:
                    ref.send_nowait(("failed", e))
                except Exception:
                    pass

    def _poke(self, kind: str) -> None:
        """Wake the actor (at most one wake-up of a kind queued at a time)."""
        if kind in self._pending:
            return
        ref = self.hub.ref()
        if ref is None:
            return
        try:
            ref.send_nowait((kind,))
        except Exception:  # full: the actor is busy and will pump anyway; stopped: moot
            return
        self._pending.add(kind)

    async def _committer(self, plans: Any) -> None:
        """Write each planned commit, then tell the actor (which then hands out its leases)."""
        async with plans:
            async for plan in plans:
                if plan.claimed:
                    continue
                plan.claimed = True
                await self._write(plan)
                ref = self.hub.ref()
                if ref is not None:
                    await ref.send(("committed", plan))

    async def _write(self, plan: FlushPlan) -> None:
        # Shielded: once submitted the write lands; stopping half-way would leave memory and
        # LMDB disagreeing. It takes one group commit (milliseconds).
        try:
            with anyio.CancelScope(shield=True):
                dl = self.hub.config.dead_letter
                if plan.dead and dl is not None and not self.broker.store.has_topic(dl):
                    assert self.core is not None
                    await self.broker.create_topic(dl, self.core.dlq_partitions)
                await self.broker.write(plan.batch)
        except Exception as e:
            plan.error = e
        finally:
            plan.done.set()

    async def _watch(self, part: Part) -> None:
        """Wake the actor when ``part`` grows past what it has seen."""
        store = self.broker.store
        try:
            pos = store.high_watermark(part.topic, part.partition)
            while not part.gone:
                await self.broker.wait_for_data(part.topic, part.partition, pos, math.inf)
                pos = store.high_watermark(part.topic, part.partition)
                self._poke("data")
        except (UnknownTopic, UnknownPartition):
            self._poke("data")  # the actor notices the topic is gone

    async def _timer(self) -> None:
        """Wake the actor when the core's next deadline (or the pattern refresh) comes."""
        while True:
            kick = self._timer_kick = anyio.Event()
            delay = self._deadline - anyio.current_time()
            if delay <= 0:
                self._poke("tick")
                await kick.wait()  # the actor re-arms after handling it
                continue
            with anyio.move_on_after(delay):
                await kick.wait()

    def _rearm(self, force: bool = False) -> None:
        assert self.core is not None
        dl = min(self.core.next_deadline(), self._next_refresh)
        if force or dl != self._deadline:
            self._deadline = dl
            if self._timer_kick is not None:
                self._timer_kick.set()

    # ------------------------------------------------------------------ messages

    async def handle_batch(self, messages: list[tuple]) -> list[Any]:
        try:
            return await self._handle_batch(messages)
        except BaseException:
            self._crashed = True
            raise

    async def _handle_batch(self, messages: list[tuple]) -> list[Any]:
        core = self.core
        assert core is not None
        now = anyio.current_time()
        replies: list[Any] = []
        if self._deleted:
            gone = QueueError(f"queue group {self.hub.name}/{self.hub.group} was deleted")
            return [Failure(gone) for _ in messages]
        ticked = False
        for i, m in enumerate(messages):
            kind = m[0]
            if kind == "delete":
                await self._delete_state()
                replies.append(None)
                return replies + [None] * (len(messages) - i - 1)
            if kind == "acks":
                core.ack(m[1], m[2])
                replies.append(None)
            elif kind == "nacks":
                core.nack(m[1], m[2], now)
                replies.append(None)
            elif kind == "data":
                self._pending.discard("data")
                replies.append(None)
            elif kind == "tick":
                self._pending.discard("tick")
                ticked = True
                replies.append(None)
            elif kind == "failed":
                raise m[1]  # a helper task failed: restart with new ones
            elif kind == "committed":
                self._committed(m[1], now)
                replies.append(None)
            elif kind == "flush":
                replies.append(self._barrier())
            elif kind == "demand":
                replies.append(None)  # the pump below does the work
            elif kind == "attach":
                self.hub.slots[m[1].cid] = m[1]
                core.attach(m[1])
                replies.append(None)
            elif kind == "detach":
                core.detach(m[1], now)
                self.hub.slots.pop(m[1], None)
                replies.append(None)
            else:
                replies.append(Failure(InvalidArgument(
                    f"queue group {self.hub.name}/{self.hub.group} got an unknown message "
                    f"{kind!r}")))
        if now >= self._next_refresh:
            self._refresh_topics()
            self._next_refresh = now + self.hub.refresh
        self._pump(now)
        self._commit()
        self._rearm(force=ticked)
        return replies

    async def _delete_state(self) -> None:
        """The group is being deleted: drop what is not committed, wait for the commit in
        flight, then delete every key of the group in one commit; nothing is written after."""
        self._deleted = True
        plan = self._inflight
        if plan is not None:
            if not plan.claimed:
                plan.claimed = True  # never written
            else:
                await plan.done.wait()
            self._inflight = None
        hub = self.hub
        wb = WriteBatch()
        for key, _ in self.broker.store.scan(K.state_prefix(hub.name, hub.group)):
            wb.delete(key)
        wb.delete(K.decl_key(hub.name, hub.group))
        with anyio.CancelScope(shield=True):
            await self.broker.write(wb)

    def _barrier(self) -> FlushWaiter:
        """A waiter for the commit that covers everything handled so far."""
        assert self.core is not None
        w = FlushWaiter()
        if self.core.has_changes():
            self._waiters.append(w)  # the next commit (planned at the end of this batch)
        elif self._inflight is not None:
            self._inflight.waiters.append(w)
        else:
            w.resolve()
        return w

    def _committed(self, plan: FlushPlan, now: float) -> None:
        core = self.core
        assert core is not None
        if plan is not self._inflight:
            return  # queued by the previous incarnation before it crashed: moot
        self._inflight = None
        if plan.error is not None:
            # LMDB has the state before this commit; crash and recover from it.
            for w in plan.waiters:
                w.resolve(plan.error)
            raise plan.error
        handouts = core.flushed(plan, now)
        for cid, items in handouts.items():
            c = core.consumers.get(cid)
            if c is not None:
                c.slot.deliver(items)
        for w in plan.waiters:
            w.resolve()

    # ------------------------------------------------------------------ the pump

    def _pump(self, now: float) -> None:
        """Apply time, count and read new records, and lease to consumers with room."""
        core = self.core
        assert core is not None
        core.tick(now)
        store = self.broker.store
        parts = [p for p in core.parts if not p.gone]
        for part in parts:
            try:
                hw = store.high_watermark(part.topic, part.partition)
            except (UnknownTopic, UnknownPartition):
                log.info("queue %s/%s: topic %s was deleted", self.hub.name, self.hub.group,
                         part.topic)
                core.remove_topic(part.topic)
                continue
            over = core.admit(part, hw, now)
            while over is not None and part.adm_pos < over[1]:
                # A cursor of its own: the window's cursor is further back.
                recs = self._read_overflow(part, part.adm_pos, over[1])
                if not recs:
                    part.adm_pos = max(part.adm_pos, over[1])
                    break
                core.overflow(part, recs, over[1], now)
        self._fill(now, [p for p in parts if not p.gone])
        core.assign(now)
        # Reading may have freed room (dead letters) or leasing made some: fill and lease on.
        if core.read_room() > 0 and any(p.read_pos < p.adm_pos for p in parts if not p.gone):
            self._fill(now, [p for p in parts if not p.gone])
            core.assign(now)

    def _fill(self, now: float, parts: list[Part]) -> None:
        """Read into the window, partitions in turn a slice at a time, so messages of all
        partitions interleave in the read order (the order they are handed out in)."""
        core = self.core
        assert core is not None
        waiting = [p for p in parts if p.read_pos < p.adm_pos]
        while waiting and core.read_room() > 0:
            for part in waiting:
                want = min(READ_SLICE, core.read_room(), part.adm_pos - part.read_pos)
                if want <= 0:
                    break
                recs = self._read(part, part.read_pos, part.adm_pos, want)
                if recs is None:
                    continue
                if not recs:  # a gap (compaction) up to adm_pos, or the log shrank
                    part.read_pos = part.adm_pos
                    continue
                core.read_in(part, recs, now)
            waiting = [p for p in waiting if p.read_pos < p.adm_pos]

    def _read(self, part: Part, start: int, end: int, n: int) -> list[Any] | None:
        store = self.broker.store
        core = self.core
        assert core is not None
        cur = self._cursors.get(part.index)
        if cur is None:
            cur = self._cursors[part.index] = PartitionCursor(store, part.topic, part.partition)
        try:
            return cur.take(start, end, n)
        except OffsetOutOfRange as e:
            cur.pos = -1
            if start < e.log_start:
                core.skip_to(part, e.log_start)
                if part.adm_pos < e.log_start:
                    part.adm_pos = e.log_start
            return None

    def _read_overflow(self, part: Part, start: int, end: int) -> list[Any]:
        try:
            recs = self.broker.store.read(part.topic, part.partition, start,
                                          max_records=min(OVERFLOW_READ, end - start))
        except OffsetOutOfRange:
            return []
        return list(recs)

    def _commit(self) -> None:
        """Start the next commit if none is in flight and something changed."""
        core = self.core
        assert core is not None
        if self._inflight is not None:
            return
        plan = core.take_flush(anyio.current_time())
        if plan is None:
            for w in self._waiters:
                w.resolve()
            self._waiters = []
            return
        plan.waiters = self._waiters
        plan.done = anyio.Event()
        self._waiters = []
        self._inflight = plan
        try:
            self._plans.send_nowait(plan)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the committer is gone (shutting down): on_stop writes the plan
