"""Sources: where a pipeline's elements come from, read batch by batch.

A source has partitions; each partition is read from a position that the checkpoint records,
so a restart resumes where the last checkpoint left off.

- topics: records of a streamrt topic, values deserialised (JSON by default), record
  timestamps kept as event time; unbounded unless the app runs ``until_caught_up``;
- bounded iterables and generators (demos and tests): one partition; on restart the iterable
  is run again and the elements before the checkpointed position skipped, which is correct
  only for deterministic sources;
- text files (log aggregation): lines of a file, the position a byte offset; ``follow=True``
  tails it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from typing import Any

from .._serde import Serde, resolve
from ..errors import InvalidArgument, PipelineError
from ._graph import user_line


class SourceReader:
    """Reads one source's partitions from given positions."""

    parts: list[int]
    bounded: bool

    def positions(self) -> dict[int, int]:
        raise NotImplementedError

    def seek(self, positions: dict[int, int]) -> None:
        raise NotImplementedError

    async def read(self, part: int, max_records: int) -> tuple[list[Any], list[int] | None, bool]:
        """(values, timestamps or None, exhausted)."""
        raise NotImplementedError


class IterableReader(SourceReader):
    def __init__(self, make: Callable[[], Iterable[Any]], name: str = "source") -> None:
        self._make = make
        self.name = name
        self._it = self._guard(lambda: iter(make()))
        self._pos = 0
        self.parts = [0]
        self.bounded = True

    def _guard(self, step: Callable[[], Any]) -> Any:
        """Run a step of the user's iterable; its exception is reported as the source's (a
        restart replays from the last checkpoint, so it comes back if the iterable is
        deterministic)."""
        try:
            return step()
        except Exception as e:
            where = f"source {self.name!r} ({user_line(self._make)})"
            raise PipelineError(f"{where} raised {e!r}") from e

    def positions(self) -> dict[int, int]:
        return {0: self._pos}

    def seek(self, positions: dict[int, int]) -> None:
        target = positions.get(0, 0)
        if target < self._pos:
            self._it = self._guard(lambda: iter(self._make()))
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

    def positions(self) -> dict[int, int]:
        return dict(self._pos)

    def seek(self, positions: dict[int, int]) -> None:
        for p, off in positions.items():
            self._pos[int(p)] = max(off, self.broker.log_start_offset(self.topic, int(p)))

    async def read(self, part: int, max_records: int) -> tuple[list[Any], list[int] | None, bool]:
        wait = 0.0 if self.bounded else self.max_wait
        recs = await self.broker.fetch(self.topic, part, self._pos[part], max_records=max_records,
                                       max_wait=wait)
        if not recs:
            return [], None, self.bounded
        loads = self.serde.loads
        vals = []
        ts = []
        for r in recs:
            vals.append(loads(r.value) if r.value is not None else None)
            ts.append(r.timestamp)
        if self.with_keys:
            vals = [(r.key, v) for r, v in zip(recs, vals)]
        self._pos[part] = recs.next_offset
        caught_up = self.bounded and self._pos[part] >= self.broker.high_watermark(self.topic, part)
        return vals, ts, caught_up


class FileReader(SourceReader):
    def __init__(self, path: str, follow: bool) -> None:
        if not os.path.exists(path):
            raise InvalidArgument(f"source file {path} does not exist")
        self.path = path
        self.parts = [0]
        self.bounded = not follow
        self._pos = 0

    def positions(self) -> dict[int, int]:
        return {0: self._pos}

    def seek(self, positions: dict[int, int]) -> None:
        self._pos = positions.get(0, 0)

    async def read(self, part: int, max_records: int) -> tuple[list[Any], list[int] | None, bool]:
        with open(self.path, "rb") as f:
            f.seek(self._pos)
            lines = []
            for _ in range(max_records):
                line = f.readline()
                if not line or not line.endswith(b"\n"):
                    break  # a partial last line waits for its newline
                lines.append(line[:-1].decode("utf-8", errors="replace"))
                self._pos += len(line)
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
        return FileReader(args["path"], args.get("follow", False))
    raise InvalidArgument(f"unknown source kind {kind!r}")
