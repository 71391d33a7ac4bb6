"""A store-owning subprocess for the fault-injection tests (test_durability, test_datadir).

Run as ``python _storeproc.py MODE ARGS...``; it talks to the test on stdout, one line per
event, each written with a single ``os.write`` (atomic on a pipe), so a ``kill -9`` never
leaves a half-reported event. Modes:

``append DIR TOPIC PARTITIONS ROUND SEED``
    Print ``OPENING``, open the store (durability "sync"), create the topic (or find it, on
    later rounds), print ``READY hw0 hw1 ...`` (the recovered high watermarks), then
    append forever: on the first partitions several trio tasks each (pipelined, so the
    writer groups them), on the last ``THREAD_PARTITIONS`` one plain thread each through
    ``append_sync``. Each partition's sequence numbers continue from its high watermark, so a
    record's sequence number must equal its offset. After every acknowledged append it prints
    ``A partition base_offset count first_seq commits ops``.
``hold DIR [--read-txn]``
    Open the store, append a few records, optionally leave a read transaction open, print
    ``READY pid``, then serve stdin commands (``append`` -> ``APPENDED base``) until EOF.
``rawenv DIR``
    Open the LMDB environment of DIR directly, without streamrt or its directory lock; serve
    ``readers`` (-> ``READERS text``, newlines as ``|``) until EOF. Keeps the LMDB lock table
    alive while other processes come and go.
``try-open DIR [WRITES]``
    Try to open the store once: print ``LOCKED pid``, ``ERROR Type message`` or
    ``OPENED pid``; when opened, print ``READERS text``, do WRITES 64 KiB overwrites of one
    state key, append one record, print ``DONE size_of_data.mdb`` and close.

The values are a pure function of (partition, seq, round) (see :func:`value`), so the test
can check every stored byte. :class:`Child` is the test side: it starts a mode of this script
and reads its lines with deadlines.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

THREAD_PARTITIONS = 2  # partitions written by plain threads (append_sync)
TASKS_PER_PARTITION = 3  # trio tasks pipelining appends on each other partition

_out_lock = threading.Lock()


def emit(line: str) -> None:
    data = (line + "\n").encode()
    assert len(data) < 4096  # <= PIPE_BUF: one atomic write
    with _out_lock:
        os.write(1, data)


def value(p: int, seq: int, rnd: int) -> bytes:
    """The value of record ``seq`` of partition ``p`` written in round ``rnd``: a header, a
    pseudo-random body of 16 B to ~10 KB (some span several LMDB pages) and its CRC-32."""
    head = f"{p}:{seq}:{rnd}:".encode()
    h = hashlib.blake2b(head, digest_size=32).digest()
    n = 16 + h[0] * 12 + (6000 if h[1] % 8 == 0 else 0)
    body = (h * (n // 32 + 1))[:n]
    return head + body + zlib.crc32(head + body).to_bytes(4, "big")


def parse(v: bytes) -> tuple[int, int, int]:
    """(partition, seq, round) from a value's header."""
    p, seq, rnd, _ = v.split(b":", 3)
    return int(p), int(seq), int(rnd)


def key(p: int, seq: int) -> bytes:
    return f"{p}-{seq}".encode()


def _batch(rng: random.Random, p: int, seq: int, rnd: int) -> list[tuple[bytes, bytes]]:
    n = rng.choice((1, 1, 2, 3, 5, 8))
    return [(key(p, s), value(p, s, rnd)) for s in range(seq, seq + n)]


