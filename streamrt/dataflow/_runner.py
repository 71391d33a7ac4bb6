"""Running an app: the plan, the pipeline task actor, checkpoints, restarts.

One process runs all of an app's tasks (spreading an app over processes is a later step, kept
behind :func:`place_tasks`). A pipeline task is an actor under the broker's supervisor: each
``step`` reads a batch from every source partition and pushes it synchronously through the
operators (stateless chains are plain comprehensions over the batch), so between two steps
every operator is at a consistent point. That is where checkpoints are taken: one LMDB write
transaction holds every source position, every operator's state changes and, in exactly-once
mode, every output record since the last checkpoint. A crash before that commit leaves none
of it visible; after it, nothing is replayed. On restart (a crash with ``on_error="fail"``),
the supervisor makes a fresh task whose ``on_start`` restores state and positions from the
last checkpoint.

Stateful operators get a :class:`_Handle` on their part of the ``state`` database for their
whole life: they restore small indexes from it at start and read evicted state back through it
(their bounded caches, ``operators/_cache.py``). An operator whose cache holds more changes
than its bound sets ``wants_checkpoint``; the task then checkpoints after the step.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import anyio
import attrs

import operators as ops
from operators._batch import Batch
from operators._protocol import END_OF_TIME, BaseOperator

from ..actors import Actor, RestartPolicy
from ..errors import ActorCrashed, IncompatibleState, InvalidArgument, PipelineError, StreamrtError
from ..storage import TopicConfig, WriteBatch
from ._app import App
from ._checks import SINK_KINDS, check_graph, fingerprint, same_graph, walk
from ._graph import Node, user_line
from ._sinks import CallSink, FileSink, PrintSink, TopicSink
from ._sources import SourceReader, Undecodable, make_reader

log = logging.getLogger(__name__)

TWO_INPUT_KINDS = ("join", "join_table")  # their operator learns which input a batch is from
PART_SPAN = 1 << 20  # global partition id = source index * PART_SPAN + partition
TASK_POLICY = RestartPolicy(max_restarts=3, within=60.0, backoff=0.05, max_backoff=2.0)


@attrs.define
class RunResult:
    """What a run did."""

    records_in: int = 0
    records_out: int = 0
    checkpoints: int = 0
    late: int = 0
    dead_lettered: int = 0
    restarts: int = 0
    seconds: float = 0.0


def _prefix(app: str, *parts: str) -> bytes:
    return b"\x00".join([b"df", app.encode(), *(p.encode() for p in parts)]) + b"\x00"


def place_tasks(app: App) -> list[str]:
    """Which pipeline tasks run in this process: all of them, for now (the seam where a
    multi-process placement will go)."""
    return [f"{app.name}.pipeline"]


def check_positions(app: App, broker: Any) -> None:
    """Refuse checkpointed topic positions that no longer fit their topic (deleted and
    created again with fewer partitions or records): reading on would fail deep inside, or
    skip records."""
    for n in walk(app):
        if n.kind != "source" or n.args["source"] != "topic":
            continue
        topic = n.args["topic"]
        parts = broker.topic(topic).partitions
        pre = _prefix(app.name, "pos", n.id)
        for k, v in broker.store.scan(pre):
            p, off = int(k[len(pre):]), int(v)
            if p >= parts:
                found = f"topic {topic!r} has {parts} partition{'s' if parts != 1 else ''}"
            elif off > (hw := broker.high_watermark(topic, p)):
                found = f"{topic}[{p}] ends at offset {hw}"
            else:
                continue
            raise IncompatibleState(
                f"app {app.name!r} has a checkpoint at {topic}[{p}] offset {off}, but {found} "
                f"(was the topic deleted and created again?); run with --reset to start afresh")


class _Plan:
    """Operators and sinks made from the graph, for one incarnation of the task."""

    def __init__(self, app: App, broker: Any, until_caught_up: bool, result: RunResult) -> None:
        self.app = app
        self.broker = broker
        self.result = result
        self.nodes = walk(app)
        self.children: dict[str, list[Node]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                self.children[i.id].append(n)
        hold = app.guarantee == "exactly_once"
        self.sources: dict[str, tuple[int, SourceReader]] = {}
        self.ops: dict[str, Any] = {}
        self.sinks: dict[str, Any] = {}
        for n in self.nodes:
            if n.kind == "source":
                reader = make_reader(broker, n.args, until_caught_up, n.id)
                self.sources[n.id] = (len(self.sources), reader)
            elif n.kind in SINK_KINDS:
                self.sinks[n.id] = self._make_sink(n, hold)
            else:
                self.ops[n.id] = self._make_op(n)
        # the timed operators, inputs before consumers (see push_source)
        self.timed = [(n, self.ops[n.id]) for n in self.nodes
                      if hasattr(self.ops.get(n.id), "hold")]
        self.dlq = TopicSink(broker, app.dlq_topic, hold)
        self.late_sinks = {nid: TopicSink(broker, ref.name, hold) for nid, ref in app.late_routes.items()}
        for n in self.nodes:  # which global input partitions feed each timed operator
            if hasattr(self.ops.get(n.id), "open_parts"):
                self.ops[n.id].open_parts(self._parts_feeding(n),
                                          idle_after_ms=round(app.idle_timeout * 1000))

    def _parts_feeding(self, n: Node) -> list[int]:
        if n.kind == "source":
            idx, reader = self.sources[n.id]
            return [idx * PART_SPAN + p for p in reader.parts]
        out: list[int] = []
        # a table's updates stop at join_table: its partitions never hold back time after it
        for i in (n.inputs[1:] if n.kind == "join_table" else n.inputs):
            out += self._parts_feeding(i)
        return out

    def _make_op(self, n: Node) -> Any:
        a = n.args
        size = self.app.state_cache_size
        simple = {"map": ops.Map, "filter": ops.Filter, "flat_map": ops.FlatMap,
                  "filter_map": ops.FilterMap, "key_by": ops.KeyBy, "inspect": ops.Inspect}
        if n.kind in simple:
            return simple[n.kind](a["fn"])
        if n.kind == "merge":
            return _Pass()
        if n.kind == "window":
            return ops.WindowAggregate(a["spec"], ops.Compiled(a["aggs"]), a["timestamp"],
                                       a["ooo"], a["lateness"], emit=a.get("emit", "final"),
                                       processing_time=a.get("processing_time", False),
                                       cache_size=size)
        if n.kind == "stateful_map":
            return ops.StatefulMap(a["fn"], cache_size=size)
        if n.kind == "dedupe":
            return ops.Dedupe(a["key"], a["within"], a["timestamp"], a["ooo"],
                              processing_time=a["processing_time"], cache_size=size)
        if n.kind == "join":
            return ops.WindowJoin(a["spec"], a["timestamp"], a["ooo"], a["lateness"],
                                  processing_time=a["processing_time"], cache_size=size)
        if n.kind == "join_table":
            return ops.TableJoin(a["how"], cache_size=size)
        raise InvalidArgument(f"unknown step kind {n.kind!r}")

    def _make_sink(self, n: Node, hold: bool) -> Any:
        a = n.args
        if n.kind == "to":
            return TopicSink(self.broker, a["topic"], hold)
        if n.kind == "sink":
            return CallSink(a["fn"], a["batch"], f"step {n.id!r} (sink, {user_line(a['fn'])})")
        sink = PrintSink() if n.kind == "print" else FileSink(a["path"])
        sink.where = f"step {n.id!r} ({n.kind}" + (f" {a['path']!r})" if "path" in a else ")")
        return sink

    # ------------------------------------------------------------ pushing batches

    def push_source(self, node: Node, batch: Batch) -> None:
        """Push one source batch through the graph. Timed operators move their watermark
        once it has gone all the way (in graph order, so what a release closes still meets
        the held operators downstream): an operator reached by two paths from the source (a
        self-join of two branches) gets both before its watermark moves."""
        timed = self.timed
        for _n, op in timed:
            op.hold()
        try:
            self.push(node, batch)
        except BaseException:
            for _n, op in timed:
                op.holding = 0  # (the task restarts from its checkpoint)
            raise
        for n, op in timed:
            for out in op.release(batch.part):
                if out.values:
                    self.push(n, out)

    def push(self, node: Node, batch: Batch) -> None:
        for child in self.children[node.id]:
            if child.kind in SINK_KINDS:
                self._to_sink(child, batch)
                continue
            op = self.ops[child.id]
            if child.kind in TWO_INPUT_KINDS:
                op.side = child.inputs.index(node)
            try:
                outs = op.process(batch)
            except Exception as e:  # a user function raised somewhere in the batch
                outs = self._failed(child, op, batch, e)
            late = getattr(op, "take_late", None)
            if late is not None:
                for lb in late():
                    self._late(child, lb)
            for out in outs:
                if out.values:
                    self.push(child, out)

    def _to_sink(self, node: Node, batch: Batch) -> None:
        sink = self.sinks[node.id]
        while True:
            try:
                sink.add(batch)
            except ops.BatchFailed as e:  # a topic sink met an element it cannot encode
                self.result.records_out += e.index
                bad = batch.values[e.index]
                where = f"step {node.id!r} (to topic {node.args['topic']!r})"
                if self.app.on_error == "fail":
                    raise PipelineError(
                        f"{where} cannot write {_short(bad)}: {e.cause}; make the step before "
                        f"it return JSON values (dict, list, str, int, float, bool, None) or "
                        f"bytes") from e.cause
                one = Batch([repr(bad).encode()], None,  # (as text: it is not JSON)
                            [batch.ts[e.index]] if batch.ts is not None else None, batch.part)
                self.dead_letter(one, where, e.cause)  # type: ignore[arg-type]
                rest = slice(e.index + 1, None)
                batch = Batch(batch.values[rest],
                              batch.keys[rest] if batch.keys is not None else None,
                              batch.ts[rest] if batch.ts is not None else None, batch.part)
                continue
            self.result.records_out += len(batch.values)
            return

    def _failed(self, node: Node, op: Any, batch: Batch, exc: Exception) -> list[Batch]:
        outs: list[Batch] = []
        start = 0
        if isinstance(exc, ops.BatchFailed):  # elements before exc.index were applied
            outs, start, exc = list(exc.outputs), exc.index, exc.cause  # type: ignore[assignment]
        fn = node.args.get("fn") or node.args.get("key")  # (dedupe's key function)
        where = f"step {node.id!r} ({node.kind}"
        if fn is not None:
            where += f", {user_line(fn)}"
        elif start < len(batch.values):
            where += _failing_part(node, op, batch.values[start:], exc)
        where += ")"
        if self.app.on_error == "fail":
            raise PipelineError(f"{where} raised {exc!r}") from exc
        # dead_letter: find the failing elements one by one, pass the others on (an operator
        # that applied part of the batch said how far it got: those are not applied twice).
        # The retries stand for one batch: a timed operator's watermark stays put until they
        # are done, and their outputs go downstream as one batch again, so no element is late
        # only because a batch-mate failed.
        hold = getattr(op, "hold", None)
        if hold is not None:
            hold()
        try:
            for i, v in enumerate(batch.values):
                if i < start:
                    continue
                one = Batch([v], [batch.keys[i]] if batch.keys is not None else None,
                            [batch.ts[i]] if batch.ts is not None else None, batch.part)
                try:
                    outs += op.process(one)
                except Exception as e:
                    self.dead_letter(one, where, e.cause if isinstance(e, ops.BatchFailed) else e)
        finally:
            if hold is not None:
                outs += op.release(batch.part)
        return _joined(outs)

    def undecodable(self, node: Node, bad: Undecodable, gp: int) -> None:
        """A source record its serde cannot read: dead-lettered as it is stored, or the run
        fails naming it."""
        where = f"source {node.id!r} ({node.args.get('serde', 'json')} values)"
        if self.app.on_error == "fail":
            raise PipelineError(
                f"{where} cannot decode {bad.describe()}: {bad.error}; read the topic with "
                f"app.stream(topic, value_serde='bytes') to take such records as they are, or "
                f"use on_error='dead_letter' to set them aside") from bad.error
        self.dlq.add(Batch([bad.value], None, [bad.timestamp], gp),
                     [("error", repr(bad.error).encode()), ("step", where.encode()),
                      ("app", self.app.name.encode()), ("topic", bad.topic.encode()),
                      ("partition", str(bad.partition).encode()),
                      ("offset", str(bad.offset).encode())])
        self.result.dead_lettered += 1

    def dead_letter(self, one: Batch, where: str, exc: Exception) -> None:
        self.dlq.add(one, [("error", repr(exc).encode()), ("step", where.encode()),
                           ("app", self.app.name.encode())])
        self.result.dead_lettered += 1

    def _late(self, node: Node, batch: Batch) -> None:
        self.result.late += len(batch.values)
        sink = self.late_sinks.get(node.id)
        if sink is not None:
            sink.add(batch, [("late", b"1"), ("step", node.id.encode())])
        else:
            self.dlq.add(batch, [("reason", b"late"), ("step", node.id.encode()),
                                 ("app", self.app.name.encode())])

    def node(self, nid: str) -> Node:
        return next(n for n in self.nodes if n.id == nid)

    def all_sinks(self) -> list[Any]:
        return [*self.sinks.values(), self.dlq, *self.late_sinks.values()]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _joined(batches: list[Batch]) -> list[Batch]:
    """Consecutive batches of one partition (and the same keyed/timed shape) as one."""
    out: list[Batch] = []
    owned = False  # whether out[-1] is a batch made here, whose lists may grow
    for b in batches:
        if not b.values:
            continue
        last = out[-1] if out else None
        if (last is None or last.part != b.part or (last.keys is None) != (b.keys is None)
                or (last.ts is None) != (b.ts is None)):
            out.append(b)
            owned = False
            continue
        if not owned:
            last = out[-1] = Batch(list(last.values),
                                   list(last.keys) if last.keys is not None else None,
                                   list(last.ts) if last.ts is not None else None, last.part)
            owned = True
        last.values.extend(b.values)
        if last.keys is not None:
            last.keys.extend(b.keys)  # type: ignore[arg-type]
        if last.ts is not None:
            last.ts.extend(b.ts)  # type: ignore[arg-type]
    return out


def _failing_part(node: Node, op: Any, values: list[Any], exc: Exception) -> str:
    """Which user function of a step without ``fn`` failed on one of ``values``, for the error
    message (tried again, on the error path only): its ``timestamp=`` function, or one of its
    aggregations (``", aggregation total=sum(<lambda> at app.py:4)"``); empty if unknown."""
    ts = node.args.get("timestamp")
    if callable(ts):
        if isinstance(exc, InvalidArgument):  # what it returned is not an event time
            return f", timestamp={user_line(ts)}"
        for v in values:
            try:
                ts(v)
            except Exception:
                return f", timestamp={user_line(ts)}"
    aggs = getattr(op, "aggs", None)
    if not isinstance(aggs, ops.Compiled):
        return ""
    named = []
    for name, agg in zip(aggs.names, aggs.aggs):
        fn = getattr(agg, "fn", None)
        own = fn is not None and getattr(fn, "__module__", "").split(".")[0] != "operators"
        named.append(f"{name}={type(agg).__name__.lower()}" + (f"({user_line(fn)})" if own else ""))
        alone = ops.Compiled({name: agg})
        for v in values:
            try:
                alone.update(alone.init(), v)
            except Exception:
                return f", aggregation {named[-1]}"
    # none fails alone on a fresh accumulator: it failed against the window's (sr.min of None)
    return f", in one of its aggregations: {', '.join(named)}"


class _Pass(BaseOperator):
    name = "merge"

    def process(self, batch: Batch) -> list[Batch]:
        return [batch]


class _Handle:
    """An operator's part of the ``state`` database, as of the last checkpoint (what the
    operator changed since is in its own cache)."""

    def __init__(self, store: Any, prefix: bytes) -> None:
        self._store = store
        self._prefix = prefix
        self._n = len(prefix)

    def get(self, key: bytes) -> bytes | None:
        """One stored value of the operator's (None if absent)."""
        return self._store.get(self._prefix + key)

    def scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """The operator's stored (key, value) pairs whose key starts with ``prefix``."""
        n = self._n
        return [(k[n:], v) for k, v in self._store.scan(self._prefix + prefix)]

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every stored (key, value) of the operator."""
        return self.scan(b"")


class PipelineTask(Actor[str]):
    """Runs an app's pipelines one step at a time; see the module doc."""

    def __init__(self, app: App, broker: Any, until_caught_up: bool, result: RunResult) -> None:
        self.app = app
        self.broker = broker
        self.until_caught_up = until_caught_up
        self.result = result
        self.plan: _Plan | None = None
        self.done_parts: set[tuple[str, int]] = set()
        self.idle_since: dict[tuple[str, int], float] = {}
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()

    async def on_start(self) -> None:
        self.plan = _Plan(self.app, self.broker, self.until_caught_up, self.result)
        store = self.broker.store
        for sid, (_idx, reader) in self.plan.sources.items():
            pre = _prefix(self.app.name, "pos", sid)
            positions = {int(k[len(pre):]): int(v) for k, v in store.scan(pre)}
            if positions:
                reader.seek(positions)
        for nid, op in self.plan.ops.items():
            op.restore(_Handle(store, _prefix(self.app.name, "st", nid)))

    async def handle(self, message: str) -> bool:
        if message == "step":
            return await self._step()
        if message == "checkpoint":
            await self.checkpoint()
            return True
        raise InvalidArgument(f"unknown pipeline task message {message!r}")

    async def _step(self) -> bool:
        plan = self.plan
        assert plan is not None
        got = 0
        now = time.monotonic()
        for sid, (idx, reader) in plan.sources.items():
            node = plan.node(sid)
            for p in reader.parts:
                if (sid, p) in self.done_parts:
                    continue
                vals, ts, exhausted = await reader.read(p, self.app.batch_size)
                gp = idx * PART_SPAN + p
                take = getattr(reader, "take_undecodable", None)
                if take is not None:
                    for bad in take():
                        plan.undecodable(node, bad, gp)
                if vals:
                    got += len(vals)
                    self.idle_since.pop((sid, p), None)
                    plan.push_source(node, Batch(vals, None, ts, gp))
                elif not reader.bounded:
                    since = self.idle_since.setdefault((sid, p), now)
                    if now - since >= self.app.idle_timeout:
                        self._idle(node, gp)
                if exhausted:
                    self.done_parts.add((sid, p))
        self.result.records_in += got
        self.since_checkpoint += got
        for sink in plan.all_sinks():
            await sink.flush()
        finished = all((sid, p) in self.done_parts
                       for sid, (_i, r) in plan.sources.items() for p in r.parts)
        if finished:
            self._end_of_input()
            for sink in plan.all_sinks():
                await sink.flush()
            await self.checkpoint()
            return True
        if (self.since_checkpoint >= self.app.checkpoint_records
                or time.monotonic() - self.last_checkpoint >= self.app.checkpoint_interval
                or any(getattr(op, "wants_checkpoint", False) for op in plan.ops.values())):
            await self.checkpoint()
        return False

    def _idle(self, source: Node, gp: int) -> None:
        plan = self.plan
        assert plan is not None
        for n in plan.nodes:
            op = plan.ops.get(n.id)
            if op is not None:
                for out in op.on_idle(gp):
                    plan.push(n, out)

    def _end_of_input(self) -> None:
        plan = self.plan
        assert plan is not None
        for n in plan.nodes:  # inputs before consumers: upstream windows flush first
            op = plan.ops.get(n.id)
            if op is not None:
                for out in op.on_watermark(END_OF_TIME):
                    if out.values:
                        plan.push(n, out)

    async def checkpoint(self) -> None:
        """One transaction: source positions, state changes, held outputs."""
        plan = self.plan
        assert plan is not None
        for sink in plan.all_sinks():  # outputs already flushed are durable before the cut
            if isinstance(sink, TopicSink):
                await sink.settle()
        wb = WriteBatch()
        app = self.app.name
        cut = {sid: reader.positions() for sid, (_idx, reader) in plan.sources.items()}
        for sid, positions in cut.items():
            pre = _prefix(app, "pos", sid)
            for p, pos in positions.items():
                wb.put(pre + str(p).encode(), str(pos).encode())
        for nid, op in plan.ops.items():
            # (operators leave out deletes of keys they never wrote: their caches know)
            pre = _prefix(app, "st", nid)
            for k, v in op.snapshot().items():
                if v is None:
                    wb.delete(pre + k)
                else:
                    wb.put(pre + k, v)
        for sink in plan.all_sinks():
            if isinstance(sink, TopicSink):
                sink.drain_into(wb)  # at-least-once: what a step did not flush yet
        wb.put(_prefix(app, "graph"), fingerprint(self.app))
        await self.broker.write(wb)
        for sid, positions in cut.items():
            plan.sources[sid][1].checkpointed(positions)
        self.result.checkpoints += 1
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()


