"""Event-time windows: tumbling, sliding and session, aggregated per key.

Time is in milliseconds (as Kafka timestamps). Each input partition has its own watermark:
the largest timestamp seen minus ``max_out_of_orderness``; the operator's watermark is the
minimum over partitions that are not idle (an idle partition, one with nothing to read for
a while, must not hold every window back). A window ``[start, end)`` closes, and its result
is emitted, when the watermark reaches ``end + allowed_lateness``. An element whose every
window has already closed is *late*: it is set aside for the late output (a side topic or the
app's dead-letter topic), never silently dropped.

State is a dict ``(key, window start) -> accumulators``, checkpointed as orjson: what changed
since the last snapshot is written in the checkpoint's transaction, closed windows deleted.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import attrs
import orjson

from streamrt.errors import InvalidArgument

from ._aggregations import Compiled
from ._batch import Batch
from ._protocol import BaseOperator, StateHandle

_WM_KEY = b"\x00wm"
NO_TIME = -(2**62)


def _ms(seconds: float | None, ms: int | None, what: str) -> int:
    if (seconds is None) == (ms is None):
        raise InvalidArgument(f"give {what} as seconds= or ms=, exactly one")
    value = ms if ms is not None else round(seconds * 1000)  # type: ignore[operator]
    if not isinstance(value, int) or value <= 0:
        raise InvalidArgument(f"{what} must be a positive duration, got {seconds or ms!r}")
    return value


@attrs.frozen
class Tumbling:
    """Fixed, non-overlapping windows of ``size`` ms: ``[k*size, (k+1)*size)``."""

    size: int


@attrs.frozen
class Sliding:
    """Windows of ``size`` ms starting every ``step`` ms (an element is in size/step windows)."""

    size: int
    step: int


@attrs.frozen
class Session:
    """Per-key activity sessions: a window ends after ``gap`` ms without an element."""

    gap: int


def tumbling(seconds: float | None = None, *, ms: int | None = None) -> Tumbling:
    """Tumbling windows of the given length."""
    return Tumbling(_ms(seconds, ms, "the window size"))


def sliding(
    seconds: float | None = None, step_seconds: float | None = None, *,
    ms: int | None = None, step_ms: int | None = None,
) -> Sliding:
    """Sliding windows of a length, starting every step (step must divide the length)."""
    size = _ms(seconds, ms, "the window size")
    step = _ms(step_seconds, step_ms, "the window step")
    if step > size or size % step:
        raise InvalidArgument(f"a sliding window's step ({step} ms) must divide its size ({size} ms)")
    return Sliding(size, step)


def session(gap_seconds: float | None = None, *, gap_ms: int | None = None) -> Session:
    """Session windows closed by a gap of inactivity."""
    return Session(_ms(gap_seconds, gap_ms, "the session gap"))


def _freeze(x: Any) -> Any:
    """JSON lists back to hashable tuples (keys restored from a checkpoint)."""
    return tuple(_freeze(i) for i in x) if isinstance(x, list) else x


class WindowAggregate(BaseOperator):
    """Windows of a keyed stream, aggregated; emits one result per key and window."""

    name = "window"
    stateful = True

    def __init__(
        self, spec: Tumbling | Sliding | Session, aggs: Compiled,
        timestamp: Callable[[Any], int] | None = None, max_out_of_orderness: int = 0,
        allowed_lateness: int = 0,
    ) -> None:
        self.spec = spec
        self.aggs = aggs
        self.timestamp = timestamp
        self.ooo = max_out_of_orderness
        self.lateness = allowed_lateness
        # (key, start) -> accumulators; for sessions key -> [[start, last, accs], ...]
        self.state: dict[Any, Any] = {}
        self.closing: list[tuple[int, Any]] = []  # heap of (close time, state key)
        self.dirty: set[Any] = set()
        self.max_ts: dict[int, int] = {}
        self.idle: set[int] = set()
        self.wm = NO_TIME
        self.late: list[Batch] = []
        self.late_count = 0

    def describe(self) -> Any:
        return ["window", type(self.spec).__name__, attrs.asdict(self.spec), self.aggs.names]

    # ------------------------------------------------------------ watermarks

    def open_parts(self, parts: list[int]) -> None:
        """The input partitions that feed this operator (each holds the watermark back until it
        has data or is idle)."""
        for p in parts:
            self.max_ts.setdefault(p, NO_TIME)

    def _watermark(self) -> int:
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
        if watermark > self.wm:
            self.wm = watermark
            return self._close(-1)
        return []

    def _advance(self, part: int) -> list[Batch]:
        wm = self._watermark()
        if wm > self.wm:
            self.wm = wm
            return self._close(part)
        return []

    # ------------------------------------------------------------ elements

    def process(self, batch: Batch) -> list[Batch]:
        values = batch.values
        if not values:
            return []
        if self.timestamp is not None:
            tsf = self.timestamp
            ts = [tsf(v) for v in values]
        elif batch.ts is not None:
            ts = batch.ts
        else:
            raise InvalidArgument(
                "window() needs event time: pass timestamp=lambda e: ... (ms), or read from a "
                "topic, whose records carry timestamps"
            )
        keys = batch.keys if batch.keys is not None else [None] * len(values)
        part = batch.part
        self.idle.discard(part)
        hi = max(ts)
        if hi > self.max_ts.get(part, NO_TIME):
            self.max_ts[part] = hi
        if type(self.spec) is Tumbling:
            late = self._tumbling(keys, values, ts)
        elif type(self.spec) is Sliding:
            late = self._sliding(keys, values, ts)
        else:
            late = self._session(keys, values, ts)
        if late:
            self.late_count += len(late)
            self.late.append(Batch([values[i] for i in late], [keys[i] for i in late],
                                   [ts[i] for i in late], part))
        return self._advance(part)

    def _tumbling(self, keys: list[Any], values: list[Any], ts: list[int]) -> list[int]:
        size = self.spec.size  # type: ignore[union-attr]
        state, dirty, update, init = self.state, self.dirty, self.aggs.update, self.aggs.init
        edge = self.wm - self.lateness  # windows ending at or before this have closed
        late: list[int] = []
        closing = self.closing
        push = heapq.heappush
        for i, (k, v, t) in enumerate(zip(keys, values, ts)):
            start = t - t % size
            if start + size <= edge:
                late.append(i)
                continue
            sk = (k, start)
            acc = state.get(sk)
            if acc is None:
                acc = state[sk] = init()
                push(closing, (start + size + self.lateness, sk))
            update(acc, v)
            dirty.add(sk)
        return late

    def _sliding(self, keys: list[Any], values: list[Any], ts: list[int]) -> list[int]:
        size, step = self.spec.size, self.spec.step  # type: ignore[union-attr]
        state, dirty, update, init = self.state, self.dirty, self.aggs.update, self.aggs.init
        edge = self.wm - self.lateness
        late: list[int] = []
        for i, (k, v, t) in enumerate(zip(keys, values, ts)):
            last = t - t % step
            placed = False
            for start in range(last - size + step, last + 1, step):
                if start + size <= edge:
                    continue
                sk = (k, start)
                acc = state.get(sk)
                if acc is None:
                    acc = state[sk] = init()
                    heapq.heappush(self.closing, (start + size + self.lateness, sk))
                update(acc, v)
                dirty.add(sk)
                placed = True
            if not placed:
                late.append(i)
        return late

    def _session(self, keys: list[Any], values: list[Any], ts: list[int]) -> list[int]:
        gap = self.spec.gap  # type: ignore[union-attr]
        edge = self.wm - self.lateness
        late: list[int] = []
        merge = self.aggs.merge
        for i, (k, v, t) in enumerate(zip(keys, values, ts)):
            sessions = self.state.setdefault(k, [])
            # sessions: [start, last, accs], sorted by start, at least `gap` apart
            touching = [s for s in sessions if s[0] - gap <= t <= s[1] + gap]
            if not touching:
                if t + gap <= edge:
                    late.append(i)
                    if not sessions:
                        del self.state[k]
                    continue
                acc = self.aggs.init()
                self.aggs.update(acc, v)
                sessions.append([t, t, acc])
                sessions.sort(key=lambda s: s[0])
            else:
                first = touching[0]
                for other in touching[1:]:
                    first[0] = min(first[0], other[0])
                    first[1] = max(first[1], other[1])
                    first[2] = merge(first[2], other[2])
                    sessions.remove(other)
                first[0] = min(first[0], t)
                first[1] = max(first[1], t)
                self.aggs.update(first[2], v)
            last = max(s[1] for s in sessions)
            heapq.heappush(self.closing, (last + gap + self.lateness, k))
            self.dirty.add(k)
        return late

    # ------------------------------------------------------------ closing

    def _close(self, part: int) -> list[Batch]:
        wm = self.wm
        closing = self.closing
        out_v: list[Any] = []
        out_k: list[Any] = []
        out_t: list[int] = []
        results = self.aggs.results
        session = type(self.spec) is Session
        while closing and closing[0][0] <= wm:
            _, sk = heapq.heappop(closing)
            if session:
                sessions = self.state.get(sk)
                if not sessions:
                    continue
                gap = self.spec.gap  # type: ignore[union-attr]
                keep = []
                for s in sessions:
                    if s[1] + gap + self.lateness <= wm:
                        out_v.append({"key": sk, "start": s[0], "end": s[1] + gap, **results(s[2])})
                        out_k.append(sk)
                        out_t.append(s[1] + gap - 1)
                    else:
                        keep.append(s)
                if keep:
                    self.state[sk] = keep
                else:
                    del self.state[sk]
                self.dirty.add(sk)
                continue
            acc = self.state.pop(sk, None)
            if acc is None:
                continue
            key, start = sk
            end = start + self.spec.size  # type: ignore[union-attr]
            out_v.append({"key": key, "start": start, "end": end, **results(acc)})
            out_k.append(key)
            out_t.append(end - 1)
            self.dirty.add(sk)
        return [Batch(out_v, out_k, out_t, part)] if out_v else []

    def take_late(self) -> list[Batch]:
        late, self.late = self.late, []
        return late

    # ------------------------------------------------------------ state

    def snapshot(self) -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        dumps = orjson.dumps
        state = self.state
        session = type(self.spec) is Session
        for sk in self.dirty:
            key = dumps([sk]) if session else dumps(list(sk))
            v = state.get(sk)
            out[key] = None if v is None else dumps(v)
        self.dirty.clear()
        out[_WM_KEY] = dumps({"wm": self.wm, "max_ts": list(self.max_ts.items())})
        return out

    def restore(self, handle: StateHandle) -> None:
        session = type(self.spec) is Session
        for key, raw in handle.items():
            if key == _WM_KEY:
                d = orjson.loads(raw)
                self.wm = d["wm"]
                self.max_ts.update({p: t for p, t in d["max_ts"]})
                continue
            k = orjson.loads(key)
            if session:
                sk = _freeze(k[0])
                self.state[sk] = orjson.loads(raw)
                last = max(s[1] for s in self.state[sk])
                heapq.heappush(self.closing, (last + self.spec.gap + self.lateness, sk))  # type: ignore[union-attr]
            else:
                sk = (_freeze(k[0]), k[1])
                self.state[sk] = orjson.loads(raw)
                end = k[1] + self.spec.size  # type: ignore[union-attr]
                heapq.heappush(self.closing, (end + self.lateness, sk))
