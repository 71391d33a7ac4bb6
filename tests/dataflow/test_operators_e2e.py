"""The operators end to end through App.run: results read back from topics equal plain-Python
references; stateful steps survive a crash and restart from their checkpoint."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

import operators as ops
import streamrt as sr
from _results import canon as _canon
from _results import read_topic as _read
from streamrt import errors
from streamrt.dataflow._runner import RunResult, _ensure_topics, _Plan



def _events(n: int, seed: int = 1, disorder: int = 0) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    return [{"id": i, "user": rnd.randrange(7), "v": rnd.randrange(100),
             "ts": i * 10 + (rnd.randrange(disorder) if disorder else 0)} for i in range(n)]


def test_session_and_sliding_windows_match_reference(tmp_path: Path) -> None:
    evs = _events(3000, disorder=40)  # out of order by up to 40 ms; allowed 50: nothing late
    app = sr.App("win", batch_size=64)
    keyed = app.stream(evs, name="src").key_by(lambda e: e["user"])
    (keyed.window(sr.session(gap_ms=60), timestamp=lambda e: e["ts"], max_out_of_orderness=0.05)
        .aggregate(n=sr.count(), lo=sr.min(lambda e: e["v"]), hi=sr.max(lambda e: e["v"]),
                   ids=sr.collect(lambda e: e["id"]), name="sessions")
        .to("sessions"))
    (keyed.window(sr.sliding(ms=200, step_ms=100), timestamp=lambda e: e["ts"],
                  max_out_of_orderness=0.05)
        .aggregate(n=sr.count(), total=sr.sum(lambda e: e["v"]), name="sliding")
        .to("sliding"))
    r = app.run(data_dir=tmp_path / "d")
    assert r.late == 0
    # sessions: per user, sort by time and cut where the gap is 60 ms or more
    want = []
    for u in range(7):
        mine = sorted((e for e in evs if e["user"] == u), key=lambda e: e["ts"])
        cur: list[dict[str, Any]] = []
        for e in mine + [None]:  # type: ignore[list-item]
            if cur and (e is None or e["ts"] - cur[-1]["ts"] >= 60):
                want.append({"key": u, "start": cur[0]["ts"], "end": cur[-1]["ts"] + 60, "n": len(cur),
                             "lo": min(x["v"] for x in cur), "hi": max(x["v"] for x in cur),
                             "ids": sorted(x["id"] for x in cur)})
                cur = []
            if e is not None:
                cur.append(e)
    got = _read(tmp_path / "d", "sessions")
    for g in got:
        g["ids"] = sorted(g["ids"])
    assert _canon(got) == _canon(want)
    slide: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for e in evs:
        for start in (e["ts"] - e["ts"] % 100, e["ts"] - e["ts"] % 100 - 100):
            slide[(e["user"], start)][0] += 1
            slide[(e["user"], start)][1] += e["v"]
    want2 = [{"key": u, "start": s, "end": s + 200, "n": n, "total": t} for (u, s), (n, t) in slide.items()]
    assert _canon(_read(tmp_path / "d", "sliding")) == _canon(want2)


def test_late_elements_are_counted_and_routed(tmp_path: Path) -> None:
    evs = _events(2000, seed=2, disorder=300)  # disorder beyond what is allowed: some are late
    app = sr.App("late2", batch_size=50)
    (app.stream(evs).key_by(lambda e: e["user"])
        .window(sr.tumbling(ms=100), timestamp=lambda e: e["ts"], max_out_of_orderness=0.05,
                allowed_lateness=0.05)
        .late_to("late")
        .aggregate(ids=sr.collect(lambda e: e["id"]))
        .to("out"))
    r = app.run(data_dir=tmp_path / "d")
    late = _read(tmp_path / "d", "late")
    assert r.late == len(late) > 0
    counted = [i for w in _read(tmp_path / "d", "out") for i in w["ids"]] + [e["id"] for e in late]
    assert sorted(counted) == list(range(2000))  # every element in a result or late, once


def _running_total(state: Any, e: dict[str, Any]) -> tuple[Any, Any]:
    total = (state or 0) + e["v"]
    return total, {"id": e["id"], "user": e["user"], "total": total}


def _running_reference(evs: list[dict[str, Any]]) -> list[Any]:
    tot: dict[int, int] = defaultdict(int)
    out = []
    for e in evs:
        tot[e["user"]] += e["v"]
        out.append({"id": e["id"], "user": e["user"], "total": tot[e["user"]]})
    return out


def test_stateful_map_survives_a_crash_exactly_once(tmp_path: Path) -> None:
    evs = _events(5000, seed=3)
    crashed = []

    def flaky(e: dict[str, Any]) -> dict[str, Any]:
        if e["id"] == 3700 and not crashed:  # once: the restarted task gets past it
            crashed.append(1)
            raise RuntimeError("transient")
        return e

    app = sr.App("sm", guarantee="exactly_once", batch_size=100, checkpoint_records=1000)
    (app.stream(lambda: iter(evs), name="src").map(flaky).key_by(lambda e: e["user"])
        .stateful_map(_running_total, name="totals").to(app.topic("totals", partitions=2)))
    r = app.run(data_dir=tmp_path / "d")
    assert r.restarts == 1 and crashed
    assert _canon(_read(tmp_path / "d", "totals")) == _canon(_running_reference(evs))
    # a rerun resumes after the last checkpoint: nothing is produced twice
    assert app.run(data_dir=tmp_path / "d").records_in == 0
    assert len(_read(tmp_path / "d", "totals")) == 5000


def test_dedupe_event_time(tmp_path: Path) -> None:
    evs = [{"id": i % 40, "ts": i * 10} for i in range(400)]  # id repeats every 400 ms
    app = sr.App("dd", batch_size=16)
    (app.stream(evs).dedupe(lambda e: e["id"], within=0.3, timestamp=lambda e: e["ts"], name="dd")
        .to("uniq"))
    app.run(data_dir=tmp_path / "d")
    got = _read(tmp_path / "d", "uniq")
    assert got == evs  # 400 ms apart is outside 300 ms: all kept
    app2 = sr.App("dd2", batch_size=16)
    (app2.stream(evs).dedupe(lambda e: e["id"], within=0.5, timestamp=lambda e: e["ts"])
        .to("uniq2"))
    app2.run(data_dir=tmp_path / "d")
    # within 500 ms: the repeat at +400 ms is dropped, the one at +800 ms kept
    assert _read(tmp_path / "d", "uniq2") == [e for e in evs if (e["ts"] // 400) % 2 == 0]


def test_dedupe_out_of_order_across_a_crash_and_a_second_run(tmp_path: Path) -> None:
    """Disorder four times ``within`` (never late: max_out_of_orderness covers it), a crash
    mid-run (exactly-once), a cache smaller than the keys, and a second bounded run over newer
    records that goes on from the first run's state: the kept elements are those of
    docs/dsl.md's definition, in plain Python."""
    rnd = random.Random(5)
    evs = [{"id": i, "k": rnd.randrange(20), "ts": i * 10 + rnd.randrange(200)}
           for i in range(3000)]

    def produce(lo: int, hi: int) -> None:
        with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
            if not log.has_topic("dd-in"):
                log.create_topic_sync("dd-in", 1)
            log.append_sync("dd-in", 0, [(None, orjson.dumps(e), [], e["ts"])
                                         for e in evs[lo:hi]])

    crashed: list[int] = []

    def flaky(e: dict[str, Any]) -> dict[str, Any]:
        if e["id"] == 1100 and not crashed:  # once: the restarted task gets past it
            crashed.append(1)
            raise RuntimeError("transient")
        return e

    def app() -> sr.App:
        a = sr.App("dd-ooo", guarantee="exactly_once", batch_size=40, checkpoint_records=400,
                   state_cache_size=8)
        (a.stream(a.topic("dd-in"), name="in").map(flaky)
            .dedupe(lambda e: e["k"], within=0.05, max_out_of_orderness=0.3, name="dd")
            .to("dd-uniq"))
        return a

    produce(0, 1500)
    r1 = app().run(data_dir=tmp_path / "d", until_caught_up=True)
    produce(1500, 3000)
    r2 = app().run(data_dir=tmp_path / "d", until_caught_up=True)
    assert r1.restarts == 1 and r2.records_in == 1500 and r1.late == r2.late == 0
    kept: dict[int, list[int]] = defaultdict(list)
    want = []
    for e in evs:
        if all(abs(e["ts"] - s) >= 50 for s in kept[e["k"]]):
            kept[e["k"]].append(e["ts"])
            want.append(e["id"])
    got = [e["id"] for e in _read(tmp_path / "d", "dd-uniq")]
    # (a comparison only with the latest kept time of the key keeps more)
    assert got == want and 100 < len(want) < 2900