async def _ensure_topics(app: App, broker: Any) -> None:
    for ref in app.topics.values():
        if not broker.store.has_topic(ref.name):
            await broker.create_topic(ref.name, ref.partitions, ref.config)
    if not broker.store.has_topic(app.dlq_topic):
        await broker.create_topic(app.dlq_topic, 1, TopicConfig())


async def reset_app(app: App, broker: Any) -> None:
    """Forget an app's checkpoints: positions and state (its topics are kept)."""
    keys = [k for k, _ in broker.store.scan(_prefix(app.name))]
    wb = WriteBatch()
    for k in keys:
        wb.delete(k)
    if keys:
        await broker.write(wb)


_FROZEN = False


def _freeze_startup_objects() -> None:
    """Move what exists before the first pipeline runs (modules, functions, the app) out of
    the cyclic garbage collector's reach, once per process (``gc.freeze``, as the Python docs
    suggest after start-up). Pipelines allocate many short-lived containers, so full
    collections keep coming, and each walked every start-up object: 0.95 s of a 6.5 s run of
    the clicks benchmark, 0.16 s after freezing. Garbage is collected first, so none of it
    is kept for good."""
    global _FROZEN
    if not _FROZEN:
        _FROZEN = True
        gc.collect()
        gc.freeze()
        # Young collections every 700 container allocations examined (and promoted) window
        # accumulators and results that live a little longer than that; at 10,000 most of
        # them are gone before a collection looks (GC time 0.3 s -> 0.05 s on clicks).
        g0, g1, g2 = gc.get_threshold()
        if g0:  # (0: the collector is off; leave it so)
            gc.set_threshold(max(g0, 10_000), g1, g2)


