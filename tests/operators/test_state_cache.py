"""StateCache over a real LMDB store: reads always equal a plain dict's, within the bound.

The store is a :class:`LogStore` in ``tmp_path``, read through the runner's handle; a
"checkpoint" writes the cache's snapshot in one ``WriteBatch``, as the pipeline task does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from operators._cache import META_KEY, StateCache
from streamrt.dataflow._runner import _Handle
from streamrt.errors import InvalidArgument
from streamrt.storage import LogStore, WriteBatch

PREFIX = b"df\x00t\x00st\x00op\x00"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    with LogStore.open(tmp_path / "d", durability="none", maintenance_interval=None) as s:
        yield s


def _plain(handle: Any = None, bound: int | None = 3) -> StateCache:
    return StateCache(handle, bound, encode=lambda k: orjson.dumps([k]),
                      decode=lambda raw: orjson.loads(raw)[0])


def _grouped(handle: Any = None, bound: int | None = 3) -> StateCache:
    """Keys ``(group, name)``, stored under the group's one-byte prefix."""
    return StateCache(handle, bound, encode=lambda k: bytes([k[0]]) + k[1].encode(),
                      decode=lambda raw: (raw[0], raw[1:].decode()),
                      group=lambda k: k[0], group_prefix=lambda g: bytes([g]))


def _checkpoint(store: LogStore, cache: StateCache) -> dict[bytes, bytes | None]:
    snap = cache.snapshot()
    wb = WriteBatch()
    for k, v in snap.items():
        if v is None:
            wb.delete(PREFIX + k)
        else:
            wb.put(PREFIX + k, v)
    if snap:
        store.write_sync(wb)
    return snap


def _fresh(store: LogStore, make: Any = _plain, bound: int | None = 3) -> StateCache:
    cache = make(None, bound)
    cache.attach(_Handle(store, PREFIX))
    return cache


def test_a_new_key_costs_no_store_read(store: LogStore) -> None:
    cache = _fresh(store)
    for i in range(10):
        assert cache.get(i) is None
        cache.set(i, i)
    assert cache.reads == 0  # nothing was ever stored or evicted: a miss is known absent


def test_clean_entries_are_evicted_least_recently_used_first(store: LogStore) -> None:
    cache = _fresh(store)
    for k in "abc":
        cache.set(k, k.upper())
    _checkpoint(store, cache)  # (changes of one checkpoint count as used at the checkpoint)
    assert cache.get("c") == "C" and cache.get("a") == "A"  # b is the least recently used
    cache.set("d", "D")  # one over the bound: b goes
    assert set(cache.data) == {"a", "c", "d"} and cache.evictions == 1
    assert cache.reads == 0
    assert cache.get("b") == "B" and cache.reads == 1  # read back from LMDB
    assert set(cache.data) == {"a", "b", "d"}  # c, the least recently used clean one, went


def test_dirty_entries_stay_and_ask_for_a_checkpoint(store: LogStore) -> None:
    cache = _fresh(store)
    for i in range(5):
        cache.set(i, i)
    assert len(cache) == 5 and cache.wants_checkpoint  # nothing clean to evict
    _checkpoint(store, cache)
    assert not cache.wants_checkpoint and len(cache) == 3
    assert [cache.get(i) for i in range(5)] == list(range(5))


def test_a_key_created_and_deleted_between_checkpoints_writes_nothing(store: LogStore) -> None:
    cache = _fresh(store)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.delete("a")
    snap = _checkpoint(store, cache)
    assert set(snap) == {orjson.dumps(["b"]), META_KEY}
    cache.delete("b")  # stored: its delete is written
    assert _checkpoint(store, cache)[orjson.dumps(["b"])] is None
    assert store.get(PREFIX + orjson.dumps(["b"])) is None


def test_a_deleted_key_is_absent_before_the_checkpoint_writes_it(store: LogStore) -> None:
    cache = _fresh(store, bound=1)
    cache.set("a", 1)
    cache.set("b", 2)
    _checkpoint(store, cache)  # a evicted: one stored key outside the cache
    cache.delete("b")
    assert cache.get("b") is None  # the store still has b until the next checkpoint
    assert cache.get("a") == 1


def test_restore_reads_small_states_whole_and_large_ones_lazily(store: LogStore) -> None:
    cache = _fresh(store, bound=100)
    for i in range(10):
        cache.set(i, i * i)
    _checkpoint(store, cache)
    small = _fresh(store, bound=100)
    assert len(small) == 10 and small.get(11) is None and small.reads == 0
    large = _fresh(store, bound=4)
    assert len(large) == 0
    assert [large.get(i) for i in range(10)] == [i * i for i in range(10)]
    assert large.reads == 10 and len(large) <= 4


def test_pop_group_takes_cached_and_stored_entries(store: LogStore) -> None:
    cache = _fresh(store, _grouped, bound=2)
    for name in "abcd":
        cache.set((1, name), name)
    cache.set((2, "x"), "x")
    _checkpoint(store, cache)  # three of the five evicted
    cache.set((1, "a"), "A")  # changed since: the cache's value wins
    cache.delete((1, "b"))  # deleted since: not yielded
    assert sorted(cache.groups()) == [1, 2]
    assert dict(zip(*cache.pop_group(1))) == {(1, "a"): "A", (1, "c"): "c", (1, "d"): "d"}
    assert cache.get((1, "c")) is None
    _checkpoint(store, cache)
    assert [k for k, _ in store.scan(PREFIX) if k[len(PREFIX):] != META_KEY] == [PREFIX + b"\x02x"]
    again = _fresh(store, _grouped)
    assert again.groups() == [2] and again.get((2, "x")) == "x"


