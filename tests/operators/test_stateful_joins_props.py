"""stateful_map, dedupe and the joins against plain-Python references, with snapshot/restore
round trips mid-stream; early emission and processing-time windows with an injected clock."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import operators as ops
from operators import Batch
from operators._time import NO_TIME
from streamrt.errors import InvalidArgument

from _op_harness import Driver

KEYS = [None, "a", "b", 1, ("a", 1)]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONTROL = st.sampled_from(["checkpoint", "restart", "idle"])


@st.composite
def timed_steps(draw: Any, nparts: int = 2, sides: int = 1) -> list[Any]:
    """Batches of (key, t, side) around a moving base time, with checkpoints, restarts and
    idle partitions in between."""
    steps: list[Any] = []
    base = 0
    for _ in range(draw(st.integers(1, 20))):
        if draw(st.integers(0, 5)) == 0:
            steps.append((draw(CONTROL), draw(st.integers(0, nparts - 1)), None, 0))
            continue
        base += draw(st.integers(0, 12))
        elems = draw(st.lists(st.tuples(st.sampled_from(KEYS), st.integers(-30, 8).map(lambda d, b=base: b + d)),
                              min_size=1, max_size=8))
        steps.append(("batch", draw(st.integers(0, nparts - 1)), elems, draw(st.integers(0, sides - 1))))
    return steps


class Watermark:
    """The reference watermark: min over non-idle partitions of their max time, minus ooo."""

    def __init__(self, parts: list[int], ooo: int) -> None:
        self.max_ts = {p: NO_TIME for p in parts}
        self.idle: set[int] = set()
        self.ooo = ooo
        self.wm = NO_TIME

    def saw(self, part: int, ts: list[int]) -> None:
        self.idle.discard(part)
        self.max_ts[part] = max([self.max_ts[part], *ts])
        self.advance()

    def set_idle(self, part: int) -> None:
        self.idle.add(part)
        self.advance()

    def advance(self) -> None:
        active = [t for p, t in self.max_ts.items() if p not in self.idle]
        if active and min(active) != NO_TIME:
            self.wm = max(self.wm, min(active) - self.ooo)


# ------------------------------------------------------------ stateful_map

def _running(state: Any, v: int) -> tuple[Any, Any]:
    """Running sum and count per key; forgets the key when the sum hits a multiple of 7."""
    s = (state or {"sum": 0, "n": 0})
    s = {"sum": s["sum"] + v, "n": s["n"] + 1}
    out = None if v % 5 == 0 else [s["sum"], s["n"]]
    return (None if s["sum"] % 7 == 0 else s), out


@SETTINGS
@given(st.lists(st.one_of(st.lists(st.tuples(st.sampled_from(KEYS), st.integers(-20, 20)), max_size=8),
                          CONTROL), max_size=25))
def test_stateful_map_matches_reference(steps: list[Any]) -> None:
    drv = Driver(lambda: ops.StatefulMap(_running))
    state: dict[Any, Any] = {}
    want = []
    for step in steps:
        if step == "restart":
            drv.restart()
        elif step == "checkpoint":
            drv.checkpoint()
        elif step != "idle":
            for k, v in step:
                state[k], out = _running(state.get(k), v)
                if out is not None:
                    want.append(out)
            drv.process(Batch([v for _, v in step], [k for k, _ in step], [0] * len(step), 0))
    assert drv.out == want


def test_stateful_map_state_must_be_json() -> None:
    op = ops.StatefulMap(lambda s, v: ({1, 2}, v))
    op.process(Batch([1], ["k"]))
    with pytest.raises(InvalidArgument, match="JSON"):
        op.snapshot()


def test_stateful_map_failure_reports_how_far_it_got() -> None:
    op = ops.StatefulMap(lambda s, v: ((s or 0) + 1, 10 // v))
    with pytest.raises(ops.BatchFailed) as ei:
        op.process(Batch([1, 2, 0, 5], ["k"] * 4))
    assert ei.value.index == 2 and ei.value.outputs[0].values == [10, 5]
    assert op.cache.data == {"k": 2}  # the failing element changed nothing


# ------------------------------------------------------------ dedupe

class DedupeReference:
    """docs/dsl.md's definition in plain Python, remembering everything: an element more than
    ``within`` behind the watermark (``t <= watermark - within``) is late; otherwise it is
    dropped iff an element of its key kept earlier, in processing order, is less than
    ``within`` from it in event time (before or after), and kept otherwise."""

    def __init__(self, parts: list[int], within: int, ooo: int) -> None:
        self.wm = Watermark(parts, ooo)
        self.within = within
        self.times: dict[Any, list[int]] = {}  # key -> every kept time, never forgotten
        self.kept: list[Any] = []
        self.late: list[Any] = []

    def batch(self, part: int, elems: list[Any], key: Any, time: Any) -> None:
        edge = self.wm.wm - self.within  # the watermark moves between batches, not within
        for e in elems:
            k, t = key(e), time(e)
            if t <= edge:
                self.late.append(e)
            elif all(abs(t - s) >= self.within for s in self.times.get(k, ())):
                self.kept.append(e)
                self.times.setdefault(k, []).append(t)
        self.wm.saw(part, [time(e) for e in elems])


@SETTINGS
@given(timed_steps(), st.integers(1, 15), st.sampled_from([0, 4, 40]))
def test_dedupe_matches_reference(steps: list[Any], within: int, ooo: int) -> None:
    # elements up to 38 ms behind their batch's base time: disorder beyond within, often
    parts = [0, 1]
    drv = Driver(lambda: ops.Dedupe(lambda e: e[0], within, lambda e: e[1], ooo), parts)
    ref = DedupeReference(parts, within, ooo)
    uid = itertools.count()
    for kind, part, elems, _ in steps:
        if kind == "batch":
            batch = [(k, t, next(uid)) for k, t in elems]
            ref.batch(part, batch, lambda e: e[0], lambda e: e[1])
            drv.process(Batch(batch, None, None, part))
        elif kind == "idle":
            ref.wm.set_idle(part)
            drv.idle(part)
        elif kind == "checkpoint":
            drv.checkpoint()
        else:
            drv.restart()
        # bounded: kept times 2 * within (plus a bucket's span) behind the watermark are gone
        wm = drv.op.wm
        assert all(t > wm - 3 * within for _, t in drv.op.cache.data.items())
    drv.end()
    assert drv.out == ref.kept
    assert drv.late == ref.late


@pytest.mark.parametrize("seed", range(20))
def test_dedupe_with_disorder_beyond_within_matches_reference(seed: int) -> None:
    """Long random runs (hypothesis keeps its examples short): a few keys, timestamps up to
    three times ``within`` out of order, one batch of one partition at a time, and checkpoints
    and restarts now and then."""
    rnd = random.Random(seed)
    within, ooo = rnd.choice([(10, 30), (7, 25), (20, 45), (5, 0)])
    parts = [0, 1]
    drv = Driver(lambda: ops.Dedupe(lambda e: e[0], within, lambda e: e[1], ooo), parts)
    ref = DedupeReference(parts, within, ooo)
    base = {0: 0, 1: 0}
    uid = itertools.count()
    for _ in range(300):
        part = rnd.choice(parts)
        base[part] += rnd.randrange(6)
        batch = [(rnd.randrange(4), base[part] - rnd.randrange(3 * within), next(uid))
                 for _ in range(rnd.randrange(1, 6))]
        ref.batch(part, batch, lambda e: e[0], lambda e: e[1])
        drv.process(Batch(batch, None, None, part))
        r = rnd.random()
        if r < 0.05:
            drv.restart()
        elif r < 0.1:
            drv.checkpoint()
    assert len(ref.kept) > 50 and len(ref.kept) < next(uid) - 50  # the test tests something
    assert drv.out == ref.kept
    assert drv.late == ref.late
    # the store holds live times only, each under its expiry bucket: none 2 * within (plus
    # a bucket's span) behind the watermark
    drv.checkpoint()
    stored = [(int.from_bytes(k[1:9], "big") - 2**63, int(v))
              for k, v in drv.store.items() if k.startswith(b"d")]
    assert stored and all(t > drv.op.wm - 3 * within for _, t in stored)
    assert all(b == (t + 2 * within) // within for b, t in stored)


def test_dedupe_catches_a_duplicate_behind_a_later_kept_element() -> None:
    # the same key at 0, 150, 40: 40 is 40 ms from the kept 0 (not late: watermark 150 - 200)
    op = ops.Dedupe(lambda e: "disk-full", 100, lambda e: e, 200)
    op.open_parts([0])
    kept = [v for t in (0, 150, 40) for b in op.process(Batch([t])) for v in b.values]
    assert kept == [0, 150] and not op.take_late()
    assert op.kept("disk-full") == [0, 150]


def test_dedupe_reads_the_layout_of_one_time_per_key() -> None:
    """Checkpoints of the operator that kept only each key's latest time: the same entries,
    (expiry bucket, key) -> time, which the operator reads and adds to."""
    drv = Driver(lambda: ops.Dedupe(lambda e: e[0], 10, lambda e: e[1], 50), [0])
    drv.store[b"d" + (2**63 + 102 // 10).to_bytes(8, "big") + orjson.dumps("k")] = b"82"
    drv.store[b"\x00n"] = orjson.dumps([[102 // 10, 1]])
    drv.restart()
    drv.process(Batch([("k", 75, 1), ("k", 88, 2), ("k", 95, 3), ("k", 60, 4)], None, None, 0))
    assert [e[2] for e in drv.out] == [3, 4]  # 75, 88: less than 10 from 82
    assert drv.op.kept("k") == [60, 82, 95]


def test_dedupe_forgets_keys_once_time_has_passed() -> None:
    op = ops.Dedupe(lambda e: e, 10, lambda e: 0 if e == "a" else 100)
    op.open_parts([0])
    op.process(Batch(["a", "b"]))
    assert op.last("a") is None and op.last("b") == 100  # a: 0 + 2*10 <= watermark 100
    assert [dk for _, dk in op.cache.data] == ["b"]  # forgotten: not even cached


def test_dedupe_in_processing_time() -> None:
    now = [1000]
    op = ops.Dedupe(lambda e: e, 50, processing_time=True, clock=lambda: now[0])
    (b,) = op.process(Batch(["x", "x", "y"]))
    assert b.values == ["x", "y"]
    now[0] += 60
    (b,) = op.process(Batch(["x", "y"]))
    assert b.values == ["x", "y"]


# ------------------------------------------------------------ windowed join

@SETTINGS
@given(timed_steps(nparts=2, sides=2), st.integers(1, 25), st.sampled_from([0, 5]),
       st.sampled_from([0, 7]))
def test_window_join_matches_reference(steps: list[Any], size: int, ooo: int, lateness: int) -> None:
    parts = [0, 1]

    def make() -> Any:
        return ops.WindowJoin(ops.Tumbling(size), lambda e: e[1], ooo, lateness)

    drv = Driver(make, parts)
    wm = Watermark(parts, ooo)
    elems_of: dict[tuple[Any, int], list[list[Any]]] = {}
    pairs, late = [], []
    uid = itertools.count()
    for kind, part, elems, side in steps:
        if kind == "batch":
            batch = [(k, t, next(uid)) for k, t in elems]
            edge = wm.wm - lateness
            for e in batch:
                start = e[1] - e[1] % size
                if start + size <= edge:
                    late.append(e)
                    continue
                # windows that closed are forgotten: only the open ones can pair
                for other in elems_of.get((e[0], start), [[], []])[1 - side]:
                    pairs.append((e, other) if side == 0 else (other, e))
                elems_of.setdefault((e[0], start), [[], []])[side].append(e)
            wm.saw(part, [t for _, t, _ in batch])
            for (k, s) in list(elems_of):
                if s + size + lateness <= wm.wm:
                    del elems_of[(k, s)]
            drv.op.side = side
            drv.process(Batch(batch, [k for k, _, _ in batch], None, part))
        elif kind == "idle":
            wm.set_idle(part)
            drv.idle(part)
            for (k, s) in list(elems_of):
                if s + size + lateness <= wm.wm:
                    del elems_of[(k, s)]
        elif kind == "checkpoint":
            drv.checkpoint()
        else:
            drv.restart()
    drv.end()

    def canon(xs: list[Any]) -> Counter[bytes]:
        return Counter(orjson.dumps(x) for x in xs)

    assert canon(drv.out) == canon(pairs)
    assert canon(drv.late) == canon(late)


def test_window_join_takes_tumbling_windows_only() -> None:
    with pytest.raises(InvalidArgument, match="tumbling"):
        ops.WindowJoin(ops.Session(5))  # type: ignore[arg-type]


# ------------------------------------------------------------ table join

@SETTINGS
@given(st.lists(st.one_of(
    st.tuples(st.just("table"), st.lists(st.tuples(st.sampled_from([b"a", b"b", b"1", None]),
                                                   st.one_of(st.none(), st.integers(0, 9))), max_size=5)),
    st.tuples(st.just("stream"), st.lists(st.sampled_from(["a", "b", 1, None]), max_size=5)),
    st.tuples(CONTROL, st.none())), max_size=20), st.sampled_from(["inner", "left"]))
def test_table_join_matches_reference(steps: list[Any], how: str) -> None:
    drv = Driver(lambda: ops.TableJoin(how))
    table: dict[Any, Any] = {}
    want = []
    enc = {"a": b"a", "b": b"b", 1: b"1", None: None}
    for kind, items in steps:
        if kind == "table":
            for kb, v in items:
                if v is None:
                    table.pop(kb, None)
                else:
                    table[kb] = v
            drv.op.side = 0
            drv.process(Batch(items))
        elif kind == "stream":
            for k in items:
                found = table.get(enc[k])
                if found is not None or how == "left":
                    want.append((f"v{k}", found))
            drv.op.side = 1
            drv.process(Batch([f"v{k}" for k in items], list(items)))
        elif kind == "checkpoint":
            drv.checkpoint()
        elif kind == "restart":
            drv.restart()
    assert drv.out == want


# ------------------------------------------------------------ early results, processing time

@SETTINGS
@given(st.lists(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 60)), min_size=1,
                         max_size=6), max_size=12),
       st.sampled_from([ops.Tumbling(10), ops.Sliding(20, 10), ops.Session(5)]))
def test_early_updates_then_the_same_final_results(batches: list[Any], spec: Any) -> None:
    def run(emit: str) -> list[dict[str, Any]]:
        aggs = ops.Compiled({"n": ops.count(), "s": ops.sum(lambda e: e[1])})
        op = ops.WindowAggregate(spec, aggs, lambda e: e[1], 100, emit=emit)
        op.open_parts([0])
        out = []
        for b in batches:
            for ob in op.process(Batch(b, [k for k, _ in b])):
                out += ob.values
        for ob in op.on_watermark(ops.END_OF_TIME):
            out += ob.values
        return out

    final = run("final")
    early = run("early")
    finals = [{k: v for k, v in r.items() if k != "final"} for r in early if r["final"]]
    key = lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)  # noqa: E731
    assert sorted(finals, key=key) == sorted(final, key=key)
    if not isinstance(spec, ops.Session):  # an update never exceeds the window's final count
        last = {(r["key"], r["start"]): r["n"] for r in final}
        assert all(r["n"] <= last[(r["key"], r["start"])] for r in early if not r["final"])
    # nothing is late here (disorder 100 ms), so every batch updates some window
    assert sum(1 for r in early if not r["final"]) >= len(batches)


def test_processing_time_windows_use_the_clock() -> None:
    now = [1_000]
    op = ops.WindowAggregate(ops.Tumbling(100), ops.Compiled({"n": ops.count()}),
                             processing_time=True, clock=lambda: now[0])
    op.open_parts([0])
    assert op.process(Batch(["x", "y"], ["k", "k"])) == []  # no timestamps needed
    now[0] = 1_050
    assert op.process(Batch(["z"], ["k"])) == []
    now[0] = 1_100
    (b,) = op.on_idle(0)  # time moves on without data: the window closes
    assert b.values == [{"key": "k", "start": 1_000, "end": 1_100, "n": 3}]
    assert op.take_late() == []


def test_emit_must_be_final_or_early() -> None:
    with pytest.raises(InvalidArgument, match="emit"):
        ops.WindowAggregate(ops.Tumbling(5), ops.Compiled({"n": ops.count()}), emit="often")


def test_window_failure_reports_how_far_it_got() -> None:
    op = ops.WindowAggregate(ops.Tumbling(10), ops.Compiled({"s": ops.sum(lambda e: 10 // e)}),
                             lambda e: 0)
    op.open_parts([0])
    with pytest.raises(ops.BatchFailed) as ei:
        op.process(Batch([1, 2, 0, 5], ["k"] * 4))
    assert ei.value.index == 2
    op.process(Batch([5], ["k"]))
    (b,) = op.on_watermark(ops.END_OF_TIME)
    assert b.values[0]["s"] == 10 + 5 + 2  # the failed element added nothing


def test_a_partition_starved_by_a_filter_stops_holding_time_back() -> None:
    now = [0]
    op = ops.WindowAggregate(ops.Tumbling(10), ops.Compiled({"n": ops.count()}), lambda e: e,
                             clock=lambda: now[0])
    op.open_parts([0, 1], idle_after_ms=1000)
    assert op.process(Batch([1, 25], ["k", "k"], None, 0)) == []  # part 1 holds time back
    now[0] = 999
    assert op.process(Batch([26], ["k"], None, 0)) == []
    now[0] = 1000  # part 1 delivered nothing for 1 s while part 0 did: it is idle
    (b,) = op.process(Batch([27], ["k"], None, 0))
    assert b.values == [{"key": "k", "start": 0, "end": 10, "n": 1}]
    op.process(Batch([30], ["k"], None, 1))  # part 1 is back: active again
    assert 1 not in op.idle
