"""Queue throughput: 4 competing consumers with per-message ack, against a plain-Python
baseline measured in the same run.

Run from the repository root::

    python bench/queues.py                         # 200,000 messages, 5 repeats, fsync on
    python bench/queues.py --messages 50000 --repeat 3 --prefetch 1000 --durability none

The workload: ``--messages`` records with 100-byte values, spread over a topic of 4
partitions, are appended before the clock starts. Then 4 consumers of one queue group run
``async for msg in q: await msg.ack()`` until every message is acknowledged, and the clock
stops when ``flush_acks()`` returns: every ack is durable (one LMDB commit, one fsync, per
group commit; ``commits`` is how many it took). Each repeat uses a fresh data directory.

``channels``   the hand-out and ack round trip done naively, one message at a time: a
               dispatcher task hands the same 100-byte values from a list to the 4 consumers
               through an anyio memory channel (bounded at 4 x prefetch), and each consumer
               "acks" by sending the message's index back on a second channel to a collector
               task. No storage, no state.
``batched``    the same round trip moving lists of ``prefetch`` messages and of acks through
               the channels instead (what the queue does internally): the plain-Python limit
               of handing out and collecting messages on this loop, with no storage or state.
``queue``      streamrt's queue: durable leases and acks, per-message state, prefetch.

The machine is noisy (2 cores, shared, fsync latency drifts), so the two phases alternate
within each repeat and the table shows medians over ``--repeat`` repeats; the ratio is taken
within each repeat. Appending the input and opening/closing the broker are not timed.
"""

from __future__ import annotations

import sys
import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from typing import Any

import anyio

import streamrt as sr

PARTITIONS = 4
CONSUMERS = 4
VALUE = b"x" * 100
APPEND = 5_000


async def _timed(dispatcher: Any, consumer: Any, collector: Any, recv: Any, ack_send: Any,
                 done: anyio.Event) -> float:
    """Seconds for a baseline: a dispatcher, CONSUMERS consumers on clones of the channels,
    and a collector that sets ``done`` once every value is acknowledged."""
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(collector)
        for _ in range(CONSUMERS):
            tg.start_soon(consumer, recv.clone(), ack_send.clone())
        recv.close()
        ack_send.close()
        tg.start_soon(dispatcher)
        await done.wait()
    return time.perf_counter() - t0


async def baseline(n: int, prefetch: int) -> float:
    """Seconds to hand ``n`` values to 4 consumers and collect their acks."""
    values = [VALUE] * n
    send, recv = anyio.create_memory_object_stream[tuple[int, bytes]](CONSUMERS * prefetch)
    ack_send, ack_recv = anyio.create_memory_object_stream[int](CONSUMERS * prefetch)
    done = anyio.Event()

    async def dispatcher() -> None:
        async with send:
            for i, v in enumerate(values):
                await send.send((i, v))

    async def consumer(r: object, a: object) -> None:
        async with r, a:  # type: ignore[attr-defined]
            async for i, v in r:  # type: ignore[attr-defined]
                _ = len(v)  # touch it, as a consumer would
                await a.send(i)  # type: ignore[attr-defined]

    async def collector() -> None:
        count = 0
        async with ack_recv:
            async for _i in ack_recv:
                count += 1
                if count == n:
                    done.set()

    return await _timed(dispatcher, consumer, collector, recv, ack_send, done)


async def batched(n: int, prefetch: int) -> float:
    """Seconds to hand ``n`` values to 4 consumers in lists of ``prefetch`` and collect their
    acks in lists."""
    values = [VALUE] * n
    send, recv = anyio.create_memory_object_stream[list[tuple[int, bytes]]](CONSUMERS)
    ack_send, ack_recv = anyio.create_memory_object_stream[list[int]](CONSUMERS)
    done = anyio.Event()

    async def dispatcher() -> None:
        async with send:
            for start in range(0, n, prefetch):
                await send.send([(i, values[i]) for i in range(start, min(n, start + prefetch))])

    async def consumer(r: object, a: object) -> None:
        async with r, a:  # type: ignore[attr-defined]
            async for chunk in r:  # type: ignore[attr-defined]
                acks = []
                for i, v in chunk:
                    _ = len(v)
                    acks.append(i)
                await a.send(acks)  # type: ignore[attr-defined]

    async def collector() -> None:
        count = 0
        async with ack_recv:
            async for acks in ack_recv:
                count += len(acks)
                if count == n:
                    done.set()

    return await _timed(dispatcher, consumer, collector, recv, ack_send, done)


