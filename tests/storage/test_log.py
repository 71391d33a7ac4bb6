"""Appends and reads: dense ordered offsets, every offset readable, limits, bad input."""

from __future__ import annotations

import random
import threading

import pytest
import trio

import streamrt as sr
from streamrt import errors


def _val(p: int, i: int) -> bytes:
    return f"{p}:{i}".encode()


def test_offsets_dense_and_ordered_under_concurrent_appenders(fast_store: sr.LogStore) -> None:
    s = fast_store
    s.create_topic_sync("t", 4)
    per_task = 40
    tasks = 8  # two tasks per partition race on each partition

    async def appender(task: int) -> None:
        p = task % 4
        for i in range(per_task):
            n = 1 + (i * 7 + task) % 13
            base = await s.append("t", p, [(None, _val(task, i * 100 + j)) for j in range(n)])
            assert base >= 0

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for task in range(tasks):
                nursery.start_soon(appender, task)

    trio.run(main)
    assert s.stats()["commits"] < tasks * per_task  # group commit merged intents
    for p in range(4):
        recs = s.read("t", p, 0, max_records=1_000_000)
        assert [r.offset for r in recs] == list(range(len(recs)))
        assert len(recs) == s.high_watermark("t", p)
        # each task's own records keep their order inside the partition
        seen: dict[int, int] = {}
        for r in recs:
            task, seq = map(int, r.value.split(b":"))
            assert seq > seen.get(task, -1)
            seen[task] = seq


def test_threads_append_concurrently(fast_store: sr.LogStore) -> None:
    s = fast_store
    s.create_topic_sync("t", 2)
    bases: list[tuple[int, int]] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        for i in range(50):
            b = s.append_sync("t", k % 2, [(None, b"x")] * 3)
            with lock:
                bases.append((k % 2, b))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for p in range(2):
        got = sorted(b for q, b in bases if q == p)
        assert got == list(range(0, 3 * 100, 3))


def test_read_from_every_offset(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1)
    expected: list[bytes] = []
    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(1, 20)
        vals = [_val(0, len(expected) + j) for j in range(n)]
        s.append_sync("t", 0, [(None, v) for v in vals])
        expected += vals
    hw = s.high_watermark("t", 0)
    assert hw == len(expected)
    for off in range(hw + 1):
        got = s.read("t", 0, off, max_records=5)
        assert [r.offset for r in got] == list(range(off, min(off + 5, hw)))
        assert [r.value for r in got] == expected[off: off + 5]
    assert s.read("t", 0, hw) == []


def test_limits_split_batches(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1)
    for b in range(10):
        s.append_sync("t", 0, [(None, bytes(100))] * 10)  # ~1.2 KB per batch
    # max_records cuts inside a batch
    assert len(s.read("t", 0, 3, max_records=12)) == 12
    # max_bytes stops at batch boundaries but always returns at least one batch
    one = s.read("t", 0, 0, max_bytes=1)
    assert [r.offset for r in one] == list(range(10))
    three = s.read("t", 0, 0, max_bytes=3 * 1300)
    assert len(three) == 30
    # raw reads return whole stored batches, the first one holding the offset
    raw = s.read_raw("t", 0, 15, max_bytes=1)
    assert len(raw) == 1 and sr.storage.parse_header(raw[0]).base_offset == 10
    assert len(s.read_raw("t", 0, 0)) == 10


def test_records_keep_key_headers_timestamp(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1)
    s.append_sync("t", 0, [
        sr.Record(b"v1", key=b"k1", headers=[("a", b"1"), ("b", None)], timestamp=1234),
        (b"k2", b"v2", [("c", b"3")], 99),
        (None, None),
    ])
    r = s.read("t", 0, 0)
    assert [(x.offset, x.key, x.value, list(x.headers), x.timestamp) for x in r[:2]] == [
        (0, b"k1", b"v1", [("a", b"1"), ("b", None)], 1234),
        (1, b"k2", b"v2", [("c", b"3")], 99),
    ]
    assert r[2].key is None and r[2].value is None and r[2].timestamp > 1_600_000_000_000


