"""Window snapshots write only what the store must change: never-stored windows cost nothing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import operators as ops
from operators._cache import RESERVED
from operators._windows import _window_from


class _Handle:
    def __init__(self, items: dict[bytes, bytes]) -> None:
        self._items = items

    def items(self) -> Any:
        return iter(self._items.items())


def _op() -> ops.WindowAggregate:
    op = ops.WindowAggregate(ops.tumbling(ms=10), ops.Compiled({"n": ops.count()}),
                             lambda e: e)
    op.open_parts([0])
    return op


def _changes(op: ops.WindowAggregate) -> dict[Any, Any]:
    return {_window_from(k): v for k, v in op.snapshot().items() if not k.startswith(RESERVED)}


def test_snapshot_skips_windows_opened_and_closed_in_between() -> None:
    op = _op()
    op.process(ops.Batch([1, 2], ["a", "a"], None, 0))
    assert _changes(op) == {("a", 0): orjson.dumps([2])}  # open: written
    op.process(ops.Batch([15, 25, 31], ["a", "b", "b"], None, 0))  # closes [0,10), [10,20), [20,30)
    # [0,10) was stored: deleted; [10,20) and [20,30) never were: nothing; [30,40) is open
    assert _changes(op) == {("a", 0): None, ("b", 30): orjson.dumps([1])}


def test_restored_windows_count_as_stored() -> None:
    op = _op()
    op.process(ops.Batch([1], ["a"], None, 0))
    saved = op.snapshot()
    again = _op()
    again.restore(_Handle({k: v for k, v in saved.items() if v is not None}))
    again.process(ops.Batch([12], ["a"], None, 0))
    assert _changes(again) == {("a", 0): None, ("a", 10): orjson.dumps([1])}


def _driven(cache_size: int | None = None) -> Any:
    from _op_harness import Driver

    return Driver(lambda: ops.WindowAggregate(ops.tumbling(ms=10), ops.Compiled({"n": ops.count()}),
                                              lambda e: e, cache_size=cache_size), [0])


def test_young_windows_join_the_cache_at_the_checkpoint_and_keep_counting() -> None:
    """Windows opened since the checkpoint live outside the cache until the snapshot moves
    them in; elements after it update the cached window; closing takes both kinds."""
    drv = _driven()
    drv.process(ops.Batch([1, 2, 3], ["a", "a", "b"], None, 0))
    op = drv.op
    assert op.young == {0: {"a": [2], "b": [1]}} and not op.cache.data
    drv.checkpoint()
    assert not op.young and op.young_n == 0
    assert op.cache.data == {("a", 0): [2], ("b", 0): [1]} and not op.cache.dirty
    drv.process(ops.Batch([4, 5], ["a", "c"], None, 0))  # a: the cached window; c: young
    assert op.cache.data[("a", 0)] == [3] and op.cache.dirty == {("a", 0)}
    assert op.young == {0: {"c": [1]}}
    drv.process(ops.Batch([12], ["a"], None, 0))  # closes [0, 10)
    assert sorted((r["key"], r["n"]) for r in drv.out) == [("a", 3), ("b", 1), ("c", 1)]
    assert op.young == {10: {"a": [1]}} and op.young_n == 1
    assert not [sk for sk in op.cache.data if sk[1] == 0]


def test_young_windows_count_towards_the_cache_bound() -> None:
    """More new windows than the bound since the checkpoint: the operator asks for one, and
    after it the clean windows are evicted and read back when they are touched again."""
    drv = _driven(cache_size=3)
    drv.process(ops.Batch([1, 1, 1, 1, 1], list("abcde"), None, 0))
    assert drv.op.young_n == 5 and drv.op.wants_checkpoint
    drv.checkpoint()
    assert not drv.op.wants_checkpoint and len(drv.op.cache.data) <= 3
    drv.process(ops.Batch([2] * 5, list("abcde"), None, 0))  # evicted ones are read back
    assert drv.op.cache.reads > 0 and not drv.op.young_n
    drv.end()
    assert sorted((r["key"], r["n"]) for r in drv.out) == [(k, 2) for k in "abcde"]


def test_young_windows_are_counted_after_an_aggregation_fails_midway() -> None:
    """An element whose aggregation raises stops the batch there; the windows the elements
    before it opened stay, and the count of young windows (the cache bound uses it) says so."""
    for spec in (ops.tumbling(ms=10), ops.sliding(ms=20, step_ms=10)):
        op = ops.WindowAggregate(spec, ops.Compiled({"s": ops.sum(lambda e: e[1])}),
                                 lambda e: e[0])
        op.open_parts([0])
        with pytest.raises(ops.BatchFailed) as info:
            op.process(ops.Batch([(1, 1), (2, 2), (3, "x")], ["a", "b", "c"], None, 0))
        assert info.value.index == 2
        assert op.young_n == sum(map(len, op.young.values())) > 0