async def queue_run(path: Path, n: int, prefetch: int, durability: str) -> tuple[float, int]:
    """Seconds for 4 consumers to ack ``n`` messages durably, and the commits it took."""
    async with sr.open(path, durability=durability, maintenance_interval=None) as broker:  # type: ignore[arg-type]
        await broker.create_topic("bench", partitions=PARTITIONS)
        per = n // PARTITIONS
        for p in range(PARTITIONS):
            left = per + (1 if p < n % PARTITIONS else 0)
            while left:
                k = min(APPEND, left)
                await broker.produce("bench", p, [(None, VALUE)] * k)
                left -= k
        consumers = [broker.queue("bench", group="g", prefetch=prefetch, value_serde="bytes")
                     for _ in range(CONSUMERS)]
        count = 0
        done = anyio.Event()

        async def consume(q: sr.QueueConsumer) -> None:
            nonlocal count
            async for msg in q:
                await msg.ack()
                count += 1
                if count == n:
                    done.set()

        commits0 = broker.store.stats()["commits"]
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for q in consumers:
                await q.open()
                tg.start_soon(consume, q)
            await done.wait()
            for q in consumers:
                await q.flush_acks()  # every ack durable
            elapsed = time.perf_counter() - t0
            tg.cancel_scope.cancel()
        commits = broker.store.stats()["commits"] - commits0
        for q in consumers:
            await q.close()
        stats = broker.queues.stats("bench", "g")
        assert stats.acked == n and stats.backlog == 0, stats
    return elapsed, commits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--prefetch", type=int, default=256)
    ap.add_argument("--durability", choices=("sync", "none"), default="sync")
    ap.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    args = ap.parse_args(argv)
    n = args.messages
    phases = ("channels", "batched", "queue")
    rates: dict[str, list[float]] = {p: [] for p in phases}
    ratios: dict[str, list[float]] = {"channels": [], "batched": []}
    commits: list[int] = []
    root = Path(tempfile.mkdtemp(prefix="streamrt-bench-queue-"))
    try:
        for r in range(args.repeat):
            order = phases[r % 3:] + phases[:r % 3]  # rotate, so none always runs first
            got: dict[str, float] = {}
            for phase in order:
                if phase == "channels":
                    secs = anyio.run(baseline, n, args.prefetch, backend=args.backend)
                elif phase == "batched":
                    secs = anyio.run(batched, n, args.prefetch, backend=args.backend)
                else:
                    path = root / f"run{r}"
                    secs, c = anyio.run(queue_run, path, n, args.prefetch, args.durability,
                                        backend=args.backend)
                    commits.append(c)
                    shutil.rmtree(path, ignore_errors=True)
                got[phase] = n / secs
                rates[phase].append(n / secs)
            for base in ratios:
                ratios[base].append(got["queue"] / got[base])
            print(f"repeat {r + 1}: " + ", ".join(f"{p} {got[p]:,.0f}" for p in phases)
                  + f" msg/s; {commits[-1]} commits", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = statistics.median
    print(f"\n{n:,} messages of {len(VALUE)} bytes, {PARTITIONS} partitions, {CONSUMERS} "
          f"consumers, prefetch {args.prefetch}, durability {args.durability}, "
          f"{args.backend}; medians of {args.repeat}")
    print(f"{'phase':<10} {'msg/s':>10}  queue vs it")
    for p in phases:
        vs = f"{med(ratios[p]):.2f}x" if p in ratios else ""
        print(f"{p:<10} {med(rates[p]):>10,.0f}  {vs:>10}")
    print(f"group commits per queue run: median {med(commits):,.0f} "
          f"({n / med(commits):,.0f} acks per commit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
