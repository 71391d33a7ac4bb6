"""Sources: where a pipeline's elements come from, read batch by batch.

A source has partitions; each partition is read from a position that the checkpoint records,
so a restart resumes where the last checkpoint left off.

- topics: records of a streamrt topic, values deserialised (JSON by default), record
  timestamps kept as event time; unbounded unless the app runs ``until_caught_up``;
- bounded iterables and generators (demos and tests): one partition; on restart the iterable
  is run again and the elements before the checkpointed position skipped, which is correct
  only for deterministic sources. A one-shot iterator (a generator object) cannot run again:
  it is wrapped in :class:`OnceIterable`, which keeps what it handed out since the last
  checkpoint, so a task restarted in the same process replays those elements (and an error
  the iterator raised) instead of losing them;
- text files (log aggregation): lines of a file, the position a byte offset; ``follow=True``
  tails it.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio
import attrs

from .._serde import Serde, resolve
from ..errors import InvalidArgument, PipelineError
from ._graph import user_line

log = logging.getLogger(__name__)


class SourceReader:
    """Reads one source's partitions from given positions."""

    parts: list[int]
    bounded: bool

    def positions(self) -> dict[int, int]:
        raise NotImplementedError

    def seek(self, positions: dict[int, int]) -> None:
        raise NotImplementedError

    def checkpointed(self, positions: dict[int, int]) -> None:
        """A checkpoint with these positions is durable (what is before them is not needed
        again)."""

    async def read(self, part: int, max_records: int) -> tuple[list[Any], list[int] | None, bool]:
        """(values, timestamps or None, exhausted)."""
        raise NotImplementedError


class OnceIterable:
    """A one-shot iterator as a source that a restarted task can read again: the elements it
    handed out since the last checkpoint are kept (:meth:`forget_before` drops what a
    checkpoint covers), and an error it raised is raised again to a reader that gets that far,
    as a deterministic iterable run again would."""

    def __init__(self, it: Iterator[Any], origin: Any) -> None:
        self._it = it
        self.origin = origin  # for messages: the generator's function
        self._kept: list[Any] = []
        self._base = 0  # stream position of _kept[0]
        self._error: Exception | None = None

    def iter_from(self, pos: int) -> Iterator[Any]:
        """The elements from stream position ``pos`` on: kept ones, then new ones (those
        before ``pos`` that were never kept are skipped: a checkpoint covers them)."""
        if pos < self._base:
            raise PipelineError(
                f"{describe(self.origin)} cannot go back to element {pos}: a generator object "
                f"runs once; pass the generator function instead (app.stream(gen), not gen())")
        p = pos
        while True:
            kept = self._kept
            i = p - self._base  # (checkpoints move _base while this runs)
            if i < len(kept):
                yield kept[i]
                p += 1
                continue
            if self._error is not None:
                raise self._error
            try:
                v = next(self._it)
            except StopIteration:
                return
            except Exception as e:
                self._error = e
                raise
            if i > len(kept):  # before pos: what is kept and this one are not needed again
                self._base += len(kept) + 1
                kept.clear()
                continue
            kept.append(v)
            p += 1
            yield v

    def forget_before(self, pos: int) -> None:
        drop = min(pos - self._base, len(self._kept))
        if drop > 0:
            del self._kept[:drop]
            self._base += drop


def describe(origin: Any) -> str:
    """A source's user object for messages: a function or generator with its line."""
    code = getattr(origin, "gi_code", None)
    if code is not None:
        return f"{code.co_name} at {code.co_filename}:{code.co_firstlineno}"
    return user_line(origin)


