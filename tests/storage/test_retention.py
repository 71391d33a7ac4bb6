"""Retention by time, size and count; compaction with tombstones; reads after deletion."""

from __future__ import annotations

import random

import pytest

import streamrt as sr
from streamrt import errors


def _fill(s: sr.LogStore, topic: str, batches: int, per: int, ts0: int = 1000) -> None:
    for b in range(batches):
        s.append_sync(topic, 0, [(None, b"%d" % (b * per + i), [], ts0 + b * 10 + i)
                                 for i in range(per)])


def test_retention_by_time(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1, sr.TopicConfig(retention_ms=50))
    _fill(s, "t", 10, 5)  # batch b holds timestamps 1000+10b .. 1000+10b+4
    # now=1100: keep batches whose newest record is >= 1050, i.e. b >= 5
    assert s.run_retention(now_ms=1100) == 5
    info = s.partition_info("t", 0)
    assert (info.log_start_offset, info.high_watermark, info.records) == (25, 50, 25)
    assert s.read("t", 0, 25)[0].value == b"25"
    with pytest.raises(errors.OffsetOutOfRange) as e:
        s.read("t", 0, 3)
    assert (e.value.log_start, e.value.high_watermark) == (25, 50)
    assert "25 to 50" in str(e.value)
    assert s.run_retention(now_ms=1100) == 0
    # everything old: the log empties but offsets go on from the high watermark
    assert s.run_retention(now_ms=10_000) == 5
    info = s.partition_info("t", 0)
    assert (info.log_start_offset, info.high_watermark, info.records, info.bytes) == (50, 50, 0, 0)
    assert s.read("t", 0, 50) == []
    assert s.append_sync("t", 0, [(None, b"new")]) == 50


def test_retention_by_size(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1, sr.TopicConfig(retention_bytes=2000))
    for _ in range(10):
        s.append_sync("t", 0, [(None, bytes(100))] * 5)
    size = s.partition_info("t", 0).bytes
    per_batch = size // 10
    s.run_retention(now_ms=0)
    info = s.partition_info("t", 0)
    assert info.bytes <= 2000 and info.bytes + per_batch > 2000
    assert info.log_start_offset == 50 - info.records


def test_retention_by_count(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1, sr.TopicConfig(retention_records=12))
    _fill(s, "t", 10, 5)
    s.run_retention(now_ms=0)
    info = s.partition_info("t", 0)
    # whole batches go: 15 records are kept (dropping one more batch would leave 10 < 12)
    assert (info.records, info.log_start_offset) == (15, 35)


