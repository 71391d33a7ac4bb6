"""Pipelines end to end on a real store: results equal a plain-Python reference."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

import streamrt as sr
from streamrt import errors


def _events(n: int, users: int = 50) -> list[dict[str, Any]]:
    return [{"ts": i, "user": i % users, "value": (i * 7919) % 1000 / 10} for i in range(n)]


def _reference(events: list[dict[str, Any]], size: int) -> dict[tuple[Any, int], tuple[int, float]]:
    out: dict[tuple[Any, int], list[float]] = defaultdict(lambda: [0, 0.0])
    for e in events:
        if e["value"] >= 10:
            acc = out[(e["user"], e["ts"] - e["ts"] % size)]
            acc[0] += 1
            acc[1] += e["value"] * 2
    return {k: (int(v[0]), v[1]) for k, v in out.items()}


def _results(path: Path, topic: str) -> dict[tuple[Any, int], tuple[int, float]]:
    got = {}
    with sr.open_log(path, maintenance_interval=None) as log:
        for p in range(log.topic(topic).partitions):
            for r in log.read(topic, p, 0, max_records=10**7):
                d = orjson.loads(r.value)
                key = (d["key"], d["start"])
                assert key not in got, f"duplicate result {key}"
                got[key] = (d["count"], d["total"])
    return got


def _app(guarantee: str, events: list[dict[str, Any]]) -> sr.App:
    app = sr.App("clicks", guarantee=guarantee)  # type: ignore[arg-type]
    (app.stream(lambda: iter(events), name="src")
        .filter(lambda e: e["value"] >= 10)
        .map(lambda e: {**e, "v2": e["value"] * 2})
        .key_by(lambda e: e["user"])
        .window(sr.tumbling(seconds=1), timestamp=lambda e: e["ts"])
        .aggregate(count=sr.count(), total=sr.sum(lambda e: e["v2"]), name="agg")
        .to(app.topic("out", partitions=3)))
    return app


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_windowed_counts_match_reference(tmp_path: Path, guarantee: str) -> None:
    events = _events(20_000)
    r = _app(guarantee, events).run(data_dir=tmp_path / "d")
    assert r.records_in == 20_000 and r.late == 0
    assert _results(tmp_path / "d", "out") == _reference(events, 1000)


def test_rerun_resumes_from_checkpoint_and_reset_starts_afresh(tmp_path: Path) -> None:
    events = _events(5_000)
    _app("exactly_once", events).run(data_dir=tmp_path / "d")
    r = _app("exactly_once", events).run(data_dir=tmp_path / "d")
    assert r.records_in == 0
    assert _results(tmp_path / "d", "out") == _reference(events, 1000)


def test_changed_graph_is_refused_without_reset(tmp_path: Path) -> None:
    events = _events(1_000)
    _app("exactly_once", events).run(data_dir=tmp_path / "d")
    app = sr.App("clicks", guarantee="exactly_once")
    (app.stream(lambda: iter(events), name="src")
        .key_by(lambda e: e["user"])
        .window(sr.sliding(seconds=2, step_seconds=1), timestamp=lambda e: e["ts"])
        .aggregate(n=sr.count(), name="agg")
        .to(app.topic("out2")))
    with pytest.raises(sr.dataflow.IncompatibleState, match="--reset"):
        app.run(data_dir=tmp_path / "d")
    assert app.run(data_dir=tmp_path / "d", reset=True).records_in == 1_000


def _agg_app(agg: Any) -> sr.App:
    app = sr.App("aggkind", guarantee="exactly_once")
    (app.stream(lambda: iter([{"ts": 0, "v": 10}, {"ts": 1, "v": 20}]), name="src")
        .key_by(lambda e: 0).window(sr.tumbling(seconds=60), timestamp=lambda e: e["ts"])
        .aggregate(total=agg, name="agg").to(app.topic("totals")))
    return app


def test_an_aggregation_of_another_kind_under_one_name_is_refused(tmp_path: Path) -> None:
    """The window's accumulators were a sum's: a count (or mean) reading them would be wrong."""
    d = tmp_path / "d"
    app = _agg_app(sr.sum(lambda e: e["v"]))
    app.run(data_dir=d, until_caught_up=True)
    for other in (sr.count(), sr.mean(lambda e: e["v"])):
        with pytest.raises(sr.dataflow.IncompatibleState, match="aggregation's kind"):
            _agg_app(other).run(data_dir=d)
    _agg_app(sr.sum(lambda e: e["v"] * 2)).run(data_dir=d)  # a new function is the same kind


def test_a_fingerprint_from_before_aggregation_kinds_still_matches(tmp_path: Path) -> None:
    from streamrt.dataflow._checks import fingerprint, same_graph

    app = _agg_app(sr.sum(lambda e: e["v"]))
    legacy = [p[:6] if p[0] == "window" else p for p in orjson.loads(fingerprint(app))]
    assert same_graph(orjson.dumps(legacy), app)
    changed = [p[:4] + [["other"]] + p[5:6] if p[0] == "window" else p for p in legacy]
    assert not same_graph(orjson.dumps(changed), app)


def test_dead_letter_policy_routes_bad_elements(tmp_path: Path) -> None:
    app = sr.App("dl", on_error="dead_letter")
    got: list[Any] = []
    app.stream(range(10)).map(lambda x: 10 // (x - 3)).sink(got.append)
    r = app.run(data_dir=tmp_path / "d")
    assert r.dead_lettered == 1 and len(got) == 9
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        (bad,) = list(log.read("dl.dlq", 0, 0))
        assert orjson.loads(bad.value) == 3
        h = dict(bad.headers)
        assert b"ZeroDivisionError" in h["error"] and b"map0" in h["step"]


def test_fail_policy_stops_with_the_users_line(tmp_path: Path) -> None:
    app = sr.App("boom")
    app.stream(range(10)).map(lambda x: 1 // 0).print()
    with pytest.raises(sr.PipelineError, match=r"map0.*test_pipeline.py:\d+.*ZeroDivisionError"):
        app.run(data_dir=tmp_path / "d")


def test_no_sink_and_bad_arguments() -> None:
    app = sr.App("x")
    with pytest.raises(errors.InvalidArgument, match="function"):
        app.stream(range(3)).map(5)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument, match="guarantee"):
        sr.App("y", guarantee="twice")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument, match="aggregation"):
        app.stream(range(3)).key_by(str).window(sr.tumbling(seconds=1), timestamp=int).aggregate()
    with pytest.raises(errors.InvalidArgument, match="sink"):
        sr.App("z").run(data_dir="/tmp/never-created-streamrt-test")


@pytest.mark.parametrize("setting", [
    {"batch_size": 1.5}, {"checkpoint_records": True}, {"state_cache_size": True},
    {"checkpoint_interval": "1"}, {"checkpoint_interval": float("inf")},
    {"idle_timeout": -1}, {"idle_timeout": float("nan")}])
def test_app_settings_of_the_wrong_kind_are_refused_at_once(setting: dict[str, Any]) -> None:
    (what,) = setting
    with pytest.raises(errors.InvalidArgument, match=f"{what} is a "):
        sr.App("settings", **setting)


def test_window_sizes_and_failing_window_functions_are_named(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match=r"at least 1 ms\), got seconds=0"):
        sr.tumbling(0)
    with pytest.raises(errors.InvalidArgument, match=r"got ms=True"):
        sr.tumbling(ms=True)  # type: ignore[arg-type]
    evs = [{"ts": 0, "v": 1}, {"v": 2}]  # the second has no ts
    app = sr.App("tsfail")
    (app.stream(evs).key_by(lambda e: 0).window(sr.tumbling(seconds=1), timestamp=lambda e: e["ts"])
        .aggregate(n=sr.count()).print())
    with pytest.raises(sr.PipelineError, match=r"\(window, timestamp=<lambda> at .*test_pipeline.py:"
                                               r"\d+\) raised KeyError\('ts'\)"):
        app.run(data_dir=tmp_path / "a")
    evs = [{"ts": 0, "v": 1}, {"ts": 1, "v": None}]  # min(None) fails against the window's 1
    app = sr.App("minfail")
    (app.stream(evs).key_by(lambda e: 0).window(sr.tumbling(seconds=1), timestamp=lambda e: e["ts"])
        .aggregate(n=sr.count(), lo=sr.min(lambda e: e["v"])).print())
    with pytest.raises(sr.PipelineError, match=r"in one of its aggregations: n=count, lo=min\(<lambda> "
                                               r"at .*test_pipeline.py:\d+\)\) raised TypeError"):
        app.run(data_dir=tmp_path / "b")


def test_a_step_that_leads_to_no_sink_is_refused(tmp_path: Path) -> None:
    app = sr.App("dangling")
    events = app.stream([{"user": i % 2, "ts": i} for i in range(10)], name="src")
    events.to(app.topic("raw"))
    (events.key_by(lambda e: e["user"]).window(sr.tumbling(seconds=1), timestamp=lambda e: e["ts"])
        .aggregate(n=sr.count(), name="counts"))  # no .to(): it would never run
    with pytest.raises(errors.InvalidArgument, match="step 'counts' .* leads to no sink"):
        app.run(data_dir=tmp_path / "d")
    app2 = sr.App("dangling2")
    app2.stream(range(3)).map(lambda x: x, name="m").print()
    app2.stream(range(3)).map(str, name="lost")
    with pytest.raises(errors.InvalidArgument, match=r"step 'lost' \(map, <class 'str'>\) leads"):
        app2.run(data_dir=tmp_path / "d")


def test_one_side_of_a_branch_may_stay_unused(tmp_path: Path) -> None:
    app = sr.App("branch")
    got: list[int] = []
    evens, _odds = app.stream(range(6)).branch(lambda x: x % 2 == 0)
    evens.sink(got.append)
    app.run(data_dir=tmp_path / "d")
    assert got == [0, 2, 4]


def _mixed_topic(path: Path) -> None:
    with sr.open_log(path, maintenance_interval=None) as log:
        log.create_topic_sync("in", 1)
        log.append_sync("in", 0, [(None, v, [], 1000 * i)
                                  for i, v in enumerate([b'{"v": 1}', b"hello", b'{"v": 2}'])])


def test_a_record_the_source_cannot_decode_is_dead_lettered(tmp_path: Path) -> None:
    _mixed_topic(tmp_path / "d")
    got: list[int] = []
    app = sr.App("mixed", on_error="dead_letter")
    app.stream(app.topic("in")).map(lambda e: e["v"]).sink(got.append)
    r = app.run(data_dir=tmp_path / "d", until_caught_up=True)
    assert got == [1, 2] and (r.records_in, r.dead_lettered) == (2, 1)
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        (dead,) = log.read("mixed.dlq", 0, 0)
    h = dict(dead.headers)
    assert dead.value == b"hello" and dead.timestamp == 1000
    assert (h["topic"], h["partition"], h["offset"]) == (b"in", b"0", b"1")


def test_a_record_the_source_cannot_decode_fails_the_run_naming_it(tmp_path: Path) -> None:
    _mixed_topic(tmp_path / "d")
    app = sr.App("mixed")
    app.stream(app.topic("in")).print()
    with pytest.raises(sr.PipelineError, match=r"source 'source0' \(json values\) cannot decode "
                                               r"record in\[0\]@1: .*value_serde='bytes'"):
        app.run(data_dir=tmp_path / "d", until_caught_up=True)


def _fill(path: Path, partitions: int, records: int, recreate: bool = False) -> None:
    with sr.open_log(path, maintenance_interval=None) as log:
        if recreate:
            log.delete_topic_sync("in")
        log.create_topic_sync("in", partitions)
        for p in range(partitions):
            log.append_sync("in", p, [(None, b"{}", [], 0)] * records)


@pytest.mark.parametrize(("partitions", "records", "found"), [
    (1, 5, r"topic 'in' has 1 partition \("), (2, 3, r"in\[0\] ends at offset 3")])
def test_a_source_topic_created_again_smaller_is_refused(
        tmp_path: Path, partitions: int, records: int, found: str) -> None:
    d = tmp_path / "d"
    _fill(d, 2, 5)

    def app() -> sr.App:
        a = sr.App("again")
        a.stream(a.topic("in")).print()
        return a

    assert app().run(data_dir=d, until_caught_up=True).records_in == 10
    _fill(d, partitions, records, recreate=True)
    with pytest.raises(sr.dataflow.IncompatibleState,
                       match=r"checkpoint at in\[\d\] offset 5, but " + found + ".*--reset"):
        app().run(data_dir=d, until_caught_up=True)
    assert app().run(data_dir=d, until_caught_up=True, reset=True).records_in == partitions * records


def test_late_elements_go_to_the_late_topic(tmp_path: Path) -> None:
    app = sr.App("late", batch_size=1)  # lateness is judged per batch: one element each
    evs = [{"ts": t, "k": "a"} for t in (0, 500, 1500, 200, 2500, 100)]  # 200 and 100 are late
    (app.stream(evs)
        .key_by(lambda e: e["k"])
        .window(sr.tumbling(seconds=1), timestamp=lambda e: e["ts"])
        .late_to("late-clicks")
        .aggregate(n=sr.count())
        .to("counts"))
    r = app.run(data_dir=tmp_path / "d")
    assert r.late == 2
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        assert sorted(orjson.loads(x.value)["ts"] for x in log.read("late-clicks", 0, 0)) == [100, 200]
        counts = {orjson.loads(x.value)["start"]: orjson.loads(x.value)["n"] for x in log.read("counts", 0, 0)}
    assert counts == {0: 2, 1000: 1, 2000: 1}


def test_topic_source_until_caught_up(tmp_path: Path) -> None:
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        log.create_topic_sync("in", 2)
        for p in range(2):
            log.append_sync("in", p, [(None, orjson.dumps({"n": i, "p": p}), [], 1000 * i) for i in range(100)])
    app = sr.App("sum")
    (app.stream(app.topic("in", partitions=2))
        .key_by(lambda e: e["p"])
        .window(sr.tumbling(seconds=10))  # record timestamps as event time
        .aggregate(total=sr.sum(lambda e: e["n"]), n=sr.count())
        .to("sums"))
    r = app.run(data_dir=tmp_path / "d", until_caught_up=True)
    assert r.records_in == 200
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        res = [orjson.loads(x.value) for x in log.read("sums", 0, 0)]
    assert sum(d["n"] for d in res) == 200
    assert sum(d["total"] for d in res) == 2 * sum(range(100))
