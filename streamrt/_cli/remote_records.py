"""``produce`` and ``consume`` over ``--broker``: the same routing, output and commits as the
local commands, through aiokafka's producer and consumer.

Produce routes records itself (the local command's rule: ``--partition``, else murmur2 of the
key, else unkeyed batches to the emptiest partition), so a line lands on the same partition
in both modes. A chunk of input is checked in full before any of it is sent, but Kafka has
no transaction over several partitions here: a failure in the middle of a chunk can leave
part of it written (the error says how many records were acknowledged before it).

Consume with ``--group`` joins a real consumer group (subscribe), so several consumers share
the partitions and a rerun resumes after the last committed record; with ``--partition`` (or
without a group) it assigns partitions itself and reads from the requested offsets,
committing for the group if one is named. Without ``--follow`` it stops at the end offsets
it saw when each partition was assigned.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from ..errors import OffsetOutOfRange
from ..storage import check_topic_name
from ._common import CliError, is_terminal, plural, warn, write_stdout
from .consume import READ_RECORDS, _StopFlag, format_records
from .produce import _check_file, _open_input, _Writer, iter_line_chunks, parse_keys
from .remote import CONNECT_TIMEOUT, JOIN_TIMEOUT, Remote, run

POLL_MS = 200


# ---- produce


class _RemoteWriter(_Writer):
    """The local writer's routing (``_route``), with records sent to the broker."""

    def __init__(self, topic: str, partitions: int, fill: list[int], key_field: str | None,
                 partition: int | None, source: str) -> None:
        self.info = argparse.Namespace(name=topic, partitions=partitions)  # what _route reads
        self.key_field = key_field
        self.partition = partition
        self.source = source
        self.written = 0
        self._fill = fill
        self.progress = _progress(topic)

    async def send_chunk(self, producer: Any, first: int, lines: list[bytes]) -> None:
        try:
            keys = (parse_keys(lines, first, self.key_field, self.source)
                    if self.key_field is not None else None)
        except CliError as e:
            done = (f"the {plural(self.written, 'record')} before line {first} were written, "
                    f"nothing from line {first} on" if self.written else "nothing was written")
            raise CliError(f"{e}; {done}") from None
        futures = [await producer.send(self.info.name, value, key=key, partition=p)
                   for p, recs in self._route(keys, lines) for key, value in recs]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        self.written += len(results) - len(failed)
        self.progress.update(self.written)
        if failed:
            raise CliError(f"the broker refused records of {self.info.name} ({failed[0]!r}); "
                           f"{plural(self.written, 'record')} were written")


def _progress(topic: str) -> Any:
    from ._common import Progress

    return Progress(f"writing to {topic}")


def produce(args: argparse.Namespace) -> int:
    """``produce`` over the broker."""
    topic = check_topic_name(args.topic)
    source = args.file if args.file is not None else "stdin"

    async def main(r: Remote) -> int:
        parts = await r.partitions(topic)
        if args.partition is not None:
            await r.partitions(topic, args.partition)  # UnknownPartition
        if args.file is not None and args.key_field is not None:
            _check_file(args.file, args.key_field)
        ranges = await r.log_range(topic, parts)
        writer = _RemoteWriter(topic, len(parts), [ranges[p][1] for p in parts],
                               args.key_field, args.partition, source)
        producer = await r.producer()
        stream = _open_input(args.file)
        try:
            if args.file is None and is_terminal(sys.stdin):
                print("streamrt: reading records from stdin, one per line; end with Ctrl-D",
                      file=sys.stderr)
            for first, lines in iter_line_chunks(stream):
                await writer.send_chunk(producer, first, lines)
        finally:
            writer.progress.clear()
            if args.file is not None:
                stream.close()
        print(f"wrote {plural(writer.written, 'record')} to {topic}")
        return 0

    return run(args, main)


