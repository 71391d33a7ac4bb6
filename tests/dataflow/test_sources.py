"""Text-file sources: a bounded read takes a last line without a newline, a followed one waits
for its newline; the checkpointed position neither repeats nor skips a line across runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

import streamrt as sr
from streamrt.broker import open as open_broker
from streamrt.dataflow import run_app
from streamrt.dataflow._sources import FOLLOW_POLL, FileReader


def _app(path: Path, got: list[Any], follow: bool = False, batch_size: int = 100) -> sr.App:
    app = sr.App("lines", batch_size=batch_size)
    app.stream(sr.file(path, follow=follow), name="log").sink(got.append)
    return app


@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_a_bounded_read_keeps_a_last_line_without_newline(tmp_path: Path, batch_size: int) -> None:
    p = tmp_path / "in.log"
    p.write_bytes(b"a\nb\nc")
    got: list[Any] = []
    r = _app(p, got, batch_size=batch_size).run(data_dir=tmp_path / "d")
    assert got == ["a", "b", "c"] and r.records_in == 3
    # the position is past "c": a rerun over the same file reads nothing again
    assert _app(p, got).run(data_dir=tmp_path / "d").records_in == 0
    # and a rerun over a longer file reads only what was added after it
    p.write_bytes(b"a\nb\nc\nd\ne")
    again: list[Any] = []
    assert _app(p, again).run(data_dir=tmp_path / "d").records_in == 2
    assert again == ["d", "e"]


def test_what_a_grown_file_adds_to_a_line_already_read_is_a_line_of_its_own(
        tmp_path: Path) -> None:
    # documented: the bounded run took "c" as the file's last line; a file that is still being
    # written is read with follow=True, which waits for the newline
    p = tmp_path / "in.log"
    p.write_bytes(b"a\nc")
    got: list[Any] = []
    _app(p, got).run(data_dir=tmp_path / "d")
    p.write_bytes(b"a\ncd\ne\n")
    _app(p, got).run(data_dir=tmp_path / "d")
    assert got == ["a", "c", "d", "e"]


@pytest.mark.parametrize("content, lines", [
    (b"", []), (b"only", ["only"]), (b"a\n", ["a"]), (b"a\n\n", ["a", ""]), (b"\n", [""]),
    ("é\nü".encode(), ["é", "ü"]),
])
def test_bounded_lines_are_those_of_splitlines(tmp_path: Path, content: bytes,
                                               lines: list[str]) -> None:
    p = tmp_path / "in.log"
    p.write_bytes(content)
    got: list[Any] = []
    _app(p, got).run(data_dir=tmp_path / "d")
    assert got == lines == content.decode().splitlines()


def test_a_followed_file_waits_for_the_newline_of_its_last_line(tmp_path: Path) -> None:
    p = tmp_path / "in.log"
    p.write_bytes(b"a\nb\nc")
    reader = FileReader(str(p), follow=True)

    async def read() -> tuple[list[Any], bool]:
        lines, _, exhausted = await reader.read(0, 100)
        return lines, exhausted

    assert trio.run(read) == (["a", "b"], False)
    assert trio.run(read) == ([], False) and reader.positions() == {0: 4}  # before "c"
    with p.open("ab") as f:
        f.write(b"d\n")  # the writer finishes the line
    assert trio.run(read) == (["cd"], False) and reader.positions() == {0: 7}


def test_a_stopped_followed_run_leaves_the_partial_line_for_the_next_run(tmp_path: Path) -> None:
    """A followed run ends only when stopped: it checkpoints the position before a line still
    without its newline, so a later run (here a bounded one, the same step) reads it once."""
    p = tmp_path / "in.log"
    p.write_bytes(b"a\nb\nc")
    got: list[Any] = []

    async def follow_until_b() -> None:
        async with open_broker(tmp_path / "d") as broker:
            with trio.CancelScope() as scope:
                def sink(line: str) -> None:
                    got.append(line)
                    if line == "b":
                        scope.cancel()  # as Ctrl-C does: a graceful stop checkpoints

                app = sr.App("lines")
                app.stream(sr.file(p, follow=True), name="log").sink(sink)
                await run_app(app, broker)
            assert scope.cancelled_caught

    trio.run(follow_until_b)
    assert got == ["a", "b"]
    rest: list[Any] = []
    assert _app(p, rest).run(data_dir=tmp_path / "d").records_in == 1
    assert rest == ["c"]


def test_a_followed_file_with_nothing_new_waits_before_polling_again(tmp_path: Path) -> None:
    """An idle followed file must not be a busy loop (it reopened the file thousands of
    times a second): a read that finds nothing sleeps FOLLOW_POLL first (virtual clock)."""
    p = tmp_path / "in.log"
    p.write_bytes(b"a\n")
    reader = FileReader(str(p), follow=True)

    async def two_reads() -> tuple[list[Any], float, list[Any], float]:
        t0 = trio.current_time()
        first, _, _ = await reader.read(0, 100)
        t1 = trio.current_time()
        second, _, _ = await reader.read(0, 100)
        return first, t1 - t0, second, trio.current_time() - t1

    first, waited1, second, waited2 = trio.run(two_reads, clock=MockClock(autojump_threshold=0))
    assert (first, waited1) == (["a"], 0)  # data: no wait
    assert second == [] and waited2 >= FOLLOW_POLL


def test_a_followed_file_ends_when_the_run_stops_once_caught_up(tmp_path: Path) -> None:
    p = tmp_path / "in.log"
    p.write_bytes(b"a\nb\nc")
    got: list[Any] = []
    r = _app(p, got, follow=True).run(data_dir=tmp_path / "d", until_caught_up=True)
    assert got == ["a", "b"] and r.records_in == 2  # "c" may still be being written


def test_a_followed_file_that_is_rotated_is_read_from_its_new_start(tmp_path: Path) -> None:
    """As tail -F: copytruncate (shorter than the position), rename + create (another inode),
    and the moment between the two (no file: wait, do not fail)."""
    p = tmp_path / "app.log"
    p.write_bytes(b"old 1\nold 2 is a longer line\n")
    reader = FileReader(str(p), follow=True)

    def read() -> list[Any]:
        async def go() -> list[Any]:
            lines, _, exhausted = await reader.read(0, 100)
            assert not exhausted
            return lines
        return trio.run(go, clock=MockClock(autojump_threshold=0))

    assert read() == ["old 1", "old 2 is a longer line"]
    p.write_bytes(b"new 1\n")  # truncated in place, then written
    assert read() == ["new 1"]
    p.rename(tmp_path / "app.log.1")
    assert read() == []  # the path is missing for a moment
    p.write_bytes(b"newer 1\nnewer 2\n" + b"x" * 100 + b"\n")  # a new file, longer than before
    assert read() == ["newer 1", "newer 2", "x" * 100]
    assert reader.positions() == {0: p.stat().st_size}


def test_a_bounded_file_that_disappears_fails_clearly(tmp_path: Path) -> None:
    p = tmp_path / "in.log"
    p.write_bytes(b"a\n")
    reader = FileReader(str(p), follow=False)
    p.unlink()
    with pytest.raises(sr.PipelineError, match="disappeared while being read"):
        trio.run(reader.read, 0, 10)


def test_a_missing_file_is_a_setup_error_but_a_followed_one_is_waited_for(tmp_path: Path) -> None:
    got: list[Any] = []
    with pytest.raises(sr.errors.InvalidArgument, match=r"source 'log': no file .*nope.log to read"):
        _app(tmp_path / "nope.log", got).run(data_dir=tmp_path / "d")
    later = tmp_path / "later.log"
    reader = FileReader(str(later), follow=True)

    async def read() -> list[Any]:
        lines, _, _ = await reader.read(0, 10)
        return lines

    assert trio.run(read, clock=MockClock(autojump_threshold=0)) == []
    later.write_bytes(b"first\n")
    assert trio.run(read, clock=MockClock(autojump_threshold=0)) == ["first"]