def cmd_append(path: str, topic: str, partitions: int, rnd: int, seed: int) -> None:
    import trio

    import streamrt

    emit("OPENING")
    store = streamrt.LogStore.open(path)  # durability "sync" (the default)
    store.create_topic_sync(topic, partitions)
    next_seq = [store.high_watermark(topic, p) for p in range(partitions)]
    emit("READY " + " ".join(map(str, next_seq)))

    def ack(p: int, base: int, n: int, seq: int) -> None:
        st = store.stats()
        emit(f"A {p} {base} {n} {seq} {st['commits']} {st['ops']}")

    def thread_loop(p: int) -> None:
        rng = random.Random(seed * 1000 + p)
        while True:
            seq = next_seq[p]
            recs = _batch(rng, p, seq, rnd)
            next_seq[p] += len(recs)
            ack(p, store.append_sync(topic, p, recs), len(recs), seq)

    async def task_loop(p: int, k: int) -> None:
        rng = random.Random(seed * 1000 + p * 10 + k)
        while True:
            # No checkpoint between taking the sequence numbers and submitting the append:
            # the writer's queue is FIFO, so log order follows sequence order.
            seq = next_seq[p]
            recs = _batch(rng, p, seq, rnd)
            next_seq[p] += len(recs)
            ack(p, await store.append(topic, p, recs), len(recs), seq)

    first_thread = partitions - THREAD_PARTITIONS
    for p in range(first_thread, partitions):
        threading.Thread(target=thread_loop, args=(p,), daemon=True).start()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for p in range(first_thread):
                for k in range(TASKS_PER_PARTITION):
                    nursery.start_soon(task_loop, p, k)

    trio.run(main)


def _fill(store: Any, n: int = 5) -> None:
    store.create_topic_sync("t", 1)
    store.append_sync("t", 0, [(None, f"hold-{i}".encode()) for i in range(n)])


def cmd_hold(path: str, read_txn: bool) -> None:
    import streamrt

    store = streamrt.LogStore.open(path, maintenance_interval=None)
    _fill(store)
    txn = None
    if read_txn:
        # No public API keeps a read transaction open between calls; reach the environment.
        txn = store._data.env.begin()
        txn.get(b"format", db=store._data.dbs["meta"])
    emit(f"READY {os.getpid()}")
    for line in sys.stdin:
        if line.strip() == "append":
            emit(f"APPENDED {store.append_sync('t', 0, [(None, b'more')])}")
    if txn is not None:
        txn.abort()
    store.close()


def cmd_rawenv(path: str) -> None:
    import lmdb

    env = lmdb.open(os.path.join(path, "log"), max_dbs=16, readonly=True, lock=True)
    emit("READY")
    for line in sys.stdin:
        if line.strip() == "readers":
            emit("READERS " + env.readers().replace("\n", "|"))
    env.close()


def cmd_try_open(path: str, writes: int) -> None:
    import streamrt
    from streamrt import errors

    try:
        store = streamrt.LogStore.open(path, maintenance_interval=None)
    except errors.DataDirLocked as e:
        emit(f"LOCKED {e.pid}")
        return
    except errors.StreamrtError as e:
        emit(f"ERROR {type(e).__name__} {str(e)[:3000]}")
        return
    emit(f"OPENED {os.getpid()}")
    emit("READERS " + store._data.env.readers().replace("\n", "|"))
    blob = os.urandom(64 << 10)
    for i in range(writes):
        wb = streamrt.WriteBatch()
        wb.put(b"churn", blob[i:] + blob[:i])
        store.write_sync(wb)
    _fill(store, 1)
    store.close()
    emit(f"DONE {os.path.getsize(os.path.join(path, 'log', 'data.mdb'))}")


# ----------------------------------------------------------------------------- test side

HERE = Path(__file__).resolve().parent


sys.path.insert(0, str(HERE.parent))  # tests/: the shared child harness
from _child import Child as _Child  # noqa: E402


class Child(_Child):
    """One run of this script in a subprocess (commands on its stdin), its stdout lines read
    with deadlines."""

    def __init__(self, args: list[object], stderr_path: Path) -> None:
        super().__init__(HERE / "_storeproc.py", args, stderr_path, stdin=True)


class Spawner:
    """Starts children (stderr kept in ``log_dir``) and kills those still running at cleanup."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def __call__(self, *args: object, name: str) -> Child:
        child = Child(list(args), self.log_dir / f"{name}.stderr")
        self.children.append(child)
        return child

    def cleanup(self) -> None:
        for child in self.children:
            child.cleanup()


def main(argv: list[str]) -> None:
    mode, path, *rest = argv
    if mode == "append":
        cmd_append(path, rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
    elif mode == "hold":
        cmd_hold(path, "--read-txn" in rest)
    elif mode == "rawenv":
        cmd_rawenv(path)
    elif mode == "try-open":
        cmd_try_open(path, int(rest[0]) if rest else 0)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
