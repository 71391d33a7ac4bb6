"""The Consumer API: messages and serdes, batches and iteration, long poll, standalone and
hand-assigned consumers, seek, pause/resume, lag, offset reset, and what each delivery
guarantee commits when (at-most-once before hand-out, at-least-once after, exactly-once in
one write with the outputs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import orjson
import pytest

import streamrt as sr
from streamrt import errors
from streamrt._murmur2 import partition_for_key

pytestmark = pytest.mark.anyio

FAST = dict(session_timeout=0.5, heartbeat_interval=0.05, rebalance_timeout=3.0,
            auto_offset_reset="earliest")


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[sr.Broker]:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as b:
        await b.create_topic("in", partitions=2)
        await b.create_topic("out", partitions=3)
        yield b


async def test_message_fields_and_serdes(broker: sr.Broker) -> None:
    meta = await broker.producer().send("in", {"a": 1}, key="k", headers={"h": "v"})
    async with broker.consumer("in", group="g", **FAST) as c:
        (m,) = await c.getmany(timeout=5)
    assert (m.topic, m.partition, m.offset, m.timestamp) == ("in", meta.partition, 0, meta.timestamp)
    assert m.key == b"k" and m.value == {"a": 1} and list(m.headers) == [("h", b"v")]
    await broker.producer(value_serde="str").send("in", "text", key="k")
    async with broker.consumer("in", value_serde="str", key_serde="str",
                               auto_offset_reset="earliest") as c:  # standalone
        got = await c.getmany(timeout=5)
    assert [(m.key, m.value) for m in got] == [("k", '{"a":1}'), ("k", "text")]


async def test_getmany_batches_and_iteration_is_a_wrapper(broker: sr.Broker) -> None:
    await broker.producer().send_many("in", list(range(50)), partition=0)
    async with broker.consumer("in", group="g", max_poll_records=7, **FAST) as c:
        batch = await c.getmany(max_records=20)
        assert [m.value for m in batch] == list(range(20))
        seen = []
        async for m in c:
            seen.append(m.value)
            if m.value == 49:
                break
        assert seen == list(range(20, 50))
        assert c.lag() == {("in", 0): 0, ("in", 1): 0}
        assert await c.getmany(timeout=0) == []


async def test_long_poll_wakes_on_produce(broker: sr.Broker) -> None:
    async with broker.consumer("in", group="g", **FAST) as c:
        got: list[sr.Message] = []

        async def consume() -> None:
            got.extend(await c.getmany(timeout=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            with anyio.fail_after(5):
                while ("in", 1) not in broker._watchers:  # the consumer is long-polling
                    await anyio.sleep(0.001)
                await broker.producer().send("in", "hello", partition=1)
        assert [m.value for m in got] == ["hello"]


async def test_auto_offset_reset_latest_and_earliest(broker: sr.Broker) -> None:
    p = broker.producer()
    await p.send_many("in", ["old"] * 3, partition=0)
    async with broker.consumer("in", group="late", session_timeout=0.5,
                               heartbeat_interval=0.05) as c:
        assert await c.getmany(timeout=0) == []  # latest: only what comes after joining
        await p.send("in", "new", partition=0)
        assert [m.value for m in await c.getmany(timeout=5)] == ["new"]
    async with broker.consumer("in", group="early", **FAST) as c:
        assert [m.value for m in await c.getmany(timeout=5)] == ["old"] * 3 + ["new"]


async def test_seek_pause_resume_position_lag(broker: sr.Broker) -> None:
    await broker.producer().send_many("in", list(range(10)), partition=0)
    await broker.producer().send_many("in", list(range(100, 105)), partition=1)
    async with broker.consumer("in", group="g", max_poll_records=3, **FAST) as c:
        c.pause(("in", 1))
        assert c.paused() == {("in", 1)}
        first = [m.value for m in await c.getmany(max_records=100, timeout=1)]
        assert first == list(range(10))
        assert c.lag() == {("in", 0): 0, ("in", 1): 5}
        c.seek("in", 0, 4)
        assert c.position("in", 0) == 4
        assert [m.value for m in await c.getmany(max_records=2)] == [4, 5]
        c.resume(("in", 1))
        rest = sorted(m.value for m in await c.getmany(max_records=100, timeout=1))
        assert rest == [6, 7, 8, 9, 100, 101, 102, 103, 104]
        with pytest.raises(errors.OffsetOutOfRange):
            c.seek("in", 0, 11)
        with pytest.raises(errors.InvalidArgument, match="not assigned"):
            c.seek("out", 0, 0)
        c.seek_to_beginning()
        async for m in c:  # iteration picks up after a seek
            assert m.offset == 0
            break
        c.seek_to_end()
        assert sum(c.lag().values()) == 0


async def test_pause_drops_fetched_but_unreturned(broker: sr.Broker) -> None:
    await broker.producer().send_many("in", list(range(6)), partition=0)
    async with broker.consumer("in", group="g", max_poll_records=6, **FAST) as c:
        async for m in c:  # the iterator fetched all six and handed out one
            assert m.value == 0
            break
        c.pause(("in", 0))
        assert c.position("in", 0) == 1
        c.resume(("in", 0))
        assert [m.value for m in await c.getmany(timeout=1)] == [1, 2, 3, 4, 5]


async def test_standalone_and_assigned_consumers(broker: sr.Broker) -> None:
    await broker.producer().send_many("in", ["a", "b"], partition=1)
    async with broker.consumer(auto_offset_reset="earliest") as c:
        c.assign([("in", 1)])
        assert [m.value for m in await c.getmany(timeout=1)] == ["a", "b"]
        with pytest.raises(errors.InvalidArgument, match="group"):
            await c.commit()
    async with broker.consumer(group="manual", auto_offset_reset="earliest") as c:
        c.assign([("in", 1)])
        await c.getmany(timeout=1)
        await c.commit()
    assert broker.committed("manual") == {("in", 1): 2}
    async with broker.consumer(group="manual", auto_offset_reset="earliest") as c:
        c.assign([("in", 1)])
        assert await c.getmany(timeout=0) == []  # resumes at the committed offset
    with pytest.raises(errors.InvalidArgument, match="assign"):
        broker.consumer("in", group="g").assign([("in", 0)])
    with pytest.raises(errors.UnknownTopic):
        broker.consumer("nope", group="g")
    with pytest.raises(errors.InvalidArgument):
        broker.consumer("in", group="g", guarantee="twice")


async def test_at_most_once_commits_before_handing_out(broker: sr.Broker) -> None:
    await broker.producer().send_many("in", list(range(5)), partition=0)
    async with broker.consumer("in", group="g", guarantee="at_most_once", **FAST) as c:
        batch = await c.getmany(timeout=1)
        assert len(batch) == 5
        # committed already, before any processing
        assert broker.committed("g")[("in", 0)] == 5


async def test_at_least_once_commits_what_was_processed(broker: sr.Broker) -> None:
    await broker.producer().send_many("in", list(range(5)), partition=0)
    async with broker.consumer("in", group="g", auto_commit_interval=0, **FAST) as c:
        batch = await c.getmany(max_records=3, timeout=1)
        assert broker.committed("g").get(("in", 0)) in (None, 0)  # nothing processed yet
        await c.getmany(max_records=1)  # asking again: the first batch is processed
        assert broker.committed("g")[("in", 0)] == 3
        assert len(batch) == 3
        # leaving with an error: the batch in hand is not processed, so not committed
        with pytest.raises(RuntimeError):
            async with c:
                raise RuntimeError("handler failed")
    assert broker.committed("g")[("in", 0)] == 3
    async with broker.consumer("in", group="g", **FAST) as c:
        assert [m.value for m in await c.getmany(timeout=1)] == [3, 4]


async def test_exactly_once_outputs_and_offsets_in_one_write(broker: sr.Broker) -> None:
    await broker.producer().send_many("in", list(range(6)), partition=0)
    async with broker.consumer("in", group="eos", guarantee="exactly_once", **FAST) as c:
        async with c.transaction() as tx:
            for m in await c.getmany(max_records=4, timeout=1):
                tx.send("out", {"double": m.value * 2}, key=str(m.value))
        assert tx.status == "committed"
        assert broker.committed("eos")[("in", 0)] == 4
        outs = {}
        for p in range(3):
            for r in broker.store.read("out", p, 0):
                outs[r.key] = (p, orjson.loads(r.value))
        assert outs == {str(i).encode(): (partition_for_key(str(i).encode(), 3), {"double": i * 2})
                        for i in range(4)}
        # a failing transaction writes nothing and the consumer rewinds to offset 4
        with pytest.raises(ValueError):
            async with c.transaction() as tx:
                for m in await c.getmany(timeout=1):
                    tx.send("out", m.value)
                raise ValueError("transform failed")
        assert tx.status == "aborted"
        assert sum(broker.high_watermark("out", p) for p in range(3)) == 4
        assert broker.committed("eos")[("in", 0)] == 4
        again = [m.value for m in await c.getmany(timeout=1)]
        assert again == [4, 5]
        with pytest.raises(errors.InvalidArgument, match="exactly_once"):
            async with broker.consumer("in", group="x").transaction():
                pass


async def test_fenced_transaction_writes_nothing(broker: sr.Broker) -> None:
    await broker.producer().send_many("in", list(range(4)), partition=0)
    zombie = broker.consumer("in", group="eos", guarantee="exactly_once", **FAST)
    await zombie.start()
    batch = await zombie.getmany(timeout=1)
    zombie._scope.cancel()  # it hangs: no more heartbeats
    async with broker.consumer("in", group="eos", guarantee="exactly_once", **FAST) as fresh:
        with anyio.fail_after(10):
            while len(fresh.assignment()) != 2:
                await anyio.sleep(0.005)
        with pytest.raises(errors.StaleGeneration):
            async with zombie.transaction() as tx:
                for m in batch:
                    tx.send("out", m.value)
        assert sum(broker.high_watermark("out", p) for p in range(3)) == 0
        assert broker.committed("eos").get(("in", 0), 0) == 0
        async with fresh.transaction() as tx:
            for m in await fresh.getmany(timeout=1):
                tx.send("out", m.value)
        assert len(tx) == 4
    await zombie.close()
    assert broker.committed("eos")[("in", 0)] == 4


async def test_closed_consumer(broker: sr.Broker) -> None:
    c = broker.consumer("in", group="g", **FAST)
    async with c:
        pass
    with pytest.raises(errors.ConsumerClosed):
        await c.getmany()
    async for _ in c:  # iteration just ends
        raise AssertionError("no messages after close")


async def test_undecodable_value_stops_its_partition_and_loses_nothing(broker: sr.Broker) -> None:
    raw = broker.producer(value_serde="bytes")
    await raw.send_many("in", [b"0", b"1", b"2"], partition=0)
    await raw.send_many("in", [b"10", b"11", b"not json", b"13"], partition=1)
    async with broker.consumer("in", group="g", auto_commit_interval=0, **FAST) as c:
        got: list[tuple[int, int]] = []
        errs: list[errors.DeserializationError] = []
        with anyio.fail_after(10):
            while len(errs) < 2:
                try:
                    got += [(m.partition, m.offset) for m in await c.getmany(timeout=0)]
                except errors.DeserializationError as e:
                    errs.append(e)
                    # never past a record that was not handed out
                    assert c.position("in", 1) == 2
                    assert (broker.committed("g").get(("in", 1)) or 0) <= 2
        e = errs[0]
        assert (e.topic, e.partition, e.offset) == ("in", 1, 2)
        assert isinstance(e.__cause__, orjson.JSONDecodeError)
        assert "in[1]@2" in str(e) and "seek('in', 1, 3)" in str(e)
        # every good message before the bad one came out once, in order
        assert sorted(got) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
        c.seek("in", 1, 3)  # skip it, as the error says
        assert [(m.partition, m.value) for m in await c.getmany(timeout=1)] == [(1, 13)]
    assert broker.committed("g") == {("in", 0): 3, ("in", 1): 4}


async def test_undecodable_key_is_named_and_iteration_raises(broker: sr.Broker) -> None:
    raw = broker.producer(value_serde="bytes")
    await raw.send("in", b"1", key=b"\xff\xfe", partition=0)

    class Strict:
        def dumps(self, obj: object) -> bytes:
            raise NotImplementedError

        def loads(self, data: bytes) -> object:
            return data.decode("utf-8")  # strict: raises on bad UTF-8

    async with broker.consumer("in", key_serde=Strict(), **FAST) as c:
        with anyio.fail_after(5), pytest.raises(errors.DeserializationError, match="the key of"):
            async for _ in c:
                raise AssertionError("an undecodable record was handed out")
        assert c.position("in", 0) == 0


async def test_failed_transaction_write_rewinds(broker: sr.Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    await broker.producer().send_many("in", list(range(5)), partition=0)
    async with broker.consumer("in", group="eos", guarantee="exactly_once", **FAST) as c:
        real = broker.groups.write_fenced

        async def broken(*args: object, **kwargs: object) -> None:
            raise OSError("disk on fire")  # not a StreamrtError

        monkeypatch.setattr(broker.groups, "write_fenced", broken)
        with pytest.raises(OSError):
            async with c.transaction() as tx:
                for m in await c.getmany(timeout=1):
                    tx.send("out", m.value)
        assert tx.status == "aborted" and c.position("in", 0) == 0

        # cancelled before the write was submitted: nothing written, so rewound too
        checking = anyio.Event()

        async def hangs(*args: object, **kwargs: object) -> None:
            checking.set()
            await anyio.sleep_forever()

        monkeypatch.setattr(broker.groups, "write_fenced", hangs)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: _cancel_when(checking, scope))
                async with c.transaction() as tx:
                    for m in await c.getmany(timeout=1):
                        tx.send("out", m.value)
        assert scope.cancelled_caught and tx.status == "aborted"
        assert c.position("in", 0) == 0
        monkeypatch.setattr(broker.groups, "write_fenced", real)
        async with c.transaction() as tx:
            assert [m.value for m in await c.getmany(timeout=1)] == list(range(5))
            for m in await c.getmany(timeout=0):  # (nothing more)
                tx.send("out", m.value)
    assert broker.committed("eos")[("in", 0)] == 5


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def test_cancel_during_transaction_write_waits_for_its_outcome(
    broker: sr.Broker, monkeypatch: pytest.MonkeyPatch,
) -> None:
    await broker.producer().send_many("in", list(range(3)), partition=0)
    writing, release = anyio.Event(), anyio.Event()
    real = broker.write

    async def slow_write(wb: sr.WriteBatch) -> sr.WriteResult:
        writing.set()
        await release.wait()
        return await real(wb)

    async with broker.consumer("in", group="eos", guarantee="exactly_once", **FAST) as c:
        monkeypatch.setattr(broker, "write", slow_write)
        with anyio.fail_after(10):
            with anyio.CancelScope() as scope:

                async def cancel_then_release() -> None:
                    await writing.wait()
                    scope.cancel()  # while the write is in flight
                    release.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_then_release)
                    async with c.transaction() as tx:
                        for m in await c.getmany(timeout=1):
                            tx.send("out", m.value, partition=0)
        # the write landed, and the consumer knows it: no rewind, no second output
        assert tx.status == "committed"
        assert broker.committed("eos")[("in", 0)] == 3 and broker.high_watermark("out", 0) == 3
        assert c.position("in", 0) == 3
        assert await c.getmany(timeout=0) == []


async def test_getmany_arguments(broker: sr.Broker) -> None:
    async with broker.consumer("in", group="g", **FAST) as c:
        for bad in ("3", 0, -1, 2.0, True):
            with pytest.raises(errors.InvalidArgument, match="max_records"):
                await c.getmany(max_records=bad)
        for bad_timeout in (float("nan"), -1, "1", True):
            with pytest.raises(errors.InvalidArgument, match="timeout"):
                await c.getmany(timeout=bad_timeout)
        await broker.producer().send_many("in", list(range(5)), partition=0)
        assert len(await c.getmany(max_records=2)) == 2

        # timeout=None waits until messages come, as QueueConsumer.get(timeout=None) does
        got: list[sr.Message] = []

        async def wait_forever() -> None:
            got.extend(await c.getmany(max_records=10, timeout=None))

        await c.getmany(max_records=10, timeout=0)  # drain
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_forever)
            with anyio.fail_after(5):
                while ("in", 1) not in broker._watchers:  # it is waiting
                    await anyio.sleep(0.001)
                await broker.producer().send("in", "late", partition=1)
        assert [m.value for m in got] == ["late"]


async def test_commit_arguments_are_checked(broker: sr.Broker) -> None:
    await broker.producer().send_many("in", list(range(5)), partition=0)
    async with broker.consumer("in", group="g", **FAST) as c:
        await c.getmany(timeout=1)
        bad_args: list[object] = [
            {("nope", 0): 3}, {("in", 5): 3}, {"in": 3}, {("in",): 3}, {("in", "0"): 3},
            {("in", 0): True}, {("in", 0): "3"}, {("in", 0): -1}, {("in", 0): 6}, [("in", 0)],
            {("in", 0): 2, ("out", 0): 1},  # one bad entry: nothing of it is committed
        ]
        for bad in bad_args:
            with pytest.raises(errors.InvalidArgument, match="commit"):
                await c.commit(bad)  # type: ignore[arg-type]
        assert broker.committed("g").get(("in", 0)) in (None, 0)
        await c.commit({("in", 0): 2})
        assert broker.committed("g")[("in", 0)] == 2


async def test_clients_of_a_closed_broker_say_so(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as b:
        await b.create_topic("t", partitions=1)
        p = b.producer()
        await p.send("t", 1)
        c = b.consumer("t", auto_offset_reset="earliest")
        await c.start()
    with pytest.raises(errors.StoreClosed, match="broker is closed"):
        await p.send("t", 2)
    with pytest.raises(errors.StoreClosed, match="broker is closed"):
        p.send_soon("t", 2)
    with pytest.raises(errors.StoreClosed, match="broker is closed"):
        await p.send_many("t", [2])
    with pytest.raises(errors.ConsumerClosed, match="broker that is closed"):
        await c.getmany(timeout=0.1)
    await c.close()
