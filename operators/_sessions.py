"""Session windows' state: every key's sessions, and when to look at a key again.

A key's sessions are one entry of a bounded :class:`~operators._cache.StateCache`: ``key ->
[due, [[first, last, accumulators], ...]]``, the sessions sorted by ``first``. A session
``[first, last + gap)`` closes when the watermark reaches ``last + gap + lateness``, and
``due`` is a time at or before the earliest close of the key's sessions: when the key must be
looked at again. It is not kept exact: an element that extends a session moves its close
later and leaves ``due`` alone (the key is looked at a little early, finds nothing to close,
and is filed again); only a new session closing before ``due`` moves it earlier.

The close schedule is not held per key in memory. A key is *filed* under the bucket of its
``due`` (``due // width``, the width being a sixteenth of the gap) in a second bounded cache,
the index (``(bucket, key) -> 0``, stored under the bucket first, grouped by bucket): what
stays in memory is the set of live buckets, about ``16 * (1 + (disorder + lateness) / gap)``,
however many keys. When the watermark reaches a bucket's first time, the bucket becomes the
*current* one: its keys are listed (the cached ones, and one prefix scan for the rest) and go
into a heap by ``due`` (the transient of one bucket, as a tumbling window end's is of one
window start). A key whose ``due`` comes is looked at: its sessions that are due close, and
the key is filed again under the bucket of its next ``due`` (kept in the heap if that is the
current bucket), or forgotten.

An index entry ``(b, key)`` is current when the key's ``due`` falls in bucket ``b``; others are
stale (left behind when ``due`` moved earlier) and are dropped when their bucket comes. Heap
entries are checked the same way against ``due``. The heap is not checkpointed: the current
bucket's index entries stay until their keys are looked at, so a restarted operator lists the
bucket again when the watermark next moves (nothing in it was due at the checkpoint).
"""

from __future__ import annotations

import heapq
import itertools
import struct
from collections.abc import Callable
from typing import Any

import orjson

from ._aggregations import Compiled
from ._cache import DEFAULT_MAX_ENTRIES, StateCache
from ._protocol import StateHandle

_U64 = struct.Struct(">Q")
_BIAS = 1 << 63  # signed buckets as unsigned, so stored keys sort by bucket
#: A bucket of the close schedule spans the gap divided by this.
BUCKETS_PER_GAP = 16
#: Where the index checkpoints its per-bucket counts (the sessions' cache uses the default).
INDEX_META_KEY = b"\x00nc"


def _freeze(x: Any) -> Any:
    return tuple(_freeze(i) for i in x) if isinstance(x, list) else x


def _session_key(k: Any) -> bytes:
    return b"s" + orjson.dumps(k)


def _session_from(raw: bytes) -> Any:
    return _freeze(orjson.loads(raw[1:]))


def _bucket_prefix(b: int) -> bytes:
    return b"c" + _U64.pack(b + _BIAS)


def _index_key(bk: tuple[int, Any]) -> bytes:
    return b"c" + _U64.pack(bk[0] + _BIAS) + orjson.dumps(bk[1])


def _index_from(raw: bytes) -> tuple[int, Any]:
    return _U64.unpack_from(raw, 1)[0] - _BIAS, _freeze(orjson.loads(raw[9:]))


def _bucket(bk: tuple[int, Any]) -> int:
    return bk[0]


def _first(s: list[Any]) -> int:
    return s[0]


class SessionFailed(Exception):
    """An aggregation raised on element ``index`` (the cause is chained)."""

    def __init__(self, index: int) -> None:
        self.index = index


