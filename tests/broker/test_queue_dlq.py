"""Dead letters: each trigger (rejected, max_deliveries, expired, overflow), the headers a dead
letter gains, every overflow policy, delivery counts kept across restarts, and replay back
to the source topic exactly once. Real LMDB in tmp_path, on trio and asyncio; the TTL
timer test runs on trio's MockClock, so 30 s of TTL pass instantly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio.testing

import streamrt as sr
from streamrt import errors

pytestmark = pytest.mark.anyio

WAIT = 15.0
# trio's MockClock jumps to the next deadline once every task is blocked. The storage writer
# is a thread, so waiting for a commit counts as blocked too: with a zero threshold every
# fsync would let the clock jump (to a lease deadline, or a fail_after). A short threshold
# of real idleness keeps jumps to the moments the test really waits for time to pass.
MOCK = pytest.param(("trio", {"clock": trio.testing.MockClock(autojump_threshold=0.05)}),
                    id="mockclock")
VIRTUAL_WAIT = 3600.0  # fail_after bounds in virtual time must lie past every deadline


def open_broker(tmp_path: Path) -> Any:
    return sr.open(tmp_path / "d", maintenance_interval=None)


async def take(q: Any, n: int, ack: bool = True, wait: float = WAIT) -> list[Any]:
    out = []
    with anyio.fail_after(wait):
        async for msg in q:
            out.append(msg)
            if ack:
                await msg.ack()
            if len(out) == n:
                break
    return out


async def dead(broker: Any, name: str, n: int) -> list[Any]:
    """Wait until ``name`` has ``n`` pending dead letters; return them."""
    with anyio.fail_after(WAIT):
        while len(letters := broker.queues.dead_letters(name)) < n:
            await anyio.sleep(0.001)
    assert len(letters) == n
    return letters


async def test_poison_message_is_dead_lettered_after_max_deliveries(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g", max_deliveries=3,
                                dead_letter="jobs.dlq") as q:
            meta = await broker.producer().send("jobs", {"poison": True}, key="k7",
                                                headers={"trace": "abc"})
            await q.publish({"fine": True})
            counts = []
            while len(counts) < 3:
                (m,) = await take(q, 1, ack=False)
                if m.value == {"fine": True}:
                    await m.ack()
                    continue
                counts.append(m.delivery_count)
                await m.nack(requeue=True)
            assert counts == [1, 2, 3]
            (d,) = await dead(broker, "jobs", 1)
        assert (d.reason, d.source_topic, d.source_queue) == ("max_deliveries", "jobs", "jobs/g")
        assert (d.source_partition, d.source_offset, d.deliveries) == (0, meta.offset, 3)
        assert d.key == b"k7" and d.value == b'{"poison":true}'
        assert d.headers == (("trace", b"abc"),) and d.original_timestamp == meta.timestamp
        assert abs(d.dead_lettered_at - time.time() * 1000) < 60_000
        (rec,) = list(await broker.fetch("jobs.dlq", 0, 0))
        assert dict(rec.headers)["reason"] == b"max_deliveries"
        assert dict(rec.headers)["source-offset"] == b"%d" % meta.offset
        stats = broker.queues.stats("jobs", "g")
        assert stats.dead_lettered["max_deliveries"] == 1 and stats.backlog == 0


async def test_rejected_message_is_dead_lettered_at_once(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g", dead_letter="jobs.dlq") as q:
            await q.publish("bad")
            (m,) = await take(q, 1, ack=False)
            await m.nack(requeue=False)
            (d,) = await dead(broker, "jobs.dlq", 1)
            assert (d.reason, d.deliveries, d.value) == ("rejected", 1, b'"bad"')
            assert await q.get(timeout=0.05) == []


async def test_delivery_counts_survive_restarts(tmp_path: Path) -> None:
    """A consumer that never settles (its process dies each time) still exhausts the
    message's deliveries: each lease is durable before the message is handed out."""
    for round_ in range(3):
        async with open_broker(tmp_path) as broker:
            async with broker.queue("jobs", group="g", max_deliveries=3,
                                    dead_letter="jobs.dlq") as q:
                if round_ == 0:
                    await q.publish("crashy")
                (m,) = await take(q, 1, ack=False)
                assert m.delivery_count == round_ + 1
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g") as q:
            (d,) = await dead(broker, "jobs", 1)
            assert (d.reason, d.deliveries) == ("max_deliveries", 3)
            assert await q.get(timeout=0.05) == []


