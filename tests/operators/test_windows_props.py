"""Windows against a plain-Python reference on random, out-of-order and late input.

The reference states the semantics in the simplest code: per batch, judge each element
against the watermark before the batch, keep the elements of each open window in a list,
then move the watermark (the minimum over non-idle partitions of their largest timestamp,
minus the allowed disorder) and emit every window whose end plus the allowed lateness it has
reached. Sessions are recomputed from their elements. The operator must give the same
results (as multisets) and set aside exactly the reference's late elements, whether or not it
is snapshotted and rebuilt from its snapshot mid-stream.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import operators as ops
from operators import Batch
from operators._windows import NO_TIME
from streamrt.errors import InvalidArgument

from _op_harness import Driver

KEYS = [None, "a", "b", 1, ("a", 1)]  # mixed types on purpose: they must never be compared


def _red(a: int, b: int) -> int:  # order-sensitive: checks arrival order in windows
    return (a * 31 + b) % 1_000_003


def _fold(acc: int, v: int) -> int:
    return (acc * 7 + v) % 1_000_003


def _aggs(session: bool) -> dict[str, Any]:
    aggs = {"n": ops.count(), "s": ops.sum(), "lo": ops.min(), "hi": ops.max(),
            "avg": ops.mean(), "all": ops.collect(lambda v: v * 10)}
    if session:
        aggs["r"] = ops.reduce(lambda a, b: a + b)  # sessions merge: keep it commutative
    else:
        aggs["r"] = ops.reduce(_red)
        aggs["f"] = ops.fold(0, _fold)
    return aggs


def _expected(vals: list[int], session: bool) -> dict[str, Any]:
    out = {"n": len(vals), "s": sum(vals), "lo": min(vals), "hi": max(vals),
           "avg": sum(vals) / len(vals), "all": [v * 10 for v in vals]}
    if session:
        out["r"] = sum(vals)
        out["all"] = sorted(out["all"])
    else:
        out["r"] = functools.reduce(_red, vals)
        out["f"] = functools.reduce(_fold, vals, 0)
    return out


class Reference:
    def __init__(self, spec: Any, ooo: int, lateness: int, parts: list[int]) -> None:
        self.spec = spec
        self.ooo = ooo
        self.lateness = lateness
        self.max_ts = {p: NO_TIME for p in parts}
        self.idle: set[int] = set()
        self.wm = NO_TIME
        self.windows: dict[tuple[Any, int], list[int]] = {}
        self.sessions: dict[Any, list[tuple[int, int, list[int]]]] = {}
        self.out: list[dict[str, Any]] = []
        self.late: list[Any] = []

    def _starts(self, t: int) -> list[int]:
        if isinstance(self.spec, ops.Tumbling):
            return [t - t % self.spec.size]
        size, step = self.spec.size, self.spec.step
        return [s for s in range(t - size - step, t + step + 1) if s % step == 0 and s <= t < s + size]

    def process(self, part: int, elems: list[tuple[Any, int, int]]) -> None:
        edge = self.wm - self.lateness
        for k, t, v in elems:
            if isinstance(self.spec, ops.Session):
                gap = self.spec.gap
                mine = self.sessions.setdefault(k, [])
                touching = [s for s in mine if s[0] - gap < t < s[1] + gap]
                if not touching and t + gap <= edge:
                    self.late.append(v)
                    continue
                for s in touching:
                    mine.remove(s)
                vals = [x for s in touching for x in s[2]] + [v]
                mine.append((min([t, *(s[0] for s in touching)]),
                             max([t, *(s[1] for s in touching)]), vals))
            else:
                open_ = [s for s in self._starts(t) if s + self.spec.size > edge]
                if not open_:
                    self.late.append(v)
                for s in open_:
                    self.windows.setdefault((k, s), []).append(v)
        self.idle.discard(part)
        self.max_ts[part] = max([self.max_ts[part], *(t for _, t, _ in elems)])
        self._advance()

    def on_idle(self, part: int) -> None:
        self.idle.add(part)
        self._advance()

    def _advance(self) -> None:
        active = [t for p, t in self.max_ts.items() if p not in self.idle]
        if active:
            wm = NO_TIME if min(active) == NO_TIME else min(active) - self.ooo
            if wm > self.wm:
                self.wm = wm
        self._close()

    def end(self) -> None:
        self.wm = ops.END_OF_TIME
        self._close()

    def _close(self) -> None:
        wm, session = self.wm, isinstance(self.spec, ops.Session)
        if session:
            for k, mine in self.sessions.items():
                for s in list(mine):
                    if s[1] + self.spec.gap + self.lateness <= wm:
                        mine.remove(s)
                        self.out.append({"key": k, "start": s[0], "end": s[1] + self.spec.gap,
                                         **_expected(s[2], True)})
        else:
            for (k, s), vals in list(self.windows.items()):
                if s + self.spec.size + self.lateness <= wm:
                    del self.windows[(k, s)]
                    self.out.append({"key": k, "start": s, "end": s + self.spec.size,
                                     **_expected(vals, False)})


def _canon(results: list[dict[str, Any]], session: bool) -> Counter[bytes]:
    out = []
    for r in results:
        r = dict(r)
        if session:
            r["all"] = sorted(r["all"])
        out.append(orjson.dumps(r, option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS))
    return Counter(out)


SPECS = st.one_of(
    st.builds(ops.Tumbling, st.integers(1, 30)),
    st.integers(1, 10).flatmap(lambda step: st.builds(ops.Sliding, st.integers(1, 4).map(lambda m: m * step), st.just(step))),
    st.builds(ops.Session, st.integers(1, 20)),
)


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    nparts = draw(st.integers(1, 3))
    steps = []
    base = 0
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["batch"] * 6 + ["idle", "checkpoint", "restart"]))
        part = draw(st.integers(0, nparts - 1))
        if kind == "batch":
            base += draw(st.integers(0, 15))  # time moves on, and elements scatter around it
            elems = draw(st.lists(st.tuples(st.sampled_from(KEYS),
                                            st.integers(-40, 10).map(lambda d, b=base: b + d),
                                            st.integers(-50, 50)), min_size=1, max_size=8))
            steps.append(("batch", part, elems))
        else:
            steps.append((kind, part, None))
    return {"spec": draw(SPECS), "ooo": draw(st.sampled_from([0, 0, 3, 10])),
            "lateness": draw(st.sampled_from([0, 0, 5, 20])), "parts": list(range(nparts)),
            "steps": steps}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_windows_match_reference(sc: dict[str, Any]) -> None:
    spec, session = sc["spec"], isinstance(sc["spec"], ops.Session)
    uid = itertools.count()
    ref = Reference(spec, sc["ooo"], sc["lateness"], sc["parts"])
    drv = Driver(lambda: ops.WindowAggregate(spec, ops.Compiled(_aggs(session)), None, sc["ooo"],
                                             sc["lateness"]), sc["parts"])
    for kind, part, elems in sc["steps"]:
        if kind == "batch":
            # values are unique ids, so late elements can be matched exactly
            elems = [(k, t, next(uid)) for k, t, _ in elems]
            ref.process(part, elems)
            drv.process(Batch([v for _, _, v in elems], [k for k, _, _ in elems],
                              [t for _, t, _ in elems], part))
        elif kind == "idle":
            ref.on_idle(part)
            drv.idle(part)
        elif kind == "checkpoint":
            drv.checkpoint()
        else:
            drv.restart()
        assert sorted(drv.late) == sorted(ref.late)
    ref.end()
    drv.end()
    assert _canon(drv.out, session) == _canon(ref.out, session)
    assert sorted(drv.late) == sorted(ref.late)
    # nothing vanished: every element is in some window result, or late
    seen = {v // 10 for r in drv.out for v in r["all"]}
    assert seen | set(drv.late) == set(range(next(uid)))


def test_fold_is_refused_for_sessions() -> None:
    with pytest.raises(InvalidArgument, match="fold"):
        ops.WindowAggregate(ops.Session(5), ops.Compiled({"f": ops.fold(0, _fold)}))


def test_timestamp_function_and_record_timestamps() -> None:
    op = ops.WindowAggregate(ops.Tumbling(10), ops.Compiled({"n": ops.count()}), lambda e: e["t"])
    op.open_parts([0])
    (b,) = op.process(Batch([{"t": 1}, {"t": 12}], ["k", "k"], None, 0))  # watermark 12
    assert b.values == [{"key": "k", "start": 0, "end": 10, "n": 1}] and b.ts == [9]
    (b,) = op.on_watermark(ops.END_OF_TIME)
    assert b.values == [{"key": "k", "start": 10, "end": 20, "n": 1}]
    op2 = ops.WindowAggregate(ops.Tumbling(10), ops.Compiled({"n": ops.count()}))
    with pytest.raises(InvalidArgument, match="event time"):
        op2.process(Batch([1], ["k"], None, 0))



def test_timestamps_as_floats_and_datetimes_are_epoch_ms_and_others_are_refused() -> None:
    import datetime as dt

    utc = dt.timezone.utc
    start = dt.datetime(2026, 1, 1, tzinfo=utc)
    ms = int(start.timestamp() * 1000)
    for t0, t1 in [(1.9, 12.5),  # floats: rounded down
                   (start.replace(tzinfo=None), start.replace(tzinfo=None) + dt.timedelta(milliseconds=12)),
                   (start, start + dt.timedelta(milliseconds=12)),
                   (start.astimezone(dt.timezone(dt.timedelta(hours=5))),
                    start + dt.timedelta(milliseconds=12))]:
        op = ops.WindowAggregate(ops.Tumbling(10), ops.Compiled({"n": ops.count()}), lambda e: e["t"])
        op.open_parts([0])
        (b,) = op.process(Batch([{"t": t0}, {"t": t1}], ["k", "k"], None, 0))
        base = 0 if isinstance(t0, float) else ms
        assert b.values == [{"key": "k", "start": base, "end": base + 10, "n": 1}], t0
        assert b.ts == [base + 9]
    op = ops.WindowAggregate(ops.Tumbling(10), ops.Compiled({"n": ops.count()}), lambda e: e["t"])
    op.open_parts([0])
    for bad in ["12", float("nan"), dt.date(2026, 1, 1), None]:
        with pytest.raises(InvalidArgument, match="epoch milliseconds"):
            op.process(Batch([{"t": bad}], ["k"], None, 0))
    # beyond +-2**62 ms (where the end of a bounded run flushes to) an element would vanish
    for bad in [2**62, 2**64 + 5, -(2**62), 1e300]:
        with pytest.raises(InvalidArgument, match=r"event time -?\d+ ms is beyond"):
            op.process(Batch([{"t": 5}, {"t": bad}], ["k", "k"], None, 0))
    assert op.max_ts[0] < 2**62  # a refused batch moved no time on


def test_a_session_that_never_goes_quiet_keeps_one_closing_entry() -> None:
    op = ops.WindowAggregate(ops.Session(10), ops.Compiled({"n": ops.count()}), lambda e: e)
    op.open_parts([0])
    for i in range(0, 20_000, 1000):
        assert op.process(Batch(list(range(i, i + 1000)), ["k"] * 1000)) == []
    s = op.sessions
    # one index entry (the key is filed again as its session moves on), a few live buckets
    assert len(s.index) == 1 and len(s.soon) <= 1 and len(s.buckets) <= 2
    assert len(s.index.members) <= 2  # buckets that passed are forgotten
    assert len(s.sessions_of("k")) == 1
    (b,) = op.on_watermark(ops.END_OF_TIME)
    assert b.values == [{"key": "k", "start": 0, "end": 20_009, "n": 20_000}]
