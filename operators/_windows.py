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

State is a :class:`~operators._cache.StateCache` of ``(key, window start) -> accumulators``,
checkpointed as orjson: what changed since the last snapshot is written in the checkpoint's
transaction, closed windows deleted.
Tumbling and sliding windows are stored under their start first (``b"w"``, the start as a
sortable u64, the key as JSON), and the cache groups them by start: what stays in memory for
closing is the set of open starts (one per window end, however many keys), and a window end
closes by taking its start's group whole, cached and stored. The cache is bounded
(``cache_size``): windows beyond it live in LMDB until they are touched again or close.
Tumbling and sliding windows with final results opened since the last checkpoint are *young*:
they live in ``young`` (start -> key -> accumulators) outside the cache until the checkpoint's
snapshot moves them in, since they are dirty and unevictable anyway (``_tumbling`` says why).
Sessions (``_sessions.py``) keep every key's sessions in a bounded cache too, and file keys
under coarse buckets of their close times in a second one, so their close schedule is not held
per key in memory either.
"""

from __future__ import annotations

import copy
import heapq
import operator
import struct
from collections.abc import Callable
from typing import Any

import attrs
import orjson

from streamrt.errors import InvalidArgument

from ._aggregations import Aggregation, Compiled, Fold
from ._batch import Batch
from ._cache import DEFAULT_MAX_ENTRIES, StateCache
from ._protocol import BatchFailed, StateHandle
from ._sessions import SessionFailed, Sessions
from ._time import NO_TIME, TimedOperator, wall_clock_ms

__all__ = ["NO_TIME", "Session", "Sliding", "Tumbling", "WindowAggregate", "session", "sliding",
           "tumbling"]


def _ms(seconds: float | None, ms: int | None, what: str) -> int:
    if (seconds is None) == (ms is None):
        raise InvalidArgument(f"give {what} as seconds= or ms=, exactly one")
    given = f"seconds={seconds!r}" if ms is None else f"ms={ms!r}"
    if not isinstance(seconds if ms is None else ms, (int, float)) or isinstance(
            seconds if ms is None else ms, bool):
        raise InvalidArgument(f"{what} must be a positive duration, got {given}")
    try:
        value = ms if ms is not None else round(seconds * 1000)  # type: ignore[operator]
    except (OverflowError, ValueError):  # inf, nan
        raise InvalidArgument(f"{what} must be a positive duration, got {given}") from None
    if not isinstance(value, int) or value <= 0:
        raise InvalidArgument(f"{what} must be a positive duration (at least 1 ms), got {given}")
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


_U64 = struct.Struct(">Q")
_BIAS = 1 << 63  # signed starts as unsigned, so stored keys sort by start


def _start_prefix(start: int) -> bytes:
    return b"w" + _U64.pack(start + _BIAS)


def _window_key(sk: tuple[Any, int]) -> bytes:
    """``(key, start)`` as a stored key: the start first, so a start's windows are a prefix."""
    return b"w" + _U64.pack(sk[1] + _BIAS) + orjson.dumps(sk[0])


