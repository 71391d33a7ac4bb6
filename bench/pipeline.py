"""Pipeline throughput: the dataflow runtime against a hand-written plain-Python loop.

Run from the repository root::

    python bench/pipeline.py                         # 1,000,000 events, 3 repeats, both workloads
    python bench/pipeline.py --events 200000 --repeat 5 --workload clicks
    python bench/pipeline.py --memory --events 1000000,5000000   # peak RSS, fresh processes

The pipeline is the one of the dataflow issue (and of ``examples/clickstream.py``)::

    app.stream(events)                                  # a bounded generator
        .filter(lambda e: e["value"] >= 10)
        .map(lambda e: {**e, "v2": e["value"] * 2})
        .key_by(lambda e: e["user"])
        .window(sr.tumbling(seconds=W), timestamp=lambda e: e["ts"])
        .aggregate(count=sr.count(), total=sr.sum(lambda e: e["v2"]))
        .to(app.topic("per-user", partitions=4))

over events ``{"ts": i, "user": i % U, "value": (i * 7919) % 1000 / 10}`` (``ts`` in ms).
Two workloads: ``clicks`` (U = 1000, W = 1 s: each window result folds about 0.9 events, so
the run writes about one result per event) and ``agg`` (U = 50, W = 10 s: each result folds
about 180 events; the headline figure for analytics). Each runs in both guarantees with
durable checkpoints (the store's default durability, fsync on every commit) into a fresh
temp data directory.

The baseline is the same computation as a plain loop over the same generator: filter, build
the enriched dict, key, assign the window, count and sum, and when event time passes a
window's end build its result dicts (and drop them: the loop writes and keeps nothing).
Both sides pull events from the same kind of generator, so building the events is counted
on both sides. The runs are interleaved (loop, at-least-once, exactly-once, order rotating
per repeat) because the machine is shared and its speed drifts; a configuration's ratio is
taken to the loop of its own repeat, and the table shows medians over ``--repeat``.

``--memory`` runs each configuration once in a fresh subprocess per ``--events`` value and
reports its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

WORKLOADS = {"clicks": (1000, 1000), "agg": (50, 10_000)}  # name: (users, window ms)
TARGETS = {"at_least_once": 0.33, "exactly_once": 0.25}


def events(n: int, users: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"ts": i, "user": i % users, "value": (i * 7919) % 1000 / 10}


def plain_loop(n: int, users: int, size: int) -> int:
    """The pipeline's computation by hand; returns the number of window results (each built
    as a dict and dropped: the loop writes nothing and keeps only the last)."""
    windows: dict[int, dict[Any, list[Any]]] = {}  # window start -> key -> [count, total]
    emit = deque(maxlen=1).append  # keeps only the last result
    results = 0
    cur = -1
    for e in events(n, users):
        if e["value"] >= 10:
            e = {**e, "v2": e["value"] * 2}
            key = e["user"]
            t = e["ts"]
            start = t - t % size
            if start != cur:  # event time moved on: close the windows that ended
                cur = start
                for s in [s for s in windows if s + size <= t]:
                    for k, (c, tot) in windows.pop(s).items():
                        emit({"key": k, "start": s, "end": s + size, "count": c, "total": tot})
                        results += 1
            w = windows.get(start)
            if w is None:
                w = windows[start] = {}
            acc = w.get(key)
            if acc is None:
                w[key] = [1, e["v2"]]
            else:
                acc[0] += 1
                acc[1] += e["v2"]
    for s in sorted(windows):  # end of input: everything closes
        for k, (c, tot) in windows.pop(s).items():
            emit({"key": k, "start": s, "end": s + size, "count": c, "total": tot})
            results += 1
    return results


def run_pipeline(n: int, users: int, size: int, guarantee: str, data_dir: str) -> Any:
    import streamrt as sr

    app = sr.App("bench", guarantee=guarantee)  # type: ignore[arg-type]
    (app.stream(lambda: events(n, users), name="events")
        .filter(lambda e: e["value"] >= 10)
        .map(lambda e: {**e, "v2": e["value"] * 2})
        .key_by(lambda e: e["user"])
        .window(sr.tumbling(ms=size), timestamp=lambda e: e["ts"])
        .aggregate(count=sr.count(), total=sr.sum(lambda e: e["v2"]), name="per-user")
        .to(app.topic("per-user", partitions=4)))
    return app.run(data_dir=data_dir)  # durability "sync": fsync at every commit


def timed(config: str, n: int, users: int, size: int, tmp: str | None) -> float:
    """Seconds for one run of ``config`` (loop, at_least_once, exactly_once)."""
    if config == "loop":
        t0 = time.perf_counter()
        plain_loop(n, users, size)
        return time.perf_counter() - t0
    d = tempfile.mkdtemp(prefix="streamrt-bench-", dir=tmp)
    try:
        t0 = time.perf_counter()
        r = run_pipeline(n, users, size, config, d)
        dt = time.perf_counter() - t0
        assert r.records_in == n and r.late == 0, r
        return dt
    finally:
        shutil.rmtree(d, ignore_errors=True)


def throughput(args: argparse.Namespace) -> None:
    n = args.events[0]
    configs = ["loop", "at_least_once", "exactly_once"]
    print(f"{n:,} events, {args.repeat} repeats, durable checkpoints; Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for wl in args.workload:
        users, size = WORKLOADS[wl]
        rates: dict[str, list[float]] = {c: [] for c in configs}
        ratios: dict[str, list[float]] = {c: [] for c in configs}
        for rep in range(args.repeat):
            order = configs[rep % 3:] + configs[:rep % 3]
            secs = {c: timed(c, n, users, size, args.tmpdir) for c in order}
            for c in configs:
                rates[c].append(n / secs[c])
                ratios[c].append(secs["loop"] / secs[c])
            print(f"  {wl} repeat {rep + 1}: " + ", ".join(
                f"{c} {n / secs[c]:,.0f}/s" for c in configs), flush=True)
        print(f"\nworkload {wl!r}: users={users}, window={size // 1000}s")
        print(f"| {'config':<14} | {'events/s':>10} | {'vs loop':>7} | target | met |")
        print(f"|{'-' * 16}|{'-' * 11}:|{'-' * 8}:|--------|-----|")
        for c in configs:
            rate = statistics.median(rates[c])
            ratio = statistics.median(ratios[c])
            target = TARGETS.get(c)
            met = "" if target is None else ("yes" if ratio >= target else "no")
            tgt = "" if target is None else f">= {target:.2f}"
            print(f"| {c:<14} | {rate:>10,.0f} | {ratio:>6.2f}x | {tgt:<6} | {met:<3} |")
        print()


def child(config: str, wl: str, n: int, tmp: str | None) -> None:
    users, size = WORKLOADS[wl]
    dt = timed(config, n, users, size, tmp)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": dt, "maxrss_mib": rss_kib / 1024}))


def memory(args: argparse.Namespace) -> None:
    print("peak RSS (ru_maxrss), each configuration in a fresh process")
    print("| workload | config | events | events/s | peak RSS MiB |")
    print("|---|---|---:|---:|---:|")
    for wl in args.workload:
        for config in ("loop", "at_least_once", "exactly_once"):
            for n in args.events:
                cmd = [sys.executable, __file__, "--child", config, "--workload", wl,
                       "--events", str(n)]
                if args.tmpdir:
                    cmd += ["--tmpdir", args.tmpdir]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                d = json.loads(out.strip().splitlines()[-1])
                print(f"| {wl} | {config} | {n:,} | {n / d['seconds']:,.0f} | "
                      f"{d['maxrss_mib']:,.0f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", default="1000000",
                   help="events per run; for --memory a comma-separated list (default 1000000)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workload", choices=sorted(WORKLOADS), action="append",
                   help="clicks or agg (default: both)")
    p.add_argument("--memory", action="store_true", help="peak RSS per configuration")
    p.add_argument("--tmpdir", default=None, help="where the temp data directories go")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.events = [int(x) for x in args.events.split(",")]
    args.workload = args.workload or ["clicks", "agg"]
    if args.child:
        child(args.child, args.workload[0], args.events[0], args.tmpdir)
    elif args.memory:
        memory(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
