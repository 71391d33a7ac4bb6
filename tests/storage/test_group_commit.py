"""Write intents in one group commit: a failing condition rejects that intent alone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import streamrt as sr
from streamrt import errors
from streamrt._wake import SyncWaiter
from streamrt.storage import build_batch


def _hold_writer(s: sr.LogStore) -> tuple[threading.Event, SyncWaiter]:
    """Occupy the writer thread until the returned event is set, so that the intents
    submitted meanwhile are drained into one group commit."""
    started, release = threading.Event(), threading.Event()

    def blocker(txn: Any, ov: Any) -> None:
        started.set()
        assert release.wait(30)

    w = SyncWaiter()
    s._writer.submit(blocker, w)
    assert started.wait(30)
    return release, w


def _in_one_group(s: sr.LogStore, calls: list[Callable[[], Any]]) -> list[Any]:
    release, bw = _hold_writer(s)
    before = s.stats()["commits"]
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as e:  # collected and asserted by the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    # wait until every intent is queued behind the blocker
    deadline = threading.Event()
    for _ in range(3000):
        if s._writer._queue.qsize() >= len(calls):
            break
        deadline.wait(0.01)
    assert s._writer._queue.qsize() >= len(calls)
    release.set()
    bw.wait()
    for t in threads:
        t.join(30)
    assert s.stats()["commits"] == before + 2  # the blocker's group, then all of ours together
    return results


def test_stale_generation_rejected_alone(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1)
    wb = sr.WriteBatch()
    wb.set_generation("g", 5)
    s.write_sync(wb)

    def good_append() -> Any:
        return s.append_sync("t", 0, [(None, b"a")])

    def zombie() -> Any:
        wb = sr.WriteBatch()
        wb.append("t", 0, [(None, b"zombie output")])
        wb.commit("g", {("t", 0): 1}, generation=4)
        return s.write_sync(wb)

    def current() -> Any:
        wb = sr.WriteBatch()
        wb.commit("g", {("t", 0): 7}, generation=5)
        wb.put(b"state-key", b"state-value")
        return s.write_sync(wb)

    r = _in_one_group(s, [good_append, zombie, current])
    assert r[0] == 0
    assert isinstance(r[1], errors.StaleGeneration) and "generation 4" in str(r[1])
    assert isinstance(r[2], sr.WriteResult)
    assert [x.value for x in s.read("t", 0, 0)] == [b"a"]  # the zombie's append is not there
    assert s.committed("g") == {("t", 0): 7}
    assert s.get(b"state-key") == b"state-value"


def test_sequence_checks_in_one_group(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1)

    def batch(seq: int, n: int = 2, epoch: int = 0) -> bytes:
        return build_batch([(None, f"{seq}.{i}".encode()) for i in range(n)],
                           producer_id=42, producer_epoch=epoch, base_sequence=seq)

    assert s.append_raw_sync("t", 0, batch(0)) == 0
    calls = [
        lambda: s.append_raw_sync("t", 0, batch(2)),  # next in sequence: lands
        lambda: s.append_raw_sync("t", 0, batch(0)),  # duplicate: rejected
        lambda: s.append_raw_sync("t", 0, batch(9)),  # gap: rejected
        lambda: s.append_sync("t", 0, [(None, b"plain")]),  # no producer id: lands
        lambda: s.append_raw_sync("t", 0, batch(4)),  # next after the first one: lands
    ]
    r = _in_one_group(s, calls)
    assert r[0] == 2 and r[3] == 4 and r[4] == 5
    assert isinstance(r[1], errors.DuplicateSequence)
    assert isinstance(r[2], errors.OutOfOrderSequence)
    vals = [x.value for x in s.read("t", 0, 0)]
    assert vals == [b"0.0", b"0.1", b"2.0", b"2.1", b"plain", b"4.0", b"4.1"]
    # a new epoch restarts at 0; the old epoch is then fenced
    assert s.append_raw_sync("t", 0, batch(0, epoch=1)) == 7
    with pytest.raises(errors.ProducerFenced):
        s.append_raw_sync("t", 0, batch(6, epoch=0))
    with pytest.raises(errors.OutOfOrderSequence):
        s.append_raw_sync("t", 0, batch(5, epoch=2))


def test_intent_is_atomic(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("a", 1)
    wb = sr.WriteBatch()
    wb.append("a", 0, [(None, b"1")])
    wb.put(b"k", b"v")
    wb.append("missing", 0, [(None, b"2")])
    with pytest.raises(errors.UnknownTopic):
        s.write_sync(wb)
    assert s.high_watermark("a", 0) == 0 and s.get(b"k") is None
    # a later good write is unaffected and gets offset 0: no gap was left
    assert s.append_sync("a", 0, [(None, b"ok")]) == 0


def test_corrupt_raw_batch_rejected(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1)
    good = build_batch([(None, b"hello")])
    bad_crc = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(errors.CorruptBatch, match="CRC"):
        s.append_raw_sync("t", 0, bad_crc)
    with pytest.raises(errors.CorruptBatch, match="length"):
        s.append_raw_sync("t", 0, good + b"x")
    with pytest.raises(errors.CorruptBatch, match="too short"):
        s.append_raw_sync("t", 0, good[:20])
    with pytest.raises(errors.CorruptBatch, match="magic"):
        s.append_raw_sync("t", 0, good[:16] + b"\x01" + good[17:])
    assert s.high_watermark("t", 0) == 0
    # a client's batch with any base offset is rebased; the CRC stays valid
    s.append_sync("t", 0, [(None, b"first")])
    assert s.append_raw_sync("t", 0, b"\x00\x00\x00\x00\x00\x00\x03\xe8" + good[8:]) == 1
    raw = s.read_raw("t", 0, 1)[0]
    assert sr.storage.check_batch(raw).base_offset == 1
    assert [r.value for r in s.read("t", 0, 1)] == [b"hello"]


def test_state_put_delete_scan(store: sr.LogStore) -> None:
    s = store
    wb = sr.WriteBatch()
    for i in range(5):
        wb.put(b"op1/" + bytes([i]), b"v%d" % i)
    wb.put(b"op2/x", b"other")
    s.write_sync(wb)
    wb = sr.WriteBatch()
    wb.delete(b"op1/\x02")
    s.write_sync(wb)
    assert [k for k, _ in s.scan(b"op1/")] == [b"op1/" + bytes([i]) for i in (0, 1, 3, 4)]
    assert s.get(b"op1/\x02") is None and s.get(b"op2/x") == b"other"
    with pytest.raises(errors.InvalidArgument):
        sr.WriteBatch().put(b"", b"x")
