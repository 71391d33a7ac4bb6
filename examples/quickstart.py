"""Quick start: write events to a durable, partitioned log and read them back.

Runs on the embedded default (the data directory ./.streamrt, the same one the CLI uses) and
ends by itself. Each run appends 20,000 click events to the topic "clicks" (4 partitions,
keyed by user so one user's events stay in order in one partition), reads back what it wrote,
and prints a per-user summary. Run it again: the log keeps the earlier runs' events too
(`streamrt topics describe clicks`).
"""

from __future__ import annotations

import time
import zlib
from collections import Counter

import orjson
import trio

import streamrt as sr

EVENTS = 20_000
PARTITIONS = 4
BATCH = 1_000


async def main(data_dir: str = ".streamrt") -> None:
    with sr.open_log(data_dir) as log:
        await log.create_topic("clicks", partitions=PARTITIONS)
        start = {p: log.high_watermark("clicks", p) for p in range(PARTITIONS)}

        # Produce: batches of events, one per partition, appended concurrently so that
        # several appends share each durable commit (group commit).
        t0 = time.perf_counter()
        pending: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(PARTITIONS)}
        for i in range(EVENTS):
            user = f"user-{i % 50}".encode()
            event = {"ts": i, "user": user.decode(), "page": f"/p/{i % 7}", "value": (i * 7919) % 1000}
            pending[zlib.crc32(user) % PARTITIONS].append((user, orjson.dumps(event)))
        async with trio.open_nursery() as nursery:
            for p, events in pending.items():
                for j in range(0, len(events), BATCH):
                    nursery.start_soon(log.append, "clicks", p, events[j:j + BATCH])
        produce_s = time.perf_counter() - t0

        # Consume: read every partition from where this run started, in batches.
        t0 = time.perf_counter()
        clicks: Counter[str] = Counter()
        values: Counter[str] = Counter()
        read = 0
        for p in range(PARTITIONS):
            offset = start[p]
            while records := log.read("clicks", p, offset, max_records=5_000):
                for r in records:
                    e = orjson.loads(r.value)
                    clicks[e["user"]] += 1
                    values[e["user"]] += e["value"]
                read += len(records)
                offset = records.next_offset
        consume_s = time.perf_counter() - t0

    print(f"produced {EVENTS} events durably in {produce_s:.2f}s "
          f"({EVENTS / produce_s:,.0f} events/s), read back {read} in {consume_s:.2f}s")
    print("top users by total value:")
    for user, total in values.most_common(5):
        print(f"  {user:<8} clicks={clicks[user]:>4}  total value={total}")
    assert read == EVENTS, f"read back {read} events, expected {EVENTS}"


if __name__ == "__main__":
    trio.run(main)
