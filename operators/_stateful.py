"""Per-key state without windows: ``stateful_map`` and ``dedupe``.

``StatefulMap`` calls the user's ``fn(state, value) -> (new_state, output)`` with the key's
state (None the first time); a new state of None forgets the key, an output of None emits
nothing. States are checkpointed as orjson, so they must be JSON values.

``Dedupe`` drops an element when an element with the same dedupe key was *kept* less than
``within`` ms away from it in event time (before or after: out-of-order duplicates are caught
too). Event time, not the wall clock, because a replay after a restart then drops exactly the
same elements; ``processing_time=True`` stamps elements with the clock instead. A key is
remembered until the watermark is ``2 * within`` past its last kept element, which is the
earliest moment no on-time element can match it; an element more than ``within`` behind the
watermark can no longer be judged and goes to the late output instead.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import orjson

from streamrt.errors import InvalidArgument

from ._batch import Batch
from ._protocol import BaseOperator, BatchFailed, StateHandle
from ._time import WM_KEY, TimedOperator, wall_clock_ms


def _freeze(x: Any) -> Any:
    return tuple(_freeze(i) for i in x) if isinstance(x, list) else x


class StatefulMap(BaseOperator):
    """``fn(state, value) -> (new_state, output)`` per key."""

    name = "stateful_map"
    stateful = True

    def __init__(self, fn: Callable[[Any, Any], tuple[Any, Any]]) -> None:
        self.fn = fn
        self.state: dict[Any, Any] = {}
        self.dirty: set[Any] = set()

    def process(self, batch: Batch) -> list[Batch]:
        fn, state, dirty = self.fn, self.state, self.dirty
        values = batch.values
        keys = batch.keys if batch.keys is not None else [None] * len(values)
        out_v: list[Any] = []
        idx: list[int] = []
        for i, (k, v) in enumerate(zip(keys, values)):
            try:
                new, out = fn(state.get(k), v)
            except Exception as e:  # elements before i are applied: retry only from i
                raise BatchFailed(i, self._out(batch, out_v, idx), e) from e
            if new is None:
                state.pop(k, None)
            else:
                state[k] = new
            dirty.add(k)
            if out is not None:
                out_v.append(out)
                idx.append(i)
        return self._out(batch, out_v, idx)

    @staticmethod
    def _out(batch: Batch, vals: list[Any], idx: list[int]) -> list[Batch]:
        if not vals:
            return []
        keys = [batch.keys[i] for i in idx] if batch.keys is not None else None
        ts = [batch.ts[i] for i in idx] if batch.ts is not None else None
        return [Batch(vals, keys, ts, batch.part)]

    def snapshot(self) -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        for k in self.dirty:
            v = self.state.get(k)
            try:
                out[orjson.dumps([k])] = None if v is None else orjson.dumps(v)
            except TypeError as e:
                raise InvalidArgument(
                    f"stateful_map: the state of key {k!r} is not a JSON value ({e}); return "
                    f"dicts, lists, str, numbers or None as the state") from None
        self.dirty.clear()
        return out

    def restore(self, handle: StateHandle) -> None:
        for k, raw in handle.items():
            self.state[_freeze(orjson.loads(k)[0])] = orjson.loads(raw)


class Dedupe(TimedOperator):
    """Drop elements whose dedupe key was kept within ``within`` ms (see the module doc)."""

    flush_at_end = False  # closing emits nothing: keep the state for a later run

    name = "dedupe"
    stateful = True

    def __init__(
        self, key: Callable[[Any], Any], within: int, timestamp: Callable[[Any], int] | None = None,
        max_out_of_orderness: int = 0, *, processing_time: bool = False,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if not isinstance(within, int) or within <= 0:
            raise InvalidArgument(f"dedupe(within=...) must be a positive duration, got {within!r}")
        super().__init__(timestamp, max_out_of_orderness, processing_time, clock)
        self.key = key
        self.within = within
        self.last: dict[Any, int] = {}  # dedupe key -> time of its latest kept element
        self.expiry: list[tuple[int, int, Any]] = []
        self._seq = itertools.count()
        self.dirty: set[Any] = set()

    def describe(self) -> Any:
        return ["dedupe", self.within]

    def process(self, batch: Batch) -> list[Batch]:
        values = batch.values
        if not values:
            return []
        keyf = self.key
        dks = [keyf(v) for v in values]
        ts = self._times(batch, "dedupe()")
        w, last, dirty = self.within, self.last, self.dirty
        edge = self.wm - w
        keep: list[bool] = []
        late: list[int] = []
        for i, (dk, t) in enumerate(zip(dks, ts)):
            if t <= edge:
                late.append(i)
                keep.append(False)
                continue
            seen = last.get(dk)
            if seen is not None and -w < t - seen < w:
                keep.append(False)
                continue
            keep.append(True)
            if seen is None or t > seen:
                last[dk] = t
                dirty.add(dk)
                heapq.heappush(self.expiry, (t + 2 * w, next(self._seq), dk))
        if late:
            self.late.append(Batch([values[i] for i in late],
                                   [batch.keys[i] for i in late] if batch.keys is not None else None,
                                   [ts[i] for i in late], batch.part))
        b = Batch(values, batch.keys, ts, batch.part)
        out = [b] if all(keep) else [b.select(keep)]
        return out + self._advance(batch.part)

    def _close(self, part: int) -> list[Batch]:
        wm, w, last, expiry = self.wm, self.within, self.last, self.expiry
        while expiry and expiry[0][0] <= wm:
            dk = heapq.heappop(expiry)[2]
            t = last.get(dk)
            if t is not None and t + 2 * w <= wm:
                del last[dk]
                self.dirty.add(dk)
        return []


    def snapshot(self) -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        for dk in self.dirty:
            t = self.last.get(dk)
            out[orjson.dumps([dk])] = None if t is None else orjson.dumps(t)
        self.dirty.clear()
        out[WM_KEY] = self._time_snapshot()
        return out

    def restore(self, handle: StateHandle) -> None:
        for k, raw in handle.items():
            if k == WM_KEY:
                self._time_restore(raw)
                continue
            dk = _freeze(orjson.loads(k)[0])
            t = self.last[dk] = orjson.loads(raw)
            heapq.heappush(self.expiry, (t + 2 * self.within, next(self._seq), dk))