class Sessions:
    """Per-key sessions and their close schedule, both bounded; see the module doc."""

    def __init__(self, gap: int, lateness: int, aggs: Compiled,
                 cache_size: int | None = DEFAULT_MAX_ENTRIES) -> None:
        self.gap = gap
        self.lateness = lateness
        self.aggs = aggs
        # of a bucket, in ms: narrower buckets make more of them, each listed at once when it
        # comes; the gap is part of the graph's fingerprint, so stored buckets keep their meaning
        self.width = max(1, gap // BUCKETS_PER_GAP)
        #: key -> [due, sessions]
        self.cache = StateCache(None, cache_size, encode=_session_key, decode=_session_from,
                                prefix=b"s")
        #: (bucket, key) -> 0: the key is looked at when the watermark reaches its due time
        self.index = StateCache(None, cache_size, encode=_index_key, decode=_index_from,
                                group=_bucket, group_prefix=_bucket_prefix, prefix=b"c",
                                meta_key=INDEX_META_KEY)
        self.buckets: list[int] = []  # live buckets after the current one (a heap)
        self.live: set[int] = set()
        self.current: int | None = None
        self.soon: list[tuple[int, int, Any]] = []  # (due, tie-breaker, key) of the current bucket
        self._seq = itertools.count()  # tie-breaker: keys of different types never compare

    @property
    def wants_checkpoint(self) -> bool:
        """Either cache's changes exceed its bound."""
        return self.cache.wants_checkpoint or self.index.wants_checkpoint

    # ------------------------------------------------------------ elements

    def add(self, keys: list[Any], values: list[Any], ts: list[int], late: list[int], edge: int,
            dirty_add: Callable[[Any], None]) -> None:
        """Put a batch's elements into their keys' sessions (``edge``: the watermark minus the
        lateness; an element whose own window ends by then and touches no session is late, its
        index appended to ``late``). Per element: the key's entry (a dict lookup on a hit), the
        sessions it touches updated and merged, or a new session; a new one closing before the
        key's due time files the key again."""
        gap = self.gap
        after = gap + self.lateness  # a session closes at its last element + this
        merge, update, init = self.aggs.merge, self.aggs.update, self.aggs.init
        cache = self.cache
        data, load, add_new = cache.data, cache.load, cache.add_new
        for i, (k, v, t) in enumerate(zip(keys, values, ts)):
            entry = data.get(k)
            if entry is None:
                entry = load(k)  # (no store read unless keys were evicted)
            if entry is not None:
                sessions = entry[1]
                # the element's window [t, t + gap) overlaps a session [first, last + gap)
                # when first - gap < t < last + gap
                touching = [s for s in sessions if s[0] - gap < t < s[1] + gap]
                if touching:
                    cur = touching[0]
                    try:  # first, so that a failing element changes nothing
                        update(cur[2], v)
                    except Exception as e:
                        raise SessionFailed(i) from e
                    for other in touching[1:]:  # the element bridges them: one session now
                        cur[1] = max(cur[1], other[1])
                        cur[2] = merge(cur[2], other[2])
                        sessions.remove(other)
                    cur[0] = min(cur[0], t)
                    cur[1] = max(cur[1], t)
                    dirty_add(k)  # (closes move later only: the due time stays valid)
                    continue
            if t + gap <= edge:
                late.append(i)
                continue
            acc = init()
            try:
                update(acc, v)
            except Exception as e:
                raise SessionFailed(i) from e
            due = t + after
            if entry is None:
                add_new(k, [due, [[t, t, acc]]])
                self._file(k, due, None)
            else:
                sessions.append([t, t, acc])
                sessions.sort(key=_first)
                if due < entry[0]:
                    old, entry[0] = entry[0], due
                    self._file(k, due, old)
            dirty_add(k)

    def _file(self, k: Any, due: int, old: int | None) -> None:
        """File key ``k`` under the bucket of ``due`` (``old``: its previous due time, whose
        index entry may be the same one)."""
        w = self.width
        b = due // w
        cur = self.current
        if cur is not None and b <= cur:  # (b == cur: every due time is past the watermark)
            heapq.heappush(self.soon, (due, next(self._seq), k))
            b = cur
        elif b not in self.live:
            self.live.add(b)
            heapq.heappush(self.buckets, b)
        if old is None or old // w != b:
            self.index.set((b, k), 0)

    # ------------------------------------------------------------ closing

    def close(self, wm: int, emit: Callable[[Any, list[Any]], None]) -> None:
        """Close every session due at watermark ``wm``, calling ``emit(key, session)`` for
        each, in close order."""
        w = self.width
        soon = self.soon
        while True:
            while soon and soon[0][0] <= wm:
                due, _, k = heapq.heappop(soon)
                self._look_at(k, due, wm, emit)
            cur = self.current
            if cur is not None:
                if soon or (cur + 1) * w - 1 > wm:
                    return  # (every later bucket starts after this one ends)
                self.current = None  # no key can be filed under it any more
                if not self.index.members.get(cur, True):
                    del self.index.members[cur]  # (its last key was looked at: empty)
            buckets = self.buckets
            if not buckets or buckets[0] * w > wm:
                return
            b = heapq.heappop(buckets)
            self.live.discard(b)
            self.current = b
            get = self.cache.get
            for bk in self.index.group_keys(b):
                k = bk[1]
                entry = get(k)
                if entry is None or entry[0] // w != b:
                    self.index.delete(bk)  # stale: the key is filed elsewhere, or gone
                else:
                    heapq.heappush(soon, (entry[0], next(self._seq), k))

    def _look_at(self, k: Any, due: int, wm: int, emit: Callable[[Any, list[Any]], None]) -> None:
        cache = self.cache
        entry = cache.get(k)
        if entry is None or entry[0] != due:
            return  # a stale heap entry: the key was filed again since, or closed
        after = self.gap + self.lateness
        keep = []
        for s in entry[1]:
            if s[1] + after <= wm:
                emit(k, s)
            else:
                keep.append(s)
        cur = self.current
        if not keep:
            cache.delete(k)
            self.index.delete((cur, k))
            return
        nxt = min(s[1] for s in keep) + after
        cache.set(k, [nxt, keep])
        if nxt // self.width == cur:
            heapq.heappush(self.soon, (nxt, next(self._seq), k))
        else:
            self.index.delete((cur, k))
            self._file(k, nxt, None)

    # ------------------------------------------------------------ state

    def snapshot(self) -> dict[bytes, bytes | None]:
        """Both caches' changes since the last snapshot."""
        out = self.cache.snapshot()
        out.update(self.index.snapshot())
        return out

    def attach(self, handle: StateHandle) -> None:
        """Take the operator's state handle (at restore); the current bucket, if any, is
        listed again when the watermark next moves."""
        self.cache.attach(handle)
        self.index.attach(handle)
        self.live = set(self.index.groups())
        self.buckets = sorted(self.live)
        self.current = None
        self.soon = []

    def sessions_of(self, k: Any) -> list[Any]:
        """A key's cached sessions (keys a batch just touched are always cached)."""
        entry = self.cache.data.get(k)
        return entry[1] if entry is not None else []
