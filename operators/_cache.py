"""A bounded cache of an operator's per-key state over its LMDB state handle.

Operators keep per-key state (window accumulators, ``stateful_map`` states, dedupe times,
table rows) as Python values in a :class:`StateCache`. The cache is the operator's view of
its state: the entries it holds (read from the store or written since), and for everything
else the store as of the last checkpoint, read through the handle on a miss. Changes are
*dirty* until the next checkpoint's ``snapshot()`` hands them to the runner, which writes them
in the checkpoint's transaction; then they are clean.

The bound (``max_entries``) is kept by evicting clean entries, least recently used first
(a read through :meth:`get` uses an entry; the entries changed between two checkpoints count
as used at the second, which keeps the hot path free of bookkeeping). A dirty entry is never
evicted: it exists nowhere else until the checkpoint. When the dirty entries alone exceed the
bound, the cache sets :attr:`wants_checkpoint`, which the runner checks after each step to
checkpoint early; until then the cache holds the bound plus what changed since the last
checkpoint.

Misses must not cost a store read per new key (a tumbling window opens a new key per event on
some workloads). So the cache counts, per *group* of keys, how many stored keys it does not
hold; a miss in a group whose count is zero is known absent without a read. Groups are a
prefix of the stored key (a window start, say): :meth:`pop_group` takes a whole group, cached
and stored, which is how windows close without an in-memory list of every open window. The
counts per group are checkpointed under :data:`META_KEY`, a small index (one number per
group). Each entry also remembers whether it is stored, so a key created and deleted between
two checkpoints costs no write at all.

Without a handle that can ``get`` (an operator driven by hand, or a legacy ``items()``-only
handle), nothing can be read back, so nothing is evicted: the cache is then a plain dict with
dirty tracking.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from streamrt.errors import InvalidArgument

#: Keys starting with this byte belong to the operator itself (watermarks, this index), never
#: to a cache: caches skip them when they scan.
RESERVED = b"\x00"
#: Where the cache checkpoints its per-group counts of stored keys.
META_KEY = b"\x00n"
#: Default bound, large enough that the benchmarks' working sets never spill.
DEFAULT_MAX_ENTRIES = 100_000

_MISSING = object()


def _compact(raw: bytes) -> bytes:
    return memoryview(raw).tobytes()


class StateCache:
    """Per-key state over a state handle, bounded; see the module doc.

    ``encode(key) -> bytes`` and ``decode(raw_key) -> key`` map keys to stored keys;
    ``dumps``/``loads`` serialise values. With ``group`` (a function of the key) and
    ``group_prefix`` (the stored-key prefix of a group), keys form groups that can be taken
    whole with :meth:`pop_group`; groups must be JSON values (they are checkpointed).

    Several caches can share one operator's handle: give each its own ``prefix`` (every stored
    key of the cache starts with it, so a whole-state read scans only its own keys) and
    ``meta_key`` (where its counts are checkpointed, under :data:`RESERVED`).
    """

    __slots__ = ("handle", "max_entries", "encode", "decode", "dumps", "loads", "group",
                 "group_prefix", "data", "dirty", "stored", "clean", "members", "uncached",
                 "counts", "counts_dirty", "wants_checkpoint", "reads", "evictions", "_backed",
                 "prefix", "meta_key")

    def __init__(
        self, handle: Any = None, max_entries: int | None = DEFAULT_MAX_ENTRIES, *,
        encode: Callable[[Any], bytes], decode: Callable[[bytes], Any],
        dumps: Callable[[Any], bytes] = orjson.dumps, loads: Callable[[bytes], Any] = orjson.loads,
        group: Callable[[Any], Any] | None = None,
        group_prefix: Callable[[Any], bytes] | None = None,
        prefix: bytes = b"", meta_key: bytes = META_KEY,
    ) -> None:
        if not meta_key.startswith(RESERVED):
            raise InvalidArgument(f"a cache's meta key starts with {RESERVED!r}, got {meta_key!r}")
        if max_entries is not None and max_entries < 1:
            raise InvalidArgument(f"a state cache holds at least 1 entry, got {max_entries!r}")
        self.handle = handle
        self.max_entries = max_entries
        self.encode = encode
        self.decode = decode
        self.dumps = dumps
        self.loads = loads
        self.group = group
        self.group_prefix = group_prefix
        self.prefix = prefix
        self.meta_key = meta_key
        #: key -> value of every cached entry that exists (clean or dirty). Operators may read
        #: it directly on their hot path (a hit); a key not in it goes through :meth:`get`.
        self.data: dict[Any, Any] = {}
        #: keys changed since the last snapshot (a dirty key absent from ``data`` is deleted).
        #: Operators that change a value in place add its key here.
        self.dirty: set[Any] = set()
        self.stored: set[Any] = set()  # cached keys that the store holds (as of the snapshot)
        # clean entries in least-recently-used order (an ordered set). Lazy: a key made dirty
        # stays listed until eviction or the snapshot puts it at the end again. An
        # OrderedDict, not a dict: taking a dict's first key again and again after deleting
        # the ones before scans the deleted slots each time (quadratic).
        self.clean: OrderedDict[Any, None] = OrderedDict()
        # group -> its cached keys, in insertion order (grouped caches)
        self.members: dict[Any, dict[Any, None]] = {}
        self.uncached: dict[Any, int] = {}  # group -> stored keys not in the cache
        self.counts: dict[Any, int] = {}  # group -> stored keys (once the snapshot is written)
        self.counts_dirty = False
        #: Set when dirty entries alone exceed the bound: the runner checkpoints early.
        self.wants_checkpoint = False
        self.reads = 0  # store reads on misses (tests and statistics)
        self.evictions = 0
        self._backed = handle is not None and hasattr(handle, "get")

    # ------------------------------------------------------------ attaching

    def attach(self, handle: Any) -> None:
        """Take the operator's state handle (at restore): with ``get``, the store backs the
        cache and small states are read whole; a legacy ``items()``-only handle is read whole
        and the cache never evicts."""
        self.handle = handle
        self._backed = hasattr(handle, "get")
        if not self._backed:
            for k, raw in handle.items():
                if k.startswith(self.prefix) and not k.startswith(RESERVED):
                    self._restored(self.decode(k), self.loads(raw))
            return
        meta = handle.get(self.meta_key)
        if meta is None:  # nothing stored by a cache: state of an older format, or none
            for k, raw in handle.scan(self.prefix):
                if not k.startswith(RESERVED):
                    self._restored(self.decode(k), self.loads(raw))
            self.counts_dirty = bool(self.counts)
            return
        counts = {(tuple(g) if isinstance(g, list) else g): n for g, n in orjson.loads(meta)}
        self.counts = dict(counts)
        if self.max_entries is None or sum(counts.values()) <= self.max_entries:
            for g in counts:  # small enough: read it all now, and never miss
                prefix = self.group_prefix(g) if self.group_prefix is not None else self.prefix
                for k, raw in handle.scan(prefix):
                    if not k.startswith(RESERVED):
                        self._restored(self.decode(k), self.loads(raw), count=False)
        else:
            self.uncached = {g: n for g, n in counts.items() if n}

    def _restored(self, key: Any, value: Any, count: bool = True) -> None:
        self.data[key] = value
        self.stored.add(key)
        self.clean[key] = None
        g = self.group(key) if self.group is not None else None
        if self.group is not None:
            self.members.setdefault(g, {})[key] = None
        if count:
            self.counts[g] = self.counts.get(g, 0) + 1

    # ------------------------------------------------------------ mapping

    def __len__(self) -> int:
        """Cached entries (clean and dirty)."""
        return len(self.data)

    def __contains__(self, key: Any) -> bool:
        return self.get(key) is not None

    def groups(self) -> list[Any]:
        """Every group with a cached entry or a stored key."""
        return list({*self.members, *(g for g, n in self.counts.items() if n)})

    def get(self, key: Any, default: Any = None) -> Any:
        """The key's value (``default`` if absent): from the cache, else from the store."""
        value = self.data.get(key, _MISSING)
        if value is not _MISSING:
            clean = self.clean
            if key in clean:  # a read counts as a use
                clean.move_to_end(key)
            return value
        value = self.load(key)
        return default if value is None else value

    def load(self, key: Any) -> Any:
        """A key not in ``data``: its stored value (now cached), or None. No store read when
        the key is known absent (deleted since the checkpoint, or its group has no stored key
        outside the cache)."""
        if key in self.dirty:  # deleted since the last checkpoint
            return None
        g = self.group(key) if self.group is not None else None
        if not self.uncached.get(g):
            return None
        self.reads += 1
        raw = self.handle.get(self.encode(key))
        if raw is None:
            return None
        value = self.loads(raw)
        self.uncached[g] -= 1
        self.data[key] = value
        self.stored.add(key)
        if self.group is not None:
            self.members.setdefault(g, {})[key] = None
        if self.max_entries is not None and len(self.data) > self.max_entries:
            self.evict()  # (before the key is listed as clean: it must not be the one to go)
        self.clean[key] = None
        return value

    def set(self, key: Any, value: Any) -> None:
        """Set a key's value (not None: use :meth:`delete`)."""
        data = self.data
        if key not in data:
            if key not in self.dirty and self.load(key) is not None:
                pass  # it was stored: now cached (and known stored)
            elif self.group is not None:
                g = self.group(key)
                m = self.members.get(g)
                if m is None:
                    self.members[g] = {key: None}
                else:
                    m[key] = None
            data[key] = value
            self.dirty.add(key)
            if self.max_entries is not None and len(data) > self.max_entries:
                self.evict()
            return
        data[key] = value
        self.dirty.add(key)

    def add_new(self, key: Any, value: Any, group: Any = None) -> None:
        """:meth:`set` for a key the caller knows is absent (``get`` or ``load`` said so just
        before), with its group: the hot path of windows opening."""
        self.data[key] = value
        self.dirty.add(key)
        if self.group is not None:
            m = self.members.get(group)
            if m is None:
                self.members[group] = {key: None}
            else:
                m[key] = None
        if self.max_entries is not None and len(self.data) > self.max_entries:
            self.evict()

    def delete(self, key: Any) -> None:
        """Forget a key (a delete is written at the checkpoint only if the store holds it)."""
        if key not in self.data:
            if key in self.dirty or self.load(key) is None:
                return
        del self.data[key]
        self.dirty.add(key)
        if self.group is not None:
            m = self.members.get(self.group(key))
            if m is not None:
                m.pop(key, None)

    def take_group(self, group: Any) -> list[Any]:
        """Every key of a group, cached or stored, all deleted, their values left in ``data``
        for the caller to pop at once (each freed as it is used: windows closing allocate a
        result per window, and holding every closed accumulator meanwhile doubled the garbage
        collector's work). Stored keys the cache did not hold are read in one scan."""
        assert self.group is not None and self.group_prefix is not None
        keys = list(self.members.pop(group, ()))
        dirty = self.dirty
        if self.stored.isdisjoint(keys):
            # never written (opened and closed between two checkpoints, the common case of
            # short windows): nothing to delete, so nothing for the snapshot to look at
            dirty.difference_update(keys)
        else:
            dirty.update(keys)
        if self.uncached.pop(group, 0):
            self.reads += 1
            data, decode, loads = self.data, self.decode, self.loads
            for k, raw in self.handle.scan(self.group_prefix(group)):
                key = decode(k)
                if key in dirty:
                    continue  # the cache's version wins (taken above, or deleted)
                self.stored.add(key)
                dirty.add(key)
                keys.append(key)
                data[key] = loads(raw)
        if self.max_entries is not None and len(dirty) > self.max_entries:
            self.wants_checkpoint = True
        return keys

    def pop_group(self, group: Any) -> tuple[list[Any], list[Any]]:
        """Every key of a group, cached or stored, and their values (two aligned lists), all
        deleted."""
        keys = self.take_group(group)
        pop = self.data.pop
        return keys, [pop(key) for key in keys]

    def group_keys(self, group: Any) -> list[Any]:
        """Every key of a group, cached or stored, left in place (the stored keys the cache
        did not hold are read in one scan, and cached as clean entries)."""
        assert self.group is not None and self.group_prefix is not None
        keys = list(self.members.get(group, ()))
        if self.uncached.pop(group, 0):
            self.reads += 1
            data, dirty, decode, loads = self.data, self.dirty, self.decode, self.loads
            m = self.members.setdefault(group, {})
            for k, raw in self.handle.scan(self.group_prefix(group)):
                key = decode(k)
                if key in data or key in dirty:
                    continue  # the cache's version wins (cached, or deleted)
                data[key] = loads(raw)
                self.stored.add(key)
                self.clean[key] = None
                m[key] = None
                keys.append(key)
            if self.max_entries is not None and len(data) > self.max_entries:
                self.evict()  # (the keys stay listed: a later get reads one back if needed)
        return keys

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Every cached (key, value) (the store's uncached keys are not read)."""
        return iter(list(self.data.items()))

    # ------------------------------------------------------------ bound

    def evict(self, extra: int = 0) -> None:
        """Evict clean entries, least recently used first, down to the bound (or set
        :attr:`wants_checkpoint` when only dirty ones are left). ``extra`` entries the
        operator holds outside the cache (new since the checkpoint, so dirty) count too."""
        data, dirty, clean, stored = self.data, self.dirty, self.clean, self.stored
        limit = self.max_entries
        assert limit is not None
        if not self._backed:
            return
        while len(data) + extra > limit:
            if not clean:
                self.wants_checkpoint = True
                return
            key = clean.popitem(last=False)[0]
            if key in dirty or key not in data:
                continue  # listed before it changed: the snapshot lists it again
            del data[key]
            stored.discard(key)
            g = None
            if self.group is not None:
                g = self.group(key)
                m = self.members.get(g)
                if m is not None:  # (an empty group stays listed until it is popped)
                    m.pop(key, None)
            self.uncached[g] = self.uncached.get(g, 0) + 1
            self.evictions += 1

    # ------------------------------------------------------------ checkpoints

    def snapshot(self) -> dict[bytes, bytes | None]:
        """The changes since the last snapshot, as stored keys (None: delete); they are clean
        from now on. The caller writes them before it uses the cache again (a clean entry
        may be evicted, and read back from the store, at once)."""
        out: dict[bytes, bytes | None] = {}
        data, stored, clean, counts = self.data, self.stored, self.clean, self.counts
        encode, dumps, group = self.encode, self.dumps, self.group
        for key in self.dirty:
            value = data.get(key, _MISSING)
            if value is _MISSING:
                if key in stored:  # (only stored entries are ever clean)
                    clean.pop(key, None)
                    stored.discard(key)
                    out[encode(key)] = None
                    g = group(key) if group is not None else None
                    counts[g] -= 1
                    self.counts_dirty = True
                # else: created and deleted since the last snapshot: nothing to write
                continue
            if key not in stored:
                stored.add(key)
                g = group(key) if group is not None else None
                counts[g] = counts.get(g, 0) + 1
                self.counts_dirty = True
            # copies: a short value orjson.dumps returns occupies about 4 KiB (its whole
            # buffer), and a checkpoint of 100,000 changes held 400 MiB of them
            out[_compact(encode(key))] = _compact(dumps(value))
            clean[key] = None
            clean.move_to_end(key)  # most recently used
        self.dirty.clear()
        self.wants_checkpoint = False
        if self.counts_dirty:
            for g in [g for g, n in counts.items() if not n]:
                del counts[g]
            out[self.meta_key] = orjson.dumps(list(counts.items()))
            self.counts_dirty = False
        if self.max_entries is not None and len(data) > self.max_entries:
            self.evict()
        return out
