"""Each operator with a tiny state cache gives the same output as with an unbounded one.

Two drivers run the same random steps (batches over many keys, checkpoints, restarts) in
lockstep: one whose operator may keep 2 entries in memory (the rest is read back from the
store), one that keeps everything. After every step their outputs so far are equal, and the
tiny one holds at most its bound plus the entries changed since its last checkpoint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import operators as ops
from operators import Batch

from _op_harness import Driver

BOUND = 2
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STEPS = st.lists(st.one_of(
    st.tuples(st.just("batch"), st.integers(0, 1),
              st.lists(st.tuples(st.integers(0, 11), st.integers(0, 6)), min_size=1, max_size=10)),
    st.tuples(st.sampled_from(["checkpoint", "restart", "idle"]), st.integers(0, 1), st.none())),
    max_size=30)


def _cache(op: Any) -> Any:
    return op.table if isinstance(op, ops.TableJoin) else op.cache


def _caches(op: Any) -> list[Any]:
    sessions = getattr(op, "sessions", None)
    return [_cache(op)] + ([sessions.index] if sessions is not None else [])


def _bounded(drv: Driver) -> None:
    for c in _caches(drv.op):
        assert len(c) <= BOUND + len(c.dirty & c.data.keys())


def _lockstep(make: Callable[[int | None], Any], steps: list[Any],
              batch: Callable[[int, list[Any], int], Batch], ordered: bool = True,
              side: Callable[[int], int] | None = None) -> tuple[Driver, Driver]:
    tiny = Driver(lambda: make(BOUND), [0, 1])
    big = Driver(lambda: make(None), [0, 1])
    clock = 0
    for kind, part, elems in steps:
        for drv in (tiny, big):
            if kind == "batch":
                if side is not None:
                    drv.op.side = side(clock)
                drv.process(batch(part, elems, clock))
            elif kind == "idle":
                drv.idle(part)
            elif kind == "checkpoint":
                drv.checkpoint()
            else:
                drv.restart()
        clock += 1
        if ordered:
            assert tiny.out == big.out
        else:
            assert _canon(tiny.out) == _canon(big.out)
        assert tiny.late == big.late
        _bounded(tiny)
    return tiny, big


def _canon(xs: list[Any]) -> Counter[bytes]:
    return Counter(orjson.dumps(x, option=orjson.OPT_SORT_KEYS) for x in xs)


def _timed(part: int, elems: list[Any], clock: int) -> Batch:
    # keys repeat across time: windows and dedupe keys come back after being evicted
    vals = [(k, clock * 3 + d, i) for i, (k, d) in enumerate(elems)]
    return Batch(vals, [k for k, _, _ in vals], None, part)


def _running(state: Any, v: Any) -> tuple[Any, Any]:
    k, t, _ = v
    total = (state or 0) + t + 1
    return (None if total % 5 == 0 else total), [k, total]


@SETTINGS
@given(STEPS)
def test_stateful_map(steps: list[Any]) -> None:
    tiny, big = _lockstep(lambda cs: ops.StatefulMap(_running, cache_size=cs), steps, _timed)
    totals: dict[Any, int] = {}
    want = []
    clock = 0
    for kind, part, elems in steps:  # the plain-Python reference
        if kind == "batch":
            for k, t, _ in _timed(part, elems, clock).values:
                total = totals.get(k, 0) + t + 1
                totals[k] = 0 if total % 5 == 0 else total
                want.append([k, total])
        clock += 1
    assert tiny.out == want


@SETTINGS
@given(STEPS, st.sampled_from([2, 5, 9]))
def test_dedupe(steps: list[Any], within: int) -> None:
    _lockstep(lambda cs: ops.Dedupe(lambda e: e[0], within, lambda e: e[1], 2, cache_size=cs),
              steps, _timed)


@SETTINGS
@given(STEPS, st.sampled_from([ops.Tumbling(4), ops.Sliding(6, 2), ops.Tumbling(1)]),
       st.sampled_from(["final", "early"]))
def test_windows(steps: list[Any], spec: Any, emit: str) -> None:
    def make(cs: int | None) -> Any:
        aggs = ops.Compiled({"n": ops.count(), "ids": ops.collect(lambda e: e[2])})
        return ops.WindowAggregate(spec, aggs, lambda e: e[1], 3, 1, emit=emit, cache_size=cs)

    tiny, big = _lockstep(make, steps, _timed, ordered=False)
    for drv in (tiny, big):
        drv.end()
    assert _canon(tiny.out) == _canon(big.out)


@SETTINGS
@given(STEPS, st.sampled_from([1, 2, 5, 40]), st.sampled_from([0, 2]),
       st.sampled_from(["final", "early"]))
def test_sessions(steps: list[Any], gap: int, lateness: int, emit: str) -> None:
    # keys come back after their sessions closed, out of order (up to 6 ms) and late
    def make(cs: int | None) -> Any:
        aggs = ops.Compiled({"n": ops.count(), "ids": ops.collect(lambda e: e[2])})
        return ops.WindowAggregate(ops.Session(gap), aggs, lambda e: e[1], 3, lateness, emit=emit,
                                   cache_size=cs)

    tiny, big = _lockstep(make, steps, _timed, ordered=False)
    for drv in (tiny, big):
        drv.end()
        assert not drv.op.sessions.soon and not drv.op.sessions.buckets and not drv.op.cache
    assert _canon(tiny.out) == _canon(big.out)


@SETTINGS
@given(STEPS, st.sampled_from([1, 4, 9]))
def test_window_join(steps: list[Any], size: int) -> None:
    # (a pair's elements come back from the store as lists, not tuples: compared as JSON)
    _lockstep(lambda cs: ops.WindowJoin(ops.Tumbling(size), lambda e: e[1], 3, 1, cache_size=cs),
              steps, _timed, ordered=False, side=lambda clock: clock % 2)


@SETTINGS
@given(STEPS)
def test_table_join(steps: list[Any]) -> None:
    def batch(part: int, elems: list[Any], clock: int) -> Batch:
        if clock % 2 == 0:  # table updates: (key bytes, value or None)
            return Batch([(str(k).encode(), None if d == 0 else d) for k, d in elems])
        return Batch([f"v{k}" for k, _ in elems], [str(k) for k, _ in elems])

    _lockstep(lambda cs: ops.TableJoin("left", cache_size=cs), steps, batch,
              side=lambda clock: 0 if clock % 2 == 0 else 1)


def test_the_tiny_caches_really_spill() -> None:
    """The lockstep runs above exercise the store: a fixed run evicts and reads back."""
    steps = [("batch", 0, [(k, k % 3) for k in range(12)]), ("checkpoint", 0, None)] * 3
    makes = [lambda cs: ops.StatefulMap(_running, cache_size=cs),
             lambda cs: ops.Dedupe(lambda e: e[0], 9, lambda e: e[1], 2, cache_size=cs),
             lambda cs: ops.WindowAggregate(ops.Tumbling(10), ops.Compiled({"n": ops.count()}),
                                            lambda e: e[1], 3, cache_size=cs),
             lambda cs: ops.WindowAggregate(ops.Session(2), ops.Compiled({"n": ops.count()}),
                                            lambda e: e[1], 3, cache_size=cs)]
    for make in makes:
        tiny, _ = _lockstep(make, steps, _timed, ordered=False)
        c = _cache(tiny.op)
        assert c.evictions > 0 and c.reads > 0, make
    # both partitions move time on: windows and sessions close, some across a restart
    both = [("batch", 0, [(k, k % 3) for k in range(12)]),
            ("batch", 1, [(k, k % 5) for k in range(0, 12, 2)]), ("checkpoint", 0, None)]
    steps = (both + [("restart", 0, None)]) * 2 + both * 3
    for gap in (1, 5):
        tiny, big = _lockstep(
            lambda cs: ops.WindowAggregate(ops.Session(gap), ops.Compiled({"n": ops.count()}),
                                           lambda e: e[1], 3, cache_size=cs),
            steps, _timed, ordered=False)
        assert tiny.out and not tiny.late
        for c in _caches(tiny.op):
            assert c.evictions > 0 and c.reads > 0, gap
    tiny, big = _lockstep(
        lambda cs: ops.WindowJoin(ops.Tumbling(10), lambda e: e[1], 3, cache_size=cs),
        steps, _timed, ordered=False, side=lambda clock: clock % 2)
    assert tiny.out and tiny.op.cache.evictions > 0 and tiny.op.cache.reads > 0
