"""Client settings are checked in the constructor (NaN, infinities, negatives, wrong types get
InvalidArgument naming the setting), and a client's background task that fails anyway does
not stop the broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import streamrt as sr
from streamrt import errors

pytestmark = pytest.mark.anyio

NAN, INF = float("nan"), float("inf")


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[sr.Broker]:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as b:
        await b.create_topic("t", partitions=1)
        await b.create_topic("logs.a", partitions=1)
        yield b


@pytest.mark.parametrize("name, bad", [
    ("linger", NAN), ("linger", INF), ("linger", -1), ("linger", "5"), ("linger", True),
    ("batch_records", 0), ("batch_records", 1.5), ("batch_bytes", "1"),
])
async def test_producer_settings(broker: sr.Broker, name: str, bad: Any) -> None:
    with pytest.raises(errors.InvalidArgument, match=name):
        broker.producer(**{name: bad})


@pytest.mark.parametrize("name, bad", [
    ("pattern_refresh", NAN), ("pattern_refresh", INF), ("pattern_refresh", 0),
    ("auto_commit_interval", NAN), ("auto_commit_interval", -1), ("auto_commit_interval", INF),
    ("session_timeout", INF), ("session_timeout", NAN), ("heartbeat_interval", NAN),
    ("rebalance_timeout", INF), ("rebalance_timeout", "30"), ("revoke_timeout", NAN),
    ("revoke_timeout", -1), ("max_poll_records", 0), ("max_poll_records", "3"),
])
async def test_consumer_settings(broker: sr.Broker, name: str, bad: Any) -> None:
    with pytest.raises(errors.InvalidArgument, match=name):
        broker.consumer("logs.*", group="g", **{name: bad})


@pytest.mark.parametrize("name, bad", [
    ("ack_timeout", INF), ("ack_timeout", NAN), ("ack_timeout", 1e300), ("ttl", INF),
    ("ttl", NAN), ("ttl", -1), ("ttl", 1e300),
])
async def test_queue_settings(broker: sr.Broker, name: str, bad: Any) -> None:
    with pytest.raises(errors.InvalidArgument, match=name):
        broker.queue("t", group="g", **{name: bad})
    with pytest.raises(errors.UnknownQueue):  # nothing was declared (and stored)
        broker.queues.stats("t")


@pytest.mark.parametrize("bad", [NAN, -1, "1", True])
async def test_queue_get_timeout(broker: sr.Broker, bad: Any) -> None:
    async with broker.queue("t", group="g") as q:
        with pytest.raises(errors.InvalidArgument, match="timeout must be a number of seconds"):
            await q.get(timeout=bad)
        assert await q.get(timeout=0) == []  # a good call still works


async def test_good_settings_are_kept(broker: sr.Broker) -> None:
    p = broker.producer(linger=0, batch_records=1, batch_bytes=10)
    assert (p.linger, p.batch_records, p.batch_bytes) == (0.0, 1, 10)
    c = broker.consumer("t", group="g", auto_commit_interval=0, revoke_timeout=0,
                        session_timeout=1, heartbeat_interval=0.5)
    assert (c.auto_commit_interval, c.revoke_timeout, c.session_timeout) == (0.0, 0.0, 1.0)


async def test_failing_producer_task_does_not_stop_the_broker(broker: sr.Broker) -> None:
    p = broker.producer()
    p.linger = NAN  # as if a bad value got past the checks: anyio.sleep(nan) raises
    with anyio.fail_after(10):
        meta = await p.send("t", 1)  # the batch is sent at once instead
        assert meta.offset == 0
        assert (await broker.producer().send("t", 2)).offset == 1


async def test_failing_pattern_watcher_fails_its_consumer_only(
    broker: sr.Broker, monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = broker.consumer("logs.*", pattern_refresh=0.01, auto_offset_reset="earliest")
    async with c:
        def broken() -> tuple[str, ...]:
            raise RuntimeError("bug in the watcher")

        monkeypatch.setattr(c, "_resolve", broken)
        with anyio.fail_after(10), pytest.raises(RuntimeError, match="bug in the watcher"):
            while True:
                await c.getmany(timeout=0.05)
    with anyio.fail_after(10):
        assert (await broker.producer().send("t", 1)).offset == 0
        async with broker.consumer("t", auto_offset_reset="earliest") as other:
            assert [m.value for m in await other.getmany(timeout=5)] == [1]