def test_no_retention_keeps_all(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("t", 1)
    _fill(s, "t", 3, 2)
    assert s.run_retention(now_ms=10**15) == 0
    assert s.partition_info("t", 0).records == 6


def test_background_maintenance_runs(tmp_path) -> None:
    s = sr.LogStore.open(tmp_path / "d", maintenance_interval=0.05)
    try:
        s.create_topic_sync("t", 1, sr.TopicConfig(retention_ms=1))
        _fill(s, "t", 3, 2, ts0=1)
        import time

        deadline = time.monotonic() + 20
        while s.log_start_offset("t", 0) != 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert s.log_start_offset("t", 0) == 6
    finally:
        s.close()


def _reference_compaction(records: list[tuple[int, bytes | None, bytes | None, int]],
                          grace_edge: int) -> list[tuple[int, bytes | None, bytes | None]]:
    latest = {k: off for off, k, _v, _ts in records if k is not None}
    return [(off, k, v) for off, k, v, ts in records
            if k is None or (latest[k] == off and not (v is None and ts < grace_edge))]


@pytest.mark.parametrize("seed", range(5))
def test_compaction_matches_reference(store: sr.LogStore, seed: int) -> None:
    s = store
    rng = random.Random(seed)
    s.create_topic_sync("c", 1, sr.TopicConfig(cleanup_policy="compact", tombstone_grace_ms=100))
    written: list[tuple[int, bytes | None, bytes | None, int]] = []
    for _ in range(rng.randint(5, 30)):
        batch = []
        for _ in range(rng.randint(1, 10)):
            key = None if rng.random() < 0.05 else b"k%d" % rng.randint(0, 8)
            val = None if rng.random() < 0.2 else b"v%d" % rng.randint(0, 10**6)
            ts = rng.randint(0, 1000)
            batch.append((key, val, [], ts))
        base = s.append_sync("c", 0, batch)
        written += [(base + i, k, v, ts) for i, (k, v, _h, ts) in enumerate(batch)]
    hw = s.high_watermark("c", 0)
    removed = s.compact("c", now_ms=600)
    expected = _reference_compaction(written, grace_edge=500)
    got = [(r.offset, r.key, r.value) for r in s.read("c", 0, 0, max_records=10**6)]
    assert got == expected
    assert removed == len(written) - len(expected)
    info = s.partition_info("c", 0)
    assert info.high_watermark == hw and info.records == len(expected)
    assert info.bytes == sum(len(b) for b in s.read_raw("c", 0, 0, max_bytes=1 << 30))
    for b in s.read_raw("c", 0, 0, max_bytes=1 << 30):
        sr.storage.check_batch(b)  # rewritten batches are valid RecordBatch v2
    # reading from an offset that compaction removed returns the next surviving records
    for off in range(hw):
        assert [r.offset for r in s.read("c", 0, off, max_records=3)] == \
            [o for o, _k, _v in expected if o >= off][:3]
    # compaction is idempotent, and appends continue from the high watermark
    assert s.compact("c", now_ms=600) == 0
    assert s.append_sync("c", 0, [(b"k1", b"after")]) == hw


def test_tombstone_removed_only_after_grace(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("c", 1, sr.TopicConfig(cleanup_policy="compact", tombstone_grace_ms=1000))
    s.append_sync("c", 0, [(b"a", b"1", [], 10), (b"b", b"2", [], 10)])
    s.append_sync("c", 0, [(b"a", None, [], 500)])
    s.compact(now_ms=1000)  # tombstone younger than the grace period: it stays, "a"=1 goes
    assert [(r.key, r.value) for r in s.read("c", 0, 0)] == [(b"b", b"2"), (b"a", None)]
    s.compact(now_ms=1600)
    assert [(r.key, r.value) for r in s.read("c", 0, 0)] == [(b"b", b"2")]


def test_read_moves_past_a_compacted_tail(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("c", 1, sr.TopicConfig(cleanup_policy="compact", tombstone_grace_ms=0))
    s.append_sync("c", 0, [(b"a", b"1", [], 10)])
    s.append_sync("c", 0, [(b"b", b"1", [], 10)])
    s.append_sync("c", 0, [(b"b", None, [], 10)])  # tombstone: b's batches both go
    assert s.compact(now_ms=1000) == 2
    assert s.high_watermark("c", 0) == 3
    first = s.read("c", 0, 0)
    assert [r.offset for r in first] == [0] and first.next_offset == 3
    for off in (1, 2, 3):  # from inside the gap: nothing, and on at the watermark
        recs = s.read("c", 0, off)
        assert len(recs) == 0 and recs.next_offset == 3
    # a read cut short by max_records still continues right after what it returned
    s.append_sync("c", 0, [(b"c", b"1", [], 10), (b"d", b"1", [], 10)])
    part = s.read("c", 0, 0, max_records=2)
    assert [r.offset for r in part] == [0, 3] and part.next_offset == 4


def test_compact_ignores_delete_topics(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("d", 1)
    s.append_sync("d", 0, [(b"a", b"1"), (b"a", b"2")])
    assert s.compact() == 0
    assert s.partition_info("d", 0).records == 2
    with pytest.raises(errors.UnknownTopic):
        s.compact("nope")


def test_bad_topic_config() -> None:
    with pytest.raises(errors.InvalidArgument, match="retention_ms"):
        sr.TopicConfig(retention_ms=-1)
    for field in ("retention_ms", "retention_bytes", "retention_records", "tombstone_grace_ms"):
        with pytest.raises(errors.InvalidArgument, match=rf"{field} must be an integer from 0 to 2\*\*63-1"):
            sr.TopicConfig(**{field: 2**63})
    with pytest.raises(errors.InvalidArgument, match="cleanup_policy"):
        sr.TopicConfig(cleanup_policy="shred")  # type: ignore[arg-type]


def test_no_tombstone_grace_keeps_tombstones_forever(store: sr.LogStore) -> None:
    s = store
    s.create_topic_sync("c", 1, sr.TopicConfig(cleanup_policy="compact", tombstone_grace_ms=None))
    s.append_sync("c", 0, [(b"a", b"1", [], 10), (b"b", b"2", [], 10)])
    s.append_sync("c", 0, [(b"a", None, [], 20)])
    assert s.compact(now_ms=2**62) == 1  # "a"=1 is superseded; its tombstone stays
    assert [(r.key, r.value) for r in s.read("c", 0, 0)] == [(b"b", b"2"), (b"a", None)]
    from streamrt._cli.topics import describe

    assert "tombstone-grace-ms:  none" in describe(s, s.topic("c"))


def test_one_topics_failing_maintenance_does_not_stop_the_others(
    store: sr.LogStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    from streamrt.storage import _maintenance

    s = store
    s.create_topic_sync("a", 1, sr.TopicConfig(retention_records=2))
    s.create_topic_sync("b", 1, sr.TopicConfig(cleanup_policy="compact", retention_records=4))
    s.create_topic_sync("c", 1, sr.TopicConfig(cleanup_policy="compact"))
    for t in ("a", "b", "c"):
        for i in range(5):
            s.append_sync(t, 0, [(b"k", b"%d" % i)])
    real = _maintenance._compaction_topic

    def failing(store: sr.LogStore, txn: object, ov: object, info: sr.TopicInfo,
                now_ms: int) -> int:
        if info.name == "b":
            # write first, then fail: the write must be rolled back with the failure
            real(store, txn, ov, info, now_ms)  # type: ignore[arg-type]
            raise RuntimeError("boom")
        return real(store, txn, ov, info, now_ms)  # type: ignore[arg-type]

    monkeypatch.setattr(_maintenance, "_compaction_topic", failing)
    done = s._run_sync(_maintenance.maintenance_op(s, 10**13))
    assert s.log_start_offset("a", 0) == 3  # retention of the other topic went on
    assert s.log_start_offset("b", 0) == 1  # b's own retention committed too
    assert [r.value for r in s.read("c", 0, 0)] == [b"4"]  # and c's compaction
    assert done == 3 + 1 + 4
    assert "compaction of topic 'b' failed" in caplog.text
    # b's failed compaction left nothing behind, in LMDB or in memory
    assert [r.value for r in s.read("b", 0, 1)] == [b"1", b"2", b"3", b"4"]
    assert s.partition_info("b", 0).records == 4
    monkeypatch.setattr(_maintenance, "_compaction_topic", real)
    assert s._run_sync(_maintenance.maintenance_op(s, 10**13)) == 3  # retried next round


def test_the_largest_settings_are_stored_and_read_back(tmp_path) -> None:
    top = 2**63 - 1
    config = sr.TopicConfig(retention_ms=top, retention_bytes=top, retention_records=top,
                            cleanup_policy="compact", tombstone_grace_ms=top)
    with sr.LogStore.open(tmp_path / "d", maintenance_interval=None) as s:
        s.create_topic_sync("t", 1, config)
        s.append_sync("t", 0, [(b"k", b"v")])
        s.run_retention()
        s.compact()
        assert s.partition_info("t", 0).records == 1
    with sr.LogStore.open(tmp_path / "d", maintenance_interval=None) as s:
        assert s.topic("t").config == config


def test_reading_past_a_compacted_away_tail_reaches_the_high_watermark(
    store: sr.LogStore,
) -> None:
    s = store
    s.create_topic_sync("c", 1, sr.TopicConfig(cleanup_policy="compact", tombstone_grace_ms=0))
    s.append_sync("c", 0, [(b"a", b"1", [], 10)])
    s.append_sync("c", 0, [(b"b", b"1", [], 10)])
    s.append_sync("c", 0, [(b"b", None, [], 10)])  # b and its tombstone both go
    assert s.compact("c", now_ms=1000) == 2
    assert s.high_watermark("c", 0) == 3
    first = s.read("c", 0, 0)
    assert [r.offset for r in first] == [0] and first.next_offset == 3
    for off in (1, 2):  # from inside the gap: no records, and the position moves to the end
        rest = s.read("c", 0, off)
        assert (len(rest), rest.next_offset) == (0, 3)
    # a limit still stops short of the end when more is stored
    s.append_sync("c", 0, [(b"c", b"1", [], 10), (b"d", b"1", [], 10)])
    part = s.read("c", 0, 0, max_records=2)
    assert [r.offset for r in part] == [0, 3] and part.next_offset == 4

