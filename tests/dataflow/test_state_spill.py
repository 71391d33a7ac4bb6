"""Operator state larger than its cache: pipelines with ``state_cache_size=4`` over many keys
give the same results as with a large cache and as plain-Python references, across a crash and
a restart from the last checkpoint."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

import streamrt as sr
from _results import canon as _canon
from _results import read_topic as _read
from streamrt import errors

TINY = 4
LARGE = 100_000
USERS = 300



def _events(n: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    return [{"id": i, "user": rnd.randrange(USERS), "v": rnd.randrange(100), "ts": i * 10}
            for i in range(n)]


def _crash_once(at: int) -> Any:
    crashed: list[int] = []

    def flaky(e: dict[str, Any]) -> dict[str, Any]:
        if e["id"] == at and not crashed:  # once: the restarted task gets past it
            crashed.append(1)
            raise RuntimeError("transient")
        return e

    return flaky


def _running_total(state: Any, e: dict[str, Any]) -> tuple[Any, Any]:
    total = (state or 0) + e["v"]
    # forget the key now and then: deletes of stored and never-stored keys
    return (None if total % 11 == 0 else total), {"id": e["id"], "total": total}


@pytest.mark.parametrize("cache", [TINY, LARGE])
def test_stateful_map(tmp_path: Path, cache: int) -> None:
    evs = _events(4000, 1)
    app = sr.App("sm", guarantee="exactly_once", batch_size=100, checkpoint_records=700,
                 state_cache_size=cache)
    (app.stream(lambda: iter(evs), name="src").map(_crash_once(2900)).key_by(lambda e: e["user"])
        .stateful_map(_running_total, name="totals").to(app.topic("totals", partitions=2)))
    r = app.run(data_dir=tmp_path / "d")
    assert r.restarts == 1
    if cache == TINY:  # more changes than the bound in every step: a checkpoint after each
        assert r.checkpoints >= 4000 // 100
    else:
        assert r.checkpoints <= 4000 // 700 + 2
    tot: dict[int, int] = defaultdict(int)
    want = []
    for e in evs:
        t = tot[e["user"]] + e["v"]
        tot[e["user"]] = 0 if t % 11 == 0 else t
        want.append({"id": e["id"], "total": t})
    assert _canon(_read(tmp_path / "d", "totals")) == _canon(want)


@pytest.mark.parametrize("cache", [TINY, LARGE])
def test_windows(tmp_path: Path, cache: int) -> None:
    evs = _events(5000, 2)
    app = sr.App("win", guarantee="exactly_once", batch_size=64, checkpoint_records=500,
                 state_cache_size=cache)
    keyed = (app.stream(lambda: iter(evs), name="src").map(_crash_once(3300))
             .key_by(lambda e: e["user"]))
    (keyed.window(sr.tumbling(ms=5000), timestamp=lambda e: e["ts"])
        .aggregate(n=sr.count(), total=sr.sum(lambda e: e["v"]), name="tumbling")
        .to("tumbling"))
    (keyed.window(sr.sliding(ms=6000, step_ms=2000), timestamp=lambda e: e["ts"])
        .aggregate(ids=sr.collect(lambda e: e["id"]), name="sliding")
        .to("sliding"))
    r = app.run(data_dir=tmp_path / "d")
    assert r.restarts == 1 and r.late == 0
    tum: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    sli: dict[tuple[int, int], list[int]] = defaultdict(list)
    for e in evs:
        s = e["ts"] - e["ts"] % 5000
        tum[(e["user"], s)][0] += 1
        tum[(e["user"], s)][1] += e["v"]
        last = e["ts"] - e["ts"] % 2000
        for s in (last - 4000, last - 2000, last):
            sli[(e["user"], s)].append(e["id"])
    assert _canon(_read(tmp_path / "d", "tumbling")) == _canon(
        [{"key": u, "start": s, "end": s + 5000, "n": n, "total": t}
         for (u, s), (n, t) in tum.items()])
    got = _read(tmp_path / "d", "sliding")
    for g in got:
        g["ids"] = sorted(g["ids"])
    assert _canon(got) == _canon([{"key": u, "start": s, "end": s + 6000, "ids": ids}
                                  for (u, s), ids in sli.items()])


@pytest.mark.parametrize("cache", [TINY, LARGE])
def test_dedupe(tmp_path: Path, cache: int) -> None:
    rnd = random.Random(3)
    evs = [{"id": i, "k": rnd.randrange(200), "ts": i * 10} for i in range(4000)]
    app = sr.App("dd", guarantee="exactly_once", batch_size=50, checkpoint_records=400,
                 state_cache_size=cache)
    (app.stream(lambda: iter(evs), name="src").map(_crash_once(2500))
        .dedupe(lambda e: e["k"], within=3.0, timestamp=lambda e: e["ts"], name="dd")
        .to("uniq"))
    r = app.run(data_dir=tmp_path / "d")
    assert r.restarts == 1 and r.late == 0
    last: dict[int, int] = {}
    want = []
    for e in evs:
        if e["k"] not in last or e["ts"] - last[e["k"]] >= 3000:
            last[e["k"]] = e["ts"]
            want.append(e["id"])
    assert sorted(e["id"] for e in _read(tmp_path / "d", "uniq")) == want


@pytest.mark.parametrize("cache", [TINY, LARGE])
def test_table_join(tmp_path: Path, cache: int) -> None:
    rnd = random.Random(4)
    rows = []
    table: dict[bytes, Any] = {}
    for i in range(600):  # later rows overwrite and delete earlier ones
        k = str(rnd.randrange(150)).encode()
        v = None if rnd.randrange(5) == 0 else {"n": i}
        rows.append((k, None if v is None else orjson.dumps(v), [], i))
        if v is None:
            table.pop(k, None)
        else:
            table[k] = v
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        log.create_topic_sync("rows", 2)
        log.append_sync("rows", 0, rows)
    lookups = [{"id": i, "k": rnd.randrange(160)} for i in range(1500)]

    def app() -> sr.App:
        a = sr.App("tj", guarantee="exactly_once", batch_size=40, checkpoint_records=200,
                   state_cache_size=cache)
        t = a.table("rows", name="rows")
        (a.stream(a.topic("lookups"), name="lookups").key_by(lambda e: str(e["k"]))
            .join_table(t, how="left", name="j")
            .map(lambda p: [p[0]["id"], p[1]]).to("joined"))
        return a

    # first run: the table only (a restart then reads it from the store, not the topic)
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        log.create_topic_sync("lookups", 1)
    app().run(data_dir=tmp_path / "d", until_caught_up=True)
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        log.append_sync("lookups", 0, [(None, orjson.dumps(e), [], 0) for e in lookups])
    app().run(data_dir=tmp_path / "d", until_caught_up=True)
    want = [[e["id"], table.get(str(e["k"]).encode())] for e in lookups]
    assert _read(tmp_path / "d", "joined") == want


def _jittered(n: int, seed: int, key: str, late_every: int) -> list[dict[str, Any]]:
    """Events 10 ms apart, up to 40 ms out of order (allowed: 50), and after the first 2000
    every ``late_every``-th one 20 s behind: always late (its windows closed long ago)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        ts = i * 10 - rnd.randrange(40)
        if i >= 2000 and i % late_every == 0:
            ts -= 20_000
        out.append({"id": i, key: rnd.randrange(USERS), "v": rnd.randrange(100), "ts": ts})
    return out