class IterableReader(SourceReader):
    def __init__(self, make: Callable[[], Iterable[Any]], name: str = "source") -> None:
        self._make = make
        self.name = name
        self._once: OnceIterable | None = None
        self._it = self._start(0)
        self._pos = 0
        self.parts = [0]
        self.bounded = True

    def _start(self, pos: int) -> Iterator[Any]:
        """An iterator at ``pos`` (a re-run iterable is skipped there by :meth:`seek`)."""
        made = self._guard(self._make)
        if isinstance(made, OnceIterable):
            self._once = made
            return made.iter_from(pos)
        return self._guard(lambda: iter(made))

    def _guard(self, step: Callable[[], Any]) -> Any:
        """Run a step of the user's iterable; its exception is reported as the source's (a
        restart replays from the last checkpoint, so it comes back if the iterable is
        deterministic)."""
        try:
            return step()
        except PipelineError:
            raise
        except Exception as e:
            origin = self._once.origin if self._once is not None else self._make
            raise PipelineError(f"source {self.name!r} ({describe(origin)}) raised {e!r}") from e

    def positions(self) -> dict[int, int]:
        return {0: self._pos}

    def checkpointed(self, positions: dict[int, int]) -> None:
        if self._once is not None:
            self._once.forget_before(positions.get(0, 0))

    def seek(self, positions: dict[int, int]) -> None:
        target = positions.get(0, 0)
        if self._once is not None:
            self._it = self._once.iter_from(target)
            self._pos = target
            return
        if target < self._pos:
            self._it = self._start(0)
            self._pos = 0
        it, n = self._it, target - self._pos
        skipped = self._guard(lambda: sum(1 for _ in itertools.islice(it, n)))
        self._pos += skipped

    async def read(self, part: int, max_records: int) -> tuple[list[Any], list[int] | None, bool]:
        vals = self._guard(lambda: list(itertools.islice(self._it, max_records)))
        self._pos += len(vals)
        return vals, None, len(vals) < max_records


class TopicReader(SourceReader):
    def __init__(self, broker: Any, topic: str, serde: Serde, until_caught_up: bool,
                 max_wait: float, with_keys: bool = False) -> None:
        self.broker = broker
        self.with_keys = with_keys  # values become (record key bytes, value): tables need keys
        self.topic = topic
        self.serde = serde
        self.parts = list(range(broker.topic(topic).partitions))
        self.bounded = until_caught_up
        self.max_wait = max_wait
        self._pos = {p: broker.log_start_offset(topic, p) for p in self.parts}
        self.undecodable: list[Undecodable] = []

    def positions(self) -> dict[int, int]:
        return dict(self._pos)

    def take_undecodable(self) -> list[Undecodable]:
        """The records set aside since the last call (see :class:`Undecodable`)."""
        out, self.undecodable = self.undecodable, []
        return out

    def _decode_each(self, part: int, recs: list[Any]) -> tuple[list[Any], list[int], list[Any]]:
        loads = self.serde.loads
        vals: list[Any] = []
        ts: list[int] = []
        kept: list[Any] = []
        for r in recs:
            try:
                v = loads(r.value) if r.value is not None else None
            except Exception as e:
                self.undecodable.append(
                    Undecodable(self.topic, part, r.offset, r.value, r.timestamp, e))
                continue
            vals.append(v)
            ts.append(r.timestamp)
            kept.append(r)
        return vals, ts, kept

    def seek(self, positions: dict[int, int]) -> None:
        for p, off in positions.items():
            self._pos[int(p)] = max(off, self.broker.log_start_offset(self.topic, int(p)))

    async def read(self, part: int, max_records: int) -> tuple[list[Any], list[int] | None, bool]:
        wait = 0.0 if self.bounded else self.max_wait
        recs = await self.broker.fetch(self.topic, part, self._pos[part], max_records=max_records,
                                       max_wait=wait)
        if not recs:
            return [], None, self.bounded
        nxt = recs.next_offset
        loads = self.serde.loads
        vals = []
        ts = []
        try:
            for r in recs:
                vals.append(loads(r.value) if r.value is not None else None)
                ts.append(r.timestamp)
        except Exception:  # a record the serde cannot read: set it aside, keep the others
            recs = list(recs)
            vals, ts, kept = self._decode_each(part, recs)
            recs = kept
        if self.with_keys:
            vals = [(r.key, v) for r, v in zip(recs, vals)]
        self._pos[part] = nxt
        caught_up = self.bounded and self._pos[part] >= self.broker.high_watermark(self.topic, part)
        return vals, ts, caught_up


