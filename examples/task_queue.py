"""Task queue: competing workers with retries and a dead-letter queue.

    python examples/task_queue.py

300 tasks go into the queue ``tasks``; 4 workers share it, so each task goes to exactly one
worker at a time. A task whose id is a multiple of 5 fails on its first try and succeeds when
redelivered (nack with a short delay); one whose id is a multiple of 7 always fails, so after
3 deliveries it is dead-lettered to ``tasks.dlq`` with headers saying why. The script ends when
every task is done or dead, and prints who did what. Inspect the dead letters afterwards with
``streamrt dlq inspect tasks.dlq``; send them back with ``streamrt dlq replay tasks.dlq``.
"""

from __future__ import annotations

import sys
from collections import Counter

import anyio

import streamrt as sr

TASKS = 300
WORKERS = 4


async def main(data_dir: str = ".streamrt") -> None:
    done: Counter[str] = Counter()
    completed: set[int] = set()
    tries: Counter[int] = Counter()
    async with sr.open(data_dir) as broker:
        async with broker.queue("tasks", group="workers", max_deliveries=3, ack_timeout=30,
                                dead_letter="tasks.dlq") as q:
            base = broker.high_watermark("tasks", 0)
            await broker.producer().send_many("tasks", [{"id": i} for i in range(TASKS)])
            poison = sum(1 for i in range(TASKS) if i % 7 == 0)
            finished = anyio.Event()

            async def worker(name: str) -> None:
                async with broker.queue("tasks", group="workers", prefetch=10) as mine:
                    while not finished.is_set():
                        for msg in await mine.get(max=10, timeout=0.1):
                            if msg.offset < base:  # tasks of an earlier run: just clear them
                                await msg.ack()
                                continue
                            task = msg.value["id"]
                            tries[task] += 1
                            if task % 7 == 0 or (task % 5 == 0 and msg.delivery_count == 1):
                                await msg.nack(requeue=True, delay=0.05)
                                continue
                            await msg.ack()
                            completed.add(task)
                            done[name] += 1
                        stats = q.stats()
                        if len(completed) + stats.dead_lettered.get("max_deliveries", 0) >= TASKS:
                            await mine.flush_acks()
                            finished.set()

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for w in range(WORKERS):
                        tg.start_soon(worker, f"worker-{w}")
            dead = q.stats().dead_lettered.get("max_deliveries", 0)

    print(f"{len(completed)} tasks done by {WORKERS} workers: "
          + ", ".join(f"{w} {n}" for w, n in sorted(done.items())))
    print(f"{sum(1 for t, n in tries.items() if n > 1 and t not in range(0, TASKS, 7))} "
          f"succeeded on a retry; {dead} dead-lettered after 3 deliveries (poison: {poison})")
    if len(completed) != TASKS - poison:
        sys.exit(f"expected {TASKS - poison} tasks done, got {len(completed)}")


if __name__ == "__main__":
    anyio.run(main, backend="trio")
