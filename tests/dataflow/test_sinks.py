"""Sinks: keys that compare equal keep their own bytes; at-least-once write grouping; results
that cannot be written and failing sink functions are reported with their step."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from _results import read_topic

import streamrt as sr
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

    def write_soon(self, wb: WriteBatch) -> Any:
        """As the broker's: queued now, durable when awaited (here: at once)."""
        from streamrt.storage import iter_records

        self.produced += [(p, list(iter_records(b))) for _t, p, b in wb.appends]

        class Done:
            async def wait(self) -> None:
                return None

        return Done()


def test_equal_keys_of_different_types_keep_their_own_bytes() -> None:
    sink = _sinks.TopicSink(_Broker(), "t", hold=True)
    keys: list[Any] = [1, True, 1.0, "1", (1, 2), [1, 2], None, 1, True, [1, 2]]
    sink.add(Batch(list(range(len(keys))), keys, [0] * len(keys)))
    wb = WriteBatch()
    sink.drain_into(wb)
    from streamrt.storage import iter_records

    got = {r.value: (p, r.key) for _t, p, b in wb.appends for r in iter_records(b)}
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
        assert sink.npending == 0 and not sink.builders and len(wb.appends) == 1

    trio.run(main)


def test_exactly_once_encodes_held_outputs_in_order(monkeypatch: Any) -> None:
    monkeypatch.setattr(_sinks, "BATCH_RECORDS", 3)
    sink = _sinks.TopicSink(_Broker(), "t", hold=True)
    for lo in range(0, 20, 4):
        sink.add(Batch(list(range(lo, lo + 4)), ["k"] * 4, [0] * 4))
    assert len(sink.encoded) == 6 and sum(b.n for b in sink.builders.values()) == 2
    wb = WriteBatch()
    sink.drain_into(wb)
    from streamrt.storage import iter_records

    values = [r.value for _t, _p, b in wb.appends for r in iter_records(b)]
    assert values == [str(i).encode() for i in range(20)]
    assert {p for _t, p, _b in wb.appends} == {positive_hash(b"k") % 7}


def test_at_least_once_flushes_do_not_wait_for_commits_but_settle_does(monkeypatch: Any) -> None:
    """A flush queues its write and goes on (at most MAX_IN_FLIGHT at once); settle() waits
    for all of them, as the runner does before each checkpoint."""
    monkeypatch.setattr(_sinks, "FLUSH_DELAY", 0.0)
    released: list[trio.Event] = []

    class Slow(_Broker):
        def write_soon(self, wb: WriteBatch) -> Any:
            ev = trio.Event()
            released.append(ev)

            class Pending:
                async def wait(self) -> None:
                    await ev.wait()

            return Pending()

    sink = _sinks.TopicSink(Slow(), "t", hold=False)

    async def main() -> None:
        for _ in range(_sinks.MAX_IN_FLIGHT):
            sink.add(Batch([1], None, [0]))
            with trio.fail_after(5):
                await sink.flush()  # returns although nothing committed
        assert len(sink.in_flight) == _sinks.MAX_IN_FLIGHT
        async with trio.open_nursery() as n:
            done: list[str] = []

            async def one_more() -> None:
                sink.add(Batch([2], None, [0]))
                await sink.flush()
                done.append("flush")

            n.start_soon(one_more)
            await trio.testing.wait_all_tasks_blocked()
            assert done == []  # the oldest write must land first
            released[0].set()
        assert done == ["flush"]
        for ev in released:
            ev.set()
        await sink.settle()
        assert sink.in_flight == []

    trio.run(main)


def _nonjson_app(on_error: str) -> Any:
    app = sr.App("nonjson", on_error=on_error)  # type: ignore[arg-type]
    (app.stream([1, 2, 3, 4], name="src")
        .map(lambda x: {"tags": {x}} if x in (2, 3) else {"x": x}, name="tag")
        .to(app.topic("out")))
    return app


def test_a_result_that_is_not_json_is_dead_lettered_and_the_others_written(tmp_path: Any) -> None:
    r = _nonjson_app("dead_letter").run(data_dir=tmp_path / "d")
    assert (r.records_out, r.dead_lettered) == (2, 2)
    assert read_topic(tmp_path / "d", "out") == [{"x": 1}, {"x": 4}]
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        dead = list(log.read("nonjson.dlq", 0, 0))
    assert [d.value for d in dead] == [b"{'tags': {2}}", b"{'tags': {3}}"]
    assert all(dict(d.headers)["step"] == b"step 'to0' (to topic 'out')" for d in dead)


def test_a_result_that_is_not_json_fails_the_run_naming_the_step(tmp_path: Any) -> None:
    with pytest.raises(sr.PipelineError, match=r"step 'to0' \(to topic 'out'\) cannot write "
                                               r"\{'tags': \{2\}\}: Type is not JSON serializable: "
                                               r"set; make the step before it return JSON"):
        _nonjson_app("fail").run(data_dir=tmp_path / "d")


def test_a_failing_sink_function_is_named_with_its_line(tmp_path: Any) -> None:
    def send(e: Any) -> None:
        raise ConnectionError("db down")

    app = sr.App("sinkerr")
    app.stream([1, 2, 3]).sink(send)
    with pytest.raises(sr.PipelineError, match=r"step 'sink0' \(sink, send at .*test_sinks.py:\d+\) "
                                               r"raised ConnectionError\('db down'\)"):
        app.run(data_dir=tmp_path / "d")
