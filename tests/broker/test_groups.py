"""Consumer groups on a real broker (LMDB in tmp_path), on trio and asyncio: fan-out to
groups, partitions split and re-split on join, leave and death, zombie commits refused (also
after a restart), per-key order, and a slow handler that is not evicted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import streamrt as sr
from streamrt import errors

pytestmark = pytest.mark.anyio

FAST = dict(session_timeout=0.5, heartbeat_interval=0.05, rebalance_timeout=3.0,
            auto_offset_reset="earliest")


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a real condition (polled), failing after ``timeout``."""
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.005)


async def drain(consumer: sr.Consumer, n: int, timeout: float = 10.0) -> list[sr.Message]:
    got: list[sr.Message] = []
    with anyio.fail_after(timeout):
        while len(got) < n:
            got += await consumer.getmany(timeout=0.2)
    return got


def stop_heartbeats(consumer: sr.Consumer) -> None:
    """Make a member die without leaving: its heartbeats stop (as a hung process's would)."""
    consumer._scope.cancel()


async def test_two_groups_each_see_every_message(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("orders", partitions=3)
        await broker.producer().send_many("orders", list(range(300)),
                                          keys=[str(i) for i in range(300)])
        async with broker.consumer("orders", group="billing", **FAST) as a, \
                broker.consumer("orders", group="shipping", **FAST) as b:
            ga, gb = await drain(a, 300), await drain(b, 300)
        assert sorted(m.value for m in ga) == list(range(300))
        assert sorted(m.value for m in gb) == list(range(300))
        assert sum(broker.committed("billing").values()) == 300
        assert sum(broker.committed("shipping").values()) == 300


async def test_empty_group_join_is_fast(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=2)
        t0 = anyio.current_time()
        async with broker.consumer("t", group="g") as c:  # default timeouts (30 s rebalance)
            assert c.assignment() == {("t", 0), ("t", 1)}
            assert anyio.current_time() - t0 < 0.5
            assert c.generation == broker.groups.generation("g") == 1


async def test_partitions_split_and_resplit_on_join_leave_and_death(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=6)
        everything = {("t", p) for p in range(6)}
        async with broker.consumer("t", group="g", **FAST) as a:
            assert a.assignment() == everything
            async with broker.consumer("t", group="g", **FAST) as b:
                await until(lambda: len(a.assignment()) == 3 and len(b.assignment()) == 3)
                assert a.assignment() | b.assignment() == everything
                c = broker.consumer("t", group="g", **FAST)
                await c.start()
                await until(lambda: [len(x.assignment()) for x in (a, b, c)] == [2, 2, 2])
                assert a.assignment() | b.assignment() | c.assignment() == everything
                gen = broker.groups.generation("g")
                # c dies: it stops heartbeating and never leaves
                stop_heartbeats(c)
                await until(lambda: len(a.assignment()) == 3 and len(b.assignment()) == 3)
                assert a.assignment() | b.assignment() == everything
                assert broker.groups.generation("g") > gen
                desc = await broker.groups.describe("g")
                assert desc is not None and desc.state == "Stable" and len(desc.members) == 2
                await c.close()
            # b left: a has it all again
            await until(lambda: a.assignment() == everything)


async def test_zombie_commit_is_refused_even_after_restart(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=2)
        await broker.producer().send_many("t", list(range(10)), partition=0)
        zombie = broker.consumer("t", group="g", **FAST)
        await zombie.start()
        await drain(zombie, 10)
        old_gen, old_member = zombie.generation, zombie.member_id
        stop_heartbeats(zombie)
        async with broker.consumer("t", group="g", **FAST) as fresh:
            await until(lambda: fresh.assignment() == {("t", 0), ("t", 1)})
            with pytest.raises(errors.StaleGeneration):  # UnknownMemberId, a StaleGeneration
                await zombie.commit()
            with pytest.raises(errors.StaleGeneration):  # the storage fence alone refuses it
                await broker.commit("g", {("t", 0): 10}, generation=old_gen)
            assert broker.committed("g").get(("t", 0), 0) == 0
        await zombie.close()
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        with pytest.raises(errors.StaleGeneration):
            await broker.commit("g", {("t", 0): 10}, generation=old_gen)
        with pytest.raises(errors.UnknownMemberId):
            await broker.groups.commit("g", {("t", 0): 10}, member_id=old_member,
                                       generation=old_gen)
        async with broker.consumer("t", group="g", **FAST) as c:
            assert c.generation > old_gen  # generations keep growing across restarts
            assert (await drain(c, 10))[0].offset == 0  # nothing of the zombie's was committed


async def test_per_key_order_holds(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=4)
        async with broker.consumer("t", group="g", **FAST) as a, \
                broker.consumer("t", group="g", **FAST) as b:
            await until(lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2)
            producer = broker.producer(linger=0.001)
            for i in range(400):
                producer.send_soon("t", {"k": i % 13, "seq": i}, key=f"k{i % 13}")
            await producer.flush()
            got: dict[Any, list[tuple[str, list[int]]]] = {}
            seen = 0
            with anyio.fail_after(10):
                while seen < 400:
                    for name, c in (("a", a), ("b", b)):
                        for m in await c.getmany(timeout=0.05):
                            got.setdefault(m.value["k"], []).append((name, m.value["seq"]))
                            seen += 1
        for k, items in got.items():
            assert len({name for name, _ in items}) == 1  # one owner per key
            seqs = [s for _, s in items]
            assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


async def test_slow_handler_is_not_evicted(tmp_path: Path) -> None:
    """A handler five session timeouts long: heartbeats go on in the background."""
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=2)
        await broker.producer().send_many("t", [1, 2, 3])
        async with broker.consumer("t", group="g", session_timeout=0.2, heartbeat_interval=0.03,
                                   auto_offset_reset="earliest") as c:
            gen = c.generation
            async for msg in c:
                await anyio.sleep(1.0)  # five sessions of slow work (not a synchronisation)
                break
            desc = await broker.groups.describe("g")
            assert desc is not None and [m.member_id for m in desc.members] == [c.member_id]
            assert c.generation == gen and broker.groups.generation("g") == gen
            await c.commit()
            assert broker.committed("g")[(msg.topic, msg.partition)] == msg.offset + 1


