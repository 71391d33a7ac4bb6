"""An app-running subprocess for the dataflow fault-injection tests (test_exactly_once).

Run as ``python _dfproc.py DIR GUARANTEE``: it opens the data directory (durability "sync"),
builds the app below and runs it with ``until_caught_up=True`` over the topic ``events``
(which the test fills beforehand). It reports on stdout, one line per event, each written
with a single ``os.write`` (atomic on a pipe), so a ``kill -9`` never tears a line:

``READY``                       the broker is open; the app is about to start
``S records_in checkpoints``    after every pipeline step (records read and checkpoints
                                committed by this process so far)
``DONE records_in checkpoints`` the input is exhausted, every window flushed, the final
                                checkpoint committed

The app: events keyed by user, 1-second tumbling windows on ``e["ts"]`` counting and summing
``value``, then a stateless map adding the mean, into the topic ``results``. :func:`reference`
computes the same results in plain Python. :class:`Child` is the test side.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

IN_TOPIC = "events"
OUT_TOPIC = "results"
PARTITIONS = 4
USERS = 37
WINDOW_MS = 1000


def event(i: int) -> dict[str, Any]:
    """Event ``i`` (partition ``i % PARTITIONS``, in timestamp order within a partition)."""
    return {"i": i, "ts": i // 2, "user": (i * 7) % USERS, "value": (i * 7919) % 1000 / 10}


def result_line(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["key"], d["start"], d["end"], d["count"], round(d["total"], 6), round(d["mean"], 6))


def reference(n: int) -> Counter[tuple[Any, ...]]:
    """The app's output for events 0..n-1, as a multiset of result lines."""
    accs: dict[tuple[int, int], list[float]] = {}
    for i in range(n):
        e = event(i)
        if e["value"] < 5:  # the app's filter
            continue
        start = e["ts"] - e["ts"] % WINDOW_MS
        a = accs.setdefault((e["user"], start), [0, 0.0])
        a[0] += 1
        a[1] += e["value"]
    return Counter(
        result_line({"key": u, "start": s, "end": s + WINDOW_MS, "count": c, "total": t,
                     "mean": t / c})
        for (u, s), (c, t) in accs.items())


def build_app(guarantee: str) -> Any:
    import streamrt as sr

    app = sr.App("eo", guarantee=guarantee,  # type: ignore[arg-type]
                 checkpoint_records=5_000, checkpoint_interval=0.25, batch_size=500)
    (app.stream(app.topic(IN_TOPIC, partitions=PARTITIONS), name="events")
        .filter(lambda e: e["value"] >= 5)
        .key_by(lambda e: e["user"])
        .window(sr.tumbling(ms=WINDOW_MS), timestamp=lambda e: e["ts"])
        .aggregate(count=sr.count(), total=sr.sum(lambda e: e["value"]), name="per-user")
        .map(lambda r: {**r, "mean": r["total"] / r["count"]})
        .to(app.topic(OUT_TOPIC, partitions=3)))
    return app


def emit(line: str) -> None:
    os.write(1, (line + "\n").encode())


def main(path: str, guarantee: str) -> None:
    import trio

    from streamrt.broker import open as open_broker
    from streamrt.dataflow import run_app

    app = build_app(guarantee)

    async def run() -> None:
        async with open_broker(path) as broker:  # durability "sync"
            emit("READY")
            r = await run_app(app, broker, until_caught_up=True,
                              on_progress=lambda r: emit(f"S {r.records_in} {r.checkpoints}"))
            emit(f"DONE {r.records_in} {r.checkpoints} {r.late}")

    trio.run(run)


# ----------------------------------------------------------------------------- test side

HERE = Path(__file__).resolve().parent


sys.path.insert(0, str(HERE.parent))  # tests/: the shared child harness
from _child import Child as _Child  # noqa: E402


class Child(_Child):
    """One run of this script, its stdout lines read with deadlines; a torn last line (a
    result printed in part when the child was killed) fails the test."""

    def __init__(self, path: Path, guarantee: str, stderr_path: Path) -> None:
        super().__init__(HERE / "_dfproc.py", [path, guarantee], stderr_path)

    def line(self, timeout: float = 60.0) -> str | None:
        item = super().line(timeout)
        assert item is not None or self.torn is None, f"torn last line {self.torn!r}"
        return item


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
