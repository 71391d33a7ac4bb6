"""Aggregations for windows: count, sum, min, max, mean, collect, reduce, fold, and your own.

Each aggregation keeps a JSON-able accumulator (so window state checkpoints with orjson) and
contributes a line of Python to one update function generated per ``aggregate(...)`` call:
updating ``count`` and ``sum`` for an element is then two statements, not two method calls
(the same trick attrs uses for its generated ``__init__``). ``merge`` combines two
accumulators, which session windows need when a late element joins two sessions.

The generated function runs in two phases: first every aggregation's ``check`` (the user
functions and the arithmetic that may raise, into temporaries), then every ``update`` (plain
stores that cannot fail). An element on which any user function raises therefore changes no
accumulator, which is what lets ``on_error="dead_letter"`` set it aside without counting it
in some aggregations and not in others.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from typing import Any

from streamrt.errors import InvalidArgument


def _identity(v: Any) -> Any:
    return v


class Aggregation:
    """Base class: override ``init``, ``update`` (statements on ``a[{i}]``, the element ``v``
    and this aggregation's function ``f{i}``), ``merge`` and ``result``; optionally ``check``
    (statements that compute what may raise into temporaries ending in ``{i}``, mutating
    nothing, for ``update`` to store)."""

    fn: Callable[[Any], Any] = staticmethod(_identity)

    def init(self) -> Any:
        raise NotImplementedError

    def check(self) -> str:
        return ""

    def update(self) -> str:
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def result(self, acc: Any) -> Any:
        return acc


class Count(Aggregation):
    def init(self) -> Any:
        return 0

    def update(self) -> str:
        return "a[{i}] += 1"

    def merge(self, a: Any, b: Any) -> Any:
        return a + b


class Sum(Aggregation):
    def __init__(self, fn: Callable[[Any], Any] = _identity) -> None:
        self.fn = fn

    def init(self) -> Any:
        return 0

    def check(self) -> str:
        return "n{i} = a[{i}] + f{i}(v)"

    def update(self) -> str:
        return "a[{i}] = n{i}"

    def merge(self, a: Any, b: Any) -> Any:
        return a + b


class Min(Aggregation):
    # (this module defines min() and max() factories: merges use builtins.min/max)
    def __init__(self, fn: Callable[[Any], Any] = _identity) -> None:
        self.fn = fn

    def init(self) -> Any:
        return None

    def check(self) -> str:
        return "x{i} = f{i}(v)\nc{i} = a[{i}] is None or x{i} < a[{i}]"

    def update(self) -> str:
        return "if c{i}: a[{i}] = x{i}"

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else builtins.min(a, b)


class Max(Min):
    def check(self) -> str:
        return "x{i} = f{i}(v)\nc{i} = a[{i}] is None or x{i} > a[{i}]"

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else builtins.max(a, b)


class Mean(Aggregation):
    def __init__(self, fn: Callable[[Any], Any] = _identity) -> None:
        self.fn = fn

    def init(self) -> Any:
        return [0, 0]

    def check(self) -> str:
        return "s{i} = a[{i}]\nn{i} = s{i}[0] + f{i}(v)"

    def update(self) -> str:
        return "s{i}[0] = n{i}\ns{i}[1] += 1"

    def merge(self, a: Any, b: Any) -> Any:
        return [a[0] + b[0], a[1] + b[1]]

    def result(self, acc: Any) -> Any:
        return acc[0] / acc[1] if acc[1] else None


class Collect(Aggregation):
    def __init__(self, fn: Callable[[Any], Any] = _identity) -> None:
        self.fn = fn

    def init(self) -> Any:
        return []

    def check(self) -> str:
        return "x{i} = f{i}(v)"

    def update(self) -> str:
        return "a[{i}].append(x{i})"

    def merge(self, a: Any, b: Any) -> Any:
        return a + b


class Reduce(Aggregation):
    """``fn(acc, element)``; the first element is the initial accumulator."""

    _EMPTY = "__streamrt_empty__"

    def __init__(self, fn: Callable[[Any, Any], Any]) -> None:
        self.fn = fn

    def init(self) -> Any:
        return [self._EMPTY]

    def check(self) -> str:
        return "s{i} = a[{i}]\nr{i} = v if s{i}[0] == E else f{i}(s{i}[0], v)"

    def update(self) -> str:
        return "s{i}[0] = r{i}"

    def merge(self, a: Any, b: Any) -> Any:
        if a[0] == self._EMPTY:
            return b
        if b[0] == self._EMPTY:
            return a
        return [self.fn(a[0], b[0])]

    def result(self, acc: Any) -> Any:
        return None if acc[0] == self._EMPTY else acc[0]


class Fold(Aggregation):
    """``fn(acc, element)`` from ``init``; cannot merge, so not for session windows."""

    def __init__(self, init: Any, fn: Callable[[Any, Any], Any]) -> None:
        self._init = init
        self.fn = fn

    def init(self) -> Any:
        import copy

        return [copy.deepcopy(self._init)]

    def check(self) -> str:
        return "s{i} = a[{i}]\nr{i} = f{i}(s{i}[0], v)"

    def update(self) -> str:
        return "s{i}[0] = r{i}"

    def merge(self, a: Any, b: Any) -> Any:
        raise InvalidArgument(
            "fold() cannot merge two sessions' accumulators: use reduce() or a mergeable "
            "aggregation with session windows"
        )

    def result(self, acc: Any) -> Any:
        return acc[0]


# Public factories (what users call: sr.count(), sr.sum(fn), ...)
def count() -> Aggregation:
    """Number of elements."""
    return Count()


def sum(fn: Callable[[Any], Any] = _identity) -> Aggregation:  # noqa: A001
    """Sum of ``fn(element)``."""
    return Sum(fn)


def min(fn: Callable[[Any], Any] = _identity) -> Aggregation:  # noqa: A001
    """Smallest ``fn(element)``."""
    return Min(fn)


def max(fn: Callable[[Any], Any] = _identity) -> Aggregation:  # noqa: A001
    """Largest ``fn(element)``."""
    return Max(fn)


def mean(fn: Callable[[Any], Any] = _identity) -> Aggregation:
    """Arithmetic mean of ``fn(element)``."""
    return Mean(fn)


def collect(fn: Callable[[Any], Any] = _identity) -> Aggregation:
    """List of ``fn(element)`` in arrival order."""
    return Collect(fn)


def reduce(fn: Callable[[Any, Any], Any]) -> Aggregation:
    """``fn(acc, element)`` starting from the first element."""
    return Reduce(fn)


def fold(init: Any, fn: Callable[[Any, Any], Any]) -> Aggregation:
    """``fn(acc, element)`` starting from ``init`` (JSON-able, copied per window)."""
    return Fold(init, fn)


class Compiled:
    """Several named aggregations as one generated update function."""

    def __init__(self, aggs: Mapping[str, Aggregation]) -> None:
        if not aggs:
            raise InvalidArgument("aggregate() needs at least one aggregation, e.g. count=sr.count()")
        for name, agg in aggs.items():
            if not isinstance(agg, Aggregation):
                raise InvalidArgument(
                    f"aggregate({name}=...) got {type(agg).__name__}: use sr.count(), sr.sum(fn), "
                    f"... or an Aggregation subclass"
                )
        self.names = list(aggs)
        self.aggs = list(aggs.values())
        lines = ["def update(a, v):"]
        env: dict[str, Any] = {"E": Reduce._EMPTY}
        checks: list[str] = []
        stores: list[str] = []
        for i, agg in enumerate(self.aggs):  # phase 1: what may raise, mutating nothing
            env[f"f{i}"] = agg.fn
            checks += agg.check().format(i=i).splitlines()
        for i, agg in enumerate(self.aggs):  # phase 2: stores
            stores += agg.update().format(i=i).splitlines()
        lines += ["    " + line for line in checks + stores]
        self._checks, self._stores, self._env = checks, stores, env
        # init() and record() are generated too: a window opens and closes per result, and on
        # workloads with about one result per event these calls were a quarter of the time.
        inits = [agg.init() for agg in self.aggs]
        self._init_expr = "init()"
        if _literal_round_trips(inits):
            lines.append(f"def init():\n    return {inits!r}")
            self._init_expr = repr(inits)
        else:
            env["_aggs"] = self.aggs
            lines.append("def init():\n    return [agg.init() for agg in _aggs]")
        fields = []
        for i, (name, agg) in enumerate(zip(self.names, self.aggs)):
            if type(agg).result is Aggregation.result:
                fields.append(f"{name!r}: a[{i}]")
            else:
                env[f"r{i}"] = agg.result
                fields.append(f"{name!r}: r{i}(a[{i}])")
        body = ", ".join(fields)
        lines.append(f"def results(a):\n    return {{{body}}}")
        lines.append("def record(key, start, end, a):\n"
                     f"    return {{'key': key, 'start': start, 'end': end, {body}}}")
        lines.append("def records(keys, start, end, accs):\n"
                     f"    return [{{'key': key, 'start': start, 'end': end, {body}}}\n"
                     "            for key, a in zip(keys, accs)]")
        exec("\n".join(lines), env)  # noqa: S102 - generated from our own templates only
        self.update: Callable[[list[Any], Any], None] = env["update"]
        self.init: Callable[[], list[Any]] = env["init"]
        self.results: Callable[[list[Any]], dict[str, Any]] = env["results"]
        #: ``{"key", "start", "end", <name>: <result>...}`` of one window, in one call.
        self.record: Callable[[Any, int, int, list[Any]], dict[str, Any]] = env["record"]
        #: ``record`` over aligned lists of keys and accumulators of one window start.
        self.records: Callable[[list[Any], int, int, list[Any]], list[dict[str, Any]]] = (
            env["records"])

        self._fold: Callable[..., None] | None = None
        self._young_fold: Callable[..., int] | None = None

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [agg.merge(x, y) for agg, x, y in zip(self.aggs, a, b)]

    def tumbling_fold(self) -> Callable[..., None]:
        """A batch of elements folded into tumbling windows, with the aggregations' code
        inlined in the loop (no update()/init() call per element: on workloads with about
        one window per element those calls were a fifth of the window's time). The loop is
        the one of ``WindowAggregate._tumbling``, which documents the arguments."""
        if self._fold is not None:
            return self._fold
        src = f"""
def fold(keys, values, ts, late, size, edge, data, load, uncached, members, opened,
         dirty_add, limit, evict, Failed, init):
    cur_start = None
    group = None
    for i, (k, v, t) in enumerate(zip(keys, values, ts)):
        start = t - t % size
        if start + size <= edge:
            late.append(i)
            continue
        sk = (k, start)
        a = data.get(sk)
        if a is None and (not uncached or (a := load(sk)) is None):
            a = {self._init_expr}
{self._fold_in(12)}
            if start != cur_start:
                cur_start = start
                group = members.get(start)
                if group is None:
                    group = members[start] = {{}}
                    opened(start)
            data[sk] = a
            group[sk] = None
            dirty_add(sk)
            if len(data) > limit:
                evict()
            continue
{self._fold_in(8)}
        dirty_add(sk)
"""
        self._fold = self._compile_fold(src)
        return self._fold


    def young_fold(self) -> Callable[..., int]:
        """A batch folded into tumbling windows kept as young windows: ``young`` maps a
        window start to ``{key: accumulators}`` of the windows opened since the last
        checkpoint, outside the state cache (see ``WindowAggregate._tumbling``). A window
        the cache holds (opened before the checkpoint; only looked for when the cache has
        windows of that start) is updated there and marked dirty. Returns how many windows
        it opened. The aggregations are inlined as in :meth:`tumbling_fold`."""
        if self._young_fold is not None:
            return self._young_fold
        src = f"""
def fold(keys, values, ts, late, size, edge, young, members, data, load, uncached, opened,
         dirty_add, Failed, init):
    cur_start = None
    grp = None
    old = False
    opened_n = 0
    for i, (k, v, t) in enumerate(zip(keys, values, ts)):
        start = t - t % size
        if start != cur_start:
            if start + size <= edge:
                late.append(i)
                continue
            cur_start = start
            grp = young.get(start)
            if grp is None:
                grp = young[start] = {{}}
                opened(start)
            old = start in members or start in uncached
        a = grp.get(k)
        if a is None:
            if old:
                sk = (k, start)
                a = data.get(sk)
                if a is not None or (uncached and (a := load(sk)) is not None):
{self._fold_in(20)}
                    dirty_add(sk)
                    continue
            a = {self._init_expr}
{self._fold_in(12)}
            grp[k] = a
            opened_n += 1
            continue
{self._fold_in(8)}
    return opened_n
"""
        self._young_fold = self._compile_fold(src)
        return self._young_fold

    def _fold_in(self, indent: int) -> str:
        """The aggregations' code for one element, at ``indent``: the checks (what may raise,
        mutating nothing; an exception becomes ``Failed(i)``), then the stores."""
        pad = " " * indent
        checks = "\n".join(pad + "    " + line for line in self._checks or ["pass"])
        stores = "\n".join(pad + line for line in self._stores or ["pass"])
        return (f"{pad}try:\n{checks}\n{pad}except Exception as e:\n"
                f"{pad}    raise Failed(i) from e\n{stores}")

    def _compile_fold(self, src: str) -> Callable[..., Any]:
        env = dict(self._env)
        exec(src, env)  # noqa: S102 - generated from our own templates only
        return env["fold"]  # type: ignore[no-any-return]


def _literal_round_trips(value: Any) -> bool:
    """Whether ``repr(value)`` rebuilds an equal, fresh value (plain JSON-like data)."""
    try:
        return bool(eval(repr(value), {"__builtins__": {}}) == value)  # noqa: S307 - our repr
    except Exception:
        return False
