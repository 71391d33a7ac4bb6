"""Retention and compaction, run as writer operations (so they commit like any other write).

Retention deletes whole batches from the head of a partition while the oldest batch is past
``retention_ms`` (its newest timestamp is older than now minus the limit), or the partition is
over ``retention_bytes``, or it keeps more than ``retention_records`` without that batch. The
log start offset moves to the first batch left (or to the high watermark when none is).

Compaction (``cleanup_policy="compact"``) keeps the latest record of each key: a batch is
rewritten without superseded records, keeping its base offset and every kept record's offset
and timestamp (offsets are never reused; the high watermark does not move). A record whose
value is None is a tombstone: it deletes its key and is itself removed once older than
``tombstone_grace_ms`` (never if it is None), so that consumers that were behind still see
the delete. Records
without a key are kept. The whole partition is compacted in one transaction: fine for the
sizes one machine holds, but a very large compacted partition stalls writes while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lmdb
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from . import _codec
from ._writer import Op, Overlay

if TYPE_CHECKING:
    from ._store import LogStore
    from ._types import TopicInfo

log = logging.getLogger(__name__)


def retention_op(store: LogStore, now_ms: int) -> Op:
    def op(txn: Any, ov: Overlay) -> int:
        return _retention(store, txn, ov, now_ms)

    return op


def compaction_op(store: LogStore, topic: str | None, now_ms: int) -> Op:
    def op(txn: Any, ov: Overlay) -> int:
        return _compaction(store, txn, ov, topic, now_ms)

    return op


def maintenance_op(store: LogStore, now_ms: int) -> Op:
    """The background round: every topic's retention, then its compaction, each in a nested
    transaction of its own. A topic whose retention or compaction fails (a bug, a damaged
    batch) is logged by name and rolled back alone; the other topics' work still commits.
    LMDB errors (map full, disk full) still fail the whole round, as the writer expects."""

    def op(txn: Any, ov: Overlay) -> int:
        done = 0
        for info in store.topics():
            if _has_retention(info):
                done += _isolated(store, txn, ov, info, "retention",
                                  lambda t, o, i: _retention_topic(store, t, o, i, now_ms))
            if info.config.cleanup_policy == "compact":
                done += _isolated(store, txn, ov, info, "compaction",
                                  lambda t, o, i: _compaction_topic(store, t, o, i, now_ms))
        return done

    return op


def _isolated(
    store: LogStore, txn: Any, ov: Overlay, info: TopicInfo, what: str,
    work: Callable[[Any, Overlay, TopicInfo], int],
) -> int:
    """``work`` for one topic in a nested transaction: its failure undoes only its own writes
    (in LMDB and in the overlay), is logged naming the topic, and counts as nothing done."""
    child = store._data.env.begin(write=True, parent=txn)
    mine: dict[Any, Any] = {}
    try:
        n = work(child, Overlay(ov, mine), info)  # type: ignore[arg-type]
    except lmdb.Error:
        child.abort()
        raise
    except Exception:
        child.abort()
        log.exception("%s of topic %r failed; it is retried next round, other topics go on",
                      what, info.name)
        return 0
    child.commit()
    for key, value in mine.items():
        ov.set(key, value)
    return n


def _has_retention(info: TopicInfo) -> bool:
    c = info.config
    return not (c.retention_ms is None and c.retention_bytes is None
                and c.retention_records is None)


def _retention(store: LogStore, txn: Any, ov: Overlay, now_ms: int) -> int:
    return sum(_retention_topic(store, txn, ov, info, now_ms)
               for info in store.topics() if _has_retention(info))


def _retention_topic(store: LogStore, txn: Any, ov: Overlay, info: TopicInfo, now_ms: int) -> int:
    from ._store import _LK, _PK, _PS

    log_db, parts_db = store._dbs["log"], store._dbs["parts"]
    deleted = 0
    c = info.config
    tid = info.topic_id
    for p in range(info.partitions):
        nxt, start, recs, nbytes = store._part(tid, p, ov)
        pfx = _PK.pack(tid, p)
        cur = txn.cursor(db=log_db)
        changed = False
        if cur.set_range(pfx):
            while cur.key()[:8] == pfx:
                h = _codec.parse_header(cur.value())
                if not (
                    (c.retention_ms is not None and h.max_timestamp < now_ms - c.retention_ms)
                    or (c.retention_bytes is not None and nbytes > c.retention_bytes)
                    or (c.retention_records is not None
                        and recs - h.record_count >= c.retention_records)
                ):
                    break
                recs -= h.record_count
                nbytes -= h.size
                changed = True
                deleted += 1
                cur.delete()  # moves to the next batch
            key = cur.key()
            start_now = _LK.unpack(key)[2] if key[:8] == pfx else nxt
        else:
            start_now = nxt
        if changed:
            state = (nxt, max(start, start_now), recs, nbytes)
            txn.put(_PK.pack(tid, p), _PS.pack(*state), db=parts_db)
            ov.set(("p", tid, p), state)
    return deleted


def _compaction(store: LogStore, txn: Any, ov: Overlay, only: str | None, now_ms: int) -> int:
    return sum(_compaction_topic(store, txn, ov, info, now_ms) for info in store.topics()
               if info.config.cleanup_policy == "compact" and only in (None, info.name))


def _compaction_topic(
    store: LogStore, txn: Any, ov: Overlay, info: TopicInfo, now_ms: int,
) -> int:
    from ._store import _PK, _PS

    log_db, parts_db = store._dbs["log"], store._dbs["parts"]
    removed = 0
    grace = info.config.tombstone_grace_ms
    # With no grace limit no record is older than the edge: tombstones stay.
    grace_edge = -(2**63) if grace is None else now_ms - grace
    tid = info.topic_id
    for p in range(info.partitions):
        pfx = _PK.pack(tid, p)
        # Pass 1: the latest offset of every key.
        latest: dict[bytes, int] = {}
        cur = txn.cursor(db=log_db)
        if not cur.set_range(pfx):
            continue
        for key, val in cur:
            if key[:8] != pfx:
                break
            for r in _codec.iter_records(val):
                if r.key is not None:
                    latest[r.key] = r.offset
        # Pass 2: rewrite batches that hold superseded records or old tombstones.
        nxt, start, recs, nbytes = store._part(tid, p, ov)
        changed = False
        rewrites: list[tuple[bytes, bytes | None]] = []
        cur.set_range(pfx)
        for key, val in cur:
            if key[:8] != pfx:
                break
            h = _codec.parse_header(val)
            records = list(_codec.iter_records(val))
            kept = [
                r for r in records
                if r.key is None
                or (latest[r.key] == r.offset and not (r.value is None and r.timestamp < grace_edge))
            ]
            if len(kept) == len(records):
                continue
            removed += len(records) - len(kept)
            recs -= len(records) - len(kept)
            nbytes -= h.size
            if kept:
                new = _rebuild(h, kept)
                nbytes += len(new)
                rewrites.append((bytes(key), new))
            else:
                rewrites.append((bytes(key), None))
            changed = True
        for key, new in rewrites:
            if new is None:
                txn.delete(key, db=log_db)
            else:
                txn.put(key, new, db=log_db)
        if changed:
            state = (nxt, start, recs, nbytes)
            txn.put(_PK.pack(tid, p), _PS.pack(*state), db=parts_db)
            ov.set(("p", tid, p), state)
    return removed


def _rebuild(h: _codec.BatchHeader, kept: list[Any]) -> bytes:
    """A batch holding only ``kept``, with the same base offset and producer fields."""
    builder = DefaultRecordBatchBuilder(
        2, 0, 1 if h.attributes & _codec.TRANSACTIONAL_FLAG else 0,
        h.producer_id, h.producer_epoch, h.base_sequence, _codec.MAX_BATCH_BYTES,
    )
    for r in kept:
        builder.append(r.offset - h.base_offset, r.timestamp, r.key, r.value, list(r.headers))
    return _codec.rebase(bytes(builder.build()), h.base_offset)
