"""Window snapshots write only what the store must change: never-stored windows cost nothing."""

from __future__ import annotations

from typing import Any

import orjson

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
