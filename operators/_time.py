"""Event time and watermarks, shared by the operators that wait for time (windows, joins).

Each input partition has its own watermark: the largest timestamp seen on it minus
``max_out_of_orderness``. The operator's watermark is the minimum over the partitions that are
not idle (a partition with nothing to read for a while must not hold every window back), and
it never goes backwards. A watermark ``W`` says "no more elements before ``W`` are expected":
an element with a timestamp at or after ``W`` is still on time.

A partition can also go quiet *for this operator* while its source is busy: a filter upstream
may drop all its elements. With ``idle_after_ms`` set (the runner sets it to the app's
``idle_timeout``), a partition that has delivered nothing to the operator for that long on the
clock, while another partition did, is marked idle too; its next element makes it active
again. (An element of a partition idled this way may arrive late: it then goes to the late
output, as with any idleness.)

Processing time is the same machinery with the clock as the only input: every element is
stamped with the clock's time when it is processed, and the watermark is the clock.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable
from typing import Any

import orjson

from streamrt.errors import InvalidArgument

from ._batch import Batch
from ._protocol import END_OF_TIME, BaseOperator

NO_TIME = -(2**62)
WM_KEY = b"\x00wm"


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


_INT_ONLY = frozenset({int})
_EPOCH = _dt.datetime(1970, 1, 1)
_EPOCH_UTC = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_ONE_MS = _dt.timedelta(milliseconds=1)


def _to_ms(t: Any, what: str) -> int:
    """A timestamp function's result as epoch milliseconds: an int as it is, a float rounded
    down, a datetime converted (a naive one is taken as UTC, as Bytewax and Kafka do); anything
    else is refused with what to return instead."""
    if type(t) is int:
        return t
    if type(t) is float and math.isfinite(t):
        return math.floor(t)
    if isinstance(t, _dt.datetime):
        return (t - (_EPOCH if t.tzinfo is None else _EPOCH_UTC)) // _ONE_MS
    raise InvalidArgument(
        f"{what}: timestamp= returned {type(t).__name__} {t!r}; return event time as epoch "
        f"milliseconds (an int, e.g. e['ts']) or a datetime")


class TimedOperator(BaseOperator):
    """Base for operators driven by watermarks; subclasses implement ``_close(part)`` and put
    late elements in ``self.late`` (taken by the runner through :meth:`take_late`)."""

    #: Whether the end of a bounded run closes everything. Operators whose closing emits
    #: nothing (dedupe, joins) keep their state instead, for a later run over more input.
    flush_at_end = True

    def __init__(
        self, timestamp: Callable[[Any], int] | None, max_out_of_orderness: int,
        processing_time: bool = False, clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.timestamp = timestamp
        self.ooo = max_out_of_orderness
        self.processing_time = processing_time
        self.clock = clock
        self.max_ts: dict[int, int] = {}
        self.idle: set[int] = set()
        self.wm = NO_TIME
        self.idle_after: int | None = None
        self.last_seen: dict[int, int] = {}  # partition -> clock when it last delivered
        self.late: list[Batch] = []
        self.holding = 0  # nested holds (see hold())

    def open_parts(self, parts: list[int], idle_after_ms: int | None = None) -> None:
        """The input partitions that feed this operator (each holds the watermark back until it
        has data or is idle); ``idle_after_ms``: see the module doc."""
        now = self.clock()
        for p in parts:
            self.max_ts.setdefault(p, NO_TIME)
            self.last_seen[p] = now
        self.idle_after = idle_after_ms

    def _times(self, batch: Batch, what: str) -> list[int]:
        """Each element's time; records the partition's progress."""
        n = len(batch.values)
        if self.processing_time:
            now = self.clock()
            ts = [now] * n
        elif self.timestamp is not None:
            tsf = self.timestamp
            ts = [tsf(v) for v in batch.values]
            if not _INT_ONLY.issuperset(map(type, ts)):
                ts = [_to_ms(t, what) for t in ts]
        elif batch.ts is not None:
            ts = batch.ts
        else:
            raise InvalidArgument(
                f"{what} needs event time: pass timestamp=lambda e: ... (ms), read from a "
                f"topic, whose records carry timestamps, or use processing time"
            )
        part = batch.part
        self.idle.discard(part)
        if self.idle_after is not None:
            self._quiet_parts(part)
        if ts:
            hi = max(ts)
            if hi >= END_OF_TIME or min(ts) <= NO_TIME:
                bad = next(t for t in ts if not NO_TIME < t < END_OF_TIME)
                raise InvalidArgument(
                    f"{what}: event time {bad} ms is beyond what streamrt supports (2**62 ms "
                    f"either side of 1970); give event time as epoch milliseconds")
            if hi > self.max_ts.get(part, NO_TIME):
                self.max_ts[part] = hi
        return ts

    def _quiet_parts(self, part: int) -> None:
        now = self.clock()
        seen = self.last_seen
        seen[part] = now
        limit = now - self.idle_after  # type: ignore[operator]
        for p in self.max_ts:
            if p not in self.idle and seen.get(p, now) <= limit:
                self.idle.add(p)

    def _watermark(self) -> int:
        if self.processing_time:
            return self.clock()
        active = [t for p, t in self.max_ts.items() if p not in self.idle]
        if not active:
            return self.wm
        low = min(active)
        return low - self.ooo if low != NO_TIME else NO_TIME

    def on_idle(self, part: int) -> list[Batch]:
        self.idle.add(part)
        return self._advance(part)

    def on_watermark(self, watermark: int) -> list[Batch]:
        """Force the watermark forward (end of a bounded input: everything closes)."""
        if watermark >= END_OF_TIME and not self.flush_at_end:
            return []
        if watermark > self.wm:
            before, self.wm = self.wm, watermark
            out = self._close(-1)
            if watermark >= END_OF_TIME:
                # The end of a bounded run flushes every window, but event time did not really
                # reach the end of time: a later run (a topic read until caught up again) goes
                # on from the real watermark, or all its elements would be late.
                self.wm = before
            return out
        return []

    def hold(self) -> None:
        """Keep the watermark where it is until the matching :meth:`release` (holds nest).
        The runner holds it while one source batch goes through the graph, so elements that
        reach this operator by two paths (the two sides of a self-join, the branches of a
        merge) are judged late against the same watermark; and while it retries a failed
        batch's elements one by one (``on_error="dead_letter"``), so each is judged against
        the watermark from before that batch, not one its batch-mates moved."""
        self.holding += 1

    def release(self, part: int) -> list[Batch]:
        """End a :meth:`hold`; what the watermark's catching up closes once none is left."""
        self.holding -= 1
        return self._advance(part) if not self.holding else []

    def _advance(self, part: int) -> list[Batch]:
        if self.holding:
            return []
        wm = self._watermark()
        if wm > self.wm:
            self.wm = wm
            return self._close(part)
        return []

    def _close(self, part: int) -> list[Batch]:
        raise NotImplementedError

    def _time_snapshot(self) -> bytes:
        return orjson.dumps({"wm": self.wm, "max_ts": list(self.max_ts.items()),
                             "idle": sorted(self.idle)})

    def _time_restore(self, raw: bytes) -> None:
        d = orjson.loads(raw)
        self.wm = d["wm"]
        self.max_ts.update({p: t for p, t in d["max_ts"]})
        self.idle.update(d.get("idle", ()))

    def _with_time(self, changes: dict[bytes, bytes | None]) -> dict[bytes, bytes | None]:
        """A snapshot: the operator's state changes plus its event-time progress."""
        changes[WM_KEY] = self._time_snapshot()
        return changes

    def _restore_time(self, handle: Any) -> None:
        """Event-time progress back from a checkpoint (a handle with ``get``, or only the
        ``items`` of the original protocol)."""
        wm = handle.get(WM_KEY) if hasattr(handle, "get") else next(
            (raw for k, raw in handle.items() if k == WM_KEY), None)
        if wm is not None:
            self._time_restore(wm)

    def take_late(self) -> list[Batch]:
        """The late elements set aside since the last call."""
        late, self.late = self.late, []
        return late
