"""Per-key state without windows: ``stateful_map`` and ``dedupe``.

``StatefulMap`` calls the user's ``fn(state, value) -> (new_state, output)`` with the key's
state (None the first time); a new state of None forgets the key, an output of None emits
nothing. States are checkpointed as orjson, so they must be JSON values.

``Dedupe`` drops an element when an element with the same dedupe key was *kept* earlier (in
processing order) less than ``within`` ms away from it in event time, before or after it: an
out-of-order duplicate is caught even when a later element of its key was kept in between.
Event time, not the wall clock, because a replay after a restart then drops exactly the same
elements; ``processing_time=True`` stamps elements with the clock instead. An element more
than ``within`` behind the watermark (``t <= watermark - within``) can no longer be judged and
goes to the late output instead. So every kept time of a key that an element still to be
judged can be within ``within`` of is remembered: a kept time ``s`` is forgotten once the
watermark is ``2 * within`` past it (``s <= watermark - 2 * within``), and no sooner.

Both keep their per-key state in a bounded :class:`~operators._cache.StateCache` over LMDB.
Dedupe stores each kept time under the *bucket* of its expiry (``(time + 2 * within) //
within``) and its key, so forgetting takes whole buckets from the cache and the store: what
stays in memory for expiry is the set of live buckets (a few: about ``3 + disorder / within``),
not a heap entry per kept time. A bucket spans ``within`` ms and the kept times of a key are at
least ``within`` apart, so a (bucket, key) entry holds one time: an element at ``t`` is judged
by probing the three buckets that can hold a time less than ``within`` from it (a dict lookup
each while cached). A key holds up to one entry per live bucket: up to 3 for in-order input,
about ``3 + disorder / within`` with disorder, where the previous layout held one.

This layout is the one that stored only each key's latest kept time, under the same bucket:
older checkpoints read as they are (each of their entries is a kept time, under its bucket), and
a restored key only lacks the earlier kept times that the old operator had already dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import orjson

from streamrt.errors import InvalidArgument

from ._batch import Batch
from ._cache import DEFAULT_MAX_ENTRIES, StateCache
from ._protocol import BaseOperator, BatchFailed, StateHandle
from ._time import TimedOperator, wall_clock_ms


def _freeze(x: Any) -> Any:
    return tuple(_freeze(i) for i in x) if isinstance(x, list) else x


def _key(k: Any) -> bytes:
    return orjson.dumps([k])


def _key_from(raw: bytes) -> Any:
    return _freeze(orjson.loads(raw)[0])


def _state_dumps(v: Any) -> bytes:
    try:
        return orjson.dumps(v)
    except TypeError as e:
        raise InvalidArgument(
            f"stateful_map: the state {v!r} is not a JSON value ({e}); return dicts, lists, "
            f"str, numbers or None as the state") from None


_U64 = struct.Struct(">Q")
_BIAS = 1 << 63


def _bucket_prefix(b: int) -> bytes:
    return b"d" + _U64.pack(b + _BIAS)


def _dedupe_key(bk: tuple[int, Any]) -> bytes:
    return b"d" + _U64.pack(bk[0] + _BIAS) + orjson.dumps(bk[1])


def _dedupe_from(raw: bytes) -> tuple[int, Any]:
    return _U64.unpack_from(raw, 1)[0] - _BIAS, _freeze(orjson.loads(raw[9:]))


def _first(bk: tuple[int, Any]) -> int:
    return bk[0]


class StatefulMap(BaseOperator):
    """``fn(state, value) -> (new_state, output)`` per key."""

    name = "stateful_map"
    stateful = True

    def __init__(self, fn: Callable[[Any, Any], tuple[Any, Any]], *,
                 cache_size: int | None = DEFAULT_MAX_ENTRIES) -> None:
        self.fn = fn
        self.cache = StateCache(None, cache_size, encode=_key, decode=_key_from,
                                dumps=_state_dumps)

    @property
    def wants_checkpoint(self) -> bool:
        """The changed states exceed the cache bound: the runner should checkpoint."""
        return self.cache.wants_checkpoint

    def process(self, batch: Batch) -> list[Batch]:
        fn, cache = self.fn, self.cache
        data, load, dirty_add = cache.data, cache.load, cache.dirty.add
        values = batch.values
        keys = batch.keys if batch.keys is not None else [None] * len(values)
        out_v: list[Any] = []
        idx: list[int] = []
        for i, (k, v) in enumerate(zip(keys, values)):
            old = data.get(k)
            if old is None:
                old = load(k)
            try:
                new, out = fn(old, v)
            except Exception as e:  # elements before i are applied: retry only from i
                raise BatchFailed(i, self._out(batch, out_v, idx), e) from e
            if new is None:
                if old is not None:
                    cache.delete(k)
            elif old is None:
                cache.add_new(k, new)
            else:
                data[k] = new
                dirty_add(k)
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
        return self.cache.snapshot()

    def restore(self, handle: StateHandle) -> None:
        self.cache.attach(handle)


class Dedupe(TimedOperator):
    """Drop elements whose dedupe key was kept within ``within`` ms (see the module doc)."""

    flush_at_end = False  # closing emits nothing: keep the state for a later run

    name = "dedupe"
    stateful = True

    def __init__(
        self, key: Callable[[Any], Any], within: int, timestamp: Callable[[Any], int] | None = None,
        max_out_of_orderness: int = 0, *, processing_time: bool = False,
        clock: Callable[[], int] = wall_clock_ms, cache_size: int | None = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if not isinstance(within, int) or within <= 0:
            raise InvalidArgument(f"dedupe(within=...) must be a positive duration, got {within!r}")
        super().__init__(timestamp, max_out_of_orderness, processing_time, clock)
        self.key = key
        self.within = within
        # (expiry bucket, dedupe key) -> the time of a kept element of the key: one per bucket
        # at most, since a bucket spans ``within`` and a key's kept times are that far apart
        self.cache = StateCache(None, cache_size, encode=_dedupe_key, decode=_dedupe_from,
                                group=_first, group_prefix=_bucket_prefix)
        self.buckets: list[int] = []  # live expiry buckets, ascending

    @property
    def wants_checkpoint(self) -> bool:
        """The changed keys exceed the cache bound: the runner should checkpoint."""
        return self.cache.wants_checkpoint

    def kept(self, dk: Any) -> list[int]:
        """The remembered times of ``dk``'s kept elements, ascending (empty once forgotten)."""
        get = self.cache.get
        return [t for t in (get((b, dk)) for b in self.buckets) if t is not None]

    def last(self, dk: Any) -> int | None:
        """The time of the latest kept element of ``dk`` (None once forgotten)."""
        times = self.kept(dk)
        return times[-1] if times else None

    def describe(self) -> Any:
        return ["dedupe", self.within]

    def process(self, batch: Batch) -> list[Batch]:
        values = batch.values
        if not values:
            return []
        keyf = self.key
        dks = [keyf(v) for v in values]
        ts = self._times(batch, "dedupe()")
        w, cache = self.within, self.cache
        data, load = cache.data, cache.load
        edge = self.wm - w
        keep: list[bool] = []
        late: list[int] = []
        for i, (dk, t) in enumerate(zip(dks, ts)):
            if t <= edge:
                late.append(i)
                keep.append(False)
                continue
            # A kept time s with |t - s| < w is in bucket (s + 2w) // w, which is t's own
            # bucket nb or one of its neighbours; each holds at most one time of dk. Every
            # kept time that old is still there: s <= wm - 2w would mean t - s > w.
            nb = (t + 2 * w) // w
            dup = False
            for b in (nb, nb + 1, nb - 1):
                s = data.get((b, dk))
                if s is None:
                    s = load((b, dk))
                if s is not None and -w < t - s < w:
                    dup = True
                    break
            keep.append(not dup)
            if not dup:
                # (nb held no time of dk: it would have been less than w from t)
                cache.add_new((nb, dk), t, nb)
                if nb not in self.buckets:
                    self.buckets.append(nb)
                    self.buckets.sort()
        if late:
            self.late.append(Batch([values[i] for i in late],
                                   [batch.keys[i] for i in late] if batch.keys is not None else None,
                                   [ts[i] for i in late], batch.part))
        b = Batch(values, batch.keys, ts, batch.part)
        out = [b] if all(keep) else [b.select(keep)]
        return out + self._advance(batch.part)

    def _close(self, part: int) -> list[Batch]:
        # bucket b holds expiry times in [b * within, (b + 1) * within): all have passed once
        # the watermark reaches its last one
        buckets, w = self.buckets, self.within
        while buckets and (buckets[0] + 1) * w - 1 <= self.wm:
            self.cache.pop_group(buckets.pop(0))
        return []

    def snapshot(self) -> dict[bytes, bytes | None]:
        return self._with_time(self.cache.snapshot())

    def restore(self, handle: StateHandle) -> None:
        self._restore_time(handle)
        self.cache.attach(handle)
        self.buckets = sorted(self.cache.groups())