def test_windowed_join_pairs_equal_keys_in_a_window(tmp_path: Path) -> None:
    rnd = random.Random(4)
    orders = [{"o": i, "user": rnd.randrange(5), "ts": rnd.randrange(2000)} for i in range(300)]
    clicks = [{"c": i, "user": rnd.randrange(5), "ts": rnd.randrange(2000)} for i in range(300)]
    orders.sort(key=lambda e: e["ts"])
    clicks.sort(key=lambda e: e["ts"])
    app = sr.App("jn", batch_size=32)
    left = app.stream(orders, name="orders").key_by(lambda e: e["user"])
    right = app.stream(clicks, name="clicks").key_by(lambda e: e["user"])
    (left.join(right, window=sr.tumbling(ms=250), timestamp=lambda e: e["ts"],
               max_out_of_orderness=2.0, name="j")
        .map(lambda p: [p[0]["o"], p[1]["c"]]).to("pairs"))
    r = app.run(data_dir=tmp_path / "d")
    assert r.late == 0
    want = [[o["o"], c["c"]] for o in orders for c in clicks
            if o["user"] == c["user"] and o["ts"] // 250 == c["ts"] // 250]
    assert sorted(_read(tmp_path / "d", "pairs")) == sorted(want)


@pytest.mark.parametrize("batch_size", [16, 1000])
def test_a_self_join_of_two_branches_judges_both_sides_by_one_watermark(
        tmp_path: Path, batch_size: int) -> None:
    """Both sides come from one source batch: the join's watermark moves only once both
    reached it (before, it moved with the first side, and in-order elements of the second
    were late: 1 pair of 88), and a merge of branches into a window is the same."""
    rnd = random.Random(1)
    evs, t = [], 0
    for i in range(300):
        t += rnd.choice([50, 100, 1500])
        evs.append({"id": i, "k": i % 3, "ts": t})
    left = [e for e in evs if e["id"] % 2 == 0]
    right = [e for e in evs if e["id"] % 2 == 1]
    want = sorted((a["id"], b["id"]) for a in left for b in right
                  if a["k"] == b["k"] and a["ts"] // 2000 == b["ts"] // 2000)
    app = sr.App("selfjoin", batch_size=batch_size)
    pairs: list[tuple[int, int]] = []
    evens, odds = app.stream(evs).key_by(lambda e: e["k"]).branch(lambda e: e["id"] % 2 == 0)
    (evens.join(odds, window=sr.tumbling(ms=2000), timestamp=lambda e: e["ts"])
        .sink(lambda p: pairs.append((p[0]["id"], p[1]["id"]))))
    (evens.map(lambda e: e, name="l").merge(odds.map(lambda e: e, name="r"))
        .window(sr.tumbling(ms=2000), timestamp=lambda e: e["ts"]).aggregate(n=sr.count())
        .to("counts"))
    r = app.run(data_dir=tmp_path / "d")
    assert r.late == 0 and sorted(pairs) == want
    counts = Counter()
    for e in evs:
        counts[(e["k"], e["ts"] // 2000 * 2000)] += 1
    assert {(w["key"], w["start"]): w["n"] for w in _read(tmp_path / "d", "counts")} == counts


def test_stream_table_join(tmp_path: Path) -> None:
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        log.create_topic_sync("users", 1)
        log.append_sync("users", 0, [(b"1", orjson.dumps({"name": "ann"}), [], 1),
                                     (b"2", orjson.dumps({"name": "bob"}), [], 2),
                                     (b"1", orjson.dumps({"name": "anna"}), [], 3),
                                     (b"3", orjson.dumps({"name": "cy"}), [], 4),
                                     (b"3", None, [], 5)])  # deleted
    app = sr.App("tj")
    users = app.table("users", name="users")
    clicks = [{"user": u, "page": i} for i, u in enumerate([1, 2, 3, 1, 4])]
    (app.stream(clicks).key_by(lambda e: str(e["user"]))
        .join_table(users, name="with_user")
        .map(lambda p: [p[0]["page"], p[1]["name"]]).to("named"))
    (app.stream(clicks, name="c2").key_by(lambda e: e["user"])  # int keys: stored as b"1"
        .join_table(users, how="left")
        .map(lambda p: [p[0]["page"], p[1] and p[1]["name"]]).to("named_left"))
    app.run(data_dir=tmp_path / "d", until_caught_up=True)
    assert _read(tmp_path / "d", "named") == [[0, "anna"], [1, "bob"], [3, "anna"]]
    assert _read(tmp_path / "d", "named_left") == [[0, "anna"], [1, "bob"], [2, None], [3, "anna"],
                                                   [4, None]]


def test_early_results_and_processing_time(tmp_path: Path) -> None:
    evs = [{"k": "a", "ts": t} for t in (0, 100, 200, 1500)]
    app = sr.App("early", batch_size=1)
    (app.stream(evs).key_by(lambda e: e["k"])
        .window(sr.tumbling(seconds=1), timestamp=lambda e: e["ts"], emit="early")
        .aggregate(n=sr.count()).to("early"))
    (app.stream(evs, name="pt").key_by(lambda e: e["k"])
        .window(sr.tumbling(seconds=60), time="processing")
        .aggregate(n=sr.count()).to("pt"))
    app.run(data_dir=tmp_path / "d")
    got = [(r["start"], r["n"], r["final"]) for r in _read(tmp_path / "d", "early")]
    assert got == [(0, 1, False), (0, 2, False), (0, 3, False), (1000, 1, False), (0, 3, True),
                   (1000, 1, True)]
    assert sum(r["n"] for r in _read(tmp_path / "d", "pt")) == 4


def test_dead_letter_in_an_aggregation_counts_each_element_once(tmp_path: Path) -> None:
    evs = [{"k": "a", "ts": i, "x": i % 5} for i in range(50)]
    app = sr.App("dla", on_error="dead_letter")
    (app.stream(evs).key_by(lambda e: e["k"])
        .window(sr.tumbling(seconds=1), timestamp=lambda e: e["ts"])
        .aggregate(n=sr.count(), inv=sr.sum(lambda e: 1 / e["x"])).to("agg"))
    r = app.run(data_dir=tmp_path / "d")
    assert r.dead_lettered == 10
    (res,) = _read(tmp_path / "d", "agg")
    assert res["n"] == 40  # the 40 good elements, none counted twice


@pytest.mark.parametrize("where", ["aggregation", "map", "timestamp"])
def test_dead_letter_leaves_batch_mates_on_time(tmp_path: Path, where: str) -> None:
    """A failing element is retried apart from its batch, but its batch-mates are judged late
    against the watermark from before their batch, as without the failure, and every window
    gets all its good elements."""
    # neighbours swapped: 10 ms of disorder inside each batch, never late when nothing fails
    evs = [{"id": i, "ts": ((i + 1) if i % 2 else max(i - 1, 0)) * 10} for i in range(100)]
    bad = {5, 50, 51}

    def check(e: dict) -> dict:
        if e["id"] in bad:
            raise ValueError("bad element")
        return e

    app = sr.App("dlt", on_error="dead_letter")
    s = app.stream(evs)
    if where == "map":
        s = s.map(check)
    ts = (lambda e: check(e)["ts"]) if where == "timestamp" else (lambda e: e["ts"])
    value = (lambda e: check(e)["id"]) if where == "aggregation" else (lambda e: e["id"])
    (s.key_by(lambda e: "all").window(sr.tumbling(ms=100), timestamp=ts)
        .aggregate(n=sr.count(), ids=sr.sum(value)).to("w"))
    r = app.run(data_dir=tmp_path / "d")
    assert (r.dead_lettered, r.late) == (len(bad), 0)
    got = {w["start"]: (w["n"], w["ids"]) for w in _read(tmp_path / "d", "w")}
    want: dict[int, tuple[int, int]] = {}
    for e in evs:
        if e["id"] not in bad:
            start = e["ts"] // 100 * 100
            n, ids = want.get(start, (0, 0))
            want[start] = (n + 1, ids + e["id"])
    assert got == want


def test_dsl_refuses_what_cannot_work() -> None:
    app = sr.App("bad")
    s = app.stream(range(3))
    with pytest.raises(errors.InvalidArgument, match="key_by"):
        s.stateful_map(lambda st, v: (st, v))
    k = s.key_by(str)
    with pytest.raises(errors.InvalidArgument, match="reduce"):
        k.window(sr.session(seconds=1) if False else sr.session(1), timestamp=int).aggregate(
            f=sr.fold(0, lambda a, v: a + v))
    with pytest.raises(errors.InvalidArgument, match="itself"):
        k.join(k, window=sr.tumbling(1))
    with pytest.raises(errors.InvalidArgument, match="tumbling"):
        k.join(app.stream(range(2)).key_by(str), window=sr.session(1))  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument, match="processing"):
        k.window(sr.tumbling(1), time="wall")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument, match="table"):
        k.join_table("users")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument, match="within"):
        k.dedupe(lambda e: e, within=0)


def test_a_window_after_a_table_join_is_not_held_back_by_the_table(tmp_path: Path) -> None:
    app = sr.App("tjw")
    users = app.table("users2")
    (app.stream([{"u": "a", "ts": t} for t in range(0, 5000, 100)]).key_by(lambda e: e["u"])
        .join_table(users, how="left")
        .window(sr.tumbling(seconds=1), timestamp=lambda p: p[0]["ts"])
        .aggregate(n=sr.count()).to("tjw-out"))
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        log.create_topic_sync("users2", 3)

    async def main() -> list[int]:  # the plan alone: which partitions feed the window
        async with sr.open(tmp_path / "d") as broker:
            await _ensure_topics(app, broker)
            plan = _Plan(app, broker, True, RunResult())
            (win,) = [op for op in plan.ops.values() if isinstance(op, ops.WindowAggregate)]
            return sorted(win.max_ts)

    assert trio.run(main) == [1 << 20]  # the stream's one partition, not the table's three


def test_windowed_join_survives_a_crash_exactly_once(tmp_path: Path) -> None:
    rnd = random.Random(5)
    left = sorted(({"l": i, "k": rnd.randrange(20), "ts": rnd.randrange(20_000)} for i in range(2000)),
                  key=lambda e: e["ts"])
    right = sorted(({"r": i, "k": rnd.randrange(20), "ts": rnd.randrange(20_000)} for i in range(2000)),
                   key=lambda e: e["ts"])
    crashed = []

    def flaky(e: dict[str, Any]) -> dict[str, Any]:
        if e.get("l") == 1500 and not crashed:
            crashed.append(1)
            raise RuntimeError("transient")
        return e

    app = sr.App("jc", guarantee="exactly_once", batch_size=50, checkpoint_records=300)
    ls = app.stream(lambda: iter(left), name="left").map(flaky).key_by(lambda e: e["k"])
    rs = app.stream(lambda: iter(right), name="right").key_by(lambda e: e["k"])
    (ls.join(rs, window=sr.tumbling(seconds=1), timestamp=lambda e: e["ts"], name="j")
        .map(lambda p: [p[0]["l"], p[1]["r"]]).to("jc-pairs"))
    r = app.run(data_dir=tmp_path / "d")
    assert r.restarts == 1 and r.late == 0
    want = [[a["l"], b["r"]] for a in left for b in right
            if a["k"] == b["k"] and a["ts"] // 1000 == b["ts"] // 1000]
    got = _read(tmp_path / "d", "jc-pairs")
    assert len(got) == len(want) and sorted(got) == sorted(want)


def test_a_second_bounded_run_over_newer_records_is_not_late(tmp_path: Path) -> None:
    def produce(lo: int, hi: int) -> None:
        with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
            if not log.has_topic("in"):
                log.create_topic_sync("in", 1)
            log.append_sync("in", 0, [(None, orjson.dumps({"n": i, "id": i % 7}), [], 1000 * i)
                                      for i in range(lo, hi)])

    def app() -> sr.App:
        a = sr.App("again")
        s = a.stream(a.topic("in"), name="in")
        (s.key_by(lambda e: 0).window(sr.tumbling(seconds=10))
            .aggregate(n=sr.count(), name="w").to("again-out"))
        s.dedupe(lambda e: e["id"], within=8.0, name="dd").to("again-uniq")
        return a

    produce(0, 50)
    assert app().run(data_dir=tmp_path / "d", until_caught_up=True).late == 0
    produce(50, 100)
    r = app().run(data_dir=tmp_path / "d", until_caught_up=True)
    assert r.records_in == 50 and r.late == 0
    res = _read(tmp_path / "d", "again-out")
    assert sorted((w["start"], w["n"]) for w in res) == [(s, 10) for s in range(0, 100_000, 10_000)]
    # dedupe kept its state across the runs: ids repeat every 7 s, within 8 s of the last kept
    last: dict[int, int] = {}
    want = []
    for i in range(100):
        if i % 7 not in last or i - last[i % 7] >= 8:
            last[i % 7] = i
            want.append(i)
    assert [e["n"] for e in _read(tmp_path / "d", "again-uniq")] == want


def test_composite_keys_from_lists_and_a_clear_error_for_dicts(tmp_path: Path) -> None:
    """key_by may return a list (a JSON array): it keys state as a tuple, also when the state
    goes through checkpoints and a 2-entry cache (windows evicted and read back from the
    store); a dict cannot be a key, and the error says what to return instead."""
    evs = _events(400)
    app = sr.App("ck", checkpoint_records=50, batch_size=32, state_cache_size=2)
    (app.stream(evs, name="src").key_by(lambda e: [e["user"] % 2, [e["v"] % 3]])
        .window(sr.tumbling(ms=1000), timestamp=lambda e: e["ts"])
        .aggregate(n=sr.count(), name="per-pair").to("pairs"))
    app.run(data_dir=tmp_path / "d")
    want = Counter((e["user"] % 2, e["v"] % 3, e["ts"] // 1000) for e in evs)
    got = {(r["key"][0], r["key"][1][0], r["start"] // 1000): r["n"] for r in _read(tmp_path / "d", "pairs")}
    assert got == dict(want)

    bad = sr.App("bad")
    (bad.stream(evs, name="src").key_by(lambda e: {"u": e["user"]})
        .window(sr.tumbling(ms=1000), timestamp=lambda e: e["ts"]).aggregate(n=sr.count())
        .to("x"))
    with pytest.raises(sr.PipelineError, match="key_by returned a dict, which cannot be a key"):
        bad.run(data_dir=tmp_path / "b")


def test_a_source_that_raises_is_named_with_its_line(tmp_path: Path) -> None:
    def rows() -> Any:
        yield {"ts": 0}
        raise ValueError("bad row 1")

    app = sr.App("src-err")
    app.stream(rows, name="rows").print()
    with pytest.raises(sr.PipelineError, match=r"source 'rows' \(rows at .*test_operators_e2e.py:\d+\) "
                                               r"raised ValueError\('bad row 1'\)"):
        app.run(data_dir=tmp_path / "d")


@pytest.mark.parametrize("once", [True, False], ids=["generator-object", "function"])
def test_a_generator_object_replays_after_a_restart(tmp_path: Path, once: bool) -> None:
    """A generator object runs once, yet a task restarted from its checkpoint gets every
    element again (they are kept until a checkpoint covers them), as a re-run function does."""
    def gen() -> Any:
        yield from range(5000)

    failed: list[int] = []

    def flaky(x: int) -> int:
        if x == 3000 and not failed:
            failed.append(x)
            raise RuntimeError("transient")
        return x

    app = sr.App("gen", guarantee="exactly_once", batch_size=100, checkpoint_records=1000)
    app.stream(gen() if once else gen).map(flaky).to("out")
    r = app.run(data_dir=tmp_path / "d")
    assert r.restarts == 1 and failed
    assert sorted(_read(tmp_path / "d", "out")) == list(range(5000))

    # a later run with a new generator object goes on after the checkpointed position
    app2 = sr.App("gen", guarantee="exactly_once", batch_size=100)
    app2.stream((i for i in range(5200)) if once else (lambda: range(5200))).map(flaky).to("out")
    app2.run(data_dir=tmp_path / "d")
    assert sorted(_read(tmp_path / "d", "out")) == list(range(5200))


def test_a_generator_object_that_raises_fails_on_every_restart(tmp_path: Path) -> None:
    def rows() -> Any:
        yield {"ts": 0}
        raise OSError("feed closed")

    app = sr.App("gen-err")
    app.stream(rows(), name="rows").print()
    with pytest.raises(sr.PipelineError, match=r"source 'rows' \(rows at .*test_operators_e2e.py:\d+\) "
                                               r"raised OSError\('feed closed'\)"):
        app.run(data_dir=tmp_path / "d")


def test_an_event_time_out_of_range_is_dead_lettered_or_named(tmp_path: Path) -> None:
    evs = [{"ts": 1000}, {"ts": 2**62 + 5}, {"ts": 1500}]
    app = sr.App("far", on_error="dead_letter")
    (app.stream(evs, name="src").key_by(lambda e: 0)
        .window(sr.tumbling(seconds=1), timestamp=lambda e: e["ts"]).aggregate(n=sr.count())
        .to("n"))
    r = app.run(data_dir=tmp_path / "d")
    assert r.dead_lettered == 1 and [w["n"] for w in _read(tmp_path / "d", "n")] == [2]
    app2 = sr.App("far2")
    (app2.stream(evs, name="src").key_by(lambda e: 0)
        .window(sr.tumbling(seconds=1), timestamp=lambda e: e["ts"]).aggregate(n=sr.count())
        .print())
    with pytest.raises(sr.PipelineError, match=r"step 'window0' \(window, timestamp=<lambda> at "
                                               r".*test_operators_e2e.py:\d+\) raised .*beyond"):
        app2.run(data_dir=tmp_path / "d2")


def test_a_failing_aggregation_is_named_with_its_function(tmp_path: Path) -> None:
    app = sr.App("agg-err")
    (app.stream([{"ts": i, "v": str(i)} for i in range(5)], name="src").key_by(lambda e: 0)
        .window(sr.tumbling(ms=10), timestamp=lambda e: e["ts"])
        .aggregate(n=sr.count(), total=sr.sum(lambda e: e["v"])).print())
    with pytest.raises(sr.PipelineError, match=r"aggregation total=sum\(<lambda> at "
                                               r".*test_operators_e2e.py:\d+\)\) raised TypeError"):
        app.run(data_dir=tmp_path / "d")