# ---- consume


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    """Notes each assignment: its end offsets (where a non-follow run stops), and applies
    ``--from-beginning`` to partitions seen for the first time."""

    def __init__(self, consumer: AIOKafkaConsumer, from_beginning: bool) -> None:
        self.consumer = consumer
        self.from_beginning = from_beginning
        self.joined = asyncio.Event()
        self.ends: dict[TopicPartition, int] = {}
        self.seen: set[TopicPartition] = set()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.ends.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        new = [tp for tp in assigned if tp not in self.seen]
        self.seen.update(assigned)
        if assigned:
            self.ends.update(await self.consumer.end_offsets(list(assigned)))
        if new and self.from_beginning:
            await self.consumer.seek_to_beginning(*new)
        self.joined.set()


async def _consume(r: Remote, args: argparse.Namespace, topic: str, stop: _StopFlag) -> None:
    parts = await r.partitions(topic, args.partition)
    group = args.group
    if group is not None and args.partition is None:
        consumer = r.consumer(group, max_partition_fetch_bytes=4 << 20)
        listener = _Assigned(consumer, args.from_beginning)
        consumer.subscribe([topic], listener=listener)
        await r.connect(consumer, JOIN_TIMEOUT)
        # The first poll joins the group; the listener fires once partitions are assigned.
        joined = asyncio.ensure_future(listener.joined.wait())
        deadline = asyncio.get_running_loop().time() + JOIN_TIMEOUT
        while not joined.done():
            if stop.requested:
                joined.cancel()
                return
            if asyncio.get_running_loop().time() > deadline:
                joined.cancel()
                raise CliError(f"group {group!r} did not assign partitions of {topic} within "
                               f"{JOIN_TIMEOUT:g} s")
            await asyncio.wait([joined], timeout=POLL_MS / 1000)
        ends = listener.ends
    else:
        ranges = await r.log_range(topic, parts)
        consumer = await r.connect(r.consumer(group), JOIN_TIMEOUT if group else CONNECT_TIMEOUT)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        committed: dict[int, int] = {}
        if group is not None and not args.from_beginning and args.offset is None:
            for tp in tps:
                off = await consumer.committed(tp)
                if off is not None and off >= 0:
                    committed[tp.partition] = off
        for tp in tps:
            start, end = ranges[tp.partition]
            if args.offset is not None:
                if not start <= args.offset <= end:
                    raise OffsetOutOfRange(topic, tp.partition, args.offset, start, end)
                pos = args.offset
            else:
                pos = committed.get(tp.partition, start)
                if not start <= pos <= end:
                    warn(f"group {group!r} committed offset {pos} for {topic}[{tp.partition}], "
                         f"which is no longer stored; reading from offset {start}")
                    pos = start
            consumer.seek(tp, pos)
        ends = {tp: ranges[tp.partition][1] for tp in tps}
    await _pump(consumer, args, group, ends, stop)


async def _pump(consumer: AIOKafkaConsumer, args: argparse.Namespace, group: str | None,
                ends: dict[TopicPartition, int], stop: _StopFlag) -> None:
    """Print (and commit) until caught up with ``ends``, --max is reached, or a stop."""
    remaining: int | None = args.max
    while remaining != 0 and not stop.requested:
        if not args.follow and await _caught_up(consumer, ends):
            return
        want = READ_RECORDS if remaining is None else min(READ_RECORDS, remaining)
        batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=want)
        chunks: list[str] = []
        commits: dict[TopicPartition, int] = {}
        for tp, recs in sorted(batch.items()):
            if not recs:
                continue
            chunks.append(format_records(tp.partition, recs, args.verbose))
            commits[tp] = recs[-1].offset + 1
            if remaining is not None:
                remaining -= len(recs)
        if chunks:
            # Commit only what has reached stdout: a broken pipe here commits nothing.
            write_stdout("".join(chunks))
            if group is not None:
                await consumer.commit(commits)


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp in consumer.assignment():
        end = ends.get(tp)
        if end is None or await consumer.position(tp) < end:
            return False
    return True


def consume(args: argparse.Namespace, stop: _StopFlag) -> None:
    """``consume`` over the broker; ``stop`` is the local command's signal flag."""
    topic = check_topic_name(args.topic)

    async def main(r: Remote) -> int:
        await _consume(r, args, topic, stop)
        return 0

    run(args, main)