async def test_expired_messages_are_dead_lettered_when_read(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        await broker.create_topic("jobs")
        producer = broker.producer()
        old = int(time.time() * 1000) - 60_000
        await producer.send("jobs", "stale", timestamp=old)
        await producer.send("jobs", "fresh")
        async with broker.queue("jobs", group="g", ttl=30, dead_letter="jobs.dlq") as q:
            (m,) = await take(q, 1)
            assert m.value == "fresh"
            (d,) = await dead(broker, "jobs", 1)
            assert (d.reason, d.value, d.original_timestamp, d.deliveries) == (
                "expired", b'"stale"', old, 0)


@pytest.mark.parametrize("anyio_backend", [MOCK])
async def test_waiting_messages_expire_on_time(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        broker.queues.refresh = VIRTUAL_WAIT  # no topic look-ups: the clock jumps straight on
        await broker.queues.declare("jobs", "g", ttl=30, dead_letter="jobs.dlq")
        t0 = anyio.current_time()
        for i in range(3):
            await broker.queues.publish("jobs", i)
        with anyio.fail_after(VIRTUAL_WAIT):
            while len(broker.queues.dead_letters("jobs")) < 3:
                await anyio.sleep(5)
        assert anyio.current_time() - t0 >= 30  # (virtual time: MockClock jumps)
        letters = broker.queues.dead_letters("jobs")
        assert {d.reason for d in letters} == {"expired"}
        assert broker.queues.stats("jobs", "g").backlog == 0


@pytest.mark.parametrize("anyio_backend", [MOCK])
async def test_long_ack_timeout_redelivers_on_a_virtual_clock(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        broker.queues.refresh = VIRTUAL_WAIT
        async with broker.queue("jobs", group="g", ack_timeout=300) as q:
            await q.publish("slow work")
            t0 = anyio.current_time()
            (m,) = await take(q, 1, ack=False, wait=VIRTUAL_WAIT)
            (again,) = await take(q, 1, wait=VIRTUAL_WAIT)
            assert anyio.current_time() - t0 >= 300
            assert (again.offset, again.delivery_count) == (m.offset, 2)


async def test_overflow_dead_letter_moves_the_newest(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        await broker.queues.declare("jobs", "g", max_length=3, dead_letter="jobs.dlq")
        for i in range(5):
            await broker.queues.publish("jobs", i)  # dead-letter policy: publish never refuses
        letters = await dead(broker, "jobs", 2)
        assert [(d.reason, d.value) for d in letters] == [("overflow", b"3"), ("overflow", b"4")]
        async with broker.queue("jobs", group="g") as q:
            assert [m.value for m in await take(q, 3)] == [0, 1, 2]
            await q.flush_acks()
            assert q.stats().backlog == 0


async def test_overflow_drop_oldest_keeps_the_newest(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        await broker.queues.declare("jobs", "g", max_length=3, overflow="drop-oldest",
                                    dead_letter="jobs.dlq")
        for i in range(5):
            await broker.queues.publish("jobs", i)
        with anyio.fail_after(WAIT):
            while broker.queues.stats("jobs", "g").dropped < 2:
                await anyio.sleep(0.001)
        async with broker.queue("jobs", group="g") as q:
            assert [m.value for m in await take(q, 3)] == [2, 3, 4]
        assert broker.queues.dead_letters("jobs") == []


async def test_overflow_reject_new_refuses_publishes(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g", max_length=3, overflow="reject-new",
                                dead_letter="jobs.dlq", prefetch=1) as q:
            for i in range(3):
                await q.publish(i)
            with pytest.raises(errors.QueueFull, match="jobs/g is full"):
                await q.publish(3)
            assert broker.high_watermark("jobs", 0) == 3  # nothing appended
            (m,) = await take(q, 1)
            await q.flush_acks()
            await q.publish(4)  # room again
            # Appends that bypass publish() are not refused, but cannot overfill the queue.
            await broker.producer().send("jobs", 5)
            (d,) = await dead(broker, "jobs", 1)
            assert (d.reason, d.value) == ("overflow", b"5")
            assert [x.value for x in await take(q, 3)] == [1, 2, 4]


async def test_concurrent_publishes_never_pass_max_length(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        await broker.queues.declare("jobs", "g", max_length=10, overflow="reject-new")
        outcomes: list[bool] = []

        async def one(i: int) -> None:
            try:
                await broker.queues.publish("jobs", i)
                outcomes.append(True)
            except errors.QueueFull:
                outcomes.append(False)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, i)
        assert outcomes.count(True) == 10
        assert broker.high_watermark("jobs", 0) == 10


async def test_replay_sends_dead_letters_back_once(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g", dead_letter="jobs.dlq") as q:
            for i in range(4):
                await q.publish(i, headers={"h": str(i)})
            msgs = await take(q, 4, ack=False)
            for m in msgs:
                if m.value % 2:
                    await m.nack(requeue=False)
                else:
                    await m.ack()
            await dead(broker, "jobs", 2)
            assert await broker.queues.replay("jobs", limit=1) == 1
            assert await broker.queues.replay("jobs") == 1
            assert await broker.queues.replay("jobs") == 0
            back = await take(q, 2)
            assert sorted(m.value for m in back) == [1, 3]
            assert sorted(m.offset for m in back) == [4, 5]  # appended again, new offsets
            assert all(m.headers == [("h", str(m.value).encode())] for m in back)
            assert broker.queues.dead_letters("jobs") == []
            replayed = broker.queues.dead_letters("jobs", include_replayed=True)
            assert [d.replayed for d in replayed] == [True, True]


async def test_replay_refuses_a_vanished_source(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g", dead_letter="dlq") as q:
            await q.publish(1)
            (m,) = await take(q, 1, ack=False)
            await m.nack(requeue=False)
            await dead(broker, "dlq", 1)
        await broker.queues.delete("jobs", "g")
        await broker.delete_topic("jobs")
        with pytest.raises(errors.UnknownTopic, match="no longer exists"):
            await broker.queues.replay("dlq")
        assert len(broker.queues.dead_letters("dlq")) == 1
        with pytest.raises(errors.UnknownQueue, match="no queue or dead-letter topic"):
            broker.queues.dead_letters("nothing")