@attrs.frozen
class Undecodable:
    """A topic record a source's serde could not read: the runner dead-letters it or fails
    the run, as ``on_error`` says."""

    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp: int
    error: Exception

    def describe(self) -> str:
        return f"record {self.topic}[{self.partition}]@{self.offset}"


#: How long a followed file's reader waits after finding nothing new (seconds).
FOLLOW_POLL = 0.1


class FileReader(SourceReader):
    """Lines of a text file, the position the byte offset after the last line read.

    A last line without a newline is a line of its own in a bounded read (the end of the file
    ends it, as for ``str.splitlines``), and the position moves past it, so a rerun over the
    same file does not read it again. If the file grows, a newline right after that position
    is the one the line lacked, and is skipped (the position alone says so: the byte before it
    is not a newline); anything else after it is read as new lines. A followed file waits for
    the newline instead, since the writer may be in the middle of the line: the position stays
    before it until the line is complete (a followed run stopped meanwhile leaves it for the
    next run).

    A followed file may be rotated, as logs are: truncated in place (copytruncate), or renamed
    and created anew. Either way the reader starts the new file from its beginning, as
    ``tail -F`` does: it notices a file shorter than its position, or another file (inode) at
    the path; while the path is missing (between the rename and the create) it waits.
    Lines written to the old file after the reader's last poll and before the rename are not
    read; a rotation while the app is stopped is noticed only if the new file is shorter."""

    def __init__(self, path: str, follow: bool, until_caught_up: bool = False) -> None:
        if not follow and not os.path.exists(path):  # (a followed file may come later)
            raise InvalidArgument(f"source file {path} does not exist")
        self.path = path
        self.parts = [0]
        self.follow = follow
        # a followed file counts as bounded when the run stops once caught up, as topics do
        self.bounded = not follow or until_caught_up
        self._pos = 0
        self._inode: int | None = None  # of the followed file last read

    def positions(self) -> dict[int, int]:
        return {0: self._pos}

    def seek(self, positions: dict[int, int]) -> None:
        self._pos = positions.get(0, 0)

    def _rotated(self, f: Any) -> None:
        st = os.fstat(f.fileno())
        if self._inode is not None and st.st_ino != self._inode:
            log.info("source file %s was replaced (rotated): reading the new one from its start",
                     self.path)
            self._pos = 0
        elif st.st_size < self._pos:
            log.info("source file %s was truncated: reading it again from its start", self.path)
            self._pos = 0
        self._inode = st.st_ino

    async def read(self, part: int, max_records: int) -> tuple[list[Any], list[int] | None, bool]:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            if not self.follow:
                raise PipelineError(f"source file {self.path} disappeared while being read"
                                    ) from None
            await anyio.sleep(FOLLOW_POLL)  # being rotated: it comes back
            return [], None, self.bounded
        with f:
            if self.follow:
                self._rotated(f)
            if self._pos:
                f.seek(self._pos - 1)
                if f.read(1) != b"\n" and f.read(1) == b"\n":
                    self._pos += 1  # the newline of a last line read before it was written
            f.seek(self._pos)
            lines = []
            for _ in range(max_records):
                line = f.readline()
                if line.endswith(b"\n"):
                    text = line[:-1]
                elif line and not self.follow:
                    text = line  # the file's end ends its last line
                else:
                    break  # nothing more, or a followed file's partial line: wait for it
                lines.append(text.decode("utf-8", errors="replace"))
                self._pos += len(line)
        if not lines and not self.bounded:
            await anyio.sleep(FOLLOW_POLL)  # nothing new: poll again later, as tail -f does
        return lines, None, self.bounded and len(lines) < max_records


def make_reader(broker: Any, args: dict[str, Any], until_caught_up: bool,
                name: str = "source") -> SourceReader:
    kind = args["source"]
    if kind == "topic":
        return TopicReader(broker, args["topic"], resolve(args.get("serde", "json")),
                           until_caught_up, args.get("max_wait", 0.1), args.get("with_keys", False))
    if kind == "iterable":
        return IterableReader(args["make"], name)
    if kind == "file":
        return FileReader(args["path"], args.get("follow", False), until_caught_up)
    raise InvalidArgument(f"unknown source kind {kind!r}")
