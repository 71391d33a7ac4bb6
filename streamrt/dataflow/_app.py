"""The DSL: ``App``, ``Stream`` and ``WindowedStream``. It only builds a graph of frozen nodes.

    app = sr.App("clickstream", guarantee="exactly_once")
    clicks = app.topic("clicks", partitions=4)
    (app.stream(clicks)
        .filter(lambda e: e["value"] >= 10)
        .key_by(lambda e: e["user"])
        .window(sr.tumbling(seconds=1), timestamp=lambda e: e["ts"])
        .aggregate(count=sr.count(), total=sr.sum(lambda e: e["value"]))
        .to(app.topic("clicks-per-user")))
    app.run()          # or: streamrt run app.py
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from typing import Any, Literal

import attrs

from operators._aggregations import Aggregation
from operators._aggregations import Fold
from operators._windows import Session, Sliding, Tumbling

from ..errors import InvalidArgument
from ..storage import TopicConfig, check_topic_name
from ._graph import Node
from ._sources import OnceIterable

Guarantee = Literal["at_least_once", "exactly_once"]
ErrorPolicy = Literal["fail", "dead_letter"]


@attrs.frozen
class TopicRef:
    """A topic an app reads or writes; created (if missing) when the app runs."""

    name: str
    partitions: int = 1
    config: TopicConfig = attrs.field(factory=TopicConfig)


@attrs.frozen
class FileSource:
    """Lines of a text file as a source (``follow=True`` tails it)."""

    path: str
    follow: bool = False


def file(path: str | os.PathLike[str], *, follow: bool = False) -> FileSource:
    """A text file's lines as a source, e.g. ``app.stream(sr.file("app.log"))``."""
    return FileSource(os.fspath(path), follow)


def _seconds_to_ms(value: float, what: str) -> int:
    if not isinstance(value, (int, float)) or value < 0:
        raise InvalidArgument(f"{what} is a number of seconds >= 0, got {value!r}")
    return round(value * 1000)


def _positive_seconds(what: str, value: Any) -> None:
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0
            or value == math.inf):
        raise InvalidArgument(f"{what} is a number of seconds > 0, got {value!r}")