def _window_from(raw: bytes) -> tuple[Any, int]:
    return _freeze(orjson.loads(raw[9:])), _U64.unpack_from(raw, 1)[0] - _BIAS



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
        clock: Callable[[], int] = wall_clock_ms, cache_size: int | None = DEFAULT_MAX_ENTRIES,
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
        # (key, start) -> accumulators, grouped by start; sessions: see _sessions.py (their
        # ``cache`` is key -> [due, sessions])
        self.sessions: Sessions | None = None
        if type(spec) is Session:
            self.sessions = Sessions(spec.gap, allowed_lateness, aggs, cache_size)
            self.cache = self.sessions.cache
        else:
            self.cache = StateCache(None, cache_size, encode=_window_key, decode=_window_from,
                                    group=operator.itemgetter(1), group_prefix=_start_prefix)
        # tumbling/sliding: every key's window [start, end) closes at the same time, so what
        # closing needs is the distinct open starts (a heap and a set), not a list of windows:
        # the windows of a start are its group in the cache (and in the store).
        self.open_starts: set[int] = set()
        self.start_heap: list[int] = []
        # tumbling windows with final results: start -> {key: accumulators} of the windows
        # opened since the last checkpoint, outside the cache (see _tumbling)
        self.young: dict[int, dict[Any, Any]] = {}
        self.young_n = 0
        self._touched: set[Any] | None = None  # emit="early": the windows a batch changed
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
            self._touched = set()
        late: list[int] = []
        try:
            if type(self.spec) is Tumbling:
                self._tumbling(keys, values, ts, late)
            elif type(self.spec) is Sliding:
                self._sliding(keys, values, ts, late)
            else:
                self._session(keys, values, ts, late)
        except (_Failed, SessionFailed) as f:  # an aggregation raised on element f.index
            self._set_aside(late, values, keys, ts, part)
            self._touched = None
            # the windows opened before element f.index stay: count them (the fold's own
            # count was lost with its return)
            self.young_n = sum(map(len, self.young.values()))
            raise BatchFailed(f.index, [], f.__cause__) from f.__cause__  # type: ignore[arg-type]
        self._set_aside(late, values, keys, ts, part)
        if self.early:
            touched, self._touched = self._touched, None
            return self._updates(touched, part) + self._advance(part)  # type: ignore[arg-type]
        return self._advance(part)

    @property
    def wants_checkpoint(self) -> bool:
        """The dirty windows exceed the cache bound: the runner should checkpoint."""
        if self.sessions is not None:
            return self.sessions.wants_checkpoint
        return self.cache.wants_checkpoint

    def _dirty_add(self) -> Callable[[Any], None]:
        """How a batch marks a window changed (and, with early emission, touched)."""
        add = self.cache.dirty.add
        touched = self._touched
        if touched is None:
            return add
        t_add = touched.add

        def both(sk: Any) -> None:
            add(sk)
            t_add(sk)

        return both

    def _opened(self, start: int) -> None:
        if start not in self.open_starts:
            self.open_starts.add(start)
            heapq.heappush(self.start_heap, start)

    def _set_aside(self, late: list[int], values: list[Any], keys: list[Any], ts: list[int],
                   part: int) -> None:
        if late:
            self.late_count += len(late)
            self.late.append(Batch([values[i] for i in late], [keys[i] for i in late],
                                   [ts[i] for i in late], part))

    def _tumbling(self, keys: list[Any], values: list[Any], ts: list[int], late: list[int]) -> None:
        """Fold the batch into its tumbling windows. Per element: the window's start; late if
        the window closed already; else its accumulators from the cache (a dict lookup; the
        store is asked only when windows of that start were evicted), a new window when
        there are none (listed in its start's group: closing takes the group), the
        aggregations applied, the window marked dirty for the next checkpoint. The loop is
        generated with the aggregations inlined (``Compiled.tumbling_fold``)."""
        cache = self.cache
        if not self.early:
            # Windows opened since the last checkpoint live in ``young`` (start -> key ->
            # accumulators), not in the cache: they are dirty until the checkpoint and never
            # evicted anyway, so there they skip the cache's per-window bookkeeping (a
            # (key, start) tuple, its group, the dirty set). With about one window per
            # element that bookkeeping was a fifth of the pipeline's time. The checkpoint moves
            # them into the cache (snapshot); they count towards its bound meanwhile.
            self.young_n += self.aggs.young_fold()(
                keys, values, ts, late, self.spec.size,  # type: ignore[union-attr]
                self.wm - self.lateness, self.young, cache.members, cache.data, cache.load,
                cache.uncached, self._opened, cache.dirty.add, _Failed, self.aggs.init)
            self._bound_young()
            return
        self.aggs.tumbling_fold()(
            keys, values, ts, late, self.spec.size,  # type: ignore[union-attr]
            self.wm - self.lateness,  # windows ending at or before this have closed
            cache.data, cache.load, cache.uncached, cache.members, self._opened,
            self._dirty_add(), cache.max_entries if cache.max_entries is not None else 1 << 62,
            cache.evict, _Failed, self.aggs.init)

    def _bound_young(self) -> None:
        """Young windows count towards the cache's bound (see _tumbling)."""
        cache = self.cache
        if cache.max_entries is not None and len(cache.data) + self.young_n > cache.max_entries:
            cache.evict(self.young_n)

    def _sliding(self, keys: list[Any], values: list[Any], ts: list[int], late: list[int]) -> None:
        size, step = self.spec.size, self.spec.step  # type: ignore[union-attr]
        update, init = self.aggs.update, self.aggs.init
        cache = self.cache
        if not self.early:
            self._sliding_young(keys, values, ts, late)
            return
        data, load, add_new, uncached = cache.data, cache.load, cache.add_new, cache.uncached
        dirty_add = self._dirty_add()
        edge = self.wm - self.lateness
        for i, (k, v, t) in enumerate(zip(keys, values, ts)):
            last = t - t % step
            placed = False
            for start in range(last - size + step, last + 1, step):
                if start + size <= edge:
                    continue
                sk = (k, start)
                acc = data.get(sk)
                fresh = acc is None and (not uncached or (acc := load(sk)) is None)
                if fresh:
                    acc = init()
                try:
                    update(acc, v)
                except Exception as e:
                    raise _Failed(i) from e
                if fresh:
                    add_new(sk, acc, start)
                    self._opened(start)
                dirty_add(sk)
                placed = True
            if not placed:
                late.append(i)

    def _sliding_young(self, keys: list[Any], values: list[Any], ts: list[int],
                       late: list[int]) -> None:
        """``_sliding`` with young windows, as ``_tumbling`` has them: a window opened since
        the last checkpoint lives in ``young``; one the cache holds is updated there."""
        size, step = self.spec.size, self.spec.step  # type: ignore[union-attr]
        update, init = self.aggs.update, self.aggs.init
        cache = self.cache
        data, load, uncached, members = cache.data, cache.load, cache.uncached, cache.members
        dirty_add = cache.dirty.add
        young, opened = self.young, self._opened
        edge = self.wm - self.lateness
        opened_n = 0
        for i, (k, v, t) in enumerate(zip(keys, values, ts)):
            last = t - t % step
            placed = False
            for start in range(last - size + step, last + 1, step):
                if start + size <= edge:
                    continue
                placed = True
                grp = young.get(start)
                if grp is None:
                    grp = young[start] = {}
                    opened(start)
                acc = grp.get(k)
                if acc is None and (start in members or start in uncached):
                    sk = (k, start)
                    acc = data.get(sk)
                    if acc is not None or (uncached and (acc := load(sk)) is not None):
                        try:
                            update(acc, v)
                        except Exception as e:
                            raise _Failed(i) from e
                        dirty_add(sk)
                        continue
                fresh = acc is None
                if fresh:
                    acc = init()
                try:
                    update(acc, v)
                except Exception as e:
                    raise _Failed(i) from e
                if fresh:
                    grp[k] = acc
                    opened_n += 1
            if not placed:
                late.append(i)
        self.young_n += opened_n
        self._bound_young()

    def _session(self, keys: list[Any], values: list[Any], ts: list[int], late: list[int]) -> None:
        self.sessions.add(keys, values, ts, late, self.wm - self.lateness,  # type: ignore[union-attr]
                          self._dirty_add())

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
                for s in self.sessions.sessions_of(k):  # type: ignore[union-attr]
                    vals.append(copy.deepcopy(self._session_result(k, s, False)))
                    keys.append(k)
                    ts.append(s[1] + gap - 1)
        else:
            for sk in touched:
                acc = self.cache.data.get(sk)
                if acc is not None:
                    # a copy: the record would share (collect's) lists with the live
                    # accumulator, and a later element would change a result already emitted
                    k, out, t = self._result(sk, copy.deepcopy(acc), False)
                    vals.append(out)
                    keys.append(k)
                    ts.append(t)
        return [Batch(vals, keys, ts, part)] if vals else []

    def _close(self, part: int) -> list[Batch]:
        wm = self.wm
        out_v: list[Any] = []
        out_k: list[Any] = []
        out_t: list[int] = []
        if self.sessions is not None:
            gap = self.sessions.gap

            def emit(key: Any, s: list[Any]) -> None:
                out_v.append(self._session_result(key, s, True))
                out_k.append(key)
                out_t.append(s[1] + gap - 1)

            self.sessions.close(wm, emit)
        starts = self.start_heap
        size = getattr(self.spec, "size", 0)
        if starts and starts[0] + size + self.lateness <= wm:
            records = self.aggs.records
            early = self.early
            last_open = wm - size - self.lateness  # starts up to this one have closed
            while starts and starts[0] <= last_open:
                start = heapq.heappop(starts)
                self.open_starts.discard(start)
                end = start + size
                keys, accs = self._take_windows(start)
                if not keys:
                    continue
                outs = records(keys, start, end, accs)
                if early:
                    for out in outs:
                        out["final"] = True
                out_v += outs
                out_k += keys
                out_t += [end - 1] * len(keys)
        return [Batch(out_v, out_k, out_t, part)] if out_v else []


    def _take_windows(self, start: int) -> tuple[list[Any], list[Any]]:
        """The keys and accumulators of every window of a start, young, cached or stored,
        all forgotten (each accumulator freed as its result is built)."""
        cache = self.cache
        young = self.young.pop(start, None)
        if young is not None:
            self.young_n -= len(young)
            if start not in cache.members and not cache.uncached.get(start):
                return list(young), list(young.values())
        pop = cache.data.pop
        sks = cache.take_group(start)
        keys = [sk[0] for sk in sks]
        accs = [pop(sk) for sk in sks]
        if young:
            keys += young
            accs += young.values()
        return keys, accs

    # ------------------------------------------------------------ state

    def snapshot(self) -> dict[bytes, bytes | None]:
        if self.sessions is not None:
            return self._with_time(self.sessions.snapshot())
        cache = self.cache
        members, data, dirty = cache.members, cache.data, cache.dirty
        for start, windows in self.young.items():  # young windows join the cache, dirty
            if not windows:
                continue  # (a start whose elements all went to windows the cache holds)
            group = members.get(start)
            if group is None:
                group = members[start] = {}
            for k, acc in windows.items():
                sk = (k, start)
                data[sk] = acc
                group[sk] = None
                dirty.add(sk)
        self.young.clear()
        self.young_n = 0
        return self._with_time(cache.snapshot())

    def restore(self, handle: StateHandle) -> None:
        self._restore_time(handle)
        self.young.clear()
        self.young_n = 0
        if self.sessions is not None:
            self.sessions.attach(handle)
        else:
            self.cache.attach(handle)
            for start in self.cache.groups():
                self._opened(start)