def _mock_clock() -> Any:
    import trio.testing

    # Jump only after 50 ms of real idleness: storage writes (durability "none" here) finish
    # long before, so time never leaps while a write is in flight.
    return trio.testing.MockClock(autojump_threshold=0.05)


@pytest.mark.parametrize("anyio_backend", [pytest.param(("trio", {"clock": _mock_clock()}),
                                                        id="trio-mockclock")])
async def test_slow_handler_under_mock_clock(tmp_path: Path) -> None:
    """A minute-long handler against a 10 s session, on trio's auto-jumping clock."""
    async with sr.open(tmp_path / "d", maintenance_interval=None, durability="none") as broker:
        await broker.create_topic("t", partitions=1)
        await broker.producer().send_many("t", [1, 2])
        async with broker.consumer("t", group="g", session_timeout=10, heartbeat_interval=3,
                                   auto_offset_reset="earliest") as c:
            gen = c.generation
            t0 = anyio.current_time()
            async for _msg in c:
                await anyio.sleep(60)
                break
            assert anyio.current_time() - t0 >= 60
            assert broker.groups.generation("g") == gen == c.generation
            desc = await broker.groups.describe("g")
            assert desc is not None and len(desc.members) == 1


async def test_coordinator_restart_members_rejoin(tmp_path: Path) -> None:
    """A group actor that crashes is restarted Empty at its stored generation; members find
    out from their next heartbeat and join again, and consumption goes on."""
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=2)
        async with broker.consumer("t", group="g", **FAST) as c:
            gen = c.generation
            ref = broker.groups._sup.children["g"]
            with pytest.raises(errors.ActorCrashed):
                await ref.ask("not a group request")  # a bug in a handler crashes the actor
            await until(lambda: c.generation > gen and bool(c.assignment()))
            await broker.producer().send("t", "after", partition=1)
            (m,) = await drain(c, 1)
            assert m.value == "after"


async def test_member_with_no_common_assignor_is_refused(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=2)
        async with broker.consumer("t", group="g", assignors="range", **FAST) as a:
            with pytest.raises(errors.InconsistentGroupProtocol, match="range"):
                async with broker.consumer("t", group="g", assignors="roundrobin", **FAST):
                    pass
            assert a.assignment() == {("t", 0), ("t", 1)}


async def test_delete_forgets_an_empty_group_and_refuses_a_live_one(tmp_path: Path) -> None:
    async with sr.open(tmp_path / "d", maintenance_interval=None) as broker:
        await broker.create_topic("t", partitions=1)
        await broker.producer().send_many("t", list(range(10)))
        async with broker.consumer("t", group="g", **FAST) as c:
            assert len(await drain(c, 10)) == 10
            with pytest.raises(errors.NonEmptyGroup):
                await broker.groups.delete("g")
        # The member left: the group is Empty, with its offsets and generation stored.
        assert broker.committed("g") == {("t", 0): 10} and broker.groups.generation("g")
        await broker.groups.delete("g")
        assert "g" not in broker.groups.list_groups()
        assert broker.committed("g") == {} and broker.groups.generation("g") is None
        with pytest.raises(errors.UnknownGroup):
            await broker.groups.delete("g")
        # The name is free again: a new group starts from the reset position, generation 1.
        async with broker.consumer("t", group="g", **FAST) as c:
            assert len(await drain(c, 10)) == 10
            assert c.generation == 1
