"""``streamrt dlq list|inspect|replay`` against a data directory whose queue dead-lettered
messages (made with the embedded broker first, then closed: one process owns a directory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

import streamrt as sr
from streamrt.cli import main


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cli(data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("STREAMRT_DATA_DIR", raising=False)

    def run(*args: str) -> Run:
        capsys.readouterr()
        code = main(["--data-dir", str(data), *args])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def run_broker(data: Path, fn: Any) -> Any:
    async def go() -> Any:
        async with sr.open(data, maintenance_interval=None) as broker:
            return await fn(broker)

    return anyio.run(go, backend="trio")


def make_dead_letters(data: Path) -> None:
    """jobs/workers dead-letters 3 of 6 messages: 2 rejected, 1 after max deliveries."""

    async def fn(broker: Any) -> None:
        async with broker.queue("jobs", group="workers", max_deliveries=2,
                                dead_letter="jobs.dlq") as q:
            for i in range(6):
                await q.publish({"i": i}, key=f"k{i}", headers={"trace": f"t{i}"})
            left = 6
            with anyio.fail_after(15):
                async for m in q:
                    i = m.value["i"]
                    if i in (1, 4):
                        await m.nack(requeue=False)
                    elif i == 2:
                        await m.nack(requeue=True)  # twice: then dead (max_deliveries)
                        if m.delivery_count < 2:
                            continue
                    else:
                        await m.ack()
                    left -= 1
                    if left == 0:
                        break
            await q.flush_acks()
            with anyio.fail_after(15):
                while len(broker.queues.dead_letters("jobs")) < 3:
                    await anyio.sleep(0.001)

    run_broker(data, fn)


def test_list_counts_per_reason(cli: Any, data: Path) -> None:
    make_dead_letters(data)
    r = cli("dlq", "list")
    assert r.code == 0, r.err
    header, row = r.lines
    assert header.split() == ["DLQ", "QUEUES", "PENDING", "REPLAYED", "REASONS"]
    assert row.split() == ["jobs.dlq", "jobs/workers", "3", "0", "rejected=2", "max_deliveries=1"]
    for name in ("jobs", "jobs/workers", "jobs.dlq"):
        assert cli("dlq", "list", name).lines == r.lines


def test_inspect_shows_reasons_and_the_message(cli: Any, data: Path) -> None:
    make_dead_letters(data)
    r = cli("dlq", "inspect", "jobs")
    assert r.code == 0, r.err
    firsts = [line for line in r.lines if not line.startswith("  ")]
    assert [line.split()[0] for line in firsts] == ["jobs.dlq[0]@0", "jobs.dlq[0]@1",
                                                   "jobs.dlq[0]@2"]
    assert "reason=rejected  from jobs[0]@1 (queue jobs/workers)  deliveries=1" in firsts[0]
    assert "  key: k1" in r.lines and "  headers: trace=t1" in r.lines
    assert '  value: {"i":1}' in r.lines
    j = cli("dlq", "inspect", "jobs.dlq", "--json", "--reason", "max_deliveries")
    (obj,) = [orjson.loads(line) for line in j.lines]
    assert (obj["reason"], obj["source_offset"], obj["deliveries"], obj["key"]) == (
        "max_deliveries", 2, 2, "k2")
    assert obj["headers"] == [["trace", "t2"]] and obj["value"] == '{"i":2}'
    assert len(cli("dlq", "inspect", "jobs", "--max", "2").lines) == 2 * 4


def test_replay_sends_letters_back_exactly_once(cli: Any, data: Path) -> None:
    make_dead_letters(data)
    assert cli("dlq", "replay", "jobs", "--dry-run").out == \
        "would replay 3 dead letters to jobs (3)\n"
    r = cli("dlq", "replay", "jobs", "--reason", "rejected", "--max", "1")
    assert (r.code, r.out) == (0, "replayed 1 dead letter to jobs (1)\n")
    assert cli("dlq", "replay", "jobs").out == "replayed 2 dead letters to jobs (2)\n"
    assert cli("dlq", "replay", "jobs").out == "replayed 0 dead letters to nowhere\n"
    assert cli("dlq", "list").lines[1].split() == ["jobs.dlq", "jobs/workers", "0", "3", "-"]
    assert cli("dlq", "inspect", "jobs").out == ""
    assert cli("dlq", "inspect", "jobs", "--all").out.count("(replayed)") == 3

    async def fn(broker: Any) -> list[Any]:
        got = []
        async with broker.queue("jobs", group="workers") as q:
            with anyio.fail_after(15):
                async for m in q:
                    got.append((m.value["i"], m.key, m.headers, m.delivery_count))
                    await m.ack()
                    if len(got) == 3:
                        break
        return got

    back = run_broker(data, fn)
    assert sorted(back) == [(i, b"k%d" % i, [("trace", b"t%d" % i)], 1) for i in (1, 2, 4)]


def test_errors(cli: Any, data: Path) -> None:
    r = cli("dlq", "list")
    assert (r.code, r.out) == (0, "")  # no data directory: nothing to list
    r = cli("dlq", "inspect", "jobs")
    assert r.code == 1 and "no queue or dead-letter topic named 'jobs'" in r.err
    make_dead_letters(data)
    r = cli("dlq", "replay", "nope")
    assert r.code == 1 and "dead-letter topics: jobs.dlq" in r.err
    assert cli("dlq", "inspect", "jobs", "--reason", "bogus").code == 2

    async def drop(broker: Any) -> None:
        await broker.queues.delete("jobs", "workers")
        await broker.delete_topic("jobs")

    run_broker(data, drop)
    r = cli("dlq", "replay", "jobs.dlq")
    assert r.code == 1 and "no longer exists" in r.err
    assert len([ln for ln in cli("dlq", "inspect", "jobs.dlq").lines
                if not ln.startswith("  ")]) == 3


def test_dry_run_and_replay_agree_when_a_source_partition_is_gone(cli: Any, data: Path) -> None:
    async def make(broker: Any) -> None:
        await broker.create_topic("tasks", partitions=2)
        p = broker.producer()
        for i in range(4):
            await p.send("tasks", {"i": i}, partition=i % 2)
        async with broker.queue("tasks", group="w", dead_letter="tasks.dlq") as q:
            with anyio.fail_after(15):
                got = 0
                while got < 4:
                    for m in await q.get(max=4, timeout=15):
                        await m.nack(requeue=False)
                        got += 1
            await q.flush_acks()
        with anyio.fail_after(15):
            while len(broker.queues.dead_letters("tasks")) < 4:
                await anyio.sleep(0.001)
        await broker.delete_topic("tasks")
        await broker.create_topic("tasks", partitions=1)

    run_broker(data, make)
    letters = [ln.split()[0] for ln in cli("dlq", "inspect", "tasks").lines
               if not ln.startswith("  ") and "from tasks[1]" in ln]
    assert len(letters) == 2
    for dry in (["--dry-run"], []):
        r = cli("dlq", "replay", "tasks", *dry)
        assert r.code == 1 and r.out == "", dry
        for letter in letters:  # each letter that cannot go back is named, with what to do
            assert (f"cannot replay: dead letter {letter} came from partition 1 of topic "
                    f"'tasks', which now has 1 (0 to 0): create the topic again with at least "
                    f"2 partitions, or leave the letter in place") in r.err
        assert "2 of the 4 selected dead letters cannot be replayed" in r.err
        assert "Traceback" not in r.err
    assert cli("dlq", "list").lines[1].split()[2:4] == ["4", "0"]  # nothing was replayed
    # the letters from partition 0 alone can go back: dry run and replay agree
    assert "from tasks[0]" in cli("dlq", "inspect", "tasks", "--max", "1").lines[0]
    r = cli("dlq", "replay", "tasks", "--max", "1", "--dry-run")
    assert (r.code, r.out) == (0, "would replay 1 dead letter to tasks (1)\n")
    r = cli("dlq", "replay", "tasks", "--max", "1")
    assert (r.code, r.out) == (0, "replayed 1 dead letter to tasks (1)\n")


def test_help_lists_the_dlq_commands(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "--help"]) == 0
    out = capsys.readouterr().out
    for action in ("list", "inspect", "replay"):
        assert action in out
