"""A consumer over a compacted topic whose tail compaction removed: it must reach the high
watermark (lag 0) instead of staying short of it, where its long poll would find "data"
that is never there and spin."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

import streamrt as sr

pytestmark = pytest.mark.anyio


def _later() -> int:
    """A compaction time past the tombstone's (grace 0 removes it only once time has moved
    on: one in the same millisecond would stay)."""
    return int(time.time() * 1000) + 1000


async def _a_b_and_b_deleted(broker: sr.Broker) -> None:
    """A compacted topic c with a=1, b=1 and b's tombstone: compaction leaves only a=1, so
    offsets 1 and 2, the partition's tail, are gone."""
    await broker.create_topic(
        "c", 1, config=sr.TopicConfig(cleanup_policy="compact", tombstone_grace_ms=0))
    p = broker.producer(linger=0)
    for key, value in (("a", 1), ("b", 1), ("b", None)):
        await p.send("c", value, key=key)


# Without the fix getmany spins without yielding, so anyio's deadline never fires: the
# pytest-timeout bound is what fails it (quickly).
@pytest.mark.timeout(30)
async def test_a_consumer_catches_up_past_a_compacted_away_tail(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await _a_b_and_b_deleted(broker)
        assert broker.store.compact("c", now_ms=_later()) == 2  # b and its tombstone: the tail is gone
        async with broker.consumer("c", group="g", auto_offset_reset="earliest") as c:
            got = []
            with anyio.fail_after(15):
                while c.lag() != {("c", 0): 0}:
                    got += await c.getmany(timeout=0.05)
            assert [(m.key, m.value) for m in got] == [(b"a", 1)]
            # caught up: an idle long poll now waits for new data and returns nothing
            assert await c.getmany(timeout=0.05) == []


@pytest.mark.timeout(30)
async def test_a_consumer_positioned_inside_the_gap_moves_on(tmp_path: Path) -> None:
    """A group committed inside what compaction later removed: an empty read's next offset
    (the high watermark) becomes the position, as Kafka's fetch moves past gaps."""
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await _a_b_and_b_deleted(broker)
        async with broker.consumer("c", group="g", auto_offset_reset="earliest") as c:
            with anyio.fail_after(15):
                while c.position("c", 0) < 2:
                    await c.getmany(timeout=0.05, max_records=1)
            await c.commit({("c", 0): 2})
        assert broker.store.compact("c", now_ms=_later()) == 2  # offsets 1 and 2 are gone; the group is at 2
        async with broker.consumer("c", group="g") as c:
            with anyio.fail_after(15):
                while c.lag() != {("c", 0): 0}:
                    assert await c.getmany(timeout=0.05) == []
            assert c.position("c", 0) == 3
