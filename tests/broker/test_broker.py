"""The broker facade and producer: partition actors, long-poll fetch, batching, supervision."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

import streamrt as sr
from streamrt import errors
from streamrt._murmur2 import partition_for_key
from streamrt.storage import build_batch

pytestmark = pytest.mark.anyio


async def test_send_resolves_with_offsets_and_keys_partition_by_murmur2(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("orders", partitions=4)
        producer = broker.producer()
        meta = await producer.send("orders", {"id": 1}, key="customer-7", headers={"h": "v"})
        assert meta.partition == partition_for_key(b"customer-7", 4)
        assert meta.offset == 0 and meta.topic == "orders"
        recs = await broker.fetch("orders", meta.partition, 0)
        (r,) = list(recs)
        assert orjson.loads(r.value) == {"id": 1} and r.key == b"customer-7"
        assert list(r.headers) == [("h", b"v")] and r.timestamp == meta.timestamp


async def test_concurrent_sends_share_batches(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=2)
        producer = broker.producer(linger=0.01)
        before = broker.store.stats()["commits"]
        metas = []
        called: list[int] = []  # the order send() was called in (tasks run in any order)

        async def one(i: int) -> None:
            called.append(i)  # send() enqueues synchronously before its first await
            metas.append(await producer.send("t", i, key=str(i % 10)))

        async with anyio.create_task_group() as tg:
            for i in range(300):
                tg.start_soon(one, i)
        assert broker.store.stats()["commits"] - before < 30  # ~one commit per linger window
        for p in range(2):
            offs = sorted(m.offset for m in metas if m.partition == p)
            assert offs == list(range(len(offs)))
        # per-key order: the values of one key appear in the order send() was called
        rank = {v: n for n, v in enumerate(called)}
        for p in range(2):
            seen: dict[bytes, int] = {}
            for r in await broker.fetch("t", p, 0):
                v = rank[orjson.loads(r.value)]
                assert v > seen.get(r.key, -1)
                seen[r.key] = v


async def test_send_soon_and_send_many(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=3)
        producer = broker.producer(batch_records=100)
        deliveries = [producer.send_soon("t", i) for i in range(1000)]
        await producer.flush()
        metas = [await d for d in deliveries]
        assert len({(m.partition, m.offset) for m in metas}) == 1000
        sent = await producer.send_many("t", list(range(500)), keys=[str(i) for i in range(500)])
        assert len(sent) == 500 and sent[3].partition == partition_for_key(b"3", 3)
        total = sum(broker.high_watermark("t", p) for p in range(3))
        assert total == 1500
        got = set()
        for p in range(3):
            got |= {(p, r.offset) for r in broker.store.read("t", p, 0, max_records=10**6)}
        assert {(m.partition, m.offset) for m in sent} <= got


async def test_acks_zero_returns_immediately_and_lands(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=1)
        producer = broker.producer(acks=0, linger=0.01)
        for i in range(50):
            assert await producer.send("t", i) is None
        await producer.flush()
        assert broker.high_watermark("t", 0) == 50


async def test_long_poll_fetch(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=1)
        t0 = time.monotonic()
        assert len(await broker.fetch("t", 0, 0, max_wait=0.05)) == 0
        assert time.monotonic() - t0 >= 0.04
        got: list[int] = []

        async def poll() -> None:
            recs = await broker.fetch("t", 0, 0, max_wait=30)
            got.append(len(recs))

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            with anyio.fail_after(10):
                while (("t", 0)) not in broker._signals:  # the poller is waiting
                    await anyio.sleep(0.001)
            await broker.produce("t", 0, [(None, b"x")])
        assert got == [1]


async def test_bad_input(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=2)
        producer = broker.producer()
        with pytest.raises(errors.UnknownTopic):
            await producer.send("nope", 1)
        with pytest.raises(errors.UnknownPartition):
            await producer.send("t", 1, partition=5)
        with pytest.raises(errors.InvalidArgument, match="JSON"):
            await producer.send("t", object())
        with pytest.raises(errors.InvalidArgument, match="acks"):
            broker.producer(acks=2)
        with pytest.raises(errors.InvalidArgument, match="serde"):
            broker.producer(value_serde="xml")


@pytest.mark.parametrize("bad", ["2024-01-01", 2**63, 2**70, -5, 1.5, True, float("nan")])
async def test_bad_timestamp_fails_its_send_alone(tmp_path: Path, bad: Any) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=1)
        producer = broker.producer(linger=0.05)
        good = producer.send_soon("t", {"good": 1})  # the same partition's open batch
        with pytest.raises(errors.InvalidArgument, match="timestamp"):
            producer.send_soon("t", {"bad": 1}, timestamp=bad)
        with pytest.raises(errors.InvalidArgument, match="timestamp"):
            await producer.send("t", {"bad": 1}, timestamp=bad)
        assert (await good).offset == 0
        assert [r.value for r in broker.store.read("t", 0, 0)] == [b'{"good":1}']
        meta = await producer.send("t", 2, timestamp=2**63 - 1)
        assert meta.timestamp == 2**63 - 1
        assert broker.store.read("t", 0, 1)[0].timestamp == 2**63 - 1
        async with broker.consumer("t", group="eos", guarantee="exactly_once",
                                   auto_offset_reset="earliest") as c:
            async with c.transaction() as tx:
                assert len(await c.getmany(timeout=5)) == 2
                with pytest.raises(errors.InvalidArgument, match="timestamp"):
                    tx.send("t", 3, timestamp=bad)  # refused at the call, not at commit
                with pytest.raises(errors.InvalidArgument, match="header"):
                    tx.send("t", 3, headers=[("a",)])
            assert tx.status == "committed" and len(tx) == 0


@pytest.mark.parametrize("bad", [[("a",)], "abc", b"ab", 5, [("a", b"1", b"2")], ["ab"],
                                 [(1, b"x")], [("a", 1)], {"a": 1.5}])
async def test_malformed_headers_are_refused(tmp_path: Path, bad: Any) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=1)
        producer = broker.producer()
        with pytest.raises(errors.InvalidArgument, match="header"):
            await producer.send("t", 1, headers=bad)
        await producer.send("t", 1, headers=[("a", "x"), ("b", None)])
        assert broker.store.read("t", 0, 0)[0].headers == [("a", b"x"), ("b", None)]


@pytest.mark.parametrize("bad", [float("nan"), {"x": float("inf")}, [1, {"y": [-float("inf")]}]])
async def test_json_refuses_non_finite_floats(tmp_path: Path, bad: Any) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=1)
        producer = broker.producer()
        with pytest.raises(errors.InvalidArgument, match="NaN or infinity"):
            await producer.send("t", bad)
        with pytest.raises(errors.InvalidArgument, match="NaN or infinity"):
            await producer.send_many("t", [1, bad])
        with pytest.raises(errors.InvalidArgument, match="NaN or infinity"):
            await producer.send("t", 1, key=bad)
        await producer.send("t", {"x": None, "y": [None, 1.5]})  # a real null is fine
        assert broker.store.read("t", 0, 0)[0].value == b'{"x":null,"y":[null,1.5]}'
        assert broker.high_watermark("t", 0) == 1


async def test_rejected_batch_fails_alone_in_partition_actor(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=1)

        def batch(seq: int) -> bytes:
            return build_batch([(None, b"%d" % seq)], producer_id=1, producer_epoch=0,
                               base_sequence=seq)

        results: dict[int, object] = {}

        async def send(i: int, b: bytes) -> None:
            try:
                results[i] = await broker.produce_raw("t", 0, b)
            except errors.StreamrtError as e:
                results[i] = e

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, 0, batch(0))
            tg.start_soon(send, 1, batch(0))  # duplicate of the first
            tg.start_soon(send, 2, build_batch([(None, b"plain")]))
        assert sorted(r for r in results.values() if isinstance(r, int)) == [0, 1]
        assert sum(isinstance(r, errors.DuplicateSequence) for r in results.values()) == 1
        assert broker.high_watermark("t", 0) == 2


async def test_crashed_partition_actor_is_restarted_and_serving(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=1)
        assert broker._partitions is not None
        ref = broker._partitions.children["t[0]"]
        with pytest.raises(errors.ActorCrashed):
            await ref.ask("not a WriteBatch")  # the actor raises on it: a crash
        with anyio.fail_after(10):
            while broker._partitions.restarts["t[0]"] < 1:
                await anyio.sleep(0.01)
        assert await broker.produce("t", 0, [(None, b"after")]) == 0
        assert broker._partitions.restarts["t[0]"] == 1


async def test_data_survives_reopen(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=1)
        await broker.producer().send("t", "kept")
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        assert [orjson.loads(r.value) for r in await broker.fetch("t", 0, 0)] == ["kept"]
        assert await broker.produce("t", 0, [(None, b"more")]) == 1


async def test_submit_keeps_order_while_durability_is_awaited_later(tmp_path: Path) -> None:
    """Kafka's produce path: intents queued in order from one task are written in that order,
    and their results are awaited afterwards, several at once."""
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t")
        from streamrt.storage import WriteBatch

        pendings = []
        for i in range(50):
            wb = WriteBatch()
            wb.append("t", 0, [(None, str(i).encode())])
            pendings.append(await broker.submit("t", 0, wb))
        offsets = [(await p.result()).base_offsets[0] for p in pendings]
        assert offsets == list(range(50))
        values = [r.value for r in await broker.fetch("t", 0, 0, max_records=100)]
        assert values == [str(i).encode() for i in range(50)]
        with pytest.raises(errors.UnknownTopic):
            await broker.submit("nope", 0, WriteBatch())



async def test_many_concurrent_appends_pipeline_and_each_gets_its_own_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """300 producers at once on one partition: the actor keeps at most MAX_IN_FLIGHT
    submissions in flight (the rest wait in its mailbox), and every append still gets the
    offset its record was stored at, with nothing lost or doubled."""
    from streamrt.broker import _partition

    depth: list[int] = []
    handle = _partition.PartitionActor.handle_batch

    async def watched(self: _partition.PartitionActor, messages: list[Any]) -> list[Any]:
        out = await handle(self, messages)
        depth.append(len(self.in_flight))
        return out

    monkeypatch.setattr(_partition.PartitionActor, "handle_batch", watched)
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=1)
        got: dict[int, int] = {}

        async def one(i: int) -> None:
            got[i] = await broker.produce("t", 0, [(None, b"%d" % i)])

        async with anyio.create_task_group() as tg:
            for i in range(300):
                tg.start_soon(one, i)
        assert sorted(got.values()) == list(range(300))
        stored = {r.offset: r.value for r in await broker.fetch("t", 0, 0, max_records=1000)}
        assert all(stored[off] == b"%d" % i for i, off in got.items())
        assert depth and max(depth) <= _partition.MAX_IN_FLIGHT

async def test_wait_any_wakes_on_any_partition_and_times_out(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("a", partitions=3)
        positions = {("a", 0): 0, ("a", 1): 0, ("a", 2): 0}
        t0 = time.monotonic()
        assert not await broker.wait_any(positions, 0.05)
        assert time.monotonic() - t0 >= 0.04
        woke: list[bool] = []
        async with anyio.create_task_group() as tg:
            async def waiter() -> None:
                woke.append(await broker.wait_any(positions, 10))

            tg.start_soon(waiter)
            await anyio.sleep(0.01)  # let the waiter register; correctness does not depend on it
            await broker.produce("a", 2, [(None, b"x")])
        assert woke == [True]
        assert not broker._watchers  # waiters unregister themselves
        assert await broker.wait_any({("a", 2): 0}, 0)  # already there: no wait
