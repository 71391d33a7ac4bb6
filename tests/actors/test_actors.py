"""The actor runtime on both backends: ask/send, backpressure, restarts, escalation, shutdown.

Backoffs are real anyio sleeps; on trio an auto-jumping MockClock makes them instant.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import trio.testing

from streamrt import errors
from streamrt.actors import Actor, Lifecycle, RestartPolicy, RuntimeFailure, open_runtime


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return "asyncio"


FAST = RestartPolicy(max_restarts=3, within=60.0, backoff=0.01, max_backoff=0.1)


class Counter(Actor[Any]):
    """Keeps a count in a dict that stands for durable storage; crashes on 'boom'."""

    def __init__(self, store: dict[str, Any]) -> None:
        self.store = store
        self.count = 0

    async def on_start(self) -> None:
        self.count = self.store.get("count", 0)  # recover after a restart
        self.store["starts"] = self.store.get("starts", 0) + 1

    async def handle(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom on purpose")
        if message == "get":
            return self.count
        self.count += message
        self.store["count"] = self.count
        return self.count

    async def on_stop(self) -> None:
        self.store["stops"] = self.store.get("stops", 0) + 1


@pytest.mark.anyio
async def test_ask_and_send() -> None:
    store: dict[str, Any] = {}
    async with open_runtime(policy=FAST) as root:
        ref = await root.spawn(lambda: Counter(store), "counter")
        assert await ref.ask(2) == 2
        await ref.send(3)
        assert await ref.ask("get") == 5
        assert root.states["counter"] is Lifecycle.RUNNING
    assert store["stops"] == 1
    assert root.states["counter"] is Lifecycle.STOPPED


@pytest.mark.anyio
async def test_crash_restarts_and_recovers_state() -> None:
    store: dict[str, Any] = {}
    async with open_runtime(policy=FAST) as root:
        ref = await root.spawn(lambda: Counter(store), "counter")
        await ref.ask(10)
        await ref.send("boom")  # crashes the instance; the next one recovers count from store
        await ref.send(1)
        assert await ref.ask("get") == 11
        with pytest.raises(errors.ActorCrashed, match="boom on purpose") as e:
            await ref.ask("boom")
        assert isinstance(e.value.__cause__, ValueError)
        assert await ref.ask("get") == 11
        assert root.restarts["counter"] == 2
    assert store["starts"] == 3 and store["stops"] == 3


@pytest.mark.anyio
async def test_repeated_failures_escalate_to_runtime_failure() -> None:
    store: dict[str, Any] = {}
    with pytest.raises(RuntimeFailure, match=r"crashed 4 times.*boom on purpose"):
        async with open_runtime(policy=FAST) as root:
            ref = await root.spawn(lambda: Counter(store), "counter")
            for _ in range(10):
                try:
                    await ref.send("boom")
                except errors.ActorStopped:
                    break
            await anyio.sleep_forever()


@pytest.mark.anyio
async def test_nested_supervisor_restarts_its_subtree() -> None:
    store: dict[str, Any] = {}
    inits = []
    refs: dict[str, Any] = {}

    async def init(sup: Any) -> None:
        inits.append(1)
        refs["c"] = await sup.spawn(lambda: Counter(store), "c",
                                    policy=RestartPolicy(max_restarts=0, backoff=0.01))

    async with open_runtime(policy=FAST) as root:
        await root.spawn_supervisor("partitions", init)
        old = refs["c"]
        await old.send("boom")  # the child may not restart: its supervisor escalates
        with anyio.fail_after(30):
            while refs["c"] is old:
                await anyio.sleep(0.01)
        assert len(inits) == 2
        assert await refs["c"].ask("get") == 0
        assert root.restarts["partitions"] == 1


@pytest.mark.anyio
async def test_backpressure_and_mailbox_full() -> None:
    gate = anyio.Event()

    class Slow(Actor[Any]):
        mailbox_size = 2

        async def handle(self, message: Any) -> Any:
            await gate.wait()
            return message

    async with open_runtime() as root:
        ref = await root.spawn(Slow, "slow")
        await ref.send(1)  # taken by the actor, which now waits on the gate
        with anyio.fail_after(5):
            while ref.statistics().current_buffer_used:
                await anyio.sleep(0.001)
        ref.send_nowait(2)
        ref.send_nowait(3)
        with pytest.raises(errors.MailboxFull, match="await send"):
            ref.send_nowait(4)
        with pytest.raises(errors.AskTimeout):
            await ref.ask(5, timeout=0.05)
        gate.set()
        assert await ref.ask(6, timeout=5) == 6


@pytest.mark.anyio
async def test_shutdown_drains_queued_messages() -> None:
    store: dict[str, Any] = {}
    async with open_runtime() as root:
        ref = await root.spawn(lambda: Counter(store), "c")
        for _ in range(100):
            await ref.send(1)
    assert store["count"] == 100 and store["stops"] == 1
    with pytest.raises(errors.ActorStopped):
        await ref.send(1)
