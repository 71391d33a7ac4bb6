"""Dead letters: how a dead message is written to its dead-letter topic, read back, and
replayed to the topic it came from.

A dead letter is the original record (value, key and headers unchanged) with these headers
appended, in this order (values are UTF-8 text)::

    reason            rejected | expired | max_deliveries | overflow
    source-topic      the topic the message was in
    source-queue      the queue group, as "NAME/GROUP" (NAME is the queue's topic or pattern)
    source-partition  its partition
    source-offset     its offset
    delivery-count    how many times it was handed out
    dead-lettered-at  when it was dead-lettered (ms since the epoch); also the record timestamp
    original-timestamp the original record's timestamp (ms)

Reading splits them off again by that exact trailing block, so a user header of the same name
stays the user's. Replaying appends the original (value, key, user headers, a new timestamp)
to ``source-topic``/``source-partition`` and, in the same LMDB transaction, marks the dead
letter replayed (``_queue_keys.replay_*``): a replay that is interrupted or run twice never
replays a letter twice. The dead-letter topic keeps every letter (its retention decides how
long); ``replayed`` letters are just hidden from listings by default.

Everything here works on a LogStore directly (the CLI, with no broker running) and builds
WriteBatches that the broker commits the same way (``broker.queues.replay``).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

import orjson

from ..errors import InvalidArgument, UnknownPartition, UnknownQueue, UnknownTopic
from ..storage import LogStore, WriteBatch
from . import _queue_keys as K
from ._queue_config import QueueConfig

HEADER_NAMES = (
    "reason", "source-topic", "source-queue", "source-partition", "source-offset",
    "delivery-count", "dead-lettered-at", "original-timestamp",
)
_N = len(HEADER_NAMES)
READ_CHUNK = 5_000

log = logging.getLogger(__name__)


def dead_letter_record(
    rec: Any, reason: str, topic: str, queue: str, partition: int, deliveries: int, now_ms: int,
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]:
    """The ``(key, value, headers, timestamp)`` a dead message is appended to its DLQ as."""
    headers = list(rec.headers)
    headers += [
        ("reason", reason.encode()),
        ("source-topic", topic.encode()),
        ("source-queue", queue.encode()),
        ("source-partition", b"%d" % partition),
        ("source-offset", b"%d" % rec.offset),
        ("delivery-count", b"%d" % deliveries),
        ("dead-lettered-at", b"%d" % now_ms),
        ("original-timestamp", b"%d" % rec.timestamp),
    ]
    return rec.key, rec.value, headers, now_ms


@attrs.frozen
class DeadLetter:
    """One record of a dead-letter topic, with the reason and source split out."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]  # the original (user's) headers
    reason: str
    source_topic: str
    source_queue: str
    source_partition: int
    source_offset: int
    deliveries: int
    dead_lettered_at: int
    original_timestamp: int
    replayed: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (bytes as text where they decode, else ``base64:...``)."""
        return {
            "topic": self.topic, "partition": self.partition, "offset": self.offset,
            "reason": self.reason, "source_topic": self.source_topic,
            "source_queue": self.source_queue, "source_partition": self.source_partition,
            "source_offset": self.source_offset, "deliveries": self.deliveries,
            "dead_lettered_at": self.dead_lettered_at,
            "original_timestamp": self.original_timestamp, "replayed": self.replayed,
            "key": _text(self.key), "value": _text(self.value),
            "headers": [[k, _text(v)] for k, v in self.headers],
        }


def _text(b: bytes | None) -> str | None:
    if b is None:
        return None
    try:
        return b.decode()
    except UnicodeDecodeError:
        import base64

        return "base64:" + base64.b64encode(b).decode()


def parse(topic: str, partition: int, rec: Any, replayed: bool) -> DeadLetter | None:
    """The DeadLetter in a DLQ record, or None if the record is not one (no trailing block)."""
    headers = list(rec.headers)
    if len(headers) < _N or tuple(k for k, _ in headers[-_N:]) != HEADER_NAMES:
        return None
    vals = [(v or b"").decode(errors="replace") for _, v in headers[-_N:]]
    try:
        return DeadLetter(
            topic, partition, rec.offset, rec.key, rec.value, tuple(headers[:-_N]),
            vals[0], vals[1], vals[2], int(vals[3]), int(vals[4]), int(vals[5]), int(vals[6]),
            int(vals[7]), replayed)
    except ValueError:
        return None


def replayed_offsets(store: LogStore, tid: int, partition: int) -> tuple[int, set[int]]:
    """(replay floor, replayed offsets above it) of one DLQ partition."""
    raw = store.get(K.replay_floor_key(tid, partition))
    floor = K.unpack_u64(raw) if raw else 0
    pfx = K.replay_prefix(tid, partition)
    marks = {K.unpack_u64(k[len(pfx):]) for k, _ in store.scan(pfx)}
    return floor, marks


def read(
    store: LogStore, topic: str, *, include_replayed: bool = False,
    reasons: Sequence[str] | None = None, limit: int | None = None,
) -> Iterator[DeadLetter]:
    """The dead letters of ``topic`` in partition and offset order (records without the
    dead-letter headers are skipped)."""
    info = store.topic(topic)
    n = 0
    for p in range(info.partitions):
        floor, marks = replayed_offsets(store, info.topic_id, p)
        pos = store.log_start_offset(topic, p)
        if not include_replayed:
            pos = max(pos, floor)
        hw = store.high_watermark(topic, p)
        while pos < hw:
            recs = store.read(topic, p, pos, max_records=READ_CHUNK)
            if not len(recs):
                break
            for rec in recs:
                done = rec.offset < floor or rec.offset in marks
                if done and not include_replayed:
                    continue
                letter = parse(topic, p, rec, done)
                if letter is None or (reasons and letter.reason not in reasons):
                    continue
                yield letter
                n += 1
                if limit is not None and n >= limit:
                    return
            pos = recs.next_offset


def replay_batch(store: LogStore, letters: Sequence[DeadLetter], now_ms: int) -> WriteBatch:
    """One atomic intent: append each letter to its source, and mark it replayed.

    Letters must come from one ``read`` (so none is already replayed). The replay floor of
    each DLQ partition moves over the run of replayed offsets, and the markers it passes are
    deleted, so markers stay as few as the letters replayed out of order.
    """
    wb = WriteBatch()
    by_source: dict[tuple[str, int], list[Any]] = {}
    by_dlq: dict[tuple[str, int], list[int]] = {}
    for d in letters:
        if d.replayed:
            raise InvalidArgument(f"dead letter {d.topic}[{d.partition}]@{d.offset} was "
                                  f"already replayed")
        info = store.topic(d.source_topic)  # UnknownTopic: say which letter needs it
        if not 0 <= d.source_partition < info.partitions:
            raise UnknownPartition(d.source_topic, d.source_partition, info.partitions)
        by_source.setdefault((d.source_topic, d.source_partition), []).append(
            (d.key, d.value, list(d.headers), now_ms))
        by_dlq.setdefault((d.topic, d.partition), []).append(d.offset)
    for (topic, p), records in by_source.items():
        wb.append(topic, p, records)
    for (topic, p), offsets in by_dlq.items():
        tid = store.topic(topic).topic_id
        floor, marks = replayed_offsets(store, tid, p)
        start = store.log_start_offset(topic, p)
        new_floor = max(floor, start)
        todo = marks | set(offsets)
        while new_floor in todo:
            todo.discard(new_floor)
            new_floor += 1
        for off in marks:
            if off < new_floor:
                wb.delete(K.replay_key(tid, p, off))
        for off in todo - marks:
            if off >= new_floor:
                wb.put(K.replay_key(tid, p, off), b"")
        if new_floor != floor:
            wb.put(K.replay_floor_key(tid, p), K.pack_u64(new_floor))
    return wb


def source_problem(store: LogStore, d: DeadLetter) -> UnknownTopic | UnknownPartition | None:
    """Why ``d`` cannot be replayed (its source topic or partition is gone), as the error to
    raise, naming the letter and saying what to do; None if it can be."""
    has = store.has_topic(d.source_topic)
    return letter_problem(d, store.topic(d.source_topic).partitions if has else None)


def letter_problem(d: DeadLetter, partitions: int | None) -> UnknownTopic | UnknownPartition | None:
    """:func:`source_problem`, given how many partitions ``d``'s source topic has now (None:
    it is gone); for callers that know the topics another way (over the network)."""
    where = f"dead letter {d.topic}[{d.partition}]@{d.offset}"
    if partitions is None:
        err: UnknownTopic | UnknownPartition = UnknownTopic(d.source_topic)
        err.args = (f"{where} came from topic {d.source_topic!r}, which no longer exists: "
                    f"create it again, or leave the letter in place",)
        return err
    n = partitions
    if not 0 <= d.source_partition < n:
        err = UnknownPartition(d.source_topic, d.source_partition, n)
        err.args = (f"{where} came from partition {d.source_partition} of topic "
                    f"{d.source_topic!r}, which now has {n} (0 to {n - 1}): create the topic "
                    f"again with at least {d.source_partition + 1} partitions, or leave the "
                    f"letter in place",)
        return err
    return None


def check_sources(store: LogStore, letters: Sequence[DeadLetter]) -> None:
    """Raise a clear error (see :func:`source_problem`) if a letter's source topic or
    partition is gone."""
    for d in letters:
        err = source_problem(store, d)
        if err is not None:
            raise err


# ---- which dead-letter topics a name means


def load_declarations(
    store: LogStore,
) -> tuple[list[tuple[str, str, QueueConfig]], list[tuple[str, str, str]]]:
    """Every stored queue declaration, split into the usable ones ``(name, group, settings)``
    and the unusable ones ``(name, group, why)``.

    A declaration can be unusable if it was written by a version that accepted a value this
    one refuses (``ack_timeout=inf`` was once stored as ``null``) or if the bytes are damaged.
    Such a declaration must not stop the broker or the CLI from opening the data directory:
    it is reported here, and the broker refuses only that queue group.
    """
    good: list[tuple[str, str, QueueConfig]] = []
    bad: list[tuple[str, str, str]] = []
    for key, raw in store.scan(K.DECL):
        try:
            name, group = K.split_qkey(key[len(K.DECL):])
        except (struct.error, UnicodeDecodeError):
            name, group = repr(key[len(K.DECL):]), "?"
        try:
            d = orjson.loads(raw)
            good.append((d["name"], d["group"], QueueConfig.from_dict(d["config"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError,
                InvalidArgument) as e:
            bad.append((name, group, str(e) or type(e).__name__))
    good.sort(key=lambda t: (t[0], t[1]))
    bad.sort()
    return good, bad


def declarations(store: LogStore) -> list[tuple[str, str, QueueConfig]]:
    """Every usable declared queue group: (name, group, settings). An unusable stored
    declaration is logged and left out (see :func:`load_declarations`)."""
    good, bad = load_declarations(store)
    for name, group, why in bad:
        log.warning("queue group %s/%s has an unusable stored declaration and is ignored "
                    "(%s): delete the group and declare it again", name, group, why)
    return good


def dlq_topics(store: LogStore) -> dict[str, list[str]]:
    """Each dead-letter topic of a declared queue group, with the groups (NAME/GROUP) using it."""
    out: dict[str, list[str]] = {}
    for name, group, cfg in declarations(store):
        if cfg.dead_letter is not None:
            out.setdefault(cfg.dead_letter, []).append(f"{name}/{group}")
    return out


def resolve(store: LogStore, name: str) -> list[str]:
    """The dead-letter topic(s) ``name`` means: a queue (``NAME`` for all its groups, or
    ``NAME/GROUP``), or a dead-letter topic itself."""
    decls = declarations(store)
    mine = [(n, g, c) for n, g, c in decls if name in (n, f"{n}/{g}")]
    if mine:
        topics = sorted({c.dead_letter for _n, _g, c in mine if c.dead_letter is not None})
        if not topics:
            raise UnknownQueue(
                f"queue {name} has no dead-letter topic: declare it with dead_letter=TOPIC")
        return [t for t in topics if store.has_topic(t)]
    if store.has_topic(name):
        return [name]
    known = sorted(dlq_topics(store))
    raise UnknownQueue(
        f"no queue or dead-letter topic named {name!r}"
        + (f"; dead-letter topics: {', '.join(known)}" if known else "; no queue has one yet")
        + " (streamrt dlq list shows them)")
