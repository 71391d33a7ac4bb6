"""Windows: tumbling, sliding and session, aggregated per key, in event or processing time.

Time is in milliseconds (as Kafka timestamps); watermarks are explained in ``_time.py``. A
window ``[start, end)`` closes, and its result is emitted, when the watermark reaches
``end + allowed_lateness``. Lateness is judged per batch, against the watermark before the
batch. An element whose every window has already closed is *late*: it is set aside for the
late output (a side topic or the app's dead-letter topic), never silently dropped. (A sliding
window element of which only some windows closed counts in the open ones and is not late, as
in Flink.) A session ``[first, last + gap)`` takes an element ``t`` when the element's own
window ``[t, t + gap)`` overlaps it; sessions an element bridges merge, so aggregations used
with sessions must merge (``fold`` cannot), and ``collect``/``reduce`` see merged sessions in
time order of the sessions, not of arrival.

``emit="final"`` (default) emits one result per window when it closes. ``emit="early"`` also
emits the window's current result after every batch that changed it (``"final": false``), then
the closing result (``"final": true``).

State is a dict ``(key, window start) -> accumulators`` (sessions: ``key -> [[first, last,
accumulators], ...]``), checkpointed as orjson: what changed since the last snapshot is written
in the checkpoint's transaction, closed windows deleted.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import attrs
import orjson

from streamrt.errors import InvalidArgument

from ._aggregations import Aggregation, Compiled, Fold
from ._batch import Batch
from ._protocol import BatchFailed, StateHandle
from ._time import NO_TIME, WM_KEY, TimedOperator, wall_clock_ms

__all__ = ["NO_TIME", "Session", "Sliding", "Tumbling", "WindowAggregate", "session", "sliding",
           "tumbling"]


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



class _Failed(Exception):
    """An aggregation raised on element ``index`` (the cause is chained)."""

    def __init__(self, index: int) -> None:
        self.index = index


class WindowAggregate(TimedOperator):
    """Windows of a keyed stream, aggregated; emits one result per key and window."""

    name = "window"
    stateful = True

    def __init__(
        self, spec: Tumbling | Sliding | Session, aggs: Compiled,
        timestamp: Callable[[Any], int] | None = None, max_out_of_orderness: int = 0,
        allowed_lateness: int = 0, *, emit: str = "final", processing_time: bool = False,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if emit not in ("final", "early"):
            raise InvalidArgument(f"emit must be 'final' or 'early', got {emit!r}")
        if type(spec) is Session:
            for agg in aggs.aggs:
                if type(agg).merge is Aggregation.merge or isinstance(agg, Fold):
                    raise InvalidArgument(
                        f"session windows merge accumulators, and {type(agg).__name__} cannot "
                        f"merge: use reduce() or a mergeable aggregation (fold cannot merge)")
        super().__init__(timestamp, max_out_of_orderness, processing_time, clock)
        self.spec = spec
        self.aggs = aggs
        self.lateness = allowed_lateness
        self.early = emit == "early"
        # (key, start) -> accumulators; for sessions key -> [[start, last, accs], ...]
        self.state: dict[Any, Any] = {}
        # heap of (close time, tie-breaker, state key): the tie-breaker keeps keys of different
        # types (None and "a", 1 and "1") from ever being compared
        self.closing: list[tuple[int, int, Any]] = []
        self._seq = itertools.count()
        # tumbling/sliding: every key's window [start, end) closes at the same time, so windows
        # are listed per close time, with a heap of the distinct close times: no heap entry
        # (nor tuple) per window, which on one-result-per-event workloads was a large share.
        self.by_close: dict[int, list[Any]] = {}
        self.close_times: list[int] = []
        self.dirty: set[Any] = set()
        self.stored: set[Any] = set()  # state keys the last snapshots wrote (and did not delete)
        # sessions: the time of each key's one live closing entry. A key has one entry, at
        # its earliest session close, not one per element (a key that never goes quiet would
        # grow the heap forever); closing a key's sessions schedules its next one.
        self.next_close: dict[Any, int] = {}
        self.late_count = 0

    def describe(self) -> Any:
        return ["window", type(self.spec).__name__, attrs.asdict(self.spec), self.aggs.names]

    # ------------------------------------------------------------ elements

    def process(self, batch: Batch) -> list[Batch]:
        values = batch.values
        if not values:
            return []
        ts = self._times(batch, "window()")
        keys = batch.keys if batch.keys is not None else [None] * len(values)
        part = batch.part
        if self.early:  # collect what this batch touches in a set of its own
            saved, self.dirty = self.dirty, set()
        late: list[int] = []
        try:
            if type(self.spec) is Tumbling:
                self._tumbling(keys, values, ts, late)
            elif type(self.spec) is Sliding:
                self._sliding(keys, values, ts, late)
            else:
                self._session(keys, values, ts, late)
        except _Failed as f:  # an aggregation's function raised on element f.index
            self._set_aside(late, values, keys, ts, part)
            if self.early:
                self.dirty = saved | self.dirty
            raise BatchFailed(f.index, [], f.__cause__) from f.__cause__  # type: ignore[arg-type]
        self._set_aside(late, values, keys, ts, part)
        if self.early:
            touched, self.dirty = self.dirty, saved
            self.dirty |= touched
            return self._updates(touched, part) + self._advance(part)
        return self._advance(part)

    def _set_aside(self, late: list[int], values: list[Any], keys: list[Any], ts: list[int],
                   part: int) -> None:
        if late:
            self.late_count += len(late)
            self.late.append(Batch([values[i] for i in late], [keys[i] for i in late],
                                   [ts[i] for i in late], part))

    def _tumbling(self, keys: list[Any], values: list[Any], ts: list[int], late: list[int]) -> None:
        size = self.spec.size  # type: ignore[union-attr]
        state, dirty, update, init = self.state, self.dirty, self.aggs.update, self.aggs.init
        edge = self.wm - self.lateness  # windows ending at or before this have closed
        by_close = self.by_close
        push = heapq.heappush
        close_times = self.close_times
        lateness = self.lateness
        for i, (k, v, t) in enumerate(zip(keys, values, ts)):
            start = t - t % size
            if start + size <= edge:
                late.append(i)
                continue
            sk = (k, start)
            acc = state.get(sk)
            if acc is None:
                acc = init()
                try:
                    update(acc, v)
                except Exception as e:
                    raise _Failed(i) from e
                state[sk] = acc
                at = start + size + lateness
                due = by_close.get(at)
                if due is None:
                    by_close[at] = [sk]
                    push(close_times, at)
                else:
                    due.append(sk)
            else:
                try:
                    update(acc, v)
                except Exception as e:
                    raise _Failed(i) from e
            dirty.add(sk)

    def _sliding(self, keys: list[Any], values: list[Any], ts: list[int], late: list[int]) -> None:
        size, step = self.spec.size, self.spec.step  # type: ignore[union-attr]
        state, dirty, update, init = self.state, self.dirty, self.aggs.update, self.aggs.init
        edge = self.wm - self.lateness
        for i, (k, v, t) in enumerate(zip(keys, values, ts)):
            last = t - t % step
            placed = False
            for start in range(last - size + step, last + 1, step):
                if start + size <= edge:
                    continue
                sk = (k, start)
                acc = state.get(sk)
                fresh = acc is None
                if fresh:
                    acc = init()
                try:
                    update(acc, v)
                except Exception as e:
                    raise _Failed(i) from e
                if fresh:
                    state[sk] = acc
                    self._due(start + size + self.lateness, sk)
                dirty.add(sk)
                placed = True
            if not placed:
                late.append(i)

    def _session(self, keys: list[Any], values: list[Any], ts: list[int], late: list[int]) -> None:
        gap = self.spec.gap  # type: ignore[union-attr]
        edge = self.wm - self.lateness
        merge, update, init = self.aggs.merge, self.aggs.update, self.aggs.init
        for i, (k, v, t) in enumerate(zip(keys, values, ts)):
            sessions = self.state.get(k)
            # sessions: [start, last, accs], sorted by start, more than `gap` apart; the
            # element's window [t, t + gap) overlaps a session [start, last + gap) when
            # start - gap < t < last + gap
            touching = [s for s in sessions if s[0] - gap < t < s[1] + gap] if sessions else ()
            if not touching:
                if t + gap <= edge:
                    late.append(i)
                    continue
                acc = init()
                try:
                    update(acc, v)
                except Exception as e:
                    raise _Failed(i) from e
                cur = [t, t, acc]
                if sessions is None:
                    self.state[k] = [cur]
                else:
                    sessions.append(cur)
                    sessions.sort(key=lambda s: s[0])
            else:
                cur = touching[0]
                try:  # first, so that a failing element changes nothing
                    update(cur[2], v)
                except Exception as e:
                    raise _Failed(i) from e
                for other in touching[1:]:  # the element bridges them: one session now
                    cur[1] = max(cur[1], other[1])
                    cur[2] = merge(cur[2], other[2])
                    sessions.remove(other)  # type: ignore[union-attr]
                cur[0] = min(cur[0], t)
                cur[1] = max(cur[1], t)
            self._schedule(k, cur[1] + gap + self.lateness)
            self.dirty.add(k)

    def _due(self, at: int, sk: Any) -> None:
        """List a tumbling/sliding window to close at ``at``."""
        due = self.by_close.get(at)
        if due is None:
            self.by_close[at] = [sk]
            heapq.heappush(self.close_times, at)
        else:
            due.append(sk)

    def _schedule(self, k: Any, at: int) -> None:
        due = self.next_close.get(k)
        if due is None or at < due:  # a later close is found when the earlier entry fires
            self.next_close[k] = at
            heapq.heappush(self.closing, (at, next(self._seq), k))

    # ------------------------------------------------------------ results

    def _result(self, sk: Any, acc: Any, final: bool) -> tuple[Any, dict[str, Any], int]:
        """(key, result, result timestamp) of a tumbling/sliding window."""
        key, start = sk
        end = start + self.spec.size  # type: ignore[union-attr]
        out = self.aggs.record(key, start, end, acc)
        if self.early:
            out["final"] = final
        return key, out, end - 1

    def _session_result(self, key: Any, s: list[Any], final: bool) -> dict[str, Any]:
        out = {"key": key, "start": s[0], "end": s[1] + self.spec.gap,  # type: ignore[union-attr]
               **self.aggs.results(s[2])}
        if self.early:
            out["final"] = final
        return out

    def _updates(self, touched: set[Any], part: int) -> list[Batch]:
        """Early results of the windows a batch changed."""
        vals: list[Any] = []
        keys: list[Any] = []
        ts: list[int] = []
        if type(self.spec) is Session:
            gap = self.spec.gap
            for k in touched:
                for s in self.state.get(k, ()):
                    vals.append(self._session_result(k, s, False))
                    keys.append(k)
                    ts.append(s[1] + gap - 1)
        else:
            for sk in touched:
                acc = self.state.get(sk)
                if acc is not None:
                    k, out, t = self._result(sk, acc, False)
                    vals.append(out)
                    keys.append(k)
                    ts.append(t)
        return [Batch(vals, keys, ts, part)] if vals else []

    def _close(self, part: int) -> list[Batch]:
        wm = self.wm
        closing = self.closing
        out_v: list[Any] = []
        out_k: list[Any] = []
        out_t: list[int] = []
        session = type(self.spec) is Session
        while closing and closing[0][0] <= wm:
            at, _, sk = heapq.heappop(closing)
            if session:
                if self.next_close.get(sk) != at:
                    continue  # superseded by an earlier entry, which has fired
                del self.next_close[sk]
                sessions = self.state.get(sk)
                if not sessions:
                    continue
                gap = self.spec.gap  # type: ignore[union-attr]
                keep = []
                for s in sessions:
                    if s[1] + gap + self.lateness <= wm:
                        out_v.append(self._session_result(sk, s, True))
                        out_k.append(sk)
                        out_t.append(s[1] + gap - 1)
                    else:
                        keep.append(s)
                if keep:
                    self.state[sk] = keep
                    self._schedule(sk, min(s[1] for s in keep) + gap + self.lateness)
                else:
                    del self.state[sk]
                self.dirty.add(sk)
                continue
        times = self.close_times
        if times and times[0] <= wm:
            state, dirty, record = self.state, self.dirty, self.aggs.record
            size = getattr(self.spec, "size", 0)
            early = self.early
            while times and times[0] <= wm:
                for sk in self.by_close.pop(heapq.heappop(times)):
                    acc = state.pop(sk, None)
                    if acc is None:
                        continue
                    key, start = sk
                    out = record(key, start, start + size, acc)
                    if early:
                        out["final"] = True
                    out_v.append(out)
                    out_k.append(key)
                    out_t.append(start + size - 1)
                    dirty.add(sk)
        return [Batch(out_v, out_k, out_t, part)] if out_v else []


    # ------------------------------------------------------------ state

    def snapshot(self) -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        dumps = orjson.dumps
        state = self.state
        session = type(self.spec) is Session
        stored = self.stored
        for sk in self.dirty:
            v = state.get(sk)
            if v is None:
                if sk not in stored:
                    # Opened and closed since the last snapshot: never written, nothing to
                    # delete. With short windows that is most of them, and each orjson.dumps
                    # result occupies 4 KiB however short it is.
                    continue
                stored.discard(sk)
            else:
                stored.add(sk)
            key = dumps([sk]) if session else dumps(list(sk))
            out[key] = None if v is None else dumps(v)
        self.dirty.clear()
        out[WM_KEY] = self._time_snapshot()
        return out

    def restore(self, handle: StateHandle) -> None:
        session = type(self.spec) is Session
        for key, raw in handle.items():
            if key == WM_KEY:
                self._time_restore(raw)
                continue
            k = orjson.loads(key)
            if session:
                sk = _freeze(k[0])
                self.stored.add(sk)
                self.state[sk] = orjson.loads(raw)
                gap = self.spec.gap  # type: ignore[union-attr]
                self._schedule(sk, min(s[1] for s in self.state[sk]) + gap + self.lateness)
            else:
                sk = (_freeze(k[0]), k[1])
                self.stored.add(sk)
                self.state[sk] = orjson.loads(raw)
                end = k[1] + self.spec.size  # type: ignore[union-attr]
                self._due(end + self.lateness, sk)