async def run_app(
    app: App, broker: Any, *, until_caught_up: bool = False, reset: bool = False,
    on_progress: Callable[[RunResult], None] | None = None,
) -> RunResult:
    """Run the app on an open broker until its bounded sources end (or it is cancelled)."""
    result = RunResult()
    t0 = time.monotonic()
    check_graph(app)
    await _ensure_topics(app, broker)
    if reset:
        await reset_app(app, broker)
    saved = broker.store.get(_prefix(app.name, "graph"))
    if saved is not None and not same_graph(saved, app):
        raise IncompatibleState(
            f"app {app.name!r} has saved state from a different pipeline (its sources or "
            f"stateful steps changed, or an aggregation's kind); run with --reset to start "
            f"afresh, or name the steps (name=...) so their ids stay stable")
    check_positions(app, broker)
    _freeze_startup_objects()
    (name,) = place_tasks(app)
    ref = await broker.root.spawn(
        lambda: PipelineTask(app, broker, until_caught_up, result), name, TASK_POLICY)
    try:
        while True:
            try:
                done = await ref.ask("step")
            except ActorCrashed as e:
                result.restarts += 1  # the supervisor logs the crash and restarts the task
                cause = e.__cause__
                if isinstance(cause, (IncompatibleState, InvalidArgument)):
                    raise cause from None
                if result.restarts >= TASK_POLICY.max_restarts:  # before the supervisor escalates
                    raise PipelineError(
                        f"app {app.name!r} failed {result.restarts} times; last error: {cause}"
                    ) from cause
                continue
            if on_progress is not None:
                on_progress(result)
            if done:
                break
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            try:
                await ref.ask("checkpoint")  # graceful stop: keep what was done
            except StreamrtError:
                pass
        raise
    finally:
        ref.close()
    result.seconds = time.monotonic() - t0
    return result


def run_app_sync(
    app: App, *, data_dir: str | os.PathLike[str] | None = None, until_caught_up: bool = False,
    reset: bool = False, durability: str = "sync",
) -> RunResult:
    """Open the data directory, run the app, close it (blocking)."""
    import trio

    from ..broker import open as open_broker

    path = data_dir or app.data_dir or ".streamrt"

    async def main() -> RunResult:
        async with open_broker(path, durability=durability) as broker:  # type: ignore[arg-type]
            return await run_app(app, broker, until_caught_up=until_caught_up, reset=reset)

    return trio.run(main)
