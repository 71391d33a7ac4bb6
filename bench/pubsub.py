"""Pub/sub throughput and latency: 1 producer, 4 partitions, 2 consumer groups, durable.

    python bench/pubsub.py [--messages 500000] [--repeat 3]

Phases, each timed on its own:
- ``produce``: 500,000 messages of 100 bytes sent with ``producer.send_many`` in slices of
  10,000 (durable: each slice's per-partition batches commit with fsync);
- ``produce (send_soon)``: the same messages through the per-message ``send_soon`` path;
- ``consume``: two consumer groups (one member each) reading every message at the same
  time with ``getmany``, committing as they go; the rate is messages per second per group;
- ``latency``: 10,000 messages/s for 3 s, sent one by one with ``send`` (linger 1 ms) while
  one group consumes; end-to-end latency is consume time minus send time (p50/p99).
Baseline in the same run: raw py-lmdb, durable ``putmulti`` of one key per message (one
transaction per 1,000) and a cursor reading them back; each ratio is streamrt over raw.
Medians over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time

import anyio
import lmdb
import trio

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import streamrt as sr  # noqa: E402

PARTITIONS = 4
VALUE = b"x" * 100
KEY = struct.Struct(">IQ")


def raw_baseline(root: str, n: int) -> tuple[float, float]:
    """(put rate, read rate) of raw py-lmdb, durable, one key per message."""
    path = tempfile.mkdtemp(dir=root)
    env = lmdb.open(path, map_size=1 << 32, sync=True, metasync=True, writemap=False)
    t0 = time.perf_counter()
    for lo in range(0, n, 1000):
        with env.begin(write=True) as txn:
            txn.cursor().putmulti([(KEY.pack(i % PARTITIONS, i), VALUE) for i in range(lo, min(lo + 1000, n))])
    put = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    got = 0
    with env.begin() as txn:
        for _k, v in txn.cursor():
            got += len(v) > 0
    read = got / (time.perf_counter() - t0)
    env.close()
    shutil.rmtree(path)
    return put, read


async def streamrt_run(root: str, n: int) -> dict[str, float]:
    path = tempfile.mkdtemp(dir=root)
    out: dict[str, float] = {}
    async with sr.open(path, maintenance_interval=None) as broker:
        await broker.create_topic("events", partitions=PARTITIONS)
        await broker.create_topic("events2", partitions=PARTITIONS)
        producer = broker.producer(value_serde="bytes")
        values = [VALUE] * 10_000
        t0 = time.perf_counter()
        for _ in range(n // 10_000):
            await producer.send_many("events", values)
        out["produce"] = n / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        soon = producer.send_soon
        for lo in range(0, n, 10_000):
            for _ in range(10_000):
                soon("events2", VALUE)
            await producer.flush()
        out["produce (send_soon)"] = n / (time.perf_counter() - t0)

        rates: list[float] = []

        async def group(name: str) -> None:
            async with broker.consumer("events", group=name, auto_offset_reset="earliest",
                                       value_serde="bytes") as c:
                got = 0
                t = time.perf_counter()
                while got < n:
                    got += len(await c.getmany(5000, timeout=5))
                await c.commit()
                rates.append(got / (time.perf_counter() - t))

        async with anyio.create_task_group() as tg:
            tg.start_soon(group, "g1")
            tg.start_soon(group, "g2")
        out["consume"] = statistics.mean(rates)

        # latency at a fixed moderate rate
        await broker.create_topic("lat", partitions=PARTITIONS)
        lat_producer = broker.producer(value_serde="bytes", linger=0.001)
        latencies: list[float] = []
        rate, seconds = 10_000, 3.0
        total = int(rate * seconds)
        async with broker.consumer("lat", group="lat", auto_offset_reset="earliest",
                                   value_serde="bytes") as c:
            await c.wait_for_assignment(timeout=10)

            async def consume() -> None:
                got = 0
                while got < total:
                    batch = await c.getmany(5000, timeout=5)
                    now = time.perf_counter_ns()
                    latencies.extend((now - int(m.value)) / 1e6 for m in batch)
                    got += len(batch)

            async def produce() -> None:
                start = time.perf_counter()
                for i in range(total):
                    due = start + i / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await anyio.sleep(delay)
                    lat_producer.send_soon("lat", str(time.perf_counter_ns()).encode())
                await lat_producer.flush()

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                tg.start_soon(produce)
        latencies.sort()
        out["p50 ms"] = latencies[len(latencies) // 2]
        out["p99 ms"] = latencies[int(len(latencies) * 0.99)]
    shutil.rmtree(path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = args.messages - args.messages % 10_000
    root = tempfile.mkdtemp(prefix="streamrt-bench-")
    rows: dict[str, list[float]] = {}
    try:
        for rep in range(args.repeat):
            put, read = raw_baseline(root, n)
            s = trio.run(streamrt_run, root, n)
            r = {"raw put": put, "raw read": read, **s,
                 "produce / raw put": s["produce"] / put, "consume / raw read": s["consume"] / read}
            for k, v in r.items():
                rows.setdefault(k, []).append(v)
            print(f"  repeat {rep + 1}: " + ", ".join(f"{k} {v:,.2f}" if "ms" in k or "/" in k
                                                       else f"{k} {v:,.0f}/s" for k, v in r.items()))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{n:,} messages x 100 B, {PARTITIONS} partitions, 2 groups, durable; "
          f"medians of {args.repeat}")
    targets = {"produce": ">= 200,000/s", "consume": ">= 200,000/s per group", "p99 ms": "< 10 ms at 10,000 msg/s"}
    for k, vs in rows.items():
        med = statistics.median(vs)
        unit = "" if ("ms" in k or "/" in k) else "/s"
        fmt = f"{med:,.2f}" if unit == "" else f"{med:,.0f}"
        print(f"{k:<22} {fmt:>12}{unit:<3} {targets.get(k, '')}")


if __name__ == "__main__":
    main()
