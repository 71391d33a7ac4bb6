"""``dlq list|inspect|replay`` over ``--broker``: dead letters read and replayed as a Kafka
client sees them.

A dead-letter topic is a plain topic over Kafka, but two things the local commands use live
in the data directory only, so the remote commands do the closest thing Kafka allows
(docs/cli.md lists the differences):

* **Which topics are dead-letter topics, and for which queues.** Queue declarations are not
  visible over Kafka. A topic is taken for a dead-letter topic when its first stored record
  carries the dead-letter header block; its queues are the ``source-queue`` headers of its
  letters. ``NAME`` is a dead-letter topic, or a queue (``NAME`` or ``NAME/GROUP``) matched
  against those headers.
* **Which letters were replayed.** The local marks are LMDB keys. Here each reason has a
  consumer group, ``streamrt.dlq-replay.<reason>``, whose committed offset per dead-letter
  partition is a floor: a letter of that reason below it was replayed. Replay goes through
  pending letters in offset order, so after replaying them up to offset O every pending
  letter of the chosen reasons below O+1 was replayed, and those reasons' floors move to
  O+1. Floors are committed after the broker acknowledged the replayed records: a replay
  cut off in between replays that chunk again next time (at least once, where the local
  command, one LMDB transaction, is exactly once). Local and remote replays do not see each
  other's marks.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Sequence

import orjson
from aiokafka import TopicPartition

from ..broker import _queue_dlq as dlq
from ..broker._queue_state import REASONS
from ..errors import UnknownQueue
from ._common import CliError, plural, write_stdout
from .dlq import REPLAY_CHUNK, _describe, refuse_unreplayable
from .remote import CONNECT_TIMEOUT, Remote, run
from .remote_groups import commit_for

REPLAY_GROUP = "streamrt.dlq-replay."
POLL_MS = 200
#: Seconds a read may go without any record arriving before the broker is deemed stuck.
STALL_TIMEOUT = 15.0


class _Letters:
    """Reads dead-letter topics through one consumer, with the replay floors."""

    def __init__(self, r: Remote) -> None:
        self.r = r
        self.floors: dict[str, dict[tuple[str, int], int]] = {}

    async def start(self) -> None:
        # Short fetch waits: each partition is read to a known end, then the next is assigned,
        # and a long-poll still waiting on the previous assignment would delay every switch.
        self.consumer = await self.r.connect(self.r.consumer(fetch_max_wait_ms=20),
                                             CONNECT_TIMEOUT)
        for reason in REASONS:
            offsets = await self.r.admin.list_consumer_group_offsets(REPLAY_GROUP + reason)
            self.floors[reason] = {(tp.topic, tp.partition): om.offset
                                   for tp, om in offsets.items() if om.offset >= 0}

    def replayed(self, reason: str, topic: str, partition: int, offset: int) -> bool:
        return offset < self.floors.get(reason, {}).get((topic, partition), 0)

    async def read(self, topic: str, *, include_replayed: bool = False,
                   reasons: Sequence[str] | None = None, limit: int | None = None,
                   first_only: bool = False) -> list[dlq.DeadLetter]:
        """Letters of ``topic`` in partition and offset order (``dlq.read``'s contract)."""
        parts = await self.r.partitions(topic)
        ranges = await self.r.log_range(topic, parts)
        out: list[dlq.DeadLetter] = []
        for p in parts:
            start, end = ranges[p]
            tp = TopicPartition(topic, p)
            self.consumer.assign([tp])
            self.consumer.seek(tp, start)
            pos, idle_since = start, time.monotonic()
            while pos < end:
                batch = await self.consumer.getmany(tp, timeout_ms=POLL_MS, max_records=5_000)
                recs = batch.get(tp, [])
                if not recs:
                    moved = await self.consumer.position(tp)  # past a gap compaction left
                    if moved > pos:
                        pos, idle_since = moved, time.monotonic()
                        continue
                    if time.monotonic() - idle_since > STALL_TIMEOUT:
                        raise CliError(f"the broker at {self.r.address} sent nothing from "
                                       f"{topic}[{p}] at offset {pos} (it holds {start} to "
                                       f"{end}) for {STALL_TIMEOUT:g} s")
                    continue
                idle_since = time.monotonic()
                for rec in recs:
                    if first_only:
                        letter = dlq.parse(topic, p, rec, False)
                        return [] if letter is None else [letter]
                    letter = dlq.parse(topic, p, rec, False)
                    if letter is None or (reasons and letter.reason not in reasons):
                        continue
                    done = self.replayed(letter.reason, topic, p, rec.offset)
                    if done and not include_replayed:
                        continue
                    out.append(letter if not done else _as_replayed(letter))
                    if limit is not None and len(out) >= limit:
                        return out
                pos = recs[-1].offset + 1
        return out

    async def dlq_topics(self) -> dict[str, list[str]]:
        """Each dead-letter topic with the queues its letters came from."""
        out: dict[str, list[str]] = {}
        for topic in sorted(await self.r.topics()):
            if await self.read(topic, include_replayed=True, first_only=True):
                letters = await self.read(topic, include_replayed=True)
                out[topic] = sorted({d.source_queue for d in letters})
        return out

    async def resolve(self, name: str) -> list[str]:
        """The dead-letter topic(s) ``name`` means (see the module doc)."""
        # A queue first, as locally: queue "jobs" means its dead-letter topic, not "jobs".
        users = await self.dlq_topics()
        mine = sorted(t for t, queues in users.items()
                      if any(name in (q, q.partition("/")[0]) for q in queues))
        if mine:
            return mine
        if name in await self.r.topics():
            return [name]
        raise UnknownQueue(
            f"no queue or dead-letter topic named {name!r} at {self.r.address}"
            + (f"; dead-letter topics: {', '.join(sorted(users))}" if users
               else "; no topic holds dead letters") + " (streamrt dlq list shows them)")


def _as_replayed(d: dlq.DeadLetter) -> dlq.DeadLetter:
    import attrs

    return attrs.evolve(d, replayed=True)


def dlq_list(args: argparse.Namespace) -> int:
    """``dlq list`` over the broker."""

    async def main(r: Remote) -> int:
        letters = _Letters(r)
        await letters.start()
        users = await letters.dlq_topics()
        topics = await letters.resolve(args.name) if args.name else sorted(users)
        rows = [("DLQ", "QUEUES", "PENDING", "REPLAYED", "REASONS")]
        for topic in topics:
            pending: Counter[str] = Counter()
            replayed = 0
            queues: set[str] = set()
            for d in await letters.read(topic, include_replayed=True):
                queues.add(d.source_queue)
                if d.replayed:
                    replayed += 1
                else:
                    pending[d.reason] += 1
            shown = " ".join(f"{x}={pending[x]}" for x in REASONS if pending[x]) or "-"
            rows.append((topic, ",".join(sorted(queues)) or "-", str(sum(pending.values())),
                         str(replayed), shown))
        if len(rows) > 1:
            widths = [max(len(row[i]) for row in rows) for i in range(4)]
            write_stdout("".join(
                "  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] + "\n"
                for row in rows))
        return 0

    return run(args, main)


def dlq_inspect(args: argparse.Namespace) -> int:
    """``dlq inspect`` over the broker."""

    async def main(r: Remote) -> int:
        letters = _Letters(r)
        await letters.start()
        found: list[dlq.DeadLetter] = []
        for topic in await letters.resolve(args.name):
            left = None if args.max is None else args.max - len(found)
            if left == 0:
                break
            found += await letters.read(topic, include_replayed=args.all, reasons=args.reason,
                                        limit=left)
        if args.json:
            write_stdout("".join(orjson.dumps(d.to_dict()).decode() + "\n" for d in found))
        else:
            write_stdout("".join(_describe(d) for d in found))
        return 0

    return run(args, main)


def dlq_replay(args: argparse.Namespace) -> int:
    """``dlq replay`` over the broker (at least once; see the module doc)."""

    async def main(r: Remote) -> int:
        letters = _Letters(r)
        await letters.start()
        topics = await r.topics()
        # Every selected letter is read and checked first, over all dead-letter topics, so a
        # letter that cannot go back fails the command with nothing replayed (as locally).
        selected: list[list[dlq.DeadLetter]] = []
        total = 0
        for topic in await letters.resolve(args.name):
            left = None if args.max is None else args.max - total
            if left == 0:
                break
            pending = await letters.read(topic, reasons=args.reason, limit=left)
            selected.append(pending)
            total += len(pending)
        problems = [err for pending in selected for d in pending
                    if (err := dlq.letter_problem(d, topics.get(d.source_topic))) is not None]
        refuse_unreplayable(problems, total, args.dry_run)
        sources: Counter[str] = Counter(d.source_topic for p in selected for d in p)
        producer = None
        for pending in [] if args.dry_run else selected:
            producer = producer or await r.producer()
            for i in range(0, len(pending), REPLAY_CHUNK):
                chunk = pending[i:i + REPLAY_CHUNK]
                now = int(time.time() * 1000)
                futures = [await producer.send(d.source_topic, d.value, key=d.key,
                                               partition=d.source_partition,
                                               timestamp_ms=now, headers=list(d.headers))
                           for d in chunk]
                await asyncio.gather(*futures)
                await _move_floors(r, letters, chunk, args.reason or REASONS)
        where = ", ".join(f"{t} ({n})" for t, n in sorted(sources.items())) or "nowhere"
        verb = "would replay" if args.dry_run else "replayed"
        print(f"{verb} {plural(total, 'dead letter')} to {where}")
        return 0

    return run(args, main)


async def _move_floors(r: Remote, letters: _Letters, chunk: Sequence[dlq.DeadLetter],
                       reasons: Sequence[str]) -> None:
    """After replaying ``chunk`` (pending letters in offset order), raise the floors of
    ``reasons`` past its last letter in each dead-letter partition."""
    last: dict[tuple[str, int], int] = {}
    for d in chunk:
        last[(d.topic, d.partition)] = max(last.get((d.topic, d.partition), -1), d.offset)
    for reason in reasons:
        floors = letters.floors.setdefault(reason, {})
        moved = {tp: off + 1 for tp, off in last.items() if floors.get(tp, 0) < off + 1}
        if moved:
            await commit_for(r, REPLAY_GROUP + reason,
                             {TopicPartition(t, p): off for (t, p), off in moved.items()})
            floors.update(moved)