def test_offset_for_timestamp(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1)
    s.append_sync("t", 0, [(None, b"a", [], 100), (None, b"b", [], 200)])
    s.append_sync("t", 0, [(None, b"c", [], 300), (None, b"d", [], 250)])
    assert s.offset_for_timestamp("t", 0, 0) == 0
    assert s.offset_for_timestamp("t", 0, 150) == 1
    assert s.offset_for_timestamp("t", 0, 201) == 2
    assert s.offset_for_timestamp("t", 0, 260) == 2
    assert s.offset_for_timestamp("t", 0, 301) is None


def test_reopen_keeps_everything(tmp_path) -> None:
    d = tmp_path / "d"
    with sr.LogStore.open(d, maintenance_interval=None) as s:
        s.create_topic_sync("t", 2, sr.TopicConfig(retention_ms=1000))
        s.append_sync("t", 1, [(b"k", b"v")] * 5)
        s.commit_sync("g", {("t", 1): 4})
    with sr.LogStore.open(d, maintenance_interval=None) as s:
        assert s.topic("t").partitions == 2 and s.topic("t").config.retention_ms == 1000
        assert s.high_watermark("t", 1) == 5
        assert s.committed("g") == {("t", 1): 4}
        assert s.append_sync("t", 1, [(None, b"w")]) == 5


def test_create_topic_is_idempotent_but_refuses_other_settings(store: sr.LogStore) -> None:
    a = store.create_topic_sync("t", 3)
    assert store.create_topic_sync("t", 3) == a
    with pytest.raises(errors.TopicExists, match="already exists with 3 partitions"):
        store.create_topic_sync("t", 4)
    with pytest.raises(errors.TopicExists):
        store.create_topic_sync("t", 3, sr.TopicConfig(retention_ms=5))


@pytest.mark.parametrize("name", ["", "a b", "x/y", "é", ".", "..", "a" * 250, None, 5])
def test_invalid_topic_names(store: sr.LogStore, name: object) -> None:
    with pytest.raises(errors.InvalidTopicName, match=r"\[|letters"):
        store.create_topic_sync(name, 1)  # type: ignore[arg-type]


def test_valid_long_name(store: sr.LogStore) -> None:
    store.create_topic_sync("a.B_c-9" + "x" * 242, 1)


@pytest.mark.parametrize("parts", [0, -1, 10_001, 1.5, "2", True])
def test_invalid_partition_counts(store: sr.LogStore, parts: object) -> None:
    with pytest.raises(errors.InvalidArgument, match="partitions must be"):
        store.create_topic_sync("t", parts)  # type: ignore[arg-type]


def test_bad_input_errors(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 2)
    with pytest.raises(errors.UnknownTopic, match="create it first"):
        s.append_sync("nope", 0, [(None, b"x")])
    # the suggested command is one a shell runs as written (it then names a bad name as such)
    assert "topics create 'bad name' --partitions N" in str(errors.UnknownTopic("bad name"))
    with pytest.raises(errors.UnknownTopic):
        s.read("nope", 0, 0)
    with pytest.raises(errors.UnknownPartition, match="0 to 1"):
        s.append_sync("t", 2, [(None, b"x")])
    with pytest.raises(errors.UnknownPartition):
        s.read("t", -1, 0)
    with pytest.raises(errors.OffsetOutOfRange, match="0 to 0"):
        s.read("t", 0, -1)
    with pytest.raises(errors.OffsetOutOfRange):
        s.read("t", 0, 1)
    with pytest.raises(errors.InvalidArgument, match="bytes"):
        s.append_sync("t", 0, [(None, "a string")])
    with pytest.raises(errors.InvalidArgument, match="bytes"):
        s.append_sync("t", 0, [(123, b"v")])
    with pytest.raises(errors.InvalidArgument, match="at least one record"):
        s.append_sync("t", 0, [])
    with pytest.raises(errors.InvalidArgument, match="tuple"):
        s.append_sync("t", 0, [(1, 2, 3, 4, 5)])
    with pytest.raises(errors.InvalidArgument, match="Record"):
        s.append_sync("t", 0, [object()])
    with pytest.raises(errors.InvalidArgument, match="offset"):
        s.commit_sync("g", {("t", 0): -3})
    with pytest.raises(errors.UnknownTopic):
        s.commit_sync("g", {("nope", 0): 3})
    # nothing of the failed calls was written
    assert s.high_watermark("t", 0) == 0 and s.committed("g") == {}


