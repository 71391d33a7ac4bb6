"""Point-to-point queues through the embedded client, on a real broker (LMDB in tmp_path),
under trio and asyncio: exactly-one delivery across competing consumers, nack and timeout
redelivery, prefetch, pull, priorities, pattern queues, and acks surviving a restart.

Waits are on real conditions (a message arriving, a counter reaching a value) bounded by
``anyio.fail_after``; nothing sleeps and hopes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import streamrt as sr
from streamrt import errors

pytestmark = pytest.mark.anyio

WAIT = 15.0  # bound on a wait for a condition; passing runs take milliseconds


def open_broker(tmp_path: Path) -> Any:
    return sr.open(tmp_path / "d", maintenance_interval=None)


async def take(q: Any, n: int, ack: bool = True) -> list[Any]:
    """The next ``n`` messages of ``q`` (acked unless told otherwise)."""
    out = []
    with anyio.fail_after(WAIT):
        async for msg in q:
            out.append(msg)
            if ack:
                await msg.ack()
            if len(out) == n:
                break
    return out


async def until(cond: Any) -> None:
    """Wait for ``cond()`` to hold, checking after each scheduling round."""
    with anyio.fail_after(WAIT):
        while not cond():
            await anyio.sleep(0.001)


async def test_each_message_goes_to_exactly_one_of_many_consumers(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        await broker.create_topic("tasks", partitions=3)
        producer = broker.producer()
        await producer.send_many("tasks", list(range(3000)), keys=[str(i) for i in range(3000)])
        seen: list[tuple[int, int, int]] = []
        values: list[int] = []
        done = anyio.Event()

        async def worker(wid: int) -> None:
            async with broker.queue("tasks", group="workers", prefetch=17) as q:
                async for msg in q:
                    seen.append((msg.partition, msg.offset, wid))
                    values.append(msg.value)
                    await msg.ack()
                    if len(seen) >= 3000:
                        done.set()
                    if done.is_set():
                        break

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for wid in range(6):
                    tg.start_soon(worker, wid)
                await done.wait()
                tg.cancel_scope.cancel()
        assert sorted(values) == list(range(3000))
        assert len({(p, o) for p, o, _ in seen}) == 3000
        assert len({w for _, _, w in seen}) > 1  # the work was shared
        stats = broker.queues.stats("tasks", "workers")
        assert stats.redelivered == 0 and stats.acked == 3000 and stats.backlog == 0


async def test_nack_requeues_at_once_or_after_a_delay(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g") as q:
            await q.publish({"n": 1})
            (m,) = await take(q, 1, ack=False)
            assert m.delivery_count == 1 and not m.redelivered and m.value == {"n": 1}
            await m.nack()
            (again,) = await take(q, 1, ack=False)
            assert again.offset == m.offset and again.delivery_count == 2 and again.redelivered
            t0 = anyio.current_time()
            await again.nack(delay=0.2)
            (third,) = await take(q, 1)
            assert anyio.current_time() - t0 >= 0.2 and third.delivery_count == 3
            with pytest.raises(errors.MessageSettled):
                await third.ack()


async def test_ack_timeout_redelivers_to_another_consumer(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g", ack_timeout=0.2) as a, \
                broker.queue("jobs", group="g") as b:
            await a.publish("work")
            got = await a.get(max=1, timeout=WAIT)
            assert len(got) == 1
            (late,) = got  # a sits on it past the ack timeout
            (m,) = await take(b, 1, ack=False)
            assert (m.offset, m.delivery_count) == (late.offset, 2)
            await late.ack()  # too late: ignored
            await a.flush_acks()
            assert broker.queues.stats("jobs", "g").stale_acks == 1
            await m.ack()
            await b.flush_acks()
            s = broker.queues.stats("jobs", "g")
            assert s.acked == 1 and s.expired_leases == 1 and s.backlog == 0


async def test_prefetch_bounds_unacknowledged_messages_per_consumer(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        await broker.create_topic("jobs")
        await broker.producer().send_many("jobs", list(range(50)))
        async with broker.queue("jobs", group="g", prefetch=5) as slow:
            held = await take(slow, 5, ack=False)
            await until(lambda: broker.queues.stats("jobs", "g").leased == 5)
            assert len(slow._slot.inbox) == 0  # nothing beyond its 5
            async with broker.queue("jobs", group="g", prefetch=100) as fast:
                rest = await take(fast, 45)
            assert {m.value for m in held} | {m.value for m in rest} == set(range(50))
            await until(lambda: broker.queues.stats("jobs", "g").acked == 45)
            assert broker.queues.stats("jobs", "g").leased == 5  # still slow's, never more


async def test_pull_get(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g", prefetch=50) as q:
            assert await q.get(max=5, timeout=0.05) == []
            for i in range(12):
                await q.publish(i)
            first = await q.get(max=5, timeout=WAIT)
            assert 1 <= len(first) <= 5
            got = list(first)
            while len(got) < 12:
                got += await q.get(max=5, timeout=WAIT)
            assert sorted(m.value for m in got) == list(range(12))
            for m in got:
                await m.ack()
            await q.flush_acks()
            assert broker.queues.stats("jobs", "g").leased == 0


async def test_priorities_higher_first_fifo_within(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        await broker.queues.declare("jobs", "g", max_priority=9)
        prios = [1, 5, 9, 5, 0, 9, 3]
        for i, p in enumerate(prios):
            await broker.queues.publish("jobs", {"i": i}, priority=p)
        await broker.queues.publish("jobs", {"i": 7})  # no priority: 0
        async with broker.queue("jobs", group="g", prefetch=1) as q:
            order = [m.value["i"] for m in await take(q, 8)]
        assert order == [2, 5, 1, 3, 6, 0, 4, 7]


async def test_pattern_queue_reads_matching_topics_and_picks_up_new_ones(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        broker.queues.refresh = 0.05
        await broker.create_topic("logs.api.error")
        await broker.create_topic("logs.api.info")
        producer = broker.producer()
        await producer.send("logs.api.error", "a")
        await producer.send("logs.api.info", "not me")
        async with broker.queue("logs.*.error", group="oncall") as q:
            (m,) = await take(q, 1)
            assert (m.topic, m.value) == ("logs.api.error", "a")
            await broker.create_topic("logs.db.error", partitions=2)
            await producer.send("logs.db.error", "b", key="k")
            (m2,) = await take(q, 1)
            assert (m2.topic, m2.value) == ("logs.db.error", "b")
            stats = q.stats()
            assert stats.topics == ("logs.api.error", "logs.db.error")
            with pytest.raises(errors.InvalidArgument, match="pattern"):
                await q.publish("x")


async def test_acked_messages_do_not_come_back_after_a_restart(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        await broker.create_topic("jobs", partitions=2)
        await broker.producer().send_many("jobs", list(range(100)), keys=[str(i) for i in range(100)])
        async with broker.queue("jobs", group="g", prefetch=10) as q:
            acked = {m.value for m in await take(q, 40)}
            held = await take(q, 10, ack=False)  # leased, never acked
            await q.flush_acks()
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g") as q:  # no settings: as declared
            rest = await take(q, 60)
            assert not acked & {m.value for m in rest}
            assert acked | {m.value for m in rest} == set(range(100))
            again = {m.value: m.delivery_count for m in rest if m.value in {h.value for h in held}}
            assert set(again) == {m.value for m in held} and set(again.values()) == {2}


async def test_declarations_persist_and_conflicts_are_refused(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g", max_deliveries=4, ack_timeout=9,
                                dead_letter="jobs.dlq"):
            pass
        assert broker.topic("jobs.dlq").partitions == 1
    async with open_broker(tmp_path) as broker:
        assert [(n, g) for n, g, _ in broker.queues.list()] == [("jobs", "g")]
        async with broker.queue("jobs", group="g", ack_timeout=9.0) as q:
            assert q.stats().config.max_deliveries == 4
        with pytest.raises(errors.QueueMismatch, match="max_deliveries=4 .given 5."):
            async with broker.queue("jobs", group="g", max_deliveries=5):
                pass
        await broker.queues.delete("jobs", "g")
        assert broker.queues.list() == []
        async with broker.queue("jobs", group="g", max_deliveries=5) as q:
            assert q.stats().config.max_deliveries == 5


async def test_closing_a_consumer_gives_its_messages_to_the_others(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        await broker.create_topic("jobs")
        await broker.producer().send_many("jobs", list(range(10)))
        async with broker.queue("jobs", group="g", prefetch=10) as b:
            async with broker.queue("jobs", group="g", prefetch=10) as a:
                held = await take(a, 3, ack=False)
                await a.flush_acks()
            values = {m.value for m in await take(b, 10)}
            assert values == set(range(10))
            with pytest.raises(errors.QueueClosed):
                await a.get()
            assert {m.value for m in held} <= values


async def test_consume_with_a_callback_acks_and_requeues_on_error(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        calls: Counter[int] = Counter()
        async with broker.queue("jobs", group="g") as q:
            for i in range(5):
                await q.publish(i)

            async def handler(msg: Any) -> None:
                calls[msg.value] += 1
                if msg.value == 2 and calls[2] == 1:
                    raise RuntimeError("transient")
                if sum(calls.values()) == 6:
                    await msg.ack()
                    await q.close()

            with anyio.fail_after(WAIT):
                await q.consume(handler)
        assert calls == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1}


async def test_bad_usage_gets_clear_errors(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        with pytest.raises(errors.InvalidArgument, match="prefetch"):
            broker.queue("jobs", prefetch=0)
        with pytest.raises(errors.InvalidArgument, match="unknown queue setting"):
            await broker.queue("jobs", max_delivery=3).open()
        with pytest.raises(errors.InvalidArgument, match="overflow"):
            await broker.queue("jobs", overflow="drop").open()
        with pytest.raises(errors.InvalidArgument, match="own dead letters"):
            await broker.queue("jobs.#", dead_letter="jobs.dlq").open()
        with pytest.raises(errors.QueueClosed, match="not open"):
            await broker.queue("jobs").get()
        with pytest.raises(errors.UnknownQueue):
            broker.queues.stats("nope")
        with pytest.raises(errors.InvalidArgument, match="priority"):
            await broker.queues.publish("jobs", 1, priority=10)


async def test_a_deleted_topic_is_dropped_and_picked_up_again(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        broker.queues.refresh = 0.05
        async with broker.queue("jobs", group="g") as q:
            await q.publish("old")
            (m,) = await take(q, 1, ack=False)
            await broker.delete_topic("jobs")
            await until(lambda: q.stats().topics == ())
            await m.ack()  # its topic is gone: a stale ack, ignored
            await broker.create_topic("jobs")
            await until(lambda: q.stats().topics == ("jobs",))
            await q.publish("new")
            (m2,) = await take(q, 1)
            assert (m2.value, m2.offset) == ("new", 0)


async def test_retention_before_reading_drops_those_messages(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        broker.queues.read_ahead = 2  # two in memory: the rest waits in the log
        await broker.create_topic("jobs", retention_records=3)
        await broker.queues.declare("jobs", "g")
        producer = broker.producer()
        for i in range(2):
            await producer.send("jobs", i)
        await until(lambda: broker.queues.stats("jobs", "g").in_memory == 2)
        for i in range(2, 10):
            await producer.send("jobs", i)  # one batch each, so retention can drop them
        broker.store.run_retention()
        start = broker.log_start_offset("jobs", 0)
        assert start == 7
        async with broker.queue("jobs", group="g") as q:
            got = [m.value for m in await take(q, 5)]
            assert got == [0, 1, 7, 8, 9]  # 0 and 1 were read before retention ran
            assert q.stats().dropped == 5


async def test_a_crashed_queue_actor_restarts_from_lmdb_and_consumers_go_on(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g") as q:
            for i in range(6):
                await q.publish(i)
            first = await take(q, 2)
            await q.flush_acks()
            held = await take(q, 2, ack=False)
            sup = broker.queues.sup
            ref = sup.children["jobs/g"]
            with pytest.raises(errors.ActorCrashed):
                await ref.ask(("acks", 0, None))  # a malformed message: the actor raises
            await until(lambda: sup.restarts["jobs/g"] == 1)
            for m in held:
                await m.ack()  # leases of the previous incarnation: ignored
            rest = await take(q, 4)  # held ones come again, and the two never taken
            assert {m.value for m in rest} == set(range(6)) - {m.value for m in first}
            again = {m.value: m.delivery_count for m in rest}
            assert [again[m.value] for m in held] == [2, 2]
            await q.flush_acks()
            assert q.stats().backlog == 0


async def test_deleting_a_busy_queue_group_leaves_no_state(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        await broker.create_topic("jobs")
        await broker.producer().send_many("jobs", list(range(500)))
        async with broker.queue("jobs", group="g", prefetch=50) as q:
            await take(q, 120)  # acks in flight, leases outstanding
            await broker.queues.delete("jobs", "g")
            with anyio.fail_after(WAIT):
                assert [m async for m in q] == []  # its consumers stop
        assert broker.store.scan(b"sqs:") == [] and broker.store.scan(b"sqd:") == []
        async with broker.queue("jobs", group="g") as q:  # a new group: from the start
            assert [m.value for m in await take(q, 3)] == [0, 1, 2]


@pytest.mark.parametrize("setting", [
    {"ack_timeout": float("inf")}, {"ack_timeout": float("nan")}, {"ack_timeout": 1e300},
    {"ttl": float("inf")}, {"ttl": -1.0}, {"max_length": 2**64}, {"max_deliveries": 2**63},
])
async def test_settings_that_cannot_be_stored_or_timed_are_refused(
    tmp_path: Path, setting: dict[str, Any],
) -> None:
    async with open_broker(tmp_path) as broker:
        with pytest.raises(errors.InvalidArgument, match=next(iter(setting))):
            await broker.queue("jobs", group="g", **setting).open()
        assert broker.queues.list() == []
    async with open_broker(tmp_path) as broker:  # nothing was stored: it opens and works
        async with broker.queue("jobs", group="g", ack_timeout=100 * 365 * 86_400) as q:
            await q.publish(1)
            assert [m.value for m in await take(q, 1)] == [1]


@pytest.mark.parametrize("stored", [
    b'{"name":"jobs","group":"bad","config":{"ack_timeout":null}}',  # inf, as once stored
    b'{"name":"jobs","group":"bad","config":{"ttl":-5}}',
    b"not json at all",
])
async def test_an_unusable_stored_declaration_refuses_only_its_group(
    tmp_path: Path, stored: bytes, caplog: pytest.LogCaptureFixture,
) -> None:
    from streamrt.broker import _queue_keys as K

    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="good") as q:
            await q.publish(1)
        wb = sr.WriteBatch()
        wb.put(K.decl_key("jobs", "bad"), stored)
        await broker.write(wb)
    async with open_broker(tmp_path) as broker:
        # the rest of the broker opens and keeps working, the good group included
        assert [(n, g) for n, g, _ in broker.queues.list()] == [("jobs", "good")]
        async with broker.queue("jobs", group="good") as q:
            assert [m.value for m in await take(q, 1)] == [1]
        with pytest.raises(errors.QueueError, match="jobs/bad .*unusable.*delete"):
            await broker.queue("jobs", group="bad").open()
        with pytest.raises(errors.QueueError, match="jobs/bad"):
            broker.queues.stats("jobs", "bad")
        assert "jobs/bad" in caplog.text
        # deleting the group clears the bad declaration; it can then be declared again
        await broker.queues.delete("jobs", "bad")
        async with broker.queue("jobs", group="bad", ack_timeout=5) as q:
            assert [m.value for m in await take(q, 1)] == [1]
    async with open_broker(tmp_path) as broker:
        assert [(n, g) for n, g, _ in broker.queues.list()] == [("jobs", "bad"), ("jobs", "good")]


@pytest.mark.parametrize("delay", [float("inf"), float("nan"), 1e300, -1, "5", True])
async def test_a_bad_nack_delay_is_refused_and_loses_no_buffered_ack(
    tmp_path: Path, delay: Any,
) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g") as q:
            await q.publish(1)
            await q.publish(2)
            with anyio.fail_after(WAIT):
                m1, m2 = await q.get(max=2, timeout=WAIT)
            await m2.ack()  # buffered: a crash of the group's actor would lose it
            with pytest.raises(errors.InvalidArgument, match="delay must be a finite number"):
                await m1.nack(requeue=True, delay=delay)
            await m1.ack()  # the refused nack left the message unsettled
            await q.flush_acks()
            s = q.stats()
            assert (s.acked, s.delayed, s.redelivered, s.stale_acks) == (2, 0, 0, 0)
            assert await q.get(max=5, timeout=0.05) == []


async def test_the_longest_nack_delay_keeps_the_message_delayed(tmp_path: Path) -> None:
    async with open_broker(tmp_path) as broker:
        async with broker.queue("jobs", group="g") as q:
            await q.publish(1)
            with anyio.fail_after(WAIT):
                (m,) = await q.get(max=1, timeout=WAIT)
            await m.nack(requeue=True, delay=100 * 365 * 86_400)
            await q.flush_acks()
            assert q.stats().delayed == 1
    async with open_broker(tmp_path) as broker:  # the not-before time was stored and read
        async with broker.queue("jobs", group="g") as q:
            assert await q.get(max=1, timeout=0.05) == []
            assert q.stats().delayed == 1
