"""Pattern subscriptions of pub/sub consumers: matching topics, and new ones picked up."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import streamrt as sr
from streamrt import errors

pytestmark = pytest.mark.anyio


async def _drain(consumer: sr.Consumer, want: int) -> list[tuple[str, object]]:
    got: list[tuple[str, object]] = []
    with anyio.fail_after(30):
        while len(got) < want:
            got += [(m.topic, m.value) for m in await consumer.getmany(100, timeout=0.2)]
    return got


@pytest.mark.parametrize("group", [None, "ops"])
async def test_pattern_consumer_sees_matching_and_new_topics(tmp_path: Path, group: str | None) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("logs.api.error", partitions=2)
        await broker.create_topic("logs.api.info")
        await broker.create_topic("metrics.api.error")
        producer = broker.producer()
        async with broker.consumer("logs.*.error", group=group, auto_offset_reset="earliest",
                                   pattern_refresh=0.05) as consumer:
            assert consumer.topics == ("logs.api.error",)
            await producer.send("logs.api.error", 1)
            await producer.send("logs.api.info", "not me")
            await producer.send("metrics.api.error", "not me either")
            assert await _drain(consumer, 1) == [("logs.api.error", 1)]
            if group is not None:
                await consumer.commit()  # else the rebalance below may redeliver it (at-least-once)
            await broker.create_topic("logs.db.error", partitions=3)  # created after the start
            with anyio.fail_after(30):
                while "logs.db.error" not in consumer.topics or not any(
                        t == "logs.db.error" for t, _p in consumer.assignment()):
                    await anyio.sleep(0.02)
            await producer.send("logs.db.error", 2, key="k")
            await producer.send("logs.api.error", 3)
            assert sorted(await _drain(consumer, 2)) == [("logs.api.error", 3), ("logs.db.error", 2)]


async def test_bad_pattern_is_refused(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        with pytest.raises(errors.InvalidArgument, match="wildcard"):
            broker.consumer("logs.err*", group="g")
