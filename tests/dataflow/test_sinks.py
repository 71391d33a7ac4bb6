"""Topic sinks: keys that compare equal keep their own bytes; at-least-once write grouping."""

from __future__ import annotations

from typing import Any

import trio

from operators import Batch
from streamrt._murmur2 import positive_hash
from streamrt._serde import key_bytes
from streamrt.dataflow import _sinks
from streamrt.storage import WriteBatch


class _Broker:
    def __init__(self) -> None:
        self.produced: list[tuple[int, list[Any]]] = []

    def topic(self, name: str) -> Any:
        return type("T", (), {"partitions": 7})()

    async def write(self, wb: WriteBatch) -> None:
        from streamrt.storage import iter_records

        self.produced += [(p, list(iter_records(b))) for _t, p, b in wb.appends]


def test_equal_keys_of_different_types_keep_their_own_bytes() -> None:
    sink = _sinks.TopicSink(_Broker(), "t", hold=True)
    keys: list[Any] = [1, True, 1.0, "1", (1, 2), [1, 2], None, 1, True, [1, 2]]
    sink.add(Batch(list(range(len(keys))), keys, [0] * len(keys)))
    got = {rec[1]: (p, rec[0]) for p, recs in sink.pending.items() for rec in recs}
    for i, k in enumerate(keys):
        kb = key_bytes(k)
        assert got[str(i).encode()] == (positive_hash(kb) % 7 if kb is not None else 0, kb)


def test_at_least_once_groups_writes_and_the_checkpoint_takes_the_rest(monkeypatch: Any) -> None:
    monkeypatch.setattr(_sinks, "FLUSH_DELAY", 3600.0)
    broker = _Broker()
    sink = _sinks.TopicSink(broker, "t", hold=False)

    async def main() -> None:
        sink.add(Batch(list(range(10)), None, [0] * 10))
        await sink.flush()
        assert broker.produced == []  # too few, too recent
        sink.add(Batch(list(range(_sinks.FLUSH_RECORDS)), None, [0] * _sinks.FLUSH_RECORDS))
        await sink.flush()
        assert sum(len(c) for _, c in broker.produced) == 10 + _sinks.FLUSH_RECORDS
        sink.add(Batch([1], None, [0]))
        wb = WriteBatch()
        sink.drain_into(wb)
        assert sink.npending == 0 and not sink.pending

    trio.run(main)


def test_exactly_once_encodes_held_outputs_in_order(monkeypatch: Any) -> None:
    monkeypatch.setattr(_sinks, "ENCODE_RECORDS", 3)
    sink = _sinks.TopicSink(_Broker(), "t", hold=True)
    for lo in range(0, 20, 4):
        sink.add(Batch(list(range(lo, lo + 4)), ["k"] * 4, [0] * 4))
    assert sink.encoded and sum(len(r) for r in sink.pending.values()) < 3
    wb = WriteBatch()
    sink.drain_into(wb)
    from streamrt.storage import iter_records

    values = [r.value for _t, _p, b in wb.appends for r in iter_records(b)]
    assert values == [str(i).encode() for i in range(20)]
    assert {p for _t, p, _b in wb.appends} == {positive_hash(b"k") % 7}
