"""Tests of the ``streamrt`` command line (streamrt.cli) and of Kafka's murmur2 key hash.

Most tests run ``main(argv)`` in this process against a real data directory under tmp_path;
the ones about processes (a directory locked by another process, ``--follow`` and signals, a
closed pipe, the installed console script) run the CLI as a subprocess.
"""

from __future__ import annotations

import io
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streamrt import LogStore, __version__
from streamrt._cli import produce as produce_mod
from streamrt._cli._common import Progress
from streamrt._murmur2 import murmur2, partition_for_key
from streamrt.cli import main

WAIT = 15.0  # generous bound for a subprocess to reach a state; passing runs take far less


# --------------------------------------------------------------------------- helpers


class Run:
    """The outcome of one in-process CLI run."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def __repr__(self) -> str:
        return f"Run(code={self.code}, out={self.out[:200]!r}, err={self.err[:300]!r})"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cli(data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """``cli(*args, stdin=b"...")`` runs streamrt in-process on the test's data directory."""
    monkeypatch.delenv("STREAMRT_DATA_DIR", raising=False)

    def run(*args: str, stdin: bytes | None = None) -> Run:
        capsys.readouterr()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main(["--data-dir", str(data), *args])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STREAMRT_DATA_DIR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(*args: str, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "streamrt", *args], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def read_to_end(pipe: io.BufferedReader) -> bytes:
    """Everything up to EOF, failing the test instead of hanging if EOF never comes."""
    box: list[bytes] = []
    t = threading.Thread(target=lambda: box.append(pipe.read()), daemon=True)
    t.start()
    t.join(WAIT)
    assert box, "the process kept its output open"
    return box[0]


class LineReader:
    """Reads a pipe's lines on a thread, so a test can wait for one with a timeout."""

    def __init__(self, pipe: io.BufferedReader) -> None:
        self._q: queue.Queue[bytes] = queue.Queue()
        self._t = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._t.start()

    def _pump(self, pipe: io.BufferedReader) -> None:
        for line in pipe:
            self._q.put(line)
        self._q.put(b"")

    def take(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            line = self._q.get(timeout=WAIT)
            assert line, f"stream ended after {out!r}"
            out.append(line.decode().rstrip("\n"))
        return out


# --------------------------------------------------------------------------- murmur2

KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS.items())
def test_murmur2_matches_kafka_java_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_murmur2_agrees_with_aiokafka_partitioner_on_random_keys() -> None:
    # aiokafka's pure-Python port is an independent transcription of the same Java code.
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    rng = random.Random(7)
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(0, 40))
        mine = murmur2(key)
        assert -(1 << 31) <= mine < 1 << 31
        assert mine & 0xFFFFFFFF == aiokafka_murmur2(key) & 0xFFFFFFFF
        assert partition_for_key(key, 7) == (mine & 0x7FFFFFFF) % 7


# --------------------------------------------------------------------------- basics


def test_version_and_help(cli) -> None:
    r = cli("--version")
    assert (r.code, r.out.strip()) == (0, f"streamrt {__version__}")
    for cmd in (["--help"], ["topics", "--help"], ["topics", "create", "--help"],
                ["topics", "list", "--help"], ["topics", "describe", "--help"],
                ["topics", "delete", "--help"], ["produce", "--help"], ["consume", "--help"]):
        r = cli(*cmd)
        assert r.code == 0 and "usage: streamrt" in r.out, cmd


def test_usage_errors_exit_2(cli, data: Path) -> None:
    assert cli().code == 2  # no command
    assert cli("topics").code == 2  # no action
    assert cli("frobnicate").code == 2
    assert cli("topics", "create", "t").code == 2  # --partitions is required
    r = cli("topics", "create", "t", "--partitions", "-1")
    assert r.code == 2 and "--partitions must be at least 1" in r.err
    assert cli("topics", "create", "t", "-p", "0").code == 2
    assert cli("topics", "create", "t", "-p", "x").code == 2
    assert cli("topics", "create", "t", "-p", "1", "--retention-ms", "-5").code == 2
    assert cli("topics", "create", "t", "-p", "1", "--cleanup-policy", "shred").code == 2
    r = cli("consume", "t", "--offset", "3")
    assert r.code == 2 and "--offset needs --partition" in r.err
    assert cli("consume", "t", "--offset", "3", "--from-beginning", "--partition", "0").code == 2
    assert cli("consume", "t", "--group", "").code == 2
    assert not data.exists()  # nothing was created along the way