def test_group_keys_lists_cached_and_stored_keys_and_keeps_them(store: LogStore) -> None:
    cache = _fresh(store, _grouped, bound=2)
    for name in "abcd":
        cache.set((1, name), name)
    _checkpoint(store, cache)  # two of the four evicted
    cache.delete((1, "a"))  # deleted since the checkpoint: not listed
    cache.set((1, "e"), "e")  # new since: listed
    reads = cache.reads
    assert sorted(cache.group_keys(1)) == [(1, "b"), (1, "c"), (1, "d"), (1, "e")]
    assert cache.reads == reads + 1  # one scan for the evicted ones
    assert len(cache) <= 2 + len(cache.dirty & cache.data.keys())
    assert [cache.get((1, n)) for n in "abcde"] == [None, "b", "c", "d", "e"]
    _checkpoint(store, cache)
    assert sorted(_fresh(store, _grouped).group_keys(1)) == [(1, n) for n in "bcde"]


def test_two_caches_share_a_handle_with_their_own_prefix_and_meta_key(store: LogStore) -> None:
    def pair(bound: int) -> tuple[StateCache, StateCache]:
        a = StateCache(None, bound, encode=lambda k: b"a" + k.encode(),
                       decode=lambda raw: raw[1:].decode(), prefix=b"a")
        b = StateCache(None, bound, encode=lambda k: b"b" + k.encode(),
                       decode=lambda raw: raw[1:].decode(), prefix=b"b", meta_key=b"\x00nb")
        h = _Handle(store, PREFIX)
        a.attach(h)
        b.attach(h)
        return a, b

    a, b = pair(10)
    a.set("x", 1)
    _checkpoint(store, a)  # only a's keys and counts are stored: b reads its prefix alone
    a2, b2 = pair(10)
    assert a2.get("x") == 1 and len(b2) == 0 and b2.get("x") is None
    b2.set("x", 2)
    b2.set("y", 3)
    _checkpoint(store, b2)
    a3, b3 = pair(1)  # larger than the bound: both read lazily, each under its own counts
    assert (a3.get("x"), b3.get("x"), b3.get("y")) == (1, 2, 3)
    with pytest.raises(InvalidArgument, match="meta key"):
        StateCache(None, 1, encode=str.encode, decode=bytes.decode, meta_key=b"n")


def test_reads_of_hits_never_touch_the_store(store: LogStore) -> None:
    cache = _fresh(store, bound=10)
    for i in range(30):
        cache.set(i, i)
    _checkpoint(store, cache)
    reads = cache.reads
    for _ in range(3):
        for i in range(20, 30):  # the ten most recent: all cached
            assert cache.get(i) == i
    assert cache.reads == reads


def test_an_unbacked_cache_never_evicts() -> None:
    cache = _plain(None, 2)
    for i in range(5):
        cache.set(i, i)
    cache.snapshot()
    assert len(cache) == 5 and cache.evictions == 0


def test_the_bound_is_positive() -> None:
    with pytest.raises(InvalidArgument, match="at least 1"):
        _plain(None, 0)


# ------------------------------------------------------------ against a dict

KEYS = st.sampled_from([(g, n) for g in (1, 2, 3) for n in "abcde"])


class CacheMachine(RuleBasedStateMachine):
    """Random get/set/delete/pop_group/snapshot/restart with a bound of 3: every read equals a
    plain dict's, and the cache never holds more than the bound plus its dirty entries."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(self._tmp())
        self.store = LogStore.open(self.dir, durability="none", maintenance_interval=None)
        self.cache = _fresh(self.store, _grouped)
        self.ref: dict[Any, Any] = {}
        self.values = itertools.count()

    @classmethod
    def _tmp(cls) -> str:
        import tempfile

        return tempfile.mkdtemp(prefix="statecache-")

    @rule(key=KEYS)
    def get(self, key: Any) -> None:
        assert self.cache.get(key) == self.ref.get(key)
        assert (key in self.cache) == (key in self.ref)

    @rule(key=KEYS)
    def set(self, key: Any) -> None:
        v = [next(self.values)]
        self.cache.set(key, v)
        self.ref[key] = v

    @rule(key=KEYS)
    def mutate_in_place(self, key: Any) -> None:  # what window accumulators do
        v = self.cache.get(key)
        if v is not None:
            v.append(0)
            self.cache.dirty.add(key)
            self.ref[key] = list(v)

    @rule(key=KEYS)
    def delete(self, key: Any) -> None:
        self.cache.delete(key)
        self.ref.pop(key, None)

    @rule(group=st.sampled_from([1, 2, 3]))
    def pop_group(self, group: int) -> None:
        got = dict(zip(*self.cache.pop_group(group)))
        want = {k: v for k, v in self.ref.items() if k[0] == group}
        assert got == want
        for k in want:
            del self.ref[k]

    @rule(group=st.sampled_from([1, 2, 3]))
    def group_keys(self, group: int) -> None:
        got = self.cache.group_keys(group)
        assert len(got) == len(set(got))
        assert set(got) == {k for k in self.ref if k[0] == group}

    @rule()
    def checkpoint(self) -> None:
        _checkpoint(self.store, self.cache)

    @rule()
    def restart(self) -> None:  # a crash right after a checkpoint
        _checkpoint(self.store, self.cache)
        self.cache = _fresh(self.store, _grouped)

    @invariant()
    def bounded(self) -> None:
        c = self.cache
        assert len(c) <= 3 + len(c.dirty & c.data.keys())

    def teardown(self) -> None:
        self.store.close()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


CacheMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_cache_matches_a_dict = CacheMachine.TestCase
