"""A consume-transform-produce app for the kill -9 tests of delivery guarantees
(test_groups_crash.py).

``python _groupapp.py DIR GUARANTEE SEED`` opens the broker on DIR, joins group ``app`` on
topic ``in`` with that guarantee, and for each batch (of a random size) writes one output per
input to topic ``out`` (value ``{"src": [partition, offset], "v": value}``, same key). It
reports on stdout, each line one ``os.write`` (atomic on a pipe, so a kill never leaves half
a line): ``READY``, ``D p:o p:o ...`` (messages handed to the app, before it processes them),
``P n`` (a batch processed), ``IDLE`` (nothing left to consume). The test kills it at random
moments, restarts it, and finally checks the output topic.
"""

from __future__ import annotations

import os
import random
import sys

import anyio

import streamrt as sr


def emit(line: str) -> None:
    data = (line + "\n").encode()
    assert len(data) <= 4096  # PIPE_BUF: one atomic write
    os.write(1, data)


def emit_deliveries(batch: list[sr.Message]) -> None:
    items = [f"{m.partition}:{m.offset}" for m in batch]
    for i in range(0, len(items), 300):
        emit("D " + " ".join(items[i:i + 300]))


def output(m: sr.Message) -> dict:
    return {"src": [m.partition, m.offset], "v": m.value}


async def main(path: str, guarantee: str, seed: int) -> None:
    rng = random.Random(seed)
    async with sr.open(path, maintenance_interval=None) as broker:
        producer = broker.producer()
        async with broker.consumer("in", group="app", guarantee=guarantee,
                                   auto_offset_reset="earliest", auto_commit_interval=0,
                                   session_timeout=2.0, heartbeat_interval=0.2) as c:
            emit("READY")
            idle = False
            while True:
                n = rng.randint(1, 40)
                if guarantee == "exactly_once":
                    async with c.transaction() as tx:
                        batch = await c.getmany(max_records=n, timeout=0.1)
                        emit_deliveries(batch)
                        for m in batch:
                            tx.send("out", output(m), key=m.key)
                else:
                    batch = await c.getmany(max_records=n, timeout=0.1)
                    emit_deliveries(batch)
                    if batch:
                        await producer.send_many("out", [output(m) for m in batch],
                                                 keys=[m.key for m in batch])
                        if rng.random() < 0.3 and guarantee == "at_least_once":
                            await c.commit()
                if batch:
                    emit(f"P {len(batch)}")
                    idle = False
                elif not idle and c.assignment() and sum(c.lag().values()) == 0:
                    emit("IDLE")
                    idle = True


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