@pytest.mark.parametrize("option", ["--retention-ms", "--retention-bytes", "--retention-records"])
def test_a_setting_too_large_to_store_is_a_usage_error(cli, data: Path, option: str) -> None:
    r = cli("topics", "create", "t", "-p", "1", option, "99999999999999999999999")
    assert r.code == 2
    assert f"{option} must be at most {2**63 - 1}" in r.err
    assert "Traceback" not in r.err
    assert not data.exists(), "a rejected create must not create the data directory"
    r = cli("topics", "create", "t", "-p", "1", option, str(2**63 - 1))
    assert r.code == 0, r.err
    assert str(2**63 - 1) in cli("topics", "describe", "t").out


def test_partitions_out_of_range_either_side_is_a_usage_error(cli, data: Path) -> None:
    for n in ("0", "10001"):
        r = cli("topics", "create", "t", "-p", n)
        assert r.code == 2 and "--partitions must be at" in r.err, n
    assert not data.exists()
    assert cli("topics", "create", "t", "-p", "10000").code == 0


def test_a_data_dir_that_is_a_file_or_empty_is_refused(tmp_path: Path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for args in (["topics", "create", "t", "-p", "1"], ["topics", "list"], ["dlq", "list"],
                 ["consume", "t"]):
        assert main(["--data-dir", str(afile), *args]) == 1, args
        err = capsys.readouterr().err
        assert err == (f"streamrt: error: {afile} is a file, not a data directory: give the "
                       f"path of a directory (it is created if missing), or move the file "
                       f"away\n"), args
    assert afile.read_text() == "mine"
    for args in (["topics", "create", "t", "-p", "1"], ["topics", "list"], ["groups", "list"]):
        assert main(["--data-dir", str(afile / "sub"), *args]) == 1, args  # under a file
        err = capsys.readouterr().err
        assert err.startswith(f"streamrt: error: {afile} (in {afile / 'sub'}) is a file, not a "
                              f"data directory"), args
        assert err.count("\n") == 1
    assert main(["--data-dir", "", "topics", "create", "t", "-p", "1"]) == 2
    assert "--data-dir cannot be empty" in capsys.readouterr().err


def test_topic_lifecycle(cli, data: Path) -> None:
    r = cli("topics", "list")
    assert (r.code, r.out) == (0, "")
    assert not data.exists(), "listing must not create the data directory"

    r = cli("topics", "create", "clicks", "--partitions", "3", "--retention-ms", "60000",
            "--retention-records", "100000")
    assert r.code == 0 and r.out == "created topic 'clicks' with 3 partitions\n"
    assert cli("topics", "create", "views", "-p", "1", "--cleanup-policy", "compact").code == 0
    assert cli("topics", "list").lines == ["clicks", "views"]

    # Same settings again: a no-op; other settings: an error naming the existing ones.
    r = cli("topics", "create", "clicks", "--partitions", "3", "--retention-ms", "60000",
            "--retention-records", "100000")
    assert r.code == 0 and "already exists" in r.out
    r = cli("topics", "create", "clicks", "--partitions", "4")
    assert r.code == 1 and r.err.startswith("streamrt: error: topic 'clicks' already exists")
    assert "Traceback" not in r.err

    r = cli("topics", "describe", "clicks")
    assert r.code == 0
    assert "partitions:  3" in r.out and "retention-ms:        60000" in r.out
    assert "retention-records:   100000" in r.out and "cleanup-policy:      delete" in r.out
    assert "compact" in cli("topics", "describe", "views").out

    r = cli("topics", "delete", "clicks")
    assert (r.code, r.out) == (0, "deleted topic 'clicks'\n")
    assert cli("topics", "list").lines == ["views"]
    r = cli("topics", "describe", "clicks")
    assert r.code == 1 and "unknown topic 'clicks'" in r.err


def test_bad_topic_name_and_unknown_topic(cli, data: Path) -> None:
    r = cli("topics", "create", "no spaces!", "-p", "1")
    assert r.code == 1 and r.err.startswith("streamrt: error: invalid topic name 'no spaces!'")
    assert r.err.count("\n") == 1  # one line, no traceback
    assert not data.exists(), "a rejected create must not create the data directory"

    # Without a data directory every topic is unknown, and nothing gets created.
    for cmd in (["topics", "describe", "x"], ["topics", "delete", "x"], ["consume", "x"],
                ["consume", "x", "--group", "g"], ["produce", "x"]):
        r = cli(*cmd, stdin=b"a\n")
        assert r.code == 1, cmd
        assert r.err == ("streamrt: error: unknown topic 'x': create it first "
                         "(streamrt topics create x --partitions N)\n"), cmd
    assert not data.exists()

    cli("topics", "create", "t", "-p", "2")
    for cmd in (["topics", "describe", "x"], ["consume", "x"], ["produce", "x"]):
        assert cli(*cmd, stdin=b"").code == 1
    r = cli("consume", "bad/name")
    assert r.code == 1 and "invalid topic name" in r.err
    r = cli("consume", "t", "--partition", "2")
    assert r.code == 1 and "has no partition 2" in r.err
    r = cli("produce", "t", "--partition", "5", stdin=b"a\n")
    assert r.code == 1 and "has no partition 5" in r.err


def test_read_commands_leave_an_unrelated_directory_alone(cli, data: Path) -> None:
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    assert cli("topics", "list").code == 0
    assert cli("consume", "t").code == 1
    assert sorted(os.listdir(data)) == ["notes.txt"]


def test_global_options_after_the_subcommand(cli, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert main(["topics", "create", "t", "-p", "1", "--data-dir", str(other)]) == 0
    assert main(["topics", "list", "--data-dir", str(other)]) == 0
    assert (other / "log").is_dir()
    assert cli("topics", "list").out == ""  # the fixture's directory is untouched


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("STREAMRT_DATA_DIR", str(tmp_path / "env"))
    assert main(["topics", "create", "t", "-p", "1"]) == 0
    assert (tmp_path / "env" / "log").is_dir()


# --------------------------------------------------------------------------- produce/consume


def test_produce_file_and_consume(cli, tmp_path: Path) -> None:
    cli("topics", "create", "clicks", "--partitions", "3")
    lines = [f"event {i} é" for i in range(5000)]
    r = cli("produce", "clicks", "--file", str(write_lines(tmp_path / "in.txt", lines)))
    assert (r.code, r.out) == (0, "wrote 5000 records to clicks\n")

    r = cli("consume", "clicks")
    assert r.code == 0 and sorted(r.lines) == sorted(lines)

    # Unkeyed records are spread over the partitions, a batch at a time.
    r = cli("topics", "describe", "clicks")
    counts = [int(line.split()[3]) for line in r.lines if line[:1].isdigit()]
    assert sum(counts) == 5000 and max(counts) - min(counts) <= 1000
    total = next(line for line in r.lines if line.startswith("total")).split()
    assert total[1] == "5000" and int(total[2]) > sum(len(x) for x in lines)

    r = cli("consume", "clicks", "--max", "7")
    assert r.code == 0 and len(r.lines) == 7
    assert cli("consume", "clicks", "--max", "0").out == ""
    r = cli("consume", "clicks", "--partition", "1", "--offset", "10", "--max", "2")
    assert r.code == 0 and len(r.lines) == 2


def test_produce_stdin_lines(cli) -> None:
    cli("topics", "create", "t", "-p", "1")
    # CRLF endings lose the CR (as Kafka's console producer); blank lines are empty records;
    # a last line without a newline counts.
    r = cli("produce", "t", stdin=b"one\r\ntwo\n\nthr\xffee\nlast")
    assert r.out == "wrote 5 records to t\n"
    assert cli("consume", "t").lines == ["one", "two", "", "thr\ufffdee", "last"]
    assert cli("produce", "t", stdin=b"").out == "wrote 0 records to t\n"
    assert cli("produce", "t", stdin=b"x\n").out == "wrote 1 record to t\n"


def test_line_chunks_split_long_lines_and_count_lines() -> None:
    data = b"a" * 10 + b"\n" + b"b" * 25 + b"\nc\n\nd"
    chunks = list(produce_mod.iter_line_chunks(io.BytesIO(data), read_bytes=7))
    assert [line for _, lines in chunks for line in lines] == [b"a" * 10, b"b" * 25, b"c", b"", b"d"]
    firsts = [first for first, _ in chunks]
    assert firsts == sorted(firsts) and firsts[0] == 1


def test_consume_verbose(cli, tmp_path: Path) -> None:
    cli("topics", "create", "t", "-p", "2")
    f = write_lines(tmp_path / "k.jsonl", [orjson.dumps({"user": "ann", "n": i}).decode()
                                           for i in range(3)])
    cli("produce", "t", "--file", str(f), "--key-field", "user")
    r = cli("consume", "t", "--verbose")
    assert r.code == 0 and len(r.lines) == 3
    p = partition_for_key(b"ann", 2)
    for i, line in enumerate(r.lines):
        part, off, ts, key, value = line.split("\t")
        assert (part, off, key) == (f"partition:{p}", f"offset:{i}", "key:ann")
        assert ts.startswith("timestamp:") and ts.endswith("Z") and "T" in ts
        assert orjson.loads(value) == {"user": "ann", "n": i}


def test_keyed_records_follow_kafka_partitioning(cli, tmp_path: Path, data: Path) -> None:
    cli("topics", "create", "t", "-p", "5")
    rows = [{"user": f"user-{i % 37}", "i": i} for i in range(2000)]
    rows.append({"user": 17, "i": -1})  # a non-string key is its JSON text
    rows.append({"user": True, "i": -2})
    f = write_lines(tmp_path / "k.jsonl", [orjson.dumps(r).decode() for r in rows])
    r = cli("produce", "t", "-f", str(f), "-k", "user")
    assert r.out == "wrote 2002 records to t\n"
    with LogStore.open(data, maintenance_interval=None) as store:
        seen = 0
        for p in range(5):
            for rec in store.read("t", p, 0, max_records=10_000):
                assert partition_for_key(rec.key, 5) == p
                user = orjson.loads(rec.value)["user"]  # type: ignore[arg-type]
                assert rec.key == (user.encode() if isinstance(user, str) else orjson.dumps(user))
                seen += 1
        assert seen == 2002
        keys = {bytes(rec.key) for p in range(5) for rec in store.read("t", p, 0)}  # type: ignore[arg-type]
    assert {b'"user-0"'} - keys  # strings are used as they are, not JSON-quoted
    assert {b"user-0", b"17", b"true"} <= keys


def test_fixed_partition(cli) -> None:
    cli("topics", "create", "t", "-p", "3")
    assert cli("produce", "t", "--partition", "2", stdin=b"a\nb\n").code == 0
    assert cli("produce", "t", "--partition", "1", "-k", "k", stdin=b'{"k": "x"}\n').code == 0
    assert cli("consume", "t", "--partition", "2").lines == ["a", "b"]
    assert cli("consume", "t", "--partition", "1", "-v").lines[0].startswith("partition:1\toffset:0")
    assert cli("consume", "t", "--partition", "0").out == ""


def test_key_field_errors_name_the_line_and_write_nothing(cli, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cli("topics", "create", "t", "-p", "2")
    # Small reads make the bad line land many chunks after the first: a --file is checked in
    # full before anything is written.
    monkeypatch.setattr(produce_mod, "READ_BYTES", 64)
    good = [orjson.dumps({"id": i}).decode() for i in range(50)]
    for bad, why in (("not json", "is not JSON"), ("[1, 2]", "is JSON but not an object"),
                     ('{"other": 1}', "has no field 'id'")):
        f = write_lines(tmp_path / "bad.jsonl", [*good, bad, *good])
        r = cli("produce", "t", "--file", str(f), "--key-field", "id")
        assert r.code == 1, r
        assert r.err.startswith(f"streamrt: error: line 51 of {f} {why}"), r.err
        assert r.err.endswith("nothing was written\n") and r.err.count("\n") == 1
        assert r.out == ""
    assert cli("consume", "t").out == ""


def test_key_field_error_on_stdin_keeps_earlier_chunks(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("topics", "create", "t", "-p", "1")
    monkeypatch.setattr(produce_mod, "READ_BYTES", 1 << 20)
    good = b"".join(orjson.dumps({"id": i}) + b"\n" for i in range(10))

    class TwoReads(io.BytesIO):
        """A pipe that delivers the good lines, then the rest, in two reads."""

        def read1(self, n: int = -1) -> bytes:
            return super().read1(len(good) if self.tell() == 0 else n)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(TwoReads(good + b'{"id": 1}\nnope\n')))
    r = cli("produce", "t", "-k", "id")
    assert r.code == 1
    assert "line 12 of stdin is not JSON" in r.err
    assert "the 10 records before line 11 were written, nothing from line 11 on" in r.err
    assert len(cli("consume", "t").lines) == 10


def test_missing_file(cli, tmp_path: Path) -> None:
    cli("topics", "create", "t", "-p", "1")
    r = cli("produce", "t", "--file", str(tmp_path / "nope.txt"))
    assert r.code == 1
    assert r.err == f"streamrt: error: cannot read --file {tmp_path / 'nope.txt'}: No such file or directory\n"


def test_group_commits_and_resumes(cli, tmp_path: Path, data: Path) -> None:
    cli("topics", "create", "t", "-p", "3")
    lines = [f"r{i}" for i in range(3000)]
    cli("produce", "t", "-f", str(write_lines(tmp_path / "in.txt", lines)))
    first = cli("consume", "t", "--group", "g", "--max", "1200")
    assert first.code == 0 and len(first.lines) == 1200
    rest = cli("consume", "t", "--group", "g")
    assert len(rest.lines) == 1800
    assert sorted(first.lines + rest.lines) == sorted(lines)
    assert cli("consume", "t", "--group", "g").out == ""  # all committed
    # Another group, and no group at all, start from the beginning.
    assert len(cli("consume", "t", "--group", "other").lines) == 3000
    assert len(cli("consume", "t").lines) == 3000
    # --from-beginning rereads, and commits the end again.
    assert len(cli("consume", "t", "--group", "g", "--from-beginning").lines) == 3000
    with LogStore.open(data, maintenance_interval=None) as store:
        committed = store.committed("g", "t")
        # Batches of 1,000 unkeyed records went to each partition in turn.
        assert committed == {("t", p): 1000 for p in range(3)}
    # New records are what the group sees next.
    cli("produce", "t", stdin=b"new1\nnew2\n")
    assert sorted(cli("consume", "t", "-g", "g").lines) == ["new1", "new2"]


def test_group_offset_removed_by_retention_restarts_at_log_start(cli, data: Path) -> None:
    cli("topics", "create", "t", "-p", "1", "--retention-records", "5")
    for i in range(3):  # three produce runs: three batches of five
        cli("produce", "t", stdin="".join(f"{i}-{j}\n" for j in range(5)).encode())
    assert cli("consume", "t", "-g", "g", "--max", "2").lines == ["0-0", "0-1"]
    with LogStore.open(data, maintenance_interval=None) as store:
        store.run_retention()
        assert store.log_start_offset("t", 0) == 10
    r = cli("consume", "t", "-g", "g")
    assert r.code == 0 and r.lines == [f"2-{j}" for j in range(5)]
    assert "no longer stored; reading from offset 10" in r.err
    r = cli("consume", "t", "--partition", "0", "--offset", "3")
    assert r.code == 1 and "offset 3 is out of range for t[0]: valid offsets are 10 to 15" in r.err
    r = cli("topics", "describe", "t")
    assert [line.split() for line in r.lines if line.startswith("0 ")] == [["0", "10", "15", "5", r.lines[-2].split()[4]]]


def test_offset_out_of_range(cli) -> None:
    cli("topics", "create", "t", "-p", "1")
    cli("produce", "t", stdin=b"a\nb\n")
    r = cli("consume", "t", "--partition", "0", "--offset", "3")
    assert r.code == 1 and r.out == ""
    assert r.err.startswith("streamrt: error: offset 3 is past the end of t[0]: valid offsets are 0 to 2")
    assert cli("consume", "t", "--partition", "0", "--offset", "2").out == ""  # the end is fine
    assert cli("consume", "t", "--partition", "0", "--offset", "1").lines == ["b"]


def test_debug_shows_the_traceback(cli) -> None:
    r = cli("--debug", "consume", "nope")
    assert r.code == 1 and "Traceback" in r.err and "UnknownTopic" in r.err
    assert r.err.rstrip().endswith("streamrt: error: unknown topic 'nope': create it first "
                                   "(streamrt topics create nope --partitions N)")


def test_interrupt_and_unexpected_errors(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrt._cli import topics

    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(topics, "cmd_list", interrupted)
    r = cli("topics", "list")
    assert (r.code, r.err) == (130, "")

    def buggy(_args: object) -> int:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(topics, "cmd_list", buggy)
    r = cli("topics", "list")
    assert r.code == 1 and r.err == ("streamrt: error: unexpected ZeroDivisionError: oops "
                                     "(run with --debug for the traceback)\n")


def test_progress_draws_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    p = Progress("writing", stream=tty, interval=0)
    p.update(1234)
    p.clear()
    assert "writing: 1,234" in tty.getvalue() and tty.getvalue().endswith("\r\033[K")
    plain = io.StringIO()
    q = Progress("writing", stream=plain, interval=0)
    q.update(5)
    q.clear()
    assert plain.getvalue() == ""


# --------------------------------------------------------------------------- other processes


def test_locked_data_dir_names_the_holder(cli, data: Path) -> None:
    cli("topics", "create", "t", "-p", "1")
    with LogStore.open(data, maintenance_interval=None):
        proc = subprocess.run(
            [sys.executable, "-m", "streamrt", "--data-dir", str(data), "--lock-timeout", "0.2",
             "topics", "list"],
            env=subprocess_env(), capture_output=True, timeout=WAIT)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err.startswith(f"streamrt: error: data directory {data} is in use by process {os.getpid()}")
    assert err.count("\n") == 1 and proc.stdout == b""


@pytest.fixture
def topic_with_records(cli, tmp_path: Path) -> Iterator[None]:
    cli("topics", "create", "t", "-p", "2")
    cli("produce", "t", "-f", str(write_lines(tmp_path / "in.txt", ["a", "b", "c"])))
    yield


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_follow_prints_new_records_and_stops_cleanly(cli, data: Path, topic_with_records: None,
                                                     sig: signal.Signals) -> None:
    proc = spawn("--data-dir", str(data), "consume", "t", "--follow", "--group", "g")
    try:
        out = LineReader(proc.stdout)  # type: ignore[arg-type]
        assert sorted(out.take(3)) == ["a", "b", "c"]
        # The follower holds the directory only while it reads, so another process (this one)
        # can produce meanwhile; the CLI waits out those milliseconds (--lock-timeout).
        assert cli("produce", "t", stdin=b"d\ne\n").code == 0
        assert sorted(out.take(2)) == ["d", "e"]
        proc.send_signal(sig)
        assert proc.wait(timeout=WAIT) == 0
        assert proc.stderr.read() == b""  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Everything printed was committed.
    assert cli("consume", "t", "--group", "g").out == ""


def test_interrupted_consume_commits_what_it_printed_and_exits_130(cli, data: Path,
                                                                     tmp_path: Path) -> None:
    cli("topics", "create", "t", "-p", "1")
    cli("produce", "t", "-f", str(write_lines(tmp_path / "big.txt", ["x" * 100] * 20_000)))
    proc = spawn("--data-dir", str(data), "consume", "t", "--group", "g")
    assert proc.stdout is not None
    # One read chunk is far more than a pipe holds, so once the first line is here the consumer
    # is blocked writing the rest of that chunk: Ctrl-C arrives mid-output, deterministically.
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    # Reading on unblocks it: it finishes the chunk, commits and stops. (Not communicate():
    # it would skip what readline() already buffered.)
    rest = read_to_end(proc.stdout)
    err = read_to_end(proc.stderr)  # type: ignore[arg-type]
    proc.wait(timeout=WAIT)
    printed = 1 + rest.count(b"\n")
    assert first == b"x" * 100 + b"\n"
    assert (proc.returncode, err) == (130, b"")
    assert printed < 20_000
    with LogStore.open(data, maintenance_interval=None) as store:
        assert store.committed("g") == {("t", 0): printed}


def test_closed_pipe_ends_quietly(cli, data: Path, tmp_path: Path) -> None:
    cli("topics", "create", "t", "-p", "1")
    # Far more than a pipe buffer holds, so the consumer is still writing when the reader leaves.
    cli("produce", "t", "-f", str(write_lines(tmp_path / "big.txt", ["y" * 200] * 5_000)))
    proc = spawn("--data-dir", str(data), "consume", "t")
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"y" * 200 + b"\n"
    proc.stdout.close()
    assert proc.wait(timeout=WAIT) == 0
    assert proc.stderr.read() == b""


def test_console_script(cli, data: Path) -> None:
    script = shutil.which("streamrt", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the streamrt console script is not installed next to this python")
    cli("topics", "create", "t", "-p", "1")
    cli("produce", "t", stdin=b"hello\n")
    proc = subprocess.run([script, "--data-dir", str(data), "consume", "t"],
                          env=subprocess_env(), capture_output=True, timeout=WAIT)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hello\n", b"")
    proc = subprocess.run([script, "--version"], env=subprocess_env(), capture_output=True,
                          timeout=WAIT)
    assert proc.stdout.decode().strip() == f"streamrt {__version__}"