@pytest.mark.parametrize("cache", [TINY, LARGE])
def test_sessions(tmp_path: Path, cache: int) -> None:
    gap = 2000  # each of 300 users every 3 s on average: several sessions each
    evs = _jittered(5000, 5, "user", 97)
    app = sr.App("ses", guarantee="exactly_once", batch_size=64, checkpoint_records=500,
                 state_cache_size=cache)
    (app.stream(lambda: iter(evs), name="src").map(_crash_once(3700)).key_by(lambda e: e["user"])
        .window(sr.session(gap_ms=gap), timestamp=lambda e: e["ts"], max_out_of_orderness=0.05,
                allowed_lateness=0.01)
        .late_to("late")
        .aggregate(n=sr.count(), ids=sr.collect(lambda e: e["id"]), name="sessions")
        .to("sessions"))
    r = app.run(data_dir=tmp_path / "d")
    late = {e["id"] for e in evs if e["id"] >= 2000 and e["id"] % 97 == 0}
    if cache == TINY:  # more changes than the bound in every step: a checkpoint after each
        assert r.checkpoints >= 5000 // 64
    assert r.restarts == 1 and r.late >= len(late)  # (the count includes a replay's)
    assert sorted(e["id"] for e in _read(tmp_path / "d", "late")) == sorted(late)
    # per user, sorted by time, cut where the next element is `gap` or more later
    want = []
    per: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in evs:
        if e["id"] not in late:
            per[e["user"]].append(e)
    for u, mine in per.items():
        mine.sort(key=lambda e: e["ts"])
        cur: list[dict[str, Any]] = []
        for e in mine + [None]:  # type: ignore[list-item]
            if cur and (e is None or e["ts"] - cur[-1]["ts"] >= gap):
                want.append({"key": u, "start": cur[0]["ts"], "end": cur[-1]["ts"] + gap,
                             "n": len(cur), "ids": sorted(x["id"] for x in cur)})
                cur = []
            if e is not None:
                cur.append(e)
    got = _read(tmp_path / "d", "sessions")
    for g in got:
        g["ids"] = sorted(g["ids"])
    assert _canon(got) == _canon(want)