class App:
    """A streaming application: its topics, pipelines and how to run them.

    ``guarantee``: ``"at_least_once"`` (default: outputs flow before each checkpoint, a crash
    replays since the last one) or ``"exactly_once"`` (outputs, state and input offsets commit
    in one transaction per checkpoint). ``checkpoint_interval`` in seconds (default 1.0) and
    ``checkpoint_records`` bound how much work a checkpoint covers. ``on_error``: ``"fail"``
    (the task restarts from the last checkpoint; repeated failure stops the app) or
    ``"dead_letter"`` (the failing element goes to ``dlq_topic`` and processing goes on).
    ``state_cache_size`` bounds how many keys' state each stateful step keeps in memory
    (default 100,000); the rest stays in LMDB, read back when a key comes again.
    """

    def __init__(
        self, name: str, *, guarantee: Guarantee = "at_least_once",
        data_dir: str | os.PathLike[str] | None = None, checkpoint_interval: float = 1.0,
        checkpoint_records: int = 200_000, on_error: ErrorPolicy = "fail",
        dlq_topic: str | None = None, batch_size: int = 1000, idle_timeout: float = 1.0,
        state_cache_size: int = 100_000,
    ) -> None:
        check_topic_name(name)
        if guarantee not in ("at_least_once", "exactly_once"):
            raise InvalidArgument(
                f"guarantee must be 'at_least_once' or 'exactly_once', got {guarantee!r}")
        if on_error not in ("fail", "dead_letter"):
            raise InvalidArgument(f"on_error must be 'fail' or 'dead_letter', got {on_error!r}")
        _positive_seconds("checkpoint_interval", checkpoint_interval)
        _positive_seconds("idle_timeout", idle_timeout)
        for what, n in (("checkpoint_records", checkpoint_records), ("batch_size", batch_size),
                        ("state_cache_size", state_cache_size)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise InvalidArgument(f"{what} is a whole number >= 1, got {n!r}")
        self.name = name
        self.guarantee = guarantee
        self.data_dir = os.fspath(data_dir) if data_dir is not None else None
        self.checkpoint_interval = checkpoint_interval
        self.checkpoint_records = checkpoint_records
        self.on_error = on_error
        self.dlq_topic = dlq_topic or f"{name}.dlq"
        self.batch_size = batch_size
        self.idle_timeout = idle_timeout
        self.state_cache_size = state_cache_size
        self.topics: dict[str, TopicRef] = {}
        self.sinks: list[Node] = []
        self.steps: list[Node] = []  # every step made, sinks included (see dangling_steps)
        self.optional: set[str] = set()  # steps that may lead nowhere: an unused branch side
        self.late_routes: dict[str, TopicRef] = {}
        self._counts: dict[str, int] = {}
        self._ids: set[str] = set()

    def _node(self, kind: str, name: str | None, inputs: tuple[Node, ...],
              args: dict[str, Any] | None = None, id_kind: str | None = None) -> Node:
        node = Node(self._id(id_kind or kind, name), kind, inputs,
                    args if args is not None else {})
        self.steps.append(node)
        return node

    def _id(self, kind: str, name: str | None) -> str:
        if name is not None:
            if not isinstance(name, str) or not name:
                raise InvalidArgument(f"a step name is a non-empty string, got {name!r}")
            if name in self._ids:
                raise InvalidArgument(f"two steps are named {name!r}: step names must be unique")
            self._ids.add(name)
            return name
        n = self._counts.get(kind, 0)
        self._counts[kind] = n + 1
        sid = f"{kind}{n}"
        while sid in self._ids:
            n += 1
            self._counts[kind] = n + 1
            sid = f"{kind}{n}"
        self._ids.add(sid)
        return sid

    def topic(self, name: str, partitions: int = 1, **config: Any) -> TopicRef:
        """Declare a topic (settings as TopicConfig fields, e.g. ``retention_ms=...``)."""
        check_topic_name(name)
        ref = TopicRef(name, partitions, TopicConfig(**config))
        old = self.topics.get(name)
        if old is not None and old != ref:
            raise InvalidArgument(f"topic {name!r} is declared twice with different settings")
        self.topics[name] = ref
        return ref

    def stream(self, source: Any, *, name: str | None = None, value_serde: str = "json") -> Stream:
        """A stream from a topic (a TopicRef or its name), a bounded iterable (or a function
        returning one), or a file (``sr.file(path)``)."""
        if isinstance(source, str):
            source = self.topics.get(source) or self.topic(source)
        if isinstance(source, TopicRef):
            self.topics.setdefault(source.name, source)
            args: dict[str, Any] = {"source": "topic", "topic": source.name, "serde": value_serde}
        elif isinstance(source, FileSource):
            args = {"source": "file", "path": source.path, "follow": source.follow}
        elif callable(source):
            args = {"source": "iterable", "make": source}
        elif isinstance(source, Iterable):
            if iter(source) is source:  # a generator: it can be run only once
                once = OnceIterable(source, source)

                def make() -> Any:
                    return once
            else:
                def make() -> Iterable[Any]:
                    return source
            args = {"source": "iterable", "make": make}
        else:
            raise InvalidArgument(
                f"cannot stream from {type(source).__name__}: give a topic, an iterable, a "
                f"function returning an iterable, or sr.file(path)"
            )
        return Stream(self, self._node("source", name, (), args))

    def table(self, topic: TopicRef | str, *, name: str | None = None,
              value_serde: str = "json") -> Table:
        """A keyed table built from a topic: the latest value per record key (a record with a
        null value deletes its key). Join a keyed stream with it: ``.join_table(table)``."""
        ref = topic if isinstance(topic, TopicRef) else (self.topics.get(topic) or self.topic(topic))
        self.topics.setdefault(ref.name, ref)
        args = {"source": "topic", "topic": ref.name, "serde": value_serde, "with_keys": True}
        return Table(self, self._node("source", name, (), args, id_kind="table"))

    def run(self, **kwargs: Any) -> Any:
        """Run the app's pipelines until bounded sources end (or Ctrl-C). See streamrt run."""
        from ._runner import run_app_sync

        return run_app_sync(self, **kwargs)


@attrs.frozen
class Table:
    """A keyed table from a topic (``app.table(topic)``), to join streams with."""

    app: App
    node: Node


def _time_mode(time: str) -> bool:
    """True for processing time."""
    if time not in ("event", "processing"):
        raise InvalidArgument(f"time must be 'event' or 'processing', got {time!r}")
    return time == "processing"


def _late_ref(app: App, topic: TopicRef | str | None) -> TopicRef | None:
    if topic is None:
        return None
    ref = topic if isinstance(topic, TopicRef) else (app.topics.get(topic) or app.topic(topic))
    app.topics.setdefault(ref.name, ref)
    return ref


class Stream:
    """A stream of elements; each method adds a step and returns the new stream."""

    def __init__(self, app: App, node: Node, keyed: bool = False) -> None:
        self.app = app
        self.node = node
        self.keyed = keyed

    def _then(self, kind: str, name: str | None, keyed: bool | None = None, **args: Any) -> Stream:
        for k, v in args.items():
            if k in ("fn", "key") and not callable(v):
                raise InvalidArgument(f"{kind}() needs a function, got {type(v).__name__}")
        node = self.app._node(kind, name, (self.node,), args)
        return Stream(self.app, node, self.keyed if keyed is None else keyed)

    def map(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Stream:
        """``fn(element)`` for each element."""
        return self._then("map", name, fn=fn)

    def filter(self, fn: Callable[[Any], bool], *, name: str | None = None) -> Stream:
        """Elements for which ``fn(element)`` is true."""
        return self._then("filter", name, fn=fn)

    def flat_map(self, fn: Callable[[Any], Iterable[Any]], *, name: str | None = None) -> Stream:
        """Every element of ``fn(element)``."""
        return self._then("flat_map", name, fn=fn)

    def filter_map(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Stream:
        """``fn(element)``, dropping None results."""
        return self._then("filter_map", name, fn=fn)

    def key_by(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Stream:
        """Key elements by ``fn(element)``: windows and state downstream are per key.
        Keys must be JSON values (str, int, tuples of them, ...): they are checkpointed."""
        return self._then("key_by", name, keyed=True, fn=fn)

    def inspect(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Stream:
        """Call ``fn(element)`` for its side effect; elements pass unchanged."""
        return self._then("inspect", name, fn=fn)

    peek = inspect

    def merge(self, *others: Stream, name: str | None = None) -> Stream:
        """The elements of this stream and the others, interleaved."""
        for o in others:
            if not isinstance(o, Stream) or o.app is not self.app:
                raise InvalidArgument("merge() takes streams of the same app")
        node = self.app._node("merge", name, (self.node, *(o.node for o in others)))
        return Stream(self.app, node, self.keyed and all(o.keyed for o in others))

    def branch(self, fn: Callable[[Any], bool], *, name: str | None = None) -> tuple[Stream, Stream]:
        """Split in two: (elements where ``fn`` is true, the others)."""
        base = name or self.app._id("branch", None)
        yes = self._then("filter", f"{base}.true", fn=fn)
        no = self._then("filter", f"{base}.false", fn=lambda e, f=fn: not f(e))
        self.app.optional.update((yes.node.id, no.node.id))  # using one side only is fine
        return yes, no

    def window(
        self, spec: Tumbling | Sliding | Session, *, timestamp: Callable[[Any], int] | None = None,
        max_out_of_orderness: float = 0.0, allowed_lateness: float = 0.0,
        emit: Literal["final", "early"] = "final", time: Literal["event", "processing"] = "event",
    ) -> WindowedStream:
        """Group elements into windows (``sr.tumbling``, ``sr.sliding``, ``sr.session``);
        ``timestamp(element)`` gives event time in ms (default: the record's timestamp), or
        ``time="processing"`` uses the clock when each element is processed. Durations in
        seconds. ``emit="early"`` also emits each window's running result after every batch
        that changed it. Follow with ``.aggregate(...)``."""
        if not isinstance(spec, (Tumbling, Sliding, Session)):
            raise InvalidArgument("window() takes sr.tumbling(...), sr.sliding(...) or sr.session(...)")
        if timestamp is not None and not callable(timestamp):
            raise InvalidArgument("window(timestamp=...) must be a function of the element")
        if emit not in ("final", "early"):
            raise InvalidArgument(f"window(emit=...) is 'final' or 'early', got {emit!r}")
        w = WindowedStream(self, spec, timestamp,
                           _seconds_to_ms(max_out_of_orderness, "max_out_of_orderness"),
                           _seconds_to_ms(allowed_lateness, "allowed_lateness"))
        w._emit = emit
        w._processing = _time_mode(time)
        return w

    # ---- keyed state without windows
    def stateful_map(self, fn: Callable[[Any, Any], tuple[Any, Any]], *,
                     name: str | None = None) -> Stream:
        """Per-key state: ``fn(state, element) -> (new_state, output)``; ``state`` is None for
        a key's first element, a new state of None forgets the key, an output of None emits
        nothing. States are checkpointed as JSON values. Needs a keyed stream."""
        self._need_keys("stateful_map")
        return self._then("stateful_map", name, fn=fn)

    def dedupe(
        self, key: Callable[[Any], Any], *, within: float, timestamp: Callable[[Any], int] | None = None,
        max_out_of_orderness: float = 0.0, time: Literal["event", "processing"] = "event",
        late_to: TopicRef | str | None = None, name: str | None = None,
    ) -> Stream:
        """Drop an element when one with the same ``key(element)`` was kept less than
        ``within`` seconds away in event time (``time="processing"``: by the clock). Elements
        more than ``within`` behind the watermark go to ``late_to`` (default: the DLQ)."""
        if not callable(key):
            raise InvalidArgument("dedupe() needs a key function, e.g. key=lambda e: e['id']")
        within_ms = _seconds_to_ms(within, "dedupe(within=...)")
        if within_ms <= 0:
            raise InvalidArgument("dedupe(within=...) must be a positive number of seconds")
        s = self._then("dedupe", name, key=key, within=within_ms, timestamp=timestamp,
                       ooo=_seconds_to_ms(max_out_of_orderness, "max_out_of_orderness"),
                       processing_time=_time_mode(time))
        self._route_late(s, late_to)
        return s

    # ---- joins
    def join(
        self, other: Stream, *, window: Tumbling, timestamp: Callable[[Any], int] | None = None,
        max_out_of_orderness: float = 0.0, allowed_lateness: float = 0.0,
        time: Literal["event", "processing"] = "event", late_to: TopicRef | str | None = None,
        name: str | None = None,
    ) -> Stream:
        """Pairs ``(left, right)`` of elements of this stream and ``other`` with equal keys in
        the same tumbling window (inner join; a pair is emitted when its second element
        arrives). Both streams must be keyed; late elements go to ``late_to`` or the DLQ."""
        if not isinstance(other, Stream) or other.app is not self.app:
            raise InvalidArgument("join() takes another stream of the same app")
        if other.node is self.node:
            raise InvalidArgument("join() of a stream with itself: branch it, or use a window")
        if not isinstance(window, Tumbling):
            raise InvalidArgument("join(window=...) takes sr.tumbling(...)")
        self._need_keys("join")
        other._need_keys("join")
        node = self.app._node("join", name, (self.node, other.node), {
            "spec": window, "size": window.size, "timestamp": timestamp,
            "ooo": _seconds_to_ms(max_out_of_orderness, "max_out_of_orderness"),
            "lateness": _seconds_to_ms(allowed_lateness, "allowed_lateness"),
            "processing_time": _time_mode(time)})
        s = Stream(self.app, node, True)
        self._route_late(s, late_to)
        return s

    def join_table(self, table: Table, *, how: Literal["inner", "left"] = "inner",
                   name: str | None = None) -> Stream:
        """``(element, table value)`` for each element, looking its key up in ``table`` as
        it is when the element is processed; ``how="left"`` keeps elements the table lacks
        (paired with None). Needs a keyed stream."""
        if not isinstance(table, Table) or table.app is not self.app:
            raise InvalidArgument("join_table() takes a table of the same app: app.table(topic)")
        if how not in ("inner", "left"):
            raise InvalidArgument(f"join_table(how=...) is 'inner' or 'left', got {how!r}")
        self._need_keys("join_table")
        # the table is input 0, so each step reads its updates before the stream's elements
        node = self.app._node("join_table", name, (table.node, self.node),
                    {"how": how})
        return Stream(self.app, node, True)

    def _need_keys(self, what: str) -> None:
        if not self.keyed:
            raise InvalidArgument(f"{what}() needs a keyed stream: add .key_by(fn) before it")

    def _route_late(self, s: Stream, late_to: TopicRef | str | None) -> None:
        ref = _late_ref(self.app, late_to)
        if ref is not None:
            self.app.late_routes[s.node.id] = ref

    # ---- sinks
    def to(self, topic: TopicRef | str, *, name: str | None = None) -> None:
        """Write elements to a topic (JSON values; keyed streams keep their keys)."""
        ref = topic if isinstance(topic, TopicRef) else (self.app.topics.get(topic) or self.app.topic(topic))
        self.app.topics.setdefault(ref.name, ref)
        self._sink("to", name, topic=ref.name)

    def sink(self, fn: Callable[[list[Any]], Any], *, name: str | None = None, batch: bool = False) -> None:
        """Call ``fn(element)`` for each element (or ``fn(list_of_elements)`` with
        ``batch=True``); sync or async. At-least-once in either guarantee."""
        if not callable(fn):
            raise InvalidArgument("sink() needs a function")
        self._sink("sink", name, fn=fn, batch=batch)

    def print(self, *, name: str | None = None) -> None:
        """Print each element (at-least-once)."""
        self._sink("print", name)

    def to_file(self, path: str | os.PathLike[str], *, name: str | None = None) -> None:
        """Append elements as JSON lines to a file (at-least-once)."""
        self._sink("file", name, path=os.fspath(path))

    def _sink(self, kind: str, name: str | None, **args: Any) -> None:
        node = self.app._node(kind, name, (self.node,), args)
        self.app.sinks.append(node)


class WindowedStream:
    """A stream grouped into windows; ``aggregate`` turns it back into a stream of results."""

    def __init__(self, stream: Stream, spec: Any, timestamp: Any, ooo: int, lateness: int) -> None:
        self._stream = stream
        self._spec = spec
        self._timestamp = timestamp
        self._ooo = ooo
        self._lateness = lateness
        self._late: TopicRef | None = None
        self._emit = "final"
        self._processing = False

    def late_to(self, topic: TopicRef | str) -> WindowedStream:
        """Send late elements (their window already closed) to this topic, not the app's DLQ."""
        app = self._stream.app
        self._late = topic if isinstance(topic, TopicRef) else (app.topics.get(topic) or app.topic(topic))
        app.topics.setdefault(self._late.name, self._late)
        return self

    def aggregate(self, *, name: str | None = None, **aggs: Aggregation) -> Stream:
        """One result per key and window: ``{"key", "start", "end", <name>: <value>...}``,
        emitted when the window closes."""
        if not aggs:
            raise InvalidArgument("aggregate() needs at least one aggregation, e.g. count=sr.count()")
        for k, a in aggs.items():
            if not isinstance(a, Aggregation):
                raise InvalidArgument(f"aggregate({k}=...) takes sr.count(), sr.sum(fn), ...; got {a!r}")
        if isinstance(self._spec, Session):
            for k, a in aggs.items():
                if isinstance(a, Fold):
                    raise InvalidArgument(
                        f"aggregate({k}=sr.fold(...)) cannot be used with session windows: "
                        f"sessions merge, and a fold cannot; use sr.reduce(fn) instead")
        s = self._stream._then(
            "window", name, keyed=True, spec=self._spec, timestamp=self._timestamp,
            ooo=self._ooo, lateness=self._lateness, aggs=aggs, emit=self._emit,
            processing_time=self._processing)
        if self._late is not None:
            s.app.late_routes[s.node.id] = self._late
        return s
