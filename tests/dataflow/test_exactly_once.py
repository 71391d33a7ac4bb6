"""Guarantees under faults: kill -9 of a real app process, and a user function that fails once.

The kill test fills a 200,000-event topic, then runs the app of ``_dfproc.py`` in a
subprocess, SIGKILLs it at a random moment (after a random number of its own checkpoints and
steps, read from its stdout: never a sleep), restarts it, and so on until a run finishes. In
exactly-once mode the output topic must equal the plain-Python reference exactly: no result
lost, none duplicated. In at-least-once mode no result may be lost, duplicates are allowed
(but every output is a correct result). Set STREAMRT_FAULT_SEED to replay a run.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import streamrt as sr


def _load_helper():  # by path: independent of pytest's import mode
    path = Path(__file__).parent / "_dfproc.py"
    spec = importlib.util.spec_from_file_location("_dfproc", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_dfproc", mod)
    spec.loader.exec_module(mod)
    return mod


H = _load_helper()
EVENTS = 200_000


def _fill(path: Path, n: int) -> None:
    with sr.open_log(path, maintenance_interval=None) as log:
        log.create_topic_sync(H.IN_TOPIC, H.PARTITIONS)
        for p in range(H.PARTITIONS):
            for lo in range(p, n, 20_000):
                log.append_sync(H.IN_TOPIC, p, [
                    (None, orjson.dumps(H.event(i)), [], H.event(i)["ts"])
                    for i in range(lo, min(lo + 20_000, n), H.PARTITIONS)])


def _output(path: Path) -> Counter[tuple[Any, ...]]:
    got: Counter[tuple[Any, ...]] = Counter()
    with sr.open_log(path, maintenance_interval=None) as log:
        for p in range(log.topic(H.OUT_TOPIC).partitions):
            off = 0
            while recs := log.read(H.OUT_TOPIC, p, off, max_records=100_000):
                got.update(H.result_line(orjson.loads(r.value)) for r in recs)
                off = recs.next_offset
    return got


@pytest.fixture
def children() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for c in started:
        c.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_kill9_and_restart(tmp_path: Path, children: list[Any], guarantee: str) -> None:
    seed = int(os.environ.get("STREAMRT_FAULT_SEED", random.randrange(1 << 32)))
    print(f"STREAMRT_FAULT_SEED={seed}")
    rng = random.Random(seed)
    data = tmp_path / "d"
    _fill(data, EVENTS)
    kills = 0
    for rnd in range(60):
        child = H.Child(data, guarantee, tmp_path / f"run-{rnd}.stderr")
        children.append(child)
        assert child.line() == "READY"
        # Kill after this run's k-th checkpoint and s further steps, or (now and then)
        # before its first checkpoint; after 5 kills, mostly let it finish.
        k = 0 if rng.random() < 0.15 else rng.randint(1, 4)
        s = rng.randint(0, 12)
        if kills >= 5 and rng.random() < 0.5:
            k = 10**9
        steps_after = -1
        while (line := child.line()) is not None:
            if line.startswith("DONE"):
                break
            _, _n, ckpts = line.split()
            if int(ckpts) >= k:
                steps_after += 1
                if steps_after >= s:
                    child.kill9()
                    kills += 1
                    break
        else:
            raise AssertionError(f"run {rnd} ended without DONE; stderr:\n{child.stderr()}")
        print(f"run {rnd}: {line}")
        if line.startswith("DONE"):
            child.wait_ok()
            assert line.split()[3] == "0", "no event may be late"
            break
    else:
        raise AssertionError("the app never finished")
    assert kills >= 5, f"only {kills} kills (seed {seed})"
    got = _output(data)
    want = H.reference(EVENTS)
    if guarantee == "exactly_once":
        lost = want - got
        dup = got - want
        assert not lost and not dup, (
            f"seed {seed}: {sum(lost.values())} results lost, e.g. {list(lost)[:3]}; "
            f"{sum(dup.values())} extra, e.g. {list(dup)[:3]}")
    else:
        missing = set(want) - set(got)
        wrong = set(got) - set(want)
        assert not missing, f"seed {seed}: {len(missing)} results lost, e.g. {list(missing)[:3]}"
        assert not wrong, f"seed {seed}: {len(wrong)} wrong results, e.g. {list(wrong)[:3]}"


def test_user_function_failing_once_restarts_from_checkpoint(tmp_path: Path) -> None:
    """on_error="fail": the map raises once, well after the first checkpoints; the supervisor
    restarts the task from the last checkpoint, the run completes, results are exact."""
    flag = tmp_path / "failed-once"
    n, bad = 30_000, 17_123

    def flaky(e: dict[str, Any]) -> dict[str, Any]:
        if e["i"] == bad and not flag.exists():
            flag.touch()
            raise RuntimeError("transient failure")
        return e

    app = sr.App("flaky", guarantee="exactly_once", on_error="fail",
                 checkpoint_records=4_000, batch_size=500)
    (app.stream(lambda: (H.event(i) for i in range(n)), name="events")
        .map(flaky)
        .filter(lambda e: e["value"] >= 5)
        .key_by(lambda e: e["user"])
        .window(sr.tumbling(ms=H.WINDOW_MS), timestamp=lambda e: e["ts"])
        .aggregate(count=sr.count(), total=sr.sum(lambda e: e["value"]), name="per-user")
        .map(lambda r: {**r, "mean": r["total"] / r["count"]})
        .to(app.topic(H.OUT_TOPIC, partitions=3)))
    r = app.run(data_dir=tmp_path / "d")
    assert flag.exists() and r.restarts == 1
    assert r.records_in > n  # the elements since the last checkpoint were read again
    assert _output(tmp_path / "d") == H.reference(n)
