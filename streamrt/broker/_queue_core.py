"""A queue group's logic, with no I/O: what the queue-group actor runs on each event.

The actor (``_queue_actor.py``) reads records from the log and hands them in, passes on
consumers' acks and nacks, tells the time (``now``, loop seconds; wall-clock milliseconds are
``now`` plus a fixed offset, so a test clock drives leases and TTLs alike), and commits the
WriteBatch this core plans. Keeping I/O out makes the rules testable step by step and with
hypothesis (tests/broker/test_queue_core.py).

In memory, per partition (:class:`Part`): the floor and mark (see ``_queue_keys``), offsets
done above the floor, the records already in LMDB and the changes for the next commit; the
read position (next offset to read into memory) and the admission position (next offset to
count into the backlog). Per message read (:class:`Entry`): its state (``_queue_state``),
delivery count, lease token and priority. The ready set orders entries by priority, then by
the order they were read in; a message that comes back keeps its place.

A delivery is two steps: ``assign`` leases ready messages to consumers with room (prefetch)
and queues the lease records; ``take_flush`` plans the commit that makes them durable (with
acks, dead letters and floors); ``flushed`` turns them into hand-outs once it is. Batches all
the way: one commit serves every ack, lease and dead letter since the last one.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

from ..storage import WriteBatch
from . import _queue_keys as K
from ._queue_config import DEFAULT_READ_AHEAD, MAX_SECONDS, QueueConfig
from ._queue_dlq import dead_letter_record
from ._queue_model import (
    _SHIFT,
    Entry,
    FlushPlan,
    Handout,
    Part,
    ReadyQueue,
    Slot,
    _Consumer,
    _priority,
)
from ._queue_state import (
    DEAD_REASONS,
    DELAYED,
    LEASED,
    LEASING,
    READY,
    REASONS,
    STORED,
    TRANSITIONS,
    next_state,
)

log = logging.getLogger(__name__)

class QueueCore:
    """The state of one queue group; see the module doc."""

    def __init__(
        self, name: str, group: str, config: QueueConfig, *, wall_offset: float = 0.0,
        read_ahead: int = DEFAULT_READ_AHEAD, tokens: Iterator[int] | None = None,
        dlq_partitions: int = 1,
    ) -> None:
        self.name = name
        self.group = group
        self.queue_label = f"{name}/{group}"
        self.config = config
        self.prefix = K.state_prefix(name, group)
        self.wall_offset = wall_offset
        self.read_ahead = read_ahead
        self.tokens = tokens if tokens is not None else itertools.count(1)
        self.dlq_partitions = dlq_partitions
        self.parts: list[Part] = []
        self.by_tp: dict[tuple[str, int], Part] = {}
        self.entries: dict[int, Entry] = {}
        self.ready = ReadyQueue((config.max_priority or 0) + 1)
        self.delayed: list[tuple[float, int, Entry]] = []
        self.leased: dict[int, Entry] = {}  # LEASED, in lease order (= deadline order)
        self.consumers: dict[int, _Consumer] = {}
        self.leasing: list[tuple[Entry, int]] = []
        self.dlq_out: list[tuple[int, Any]] = []
        self.orphans: list[bytes] = []  # state keys of deleted topics, to delete
        self.backlog = 0
        self.seq = 0
        self._rr = 0
        self._ttl_ms = None if config.ttl is None else int(config.ttl * 1000)
        # statistics
        self.acked = 0
        self.delivered = 0
        self.redelivered = 0
        self.expired_leases = 0
        self.stale = 0
        self.dropped = 0
        self.discarded = 0
        self.dead = dict.fromkeys(REASONS, 0)

    # ------------------------------------------------------------------ time

    def wall_ms(self, now: float) -> int:
        return int((now + self.wall_offset) * 1000)

    def _loop_time(self, wall_ms: int) -> float:
        return wall_ms / 1000 - self.wall_offset

    # ------------------------------------------------------------------ topology

    def add_partition(
        self, topic: str, tid: int, partition: int, *, floor: int | None, mark: int,
        records: Iterable[tuple[int, bytes]], log_start: int, hw: int, admitted: int = 0,
    ) -> Part:
        """Attach a partition, with its stored floor, mark and admission position (floor
        None: a new one, read from the start) and records, and its current log start and
        high watermark."""
        part = Part(len(self.parts), topic, tid, partition, self.prefix)
        start = log_start if floor is None else floor
        if floor is None:
            part.fd_dirty = True
        part.floor = start
        part.mark = max(mark, start)
        for off, v in records:
            part.persisted[off] = v
            if off < start:
                part.dirty[off] = None  # left behind by a floor move: delete it
            elif v == K.DONE:
                part.done.add(off)
        if start < log_start:
            # Retention removed records before the group had them (rule 8): they are gone.
            lost = (log_start - start) - sum(1 for o in part.done if o < log_start)
            self.dropped += lost
            log.warning("queue %s lost %d message(s) of %s[%d] to retention",
                        self.queue_label, lost, topic, partition)
            self._jump_floor(part, log_start)
        part.read_pos = part.floor
        if self.config.max_length is None:
            part.adm_pos = max(hw, part.floor)  # no bound: everything is admitted
        else:
            # What arrived after the last admission goes through max_length (admit) again.
            part.adm_pos = min(max(admitted, part.floor), max(hw, part.floor))
        self.backlog += (part.adm_pos - part.floor) - sum(1 for o in part.done if o < part.adm_pos)
        self.parts.append(part)
        self.by_tp[(topic, partition)] = part
        return part

    def remove_topic(self, topic: str) -> None:
        """The topic was deleted: forget its messages and delete the group's state for it."""
        for part in self.parts:
            if part.topic != topic or part.gone:
                continue
            part.gone = True
            del self.by_tp[(topic, part.partition)]
            for mid, e in list(self.entries.items()):
                if e.part is part:
                    self._forget(e)
            # What is left of its backlog: admitted, not done, not in memory.
            unread = (part.adm_pos - part.read_pos) - sum(1 for o in part.done
                                                          if part.read_pos <= o < part.adm_pos)
            self.backlog -= max(0, unread)
            self.orphans.append(part.fkey)
            self.orphans.extend(K.record_key(part.rprefix, o) for o in part.persisted)
            part.persisted.clear()
            part.dirty.clear()
            part.fd_dirty = False
            part.done.clear()

    def _forget(self, e: Entry) -> None:
        if e.state in (LEASED, LEASING):
            c = self.consumers.get(e.cid)
            if c is not None:
                c.outstanding -= 1
        self.leased.pop(e.mid, None)
        del self.entries[e.mid]
        self.backlog -= 1
        e.state = -1  # not READY: skipped where it still sits in the ready set or heaps

    # ------------------------------------------------------------------ consumers

    def attach(self, slot: Slot) -> None:
        self.consumers[slot.cid] = _Consumer(slot)

    def detach(self, cid: int, now: float) -> None:
        """The consumer left: its leases end (rule 4)."""
        if cid not in self.consumers:
            return
        mine = [e for e in self.entries.values()
                if e.cid == cid and (e.state == LEASED or e.state == LEASING)]
        for e in sorted(mine, key=lambda e: e.seq):
            self._give_back(e, "consumer_gone", now)
        del self.consumers[cid]

    # ------------------------------------------------------------------ reading

    def read_room(self) -> int:
        """How many more messages the read-ahead window takes."""
        return self.read_ahead - len(self.entries)

    def admit(self, part: Part, hw: int, now: float) -> tuple[int, int] | None:
        """Count records up to ``hw`` into the backlog (rule 7). Returns the offsets
        ``[start, end)`` that overflow and must be read and dead-lettered, or None."""
        if hw <= part.adm_pos:
            return None
        new = hw - part.adm_pos
        limit = self.config.max_length
        if limit is None or self.config.overflow == "drop-oldest":
            part.adm_pos = hw
            part.fd_dirty = limit is not None or part.fd_dirty
            self.backlog += new
            if limit is not None and self.backlog > limit:
                self._drop_oldest(self.backlog - limit)
            return None
        take = max(0, min(new, limit - self.backlog))
        part.adm_pos += take
        part.fd_dirty = True
        self.backlog += take
        if take < new:
            return part.adm_pos, hw
        return None

    def overflow(self, part: Part, records: Iterable[Any], end: int, now: float) -> None:
        """Dead-letter records that arrived when the backlog was full (reason overflow)."""
        for rec in records:
            if rec.offset >= end:
                break
            if rec.offset >= part.adm_pos and rec.offset not in part.done:
                self._bury(part, rec, "overflow", 0, now)
            part.adm_pos = rec.offset + 1
        part.adm_pos = max(part.adm_pos, end)
        part.fd_dirty = True

    def read_in(self, part: Part, records: Iterable[Any], now: float) -> None:
        """Records read from ``part.read_pos`` (rule 1)."""
        cfg = self.config
        max_del = cfg.max_deliveries
        ttl = self._ttl_ms
        cutoff = self.wall_ms(now) - ttl if ttl is not None else 0
        wall = self.wall_ms(now) if part.persisted else 0
        prio_levels = cfg.max_priority
        done = part.done
        persisted = part.persisted
        mark = part.mark
        base = part.index << _SHIFT
        entries = self.entries
        fresh = self.ready.fresh
        fresh0 = fresh[0].append
        seq = self.seq
        adm = part.adm_pos
        pos = part.read_pos
        added = 0
        for rec in records:
            off = rec.offset
            if off >= adm:
                break
            if off < pos:  # dropped (drop-oldest) before it was read
                continue
            pos = off + 1
            if done and off in done:
                continue
            nb = 0
            v = persisted.get(off) if persisted else None
            if v is not None:
                n, nb = K.unpack_lease(v)
            else:
                n = 1 if off < mark else 0
            seq += 1
            prio = _priority(rec.headers, prio_levels) if prio_levels else 0
            e = Entry(base | off, part, rec, seq, prio, n)
            if (max_del is not None and n >= max_del) or (ttl is not None and rec.timestamp < cutoff):
                self.seq = seq
                part.read_pos = pos
                self._bury(part, rec, "max_deliveries" if max_del is not None and n >= max_del
                           else "expire", n, now, e)
                pos = part.read_pos  # the floor may have moved past it
                continue
            entries[e.mid] = e
            if nb > wall:
                e.state = TRANSITIONS[STORED, "read_delayed"]
                heapq.heappush(self.delayed, (self._loop_time(nb), seq, e))
            else:
                e.state = READY
                if prio:
                    fresh[prio].append(e)
                else:
                    fresh0(e)
                added += 1
        part.read_pos = pos
        self.ready.n += added
        self.seq = seq

    def skip_to(self, part: Part, log_start: int) -> None:
        """Retention removed records ``[read_pos, log_start)`` before they were read (rule 8)."""
        if log_start <= part.read_pos:
            return
        lost = (log_start - part.read_pos) - sum(1 for o in part.done
                                                 if part.read_pos <= o < log_start)
        admitted_lost = (min(log_start, part.adm_pos) - part.read_pos) - sum(
            1 for o in part.done if part.read_pos <= o < min(log_start, part.adm_pos))
        self.backlog -= max(0, admitted_lost)
        if part.floor == part.read_pos:
            self._jump_floor(part, log_start)
        else:  # messages below are still in memory: the floor waits for them
            for o in range(part.read_pos, log_start):
                if o not in part.done:
                    self._mark_done(part, o)
        part.read_pos = max(part.read_pos, log_start)
        part.adm_pos = max(part.adm_pos, log_start)
        if lost:
            self.dropped += lost
            log.warning("queue %s lost %d message(s) of %s[%d] to retention before reading "
                        "them", self.queue_label, lost, part.topic, part.partition)

    def _jump_floor(self, part: Part, to: int) -> None:
        """Move the floor to ``to``: everything below is done (nothing below is in memory)."""
        for o in [o for o in part.done if o < to]:
            part.done.discard(o)
        for o in part.persisted:
            if o < to:
                part.dirty[o] = None
        for o in [o for o in part.dirty if o < to and o not in part.persisted]:
            del part.dirty[o]
        part.floor = to
        part.mark = max(part.mark, to)
        part.read_pos = max(part.read_pos, to)
        part.fd_dirty = True
        while part.floor in part.done:
            part.done.discard(part.floor)
            if part.floor in part.persisted:
                part.dirty[part.floor] = None
            else:
                part.dirty.pop(part.floor, None)
            part.floor += 1
            part.mark = max(part.mark, part.floor)

    # ------------------------------------------------------------------ handing out

    def assign(self, now: float) -> int:
        """Lease READY messages to consumers with room; returns how many were leased."""
        ready = self.ready
        if not ready.n or not self.consumers:
            return 0
        cands = [c for c in self.consumers.values() if c.credit() > 0]
        if not cands:
            return 0
        self._rr = (self._rr + 1) % len(cands)
        cands = cands[self._rr:] + cands[:self._rr]
        leased = 0
        while cands and ready.n:
            share = max(1, ready.n // len(cands))
            nxt = []
            for c in cands:
                k = min(c.credit(), share)
                got = self._lease_to(c, k, now)
                leased += got
                if got == k and c.credit() > 0:
                    nxt.append(c)
            cands = nxt
        return leased

    def _lease_to(self, c: _Consumer, k: int, now: float) -> int:
        """Lease up to ``k`` READY entries to ``c`` (the hot loop of hand-outs, rule 2)."""
        ready = self.ready
        ttl = self._ttl_ms
        cutoff = self.wall_ms(now) - ttl if ttl is not None else 0
        leasing = self.leasing
        tokens = self.tokens
        cid = c.slot.cid
        lease = TRANSITIONS[READY, "lease"]
        read_ahead2 = 2 * self.read_ahead
        got = 0
        fast = ready.levels == 1 and not ready.back[0]
        fresh = ready.fresh[0]
        while got < k:
            if fast and fresh:  # first in, first out, nothing given back: the head
                e = fresh.popleft()
                ready.n -= 1
            else:
                e = ready.pop()
                if e is None:
                    break
            if e.state != READY:
                continue
            if ttl is not None and e.rec.timestamp < cutoff:
                self._kill(e, "expire", now)
                continue
            e.state = lease
            n = e.deliveries = e.deliveries + 1
            token = e.token = next(tokens)
            e.cid = cid
            leasing.append((e, token))
            got += 1
            part = e.part
            off = e.offset
            if n == 1 and off == part.mark:
                # In order: move the mark, no record of its own.
                m = off + 1
                marked = part.marked
                if marked or part.done:
                    done = part.done
                    while m in marked or m in done:
                        marked.discard(m)
                        m += 1
                part.mark = m
                part.fd_dirty = True
            else:
                if n == 1:
                    part.marked.add(off)
                    if len(part.marked) > read_ahead2:
                        part.marked = {o for o in part.marked if o >= part.mark}
                else:
                    self.redelivered += 1
                part.dirty[off] = K.pack_lease(n)
        c.outstanding += got
        if c.slot.want is not None:
            c.slot.want -= got
        self.delivered += got
        return got

    def has_changes(self) -> bool:
        """Whether anything waits to be committed."""
        return bool(self.leasing or self.dlq_out or self.orphans
                    or any(p.dirty or p.fd_dirty for p in self.parts))

    def take_flush(self, now: float) -> FlushPlan | None:
        """Plan the next group commit (None if nothing changed since the last one)."""
        if not self.has_changes():
            return None
        wb = WriteBatch()
        for part in self.parts:
            if part.gone:
                continue
            if part.dirty:
                persisted = part.persisted
                floor = part.floor
                rp = part.rprefix
                for off, v in part.dirty.items():
                    if v is None or off < floor:
                        if persisted.pop(off, None) is not None:
                            wb.delete(K.record_key(rp, off))
                    elif persisted.get(off) != v:
                        wb.put(K.record_key(rp, off), v)
                        persisted[off] = v
                part.dirty.clear()
            if part.fd_dirty:
                wb.put(part.fkey, K.pack_floor(part.floor, part.mark, part.adm_pos))
                part.fd_dirty = False
        for key in self.orphans:
            wb.delete(key)
        self.orphans = []
        dead = len(self.dlq_out)
        if self.dlq_out:
            assert self.config.dead_letter is not None
            by_p: dict[int, list[Any]] = {}
            for src_p, record in self.dlq_out:
                by_p.setdefault(src_p % self.dlq_partitions, []).append(record)
            for p, records in sorted(by_p.items()):
                wb.append(self.config.dead_letter, p, records)
            self.dlq_out = []
        handouts = self.leasing
        self.leasing = []
        return FlushPlan(wb, handouts, dead)

    def flushed(self, plan: FlushPlan, now: float) -> dict[int, list[Handout]]:
        """The plan is durable: its leases become hand-outs, per consumer id."""
        out: dict[int, list[Handout]] = {}
        deadline = now + self.config.ack_timeout
        leased = self.leased
        durable = TRANSITIONS[LEASING, "durable"]
        for item in plan.handouts:
            e, token = item
            if e.state != LEASING or e.token != token:
                continue  # its consumer left meanwhile
            e.state = durable
            e.deadline = deadline
            leased[e.mid] = e
            lst = out.get(e.cid)
            if lst is None:
                out[e.cid] = [item]
            else:
                lst.append(item)
        return out

    # ------------------------------------------------------------------ settlement

    def ack(self, cid: int, items: Iterable[tuple[int, int]]) -> None:
        """Acks from consumer ``cid``: ``(mid, token)`` of each message (rule 3)."""
        entries = self.entries
        leased = self.leased
        c = self.consumers.get(cid)
        acked = TRANSITIONS[LEASED, "ack"]
        n = 0
        mark_done = self._mark_done
        for mid, token in items:
            e = entries.get(mid)
            if e is None or e.token != token or e.state != LEASED:
                self.stale += 1
                continue
            e.state = acked
            del entries[mid]
            del leased[mid]
            n += 1
            part = e.part
            off = e.offset
            if off != part.floor:  # (the common case of _mark_done, inline)
                part.done.add(off)
                part.dirty[off] = K.DONE
            else:
                mark_done(part, off)
        self.acked += n
        self.backlog -= n
        if c is not None:
            c.outstanding -= n

    def nack(self, cid: int, items: Iterable[tuple[int, int, bool, float]], now: float) -> None:
        """Nacks from consumer ``cid``: ``(mid, token, requeue, delay)`` (rule 3)."""
        for mid, token, requeue, delay in items:
            e = self.entries.get(mid)
            if e is None or e.token != token or e.state != LEASED:
                self.stale += 1
                continue
            if not requeue:
                self._release(e)
                self._kill(e, "reject", now)
            elif delay and delay > 0 and not self._poisoned(e):
                # Clients refuse longer delays; the bound here keeps a bad one from crashing
                # the actor (its buffered acks would go with it) when packing not-before.
                delay = min(delay, MAX_SECONDS)
                self._release(e)
                e.state = next_state(e.state, "requeue_delayed")
                nb_ms = self.wall_ms(now + delay)
                e.part.dirty[e.offset] = K.pack_lease(e.deliveries, nb_ms)
                self.seq += 1
                heapq.heappush(self.delayed, (now + delay, self.seq, e))
            else:
                self._give_back(e, "requeue", now)

    def _poisoned(self, e: Entry) -> bool:
        m = self.config.max_deliveries
        return m is not None and e.deliveries >= m

    def _release(self, e: Entry) -> None:
        """Take the entry out of its consumer's count and the lease order."""
        c = self.consumers.get(e.cid)
        if c is not None:
            c.outstanding -= 1
        self.leased.pop(e.mid, None)

    def _give_back(self, e: Entry, event: str, now: float) -> None:
        """A lease ended without settlement (rules 3-5)."""
        self._release(e)
        if e.state == LEASED and self._poisoned(e):
            self._kill(e, "max_deliveries", now)
            return
        e.state = next_state(e.state, event)
        self.ready.push_back(e)

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> None:
        """Apply what time did: leases past their deadline, delays over, TTLs (rules 4, 6)."""
        leased = self.leased
        while leased:
            mid = next(iter(leased))
            e = leased[mid]
            if e.deadline > now:
                break
            self.expired_leases += 1
            self._give_back(e, "lease_expired", now)
        delayed = self.delayed
        while delayed and delayed[0][0] <= now:
            _, _, e = heapq.heappop(delayed)
            if e.state == DELAYED:
                e.state = next_state(DELAYED, "delay_over")
                self.ready.push_back(e)
        if self._ttl_ms is not None:
            cutoff = self.wall_ms(now) - self._ttl_ms
            for lvl in range(self.ready.levels):
                while (e := self.ready.pop_expired(lvl, cutoff)) is not None:
                    if e.state == READY:
                        self._kill(e, "expire", now)

    def next_deadline(self) -> float:
        """The loop time at which ``tick`` has something to do (inf: nothing scheduled)."""
        t = math.inf
        if self.leased:
            t = self.leased[next(iter(self.leased))].deadline
        if self.delayed and self.delayed[0][0] < t:
            t = self.delayed[0][0]
        if self._ttl_ms is not None:
            for _lvl, e in self.ready.heads():
                # +1 ms: expired means older than the TTL (see tick's cutoff)
                d = self._loop_time(e.rec.timestamp + self._ttl_ms + 1)
                if d < t:
                    t = d
        return t

    # ------------------------------------------------------------------ done

    def _mark_done(self, part: Part, off: int) -> None:
        if off != part.floor:
            part.done.add(off)
            part.dirty[off] = K.DONE
            return
        done = part.done
        pers = part.persisted
        dirty = part.dirty
        f = off
        while True:
            if f in pers:
                dirty[f] = None
            else:
                dirty.pop(f, None)
            f += 1
            if f not in done:
                break
            done.remove(f)
        part.floor = f
        if part.mark < f:
            part.mark = f
            marked = part.marked
            while part.mark in marked or part.mark in done:
                marked.discard(part.mark)
                part.mark += 1
        if part.read_pos < f:
            part.read_pos = f
        part.fd_dirty = True

    def _kill(self, e: Entry, event: str, now: float) -> None:
        """An in-memory entry dies (rules 3, 5, 6)."""
        e.state = next_state(e.state, event)
        self.entries.pop(e.mid, None)
        self.backlog -= 1
        self._mark_done(e.part, e.offset)
        self._dead_letter(e.part, e.rec, DEAD_REASONS[event], e.deliveries, now)

    def _bury(self, part: Part, rec: Any, event: str, deliveries: int, now: float,
              e: Entry | None = None) -> None:
        """A stored record dies as it is read (rules 5-7)."""
        if e is not None:
            e.state = next_state(STORED, event)
        if event != "overflow":
            self.backlog -= 1
        self._mark_done(part, rec.offset)
        self._dead_letter(part, rec, DEAD_REASONS[event], deliveries, now)

    def _dead_letter(self, part: Part, rec: Any, reason: str, deliveries: int, now: float) -> None:
        self.dead[reason] += 1
        if self.config.dead_letter is None:
            self.discarded += 1
            return
        self.dlq_out.append((part.partition, dead_letter_record(
            rec, reason, part.topic, self.queue_label, part.partition, deliveries,
            self.wall_ms(now))))

    def _drop_oldest(self, k: int) -> None:
        """Drop the ``k`` oldest waiting messages (rule 7, drop-oldest)."""
        while k > 0:
            e = self.ready.pop_oldest()
            if e is None:
                break
            if e.state != READY:
                continue
            e.state = next_state(READY, "drop")
            del self.entries[e.mid]
            self.backlog -= 1
            self.dropped += 1
            self._mark_done(e.part, e.offset)
            k -= 1
        for part in self.parts:
            while k > 0 and part.read_pos < part.adm_pos:
                off = part.read_pos
                part.read_pos += 1
                if off in part.done:
                    continue
                next_state(STORED, "drop")
                self.backlog -= 1
                self.dropped += 1
                self._mark_done(part, off)
                k -= 1

    # ------------------------------------------------------------------ views

    def counts(self) -> dict[str, int]:
        """How many messages are in each live state, and the backlog."""
        ready = leasing = leased = delayed = 0
        for e in self.entries.values():
            s = e.state
            if s == READY:
                ready += 1
            elif s == LEASED:
                leased += 1
            elif s == LEASING:
                leasing += 1
            elif s == DELAYED:
                delayed += 1
        unread = sum(max(0, p.adm_pos - p.read_pos) - sum(1 for o in p.done if o >= p.read_pos)
                     for p in self.parts if not p.gone)
        return {"ready": ready + unread, "leased": leased + leasing, "delayed": delayed,
                "backlog": self.backlog, "in_memory": len(self.entries)}
