"""The partition cursor: taking records a few at a time gives exactly what one read gives,
whatever the chunk sizes, limits and restarts, and decodes each stored batch once."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from streamrt import errors
from streamrt.broker import _queue_reader
from streamrt.broker._queue_reader import PartitionCursor


def fill(store: Any, sizes: list[int]) -> int:
    store.create_topic_sync("t", 1)
    n = 0
    for k in sizes:
        store.append_sync("t", 0, [(None, b"%d" % (n + i)) for i in range(k)])
        n += k
    return n


@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
       steps=st.lists(st.tuples(st.integers(1, 30), st.integers(0, 30)), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_chunks_add_up_to_the_log(tmp_path_factory: pytest.TempPathFactory, sizes: list[int],
                                  steps: list[tuple[int, int]]) -> None:
    import streamrt as sr

    with sr.LogStore.open(tmp_path_factory.mktemp("d"), durability="none",
                          maintenance_interval=None) as store:
        total = fill(store, sizes)
        cur = PartitionCursor(store, "t", 0)
        got: list[int] = []
        pos = 0
        for n, ahead in steps:
            end = min(total, pos + ahead)  # the window's limit moves in steps too
            recs = cur.take(pos, end, n)
            assert len(recs) == min(n, end - pos)
            assert [r.offset for r in recs] == list(range(pos, pos + len(recs)))
            got += [int(r.value) for r in recs]
            pos += len(recs)
        assert got == list(range(pos))


def test_each_batch_is_decoded_once(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(store, [500, 500])
    calls: list[int] = []
    real = _queue_reader.iter_records

    def counting(buf: bytes) -> Any:
        calls.append(len(buf))
        return real(buf)

    monkeypatch.setattr(_queue_reader, "iter_records", counting)
    cur = PartitionCursor(store, "t", 0)
    pos = 0
    while pos < 1000:
        pos += len(cur.take(pos, 1000, 7))
    assert len(calls) == 2


def test_a_moved_position_starts_afresh_and_bad_offsets_raise(store: Any) -> None:
    fill(store, [10, 10, 10])
    cur = PartitionCursor(store, "t", 0)
    assert [r.offset for r in cur.take(0, 30, 3)] == [0, 1, 2]
    assert [r.offset for r in cur.take(15, 30, 3)] == [15, 16, 17]  # someone skipped ahead
    assert [r.offset for r in cur.take(18, 20, 5)] == [18, 19]  # the window's end
    assert [r.offset for r in cur.take(20, 30, 2)] == [20, 21]
    with pytest.raises(errors.OffsetOutOfRange):  # the actor turns these into skip_to
        PartitionCursor(store, "t", 0).take(31, 40, 1)