@pytest.mark.parametrize("cache", [TINY, LARGE])
def test_window_join(tmp_path: Path, cache: int) -> None:
    left, right = _jittered(3000, 6, "k", 89), _jittered(3000, 7, "k", 1 << 30)
    app = sr.App("wj", guarantee="exactly_once", batch_size=50, checkpoint_records=400,
                 state_cache_size=cache)
    ls = app.stream(lambda: iter(left), name="left").map(_crash_once(2600)).key_by(lambda e: e["k"])
    rs = app.stream(lambda: iter(right), name="right").key_by(lambda e: e["k"])
    (ls.join(rs, window=sr.tumbling(ms=1000), timestamp=lambda e: e["ts"],
             max_out_of_orderness=0.05, late_to="late", name="j")
        .map(lambda p: [p[0]["id"], p[1]["id"]]).to("pairs"))
    r = app.run(data_dir=tmp_path / "d")
    late = {e["id"] for e in left if e["id"] >= 2000 and e["id"] % 89 == 0}
    if cache == TINY:
        assert r.checkpoints >= 3000 // 50
    assert r.restarts == 1 and r.late >= len(late)  # (the count includes a replay's)
    assert sorted(e["id"] for e in _read(tmp_path / "d", "late")) == sorted(late)
    windows: dict[tuple[int, int], list[list[int]]] = defaultdict(lambda: [[], []])
    for side, evs in enumerate((left, right)):
        for e in evs:
            if side == 1 or e["id"] not in late:
                windows[(e["k"], e["ts"] // 1000)][side].append(e["id"])
    want = [[a, b] for ls_, rs_ in windows.values() for a in ls_ for b in rs_]
    got = _read(tmp_path / "d", "pairs")
    assert len(want) > 500 and len(got) == len(want) and sorted(got) == sorted(want)


def test_checkpoints_of_the_older_session_and_join_layouts_ask_for_reset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def app() -> sr.App:
        a = sr.App("old", guarantee="exactly_once")
        k = a.stream(lambda: iter([{"k": 1, "ts": 5}]), name="src").key_by(lambda e: e["k"])
        (k.window(sr.session(gap_ms=10), timestamp=lambda e: e["ts"])
            .aggregate(n=sr.count(), name="s").to("out"))
        return a

    with monkeypatch.context() as m:  # what the previous version wrote
        m.setattr(sr.dataflow._checks, "STATE_FORMATS", {})
        app().run(data_dir=tmp_path / "d")
    with pytest.raises(sr.dataflow.IncompatibleState, match="--reset"):
        app().run(data_dir=tmp_path / "d")
    app().run(data_dir=tmp_path / "d", reset=True)
    assert sr.dataflow._checks.STATE_FORMATS["join"] > sr.dataflow._checks.STATE_FORMAT


def test_the_cache_size_is_positive() -> None:
    with pytest.raises(errors.InvalidArgument, match="state_cache_size"):
        sr.App("bad", state_cache_size=0)