def test_delete_topic_removes_records_and_offsets(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 2)
    s.append_sync("t", 0, [(None, b"x")] * 3)
    s.commit_sync("g", {("t", 0): 2})
    s.delete_topic_sync("t")
    assert not s.has_topic("t")
    with pytest.raises(errors.UnknownTopic):
        s.read("t", 0, 0)
    assert s.committed("g") == {}
    s.create_topic_sync("t", 1)
    assert s.high_watermark("t", 0) == 0 and s.read("t", 0, 0) == []
    with pytest.raises(errors.UnknownTopic):
        s.delete_topic_sync("other")


def test_closed_store_refuses(tmp_path) -> None:
    s = sr.LogStore.open(tmp_path / "d", maintenance_interval=None)
    s.create_topic_sync("t")
    s.close()
    with pytest.raises(errors.StoreClosed):
        s.append_sync("t", 0, [(None, b"x")])
    # reads too: a typed error saying what to do, never lmdb.Error from inside
    for read in (lambda: s.read("t", 0, 0), lambda: s.read_raw("t", 0, 0),
                 lambda: s.offset_for_timestamp("t", 0, 0), lambda: s.committed("g"),
                 s.groups, lambda: s.generation("g"), lambda: s.get(b"k"),
                 lambda: s.scan(b"k")):
        with pytest.raises(errors.StoreClosed, match="closed; open it again"):
            read()


def test_asyncio_backend(tmp_path) -> None:
    import asyncio

    async def main() -> list[int]:
        s = sr.LogStore.open(tmp_path / "d", maintenance_interval=None)
        try:
            await s.create_topic("t", 1)
            bases = await asyncio.gather(*(s.append("t", 0, [(None, b"x")] * 2) for _ in range(10)))
            return sorted(bases)
        finally:
            s.close()

    assert asyncio.run(main()) == list(range(0, 20, 2))


def test_read_result_is_lazy_but_complete(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1)
    for b in range(4):
        s.append_sync("t", 0, [(None, b"%d" % (b * 5 + i)) for i in range(5)])
    recs = s.read("t", 0, 3, max_records=9)
    assert len(recs) == 9 and recs.next_offset == 12
    assert [r.offset for r in recs] == list(range(3, 12))
    assert [r.offset for r in recs] == list(range(3, 12))  # iterable more than once
    assert recs[0].value == b"3" and recs[-1].value == b"11" and recs[2:4][0].offset == 5
    assert len(recs.batches) == 3
    end = s.read("t", 0, 20)
    assert len(end) == 0 and not end and end.next_offset == 20 and end == []


def test_next_offset_skips_compacted_gaps(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("c", 1, sr.TopicConfig(cleanup_policy="compact"))
    s.append_sync("c", 0, [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"c", b"1")])
    s.append_sync("c", 0, [(b"b", b"2"), (b"d", b"1")])
    s.compact("c")
    recs = s.read("c", 0, 0, max_records=2)
    assert [(r.offset, r.key) for r in recs] == [(2, b"a"), (3, b"c")] and recs.next_offset == 4
    recs = s.read("c", 0, recs.next_offset)
    assert [(r.offset, r.key) for r in recs] == [(4, b"b"), (5, b"d")] and recs.next_offset == 6


def test_reads_never_pass_the_published_high_watermark(store: sr.LogStore) -> None:
    """A batch is in LMDB a moment before the writer publishes the new high watermark; a read
    in that moment must stop at the published one (else a reader runs past the end)."""
    s = store
    s.create_topic_sync("t", 1)
    s.append_sync("t", 0, [(None, b"a")])
    committed, release = threading.Event(), threading.Event()
    publish = s._writer._publish

    def slow_publish(overlay: dict) -> None:
        committed.set()
        assert release.wait(30)
        publish(overlay)

    s._writer._publish = slow_publish  # type: ignore[method-assign]
    t = threading.Thread(target=s.append_sync, args=("t", 0, [(None, b"b")]))
    t.start()
    try:
        assert committed.wait(30)  # committed in LMDB, not yet published
        assert s.high_watermark("t", 0) == 1
        recs = s.read("t", 0, 0)
        assert [r.value for r in recs] == [b"a"] and recs.next_offset == 1
        assert len(s.read_raw("t", 0, 0)) == 1
    finally:
        release.set()
        t.join(30)
    assert [r.value for r in s.read("t", 0, 0)] == [b"a", b"b"]
