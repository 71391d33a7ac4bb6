"""Stateless operators, each a loop over a whole batch.

Between repartition points the executor fuses a chain of these into one call per batch, so
each step costs one comprehension over the batch, not a call per record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from streamrt.errors import InvalidArgument

from ._batch import Batch
from ._protocol import BaseOperator

#: Key types used as they are: hashable, and the same value after a JSON round trip (which
#: state keys make at every checkpoint and restore).
_PLAIN_KEYS = frozenset({str, int, float, bool, bytes, type(None)})


class Map(BaseOperator):
    name = "map"

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def process(self, batch: Batch) -> list[Batch]:
        fn = self.fn
        return [batch.with_values([fn(v) for v in batch.values])]


class Filter(BaseOperator):
    name = "filter"

    def __init__(self, fn: Callable[[Any], bool]) -> None:
        self.fn = fn

    def process(self, batch: Batch) -> list[Batch]:
        fn = self.fn
        if batch.keys is None and batch.ts is None:
            return [Batch([v for v in batch.values if fn(v)], None, None, batch.part)]
        return [batch.select([bool(fn(v)) for v in batch.values])]


class FilterMap(BaseOperator):
    """Map, dropping results that are None."""

    name = "filter_map"

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def process(self, batch: Batch) -> list[Batch]:
        fn = self.fn
        out = [fn(v) for v in batch.values]
        mask = [o is not None for o in out]
        b = batch.with_values(out)
        return [b.select(mask)] if not all(mask) else [b]


class FlatMap(BaseOperator):
    name = "flat_map"

    def __init__(self, fn: Callable[[Any], Iterable[Any]]) -> None:
        self.fn = fn

    def process(self, batch: Batch) -> list[Batch]:
        fn = self.fn
        if batch.keys is None and batch.ts is None:
            return [Batch([o for v in batch.values for o in fn(v)], None, None, batch.part)]
        vals: list[Any] = []
        keys: list[Any] | None = [] if batch.keys is not None else None
        ts: list[int] | None = [] if batch.ts is not None else None
        for i, v in enumerate(batch.values):
            outs = list(fn(v))
            vals += outs
            if keys is not None:
                keys += [batch.keys[i]] * len(outs)  # type: ignore[index]
            if ts is not None:
                ts += [batch.ts[i]] * len(outs)  # type: ignore[index]
        return [Batch(vals, keys, ts, batch.part)]


class KeyBy(BaseOperator):
    """Key each element; downstream stateful steps keep state per key."""

    name = "key_by"

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def process(self, batch: Batch) -> list[Batch]:
        fn = self.fn
        keys = [fn(v) for v in batch.values]
        if not _PLAIN_KEYS.issuperset(map(type, keys)):
            keys = [_hashable(k) for k in keys]
        return [Batch(batch.values, keys, batch.ts, batch.part)]


def _hashable(key: Any) -> Any:
    """A composite key as state can hold it: lists (``[user, page]``, or JSON arrays) become
    tuples, as restored state keys do; anything else unhashable is refused clearly."""
    if type(key) is list or type(key) is tuple:
        return tuple(_hashable(k) for k in key)
    try:
        hash(key)
    except TypeError:
        raise InvalidArgument(
            f"key_by returned a {type(key).__name__}, which cannot be a key: return a str, a "
            f"number, bytes, or a tuple or list of them (e.g. (e['user'], e['page']))") from None
    return key


class Inspect(BaseOperator):
    """Call a function on each element (logging, debugging); pass the batch on unchanged."""

    name = "inspect"

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def process(self, batch: Batch) -> list[Batch]:
        fn = self.fn
        for v in batch.values:
            fn(v)
        return [batch]
