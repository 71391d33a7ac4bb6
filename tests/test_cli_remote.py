"""The CLI's ``--broker HOST:PORT`` mode against a real ``streamrt serve`` subprocess.

Where both modes promise the same output, the tests run once on a data directory (local) and
once through the server (remote) with the same assertions. The server is waited for on its
"listening" line (never a sleep) and stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamrt.broker._queue_dlq import dead_letter_record
from streamrt.cli import main
from test_cli import Run

START_TIMEOUT = 30.0
LISTENING = "streamrt serve: listening on "


class Server:
    """A ``streamrt serve`` subprocess on 127.0.0.1 with a port of its choosing."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamrt", "serve", "--data-dir", str(data_dir),
             "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stdout],  # type: ignore[union-attr]
                         daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.stop()
                pytest.fail(f"streamrt serve did not listen within {START_TIMEOUT} s")
            if line.startswith(LISTENING):
                self.address = line[len(LISTENING):].strip()
                return

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("served") / "data")
    yield s
    s.stop()



class Cli:
    """Runs ``streamrt`` in this process, locally (a data directory) or with --broker."""

    def __init__(self, mode: str, data: Path, broker: str | None, capsys: Any,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.mode, self.data, self.broker = mode, data, broker
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(self, *args: str, stdin: bytes | None = None) -> Run:
        if stdin is not None:
            r, w = os.pipe()
            os.write(w, stdin)
            os.close(w)
            self.monkeypatch.setattr(sys, "stdin", os.fdopen(r, "r"))
        self.capsys.readouterr()
        extra = ["--broker", self.broker] if self.broker else []
        code = main(["--data-dir", str(self.data), *args, *extra])
        out, err = self.capsys.readouterr()
        return Run(code, out, err)


@pytest.fixture(params=["local", "remote"])
def cli(request: pytest.FixtureRequest, tmp_path: Path, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.delenv("STREAMRT_DATA_DIR", raising=False)
    monkeypatch.delenv("STREAMRT_BROKER", raising=False)
    if request.param == "local":
        return Cli("local", tmp_path / "data", None, capsys, monkeypatch)
    server: Server = request.getfixturevalue("server")
    return Cli("remote", tmp_path / "unused", server.address, capsys, monkeypatch)


@pytest.fixture
def remote(server: Server, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.delenv("STREAMRT_BROKER", raising=False)
    return Cli("remote", tmp_path / "unused", server.address, capsys, monkeypatch)


def unique(name: str) -> str:
    """Topic and group names per test: the module's tests share one server."""
    return f"{name}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


# ---- topics


def test_topics_create_list_describe_delete(cli: Cli) -> None:
    t = unique("orders")
    assert cli("topics", "create", t, "-p", "3", "--retention-ms", "60000").lines == [
        f"created topic {t!r} with 3 partitions"]
    again = cli("topics", "create", t, "-p", "3", "--retention-ms", "60000")
    assert (again.code, again.lines) == (0, [f"topic {t!r} already exists with these settings"])
    other = cli("topics", "create", t, "-p", "4")
    assert other.code == 1
    assert f"topic {t!r} already exists with 3 partitions (retention_ms=60000)" in other.err
    assert t in cli("topics", "list").lines
    assert cli("produce", t, "--partition", "1", stdin=b"a\nb\n").code == 0
    d = cli("topics", "describe", t)
    assert d.code == 0
    assert d.lines[:4] == [f"topic:       {t}", "partitions:  3", "cleanup-policy:      delete",
                           "retention-ms:        60000"]
    rows = {line.split()[0]: line.split()[1:4] for line in d.lines[d.lines.index("") + 2:]}
    assert rows["0"] == ["0", "0", "0"] and rows["1"] == ["0", "2", "2"]
    assert rows["total"][0] == "2"
    assert cli("topics", "delete", t).lines == [f"deleted topic {t!r}"]
    assert t not in cli("topics", "list").lines
    gone = cli("topics", "describe", t)
    assert gone.code == 1 and f"unknown topic {t!r}" in gone.err
    assert cli("topics", "delete", t).code == 1


def test_remote_create_refuses_retention_records(remote: Cli) -> None:
    t = unique("rr")
    r = remote("topics", "create", t, "-p", "1", "--retention-records", "5")
    assert r.code == 1 and "--retention-records" in r.err
    assert t not in remote("topics", "list").lines


def test_unknown_topic_is_not_created_by_reading_it(remote: Cli) -> None:
    t = unique("typo")
    assert remote("consume", t).code == 1
    assert remote("produce", t, stdin=b"x\n").code == 1
    assert t not in remote("topics", "list").lines


# ---- produce and consume


def test_produce_then_consume(cli: Cli) -> None:
    t = unique("clicks")
    cli("topics", "create", t, "-p", "3")
    lines = b"".join(orjson.dumps({"user": f"u{i % 4}", "n": i}) + b"\n" for i in range(20))
    w = cli("produce", t, "-k", "user", stdin=lines)
    assert (w.code, w.lines) == (0, [f"wrote 20 records to {t}"])
    assert cli("produce", t, "--partition", "2", stdin=b"tail\n").code == 0
    out = cli("consume", t, "-v")
    assert out.code == 0
    recs = [dict(f.split(":", 1) for f in line.split("\t")[:4]) | {"value": line.split("\t")[4]}
            for line in out.lines]
    assert len(recs) == 21
    # The same key always lands on the same partition, as murmur2 routes it in both modes.
    by_key: dict[str, set[str]] = {}
    for r in recs:
        by_key.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(ps) == 1 for ps in by_key.values()), by_key
    assert {"partition": "2", "key": "null", "value": "tail"}.items() <= next(
        r for r in recs if r["value"] == "tail").items()
    per_part: dict[str, list[int]] = {}
    for r in recs:
        per_part.setdefault(r["partition"], []).append(int(r["offset"]))
    assert all(offs == list(range(len(offs))) for offs in per_part.values())
    start = cli("consume", t, "--partition", "2", "--offset", per_part["2"][-1].__str__())
    assert start.lines == ["tail"]
    past = cli("consume", t, "--partition", "2", "--offset", "999")
    assert past.code == 1 and "past the end" in past.err


def test_consume_group_resumes(cli: Cli) -> None:
    t, g = unique("jobs"), unique("g")
    cli("topics", "create", t, "-p", "2")
    cli("produce", t, stdin=b"".join(b"%d\n" % i for i in range(10)))
    first = cli("consume", t, "--group", g, "--max", "4")
    second = cli("consume", t, "--group", g)
    assert first.code == second.code == 0
    assert len(first.lines) == 4 and len(second.lines) == 6
    assert sorted(first.lines + second.lines, key=int) == [str(i) for i in range(10)]
    assert cli("consume", t, "--group", g).lines == []
    again = cli("consume", t, "--group", g, "--from-beginning")
    assert sorted(again.lines, key=int) == [str(i) for i in range(10)]


def test_consume_headers_survive_the_broker(remote: Cli, server: Server) -> None:
    t = unique("hdr")
    remote("topics", "create", t, "-p", "1")
    asyncio.run(_produce(server.address, t, [(b"k", b"v", [("trace", b"t1")])]))
    got = asyncio.run(_read(server.address, t))
    assert [(r.key, r.value, list(r.headers)) for r in got] == [(b"k", b"v", [("trace", b"t1")])]
    assert remote("consume", t, "-v").lines[0].endswith("\tkey:k\tv")


# ---- groups


def test_groups_list_describe_reset(cli: Cli) -> None:
    t, g = unique("ev"), unique("readers")
    cli("topics", "create", t, "-p", "2")
    cli("produce", t, "--partition", "0", stdin=b"a\nb\nc\n")
    cli("produce", t, "--partition", "1", stdin=b"d\n")
    cli("consume", t, "--group", g, "--max", "4")
    assert g in cli("groups", "list").lines
    d = cli("groups", "describe", g)
    assert d.code == 0 and d.lines[0] == f"group:       {g}"
    table = [line.split() for line in d.lines[d.lines.index("") + 2:]]
    assert table == [[t, "0", "3", "3", "0"], [t, "1", "1", "1", "0"]]
    r = cli("groups", "reset", g, "-t", t, "--to", "earliest")
    assert r.lines == [f"{t}[0]: 3 -> 0", f"{t}[1]: 1 -> 0"]
    dry = cli("groups", "reset", g, "-t", t, "--to", "2", "--partition", "0", "--dry-run")
    assert dry.lines == [f"{t}[0]: 0 -> 2", "dry run: nothing changed"]
    assert sorted(cli("consume", t, "--group", g).lines) == ["a", "b", "c", "d"]
    missing = cli("groups", "describe", unique("nobody"))
    assert missing.code == 1 and "unknown group" in missing.err
    gone = cli("groups", "delete", g)
    assert gone.code == 0 and gone.lines == [f"deleted group {g!r}"]
    assert g not in cli("groups", "list").lines
    again = cli("groups", "delete", g)
    assert again.code == 1 and "unknown group" in again.err


def test_remote_reset_refused_while_the_group_has_members(remote: Cli, server: Server) -> None:
    t, g = unique("live"), unique("busy")
    remote("topics", "create", t, "-p", "1")
    follower = subprocess.Popen(
        [sys.executable, "-m", "streamrt", "consume", t, "--group", g, "--follow",
         "--broker", server.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until the follower has joined and got its partition (Stable)
            d = remote("groups", "describe", g)
            if (d.code == 0 and "members:     1" in d.lines
                    and any(line.startswith("state:       Stable") for line in d.lines)):
                break
            assert time.monotonic() < deadline, d.err
            time.sleep(0.1)
        assert any(f"{t}[0]" in line for line in d.lines if line.startswith("  "))
        r = remote("groups", "reset", g, "-t", t, "--to", "earliest")
        assert r.code == 1 and "has 1 active member" in r.err
        r = remote("groups", "delete", g)
        assert r.code == 1 and "has active members" in r.err
    finally:
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(15) == 0


# ---- dead letters


async def _produce(address: str, topic: str, recs: list[Any], partition: int = 0) -> None:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=address)
    await p.start()
    try:
        for rec in recs:
            key, value, headers = rec[:3]
            await p.send_and_wait(topic, value, key=key, headers=headers, partition=partition)
    finally:
        await p.stop()


async def _read(address: str, topic: str) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=address, auto_offset_reset="earliest")
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        end = (await c.end_offsets([tp]))[tp]
        out: list[Any] = []
        while len(out) < end:
            out += (await c.getmany(tp, timeout_ms=1000)).get(tp, [])
        return out
    finally:
        await c.stop()


class _Rec:
    def __init__(self, offset: int, key: bytes, value: bytes, headers: list[Any]) -> None:
        self.offset, self.key, self.value, self.headers, self.timestamp = (
            offset, key, value, headers, 1_700_000_000_000)


def test_dlq_list_inspect_replay(remote: Cli, server: Server) -> None:
    src = unique("tasks")
    dlq = src + ".dlq"
    remote("topics", "create", src, "-p", "2")
    remote("topics", "create", dlq, "-p", "1")
    letters = []
    for i, reason in enumerate(["rejected", "expired", "rejected", "max_deliveries"]):
        key, value, headers, _ts = dead_letter_record(
            _Rec(i, b"k%d" % i, b"v%d" % i, [("trace", b"t%d" % i)]), reason, src,
            f"{src}/workers", i % 2, 1 + i, 1_700_000_001_000)
        letters.append((key, value, headers))
    asyncio.run(_produce(server.address, dlq, letters))

    listed = remote("dlq", "list")
    row = next(line.split() for line in listed.lines if line.startswith(dlq + " "))
    assert row == [dlq, f"{src}/workers", "4", "0", "rejected=2", "expired=1", "max_deliveries=1"]
    assert [x.split()[0] for x in remote("dlq", "list", src).lines[1:]] == [dlq]  # by queue

    shown = remote("dlq", "inspect", dlq, "--json")
    objs = [orjson.loads(line) for line in shown.lines]
    assert [o["reason"] for o in objs] == ["rejected", "expired", "rejected", "max_deliveries"]
    assert objs[0] | {"dead_lettered_at": 0} == objs[0] | {
        "topic": dlq, "partition": 0, "offset": 0, "source_topic": src, "source_partition": 0,
        "source_offset": 0, "deliveries": 1, "key": "k0", "value": "v0",
        "headers": [["trace", "t0"]], "replayed": False, "dead_lettered_at": 0}
    text = remote("dlq", "inspect", dlq, "--reason", "expired").out
    assert "reason=expired" in text and "  value: v1" in text and "reason=rejected" not in text

    dry = remote("dlq", "replay", dlq, "--reason", "rejected", "--dry-run")
    assert dry.lines == [f"would replay 2 dead letters to {src} (2)"]
    done = remote("dlq", "replay", dlq, "--reason", "rejected")
    assert done.lines == [f"replayed 2 dead letters to {src} (2)"]
    assert remote("dlq", "replay", dlq, "--reason", "rejected").lines == [
        "replayed 0 dead letters to nowhere"]
    out = remote("consume", src, "-v").lines
    assert sorted((line.split("\t")[0], line.split("\t")[3], line.split("\t")[4]) for line in out) \
        == [("partition:0", "key:k0", "v0"), ("partition:0", "key:k2", "v2")]
    row = next(line.split() for line in remote("dlq", "list", dlq).lines if line.startswith(dlq))
    assert row[2:] == ["2", "2", "expired=1", "max_deliveries=1"]
    assert len(remote("dlq", "inspect", dlq).out.split("reason=")) == 3
    assert remote("dlq", "inspect", dlq, "--all").out.count("(replayed)") == 2
    rest = remote("dlq", "replay", dlq, "--max", "1")
    assert rest.lines == [f"replayed 1 dead letter to {src} (1)"]
    assert [o["reason"] for o in map(orjson.loads, remote("dlq", "inspect", dlq, "--json").lines)
            ] == ["max_deliveries"]


def test_dlq_replay_checks_every_letter_first(remote: Cli, server: Server) -> None:
    """Over two dead-letter topics of one queue, a letter of the second that cannot go back
    (its source partition is gone) fails the command before the first's are replayed, and
    --dry-run says the same, as locally."""
    src = unique("jobs")
    remote("topics", "create", src, "-p", "1")
    for dlq, partition in ((src + ".a.dlq", 0), (src + ".b.dlq", 3)):
        remote("topics", "create", dlq, "-p", "1")
        key, value, headers, _ts = dead_letter_record(
            _Rec(0, b"k", b"v", []), "rejected", src, f"{src}/workers", partition, 1,
            1_700_000_001_000)
        asyncio.run(_produce(server.address, dlq, [(key, value, headers)]))
    for args in (["--dry-run"], []):
        r = remote("dlq", "replay", src, *args)
        assert r.code == 1, args
        assert f"cannot replay: dead letter {src}.b.dlq[0]@0 came from partition 3" in r.err
        assert "1 of the 2 selected dead letters cannot be replayed" in r.err
    assert remote("consume", src).lines == []  # nothing was replayed
    pending = {line.split()[0]: line.split()[2] for line in remote("dlq", "list", src).lines[1:]}
    assert pending == {src + ".a.dlq": "1", src + ".b.dlq": "1"}


def test_dlq_unknown_name(remote: Cli) -> None:
    r = remote("dlq", "inspect", unique("nothing"))
    assert r.code == 1 and "no queue or dead-letter topic named" in r.err


# ---- errors


def test_unreachable_broker_is_one_line_within_seconds(capsys: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        for argv in (["topics", "list"], ["consume", "t"], ["groups", "list"],
                     ["dlq", "list"]):
            began = time.monotonic()
            code = main([*argv, "--broker", f"127.0.0.1:{port}"])
            err = capsys.readouterr().err
            assert code == 1
            assert time.monotonic() - began < 6
            assert err.startswith(f"streamrt: error: cannot reach a broker at 127.0.0.1:{port} (")
            assert err.count("\n") == 1 and "Traceback" not in err


def test_broker_from_the_environment(server: Server, tmp_path: Path, capsys: Any,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    t = unique("env")
    monkeypatch.setenv("STREAMRT_BROKER", server.address)
    assert main(["--data-dir", str(tmp_path / "none"), "topics", "create", t, "-p", "1"]) == 0
    assert t in capsys.readouterr().out.splitlines()[0]
    assert not (tmp_path / "none").exists()


def test_bad_broker_address_is_a_usage_error(capsys: Any) -> None:
    assert main(["topics", "list", "--broker", "nowhere"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_locked_data_dir_points_at_the_server(server: Server, capsys: Any) -> None:
    code = main(["--data-dir", str(server.data_dir), "--lock-timeout", "0", "topics", "list"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == (f"streamrt: error: {server.data_dir} is held by streamrt serve "
                   f"(pid {server.proc.pid}), listening on {server.address}; "
                   f"use --broker {server.address}\n")
