"""Log throughput: streamrt's LogStore against raw py-lmdb, durable appends and full reads.

Run from the repository root::

    python bench/log_throughput.py                  # 1,000,000 records, 3 repeats, fsync on
    python bench/log_throughput.py --records 200000 --repeat 5 --durability none

The workload: ``--records`` records with 100-byte values (no key) go to one topic of 4
partitions in appends of 1,000 records, round-robin over the partitions, then every record is
read back as a record object (touching ``.value``). Each phase has its own temp directory:

``raw append``   py-lmdb with the flags streamrt's environment uses (``sync=True``,
                 ``metasync=True``), one write transaction per 1,000 records: ``putmulti`` of
                 one 12-byte key (partition u32 | offset u64) per record, then commit (fsync).
                 Building the keys is counted (a raw user has to), building values is not.
``seq append``   ``store.append_sync`` in a loop: one caller, one transaction (one fsync)
                 per append; the 1,000 ``(None, value)`` tuples of an append are prebuilt.
``conc append``  ``--tasks`` trio tasks (default 4: one per partition) each doing
                 ``await store.append(...)``, so the writer's group commit merges them.
``raw read``     a cursor over the raw log, touching each value.
``read``         ``store.read(topic, p, offset, max_records=10_000)`` from offset 0 up,
                 per partition, touching ``.value`` of each returned record.

The machine is noisy (2 cores, shared), and fsync latency drifts by 3x within seconds. So the
phases are interleaved: each repeat runs 100 appends of every append phase in turn (the
order rotating), then the next 100, and likewise reads 50,000 offsets per partition from each
log in turn; a phase's rate is its records over the sum of its own slices, and its ratio to
the raw phase is taken within the repeat. The table shows medians over ``--repeat`` repeats.
Opening, closing and deleting the stores and building the input are not timed.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import islice

import lmdb
import trio

from streamrt.storage import LogStore

PARTITIONS = 4
PER_APPEND = 1_000
VALUE_SIZE = 100
TOPIC = "bench"
READ_MAX = 10_000
# Distinct values cycled over the run (keeps memory small; LMDB does not compress).
POOL_RECORDS = 10_000

_KEY = struct.Struct(">IQ")

TARGETS = {  # phase -> (minimum ratio against the raw phase, minimum records/s)
    "seq append": (1.0, 500_000),
    "conc append": (1.0, 500_000),
    "read": (0.7, 1_000_000),
}
BASELINE_OF = {"seq append": "raw append", "conc append": "raw append", "read": "raw read"}
PHASES = ("raw append", "seq append", "conc append", "raw read", "read")
SLICE_APPENDS = 100  # appends of each phase per turn (see the module doc)
SLICE_READ = 50_000  # offsets per partition of each read phase per turn


class Workload:
    """The appends of one run: ``plan[i] = (partition, records)``, ``i`` in append order."""

    def __init__(self, records: int) -> None:
        if records <= 0 or records % (PER_APPEND * PARTITIONS):
            raise SystemExit(f"--records must be a positive multiple of {PER_APPEND * PARTITIONS}")
        self.records = records
        rnd = os.urandom(POOL_RECORDS * VALUE_SIZE)
        values = [rnd[i * VALUE_SIZE:(i + 1) * VALUE_SIZE] for i in range(POOL_RECORDS)]
        chunks = POOL_RECORDS // PER_APPEND
        self.value_lists = [values[c * PER_APPEND:(c + 1) * PER_APPEND] for c in range(chunks)]
        self.tuple_lists = [[(None, v) for v in vl] for vl in self.value_lists]
        self.appends = records // PER_APPEND
        self.plan = [(i % PARTITIONS, i % chunks) for i in range(self.appends)]


# ----------------------------------------------------------------------------- raw lmdb

class RawLog:
    """The baseline: plain py-lmdb, one key (partition u32 | offset u64) per record."""

    def __init__(self, path: str, sync: bool) -> None:
        self.env = lmdb.open(
            path, map_size=4 << 30, max_dbs=2, sync=sync, metasync=sync, writemap=False,
            map_async=False, readahead=False, subdir=True, lock=True,
        )
        self.db = self.env.open_db(b"log")
        self.next_off = [0] * PARTITIONS

    def append(self, wl: Workload, plan: list[tuple[int, int]]) -> float:
        env, db, pack, next_off = self.env, self.db, _KEY.pack, self.next_off
        t0 = time.perf_counter()
        for p, chunk in plan:
            base = next_off[p]
            with env.begin(write=True, db=db) as txn:
                txn.cursor().putmulti(
                    [(pack(p, base + i), v) for i, v in enumerate(wl.value_lists[chunk])]
                )
            next_off[p] = base + PER_APPEND
        return time.perf_counter() - t0

    def read(self, lo: int, hi: int) -> tuple[float, int, int]:
        """Offsets [lo, hi) of every partition, in one read transaction."""
        n = nbytes = 0
        t0 = time.perf_counter()
        with self.env.begin(db=self.db) as txn:
            cur = txn.cursor()
            for p in range(PARTITIONS):
                if not cur.set_key(_KEY.pack(p, lo)):
                    continue
                # Offsets are dense here, so [lo, hi) is exactly the next hi - lo keys.
                for _k, v in islice(cur, hi - lo):
                    nbytes += len(v)
                    n += 1
        return time.perf_counter() - t0, n, nbytes

    def close(self) -> None:
        self.env.close()


# ----------------------------------------------------------------------------- streamrt

def open_store(path: str, durability: str) -> LogStore:
    store = LogStore.open(path, durability=durability)  # type: ignore[arg-type]
    store.create_topic_sync(TOPIC, PARTITIONS)
    return store


def seq_append(store: LogStore, wl: Workload, plan: list[tuple[int, int]]) -> float:
    """One caller, ``append_sync`` in a loop: one transaction (one fsync) per append."""
    append, lists = store.append_sync, wl.tuple_lists
    t0 = time.perf_counter()
    for p, chunk in plan:
        append(TOPIC, p, lists[chunk])
    return time.perf_counter() - t0


def conc_append(store: LogStore, wl: Workload, plan: list[tuple[int, int]], tasks: int) -> float:
    """``tasks`` trio tasks, task t doing every append i with i % tasks == t (so with 4 tasks,
    one partition each, in order), all awaiting ``store.append`` at once."""
    shares = [plan[t::tasks] for t in range(tasks)]
    lists = wl.tuple_lists

    async def producer(share: list[tuple[int, int]]) -> None:
        append = store.append
        for p, chunk in share:
            await append(TOPIC, p, lists[chunk])

    async def main() -> float:  # timed inside trio.run: its start-up is not counted
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for share in shares:
                nursery.start_soon(producer, share)
        return time.perf_counter() - t0

    return trio.run(main)


def store_read(store: LogStore, lo: int, hi: int) -> tuple[float, int, int]:
    """Offsets [lo, hi) of every partition, as a consumer reads: ``read`` from its position,
    at most READ_MAX records a call, touching ``.value`` of each record."""
    n = nbytes = 0
    read = store.read
    t0 = time.perf_counter()
    for p in range(PARTITIONS):
        off = lo
        while off < hi:
            recs = read(TOPIC, p, off, max_records=min(READ_MAX, hi - off))
            for r in recs:
                nbytes += len(r.value)
            n += len(recs)
            off = recs.next_offset
    return time.perf_counter() - t0, n, nbytes


# ----------------------------------------------------------------------------- driver

def one_repeat(wl: Workload, root: str, rep: int, args: argparse.Namespace) -> dict[str, float]:
    """Every phase once, interleaved slice by slice; returns records/s per phase."""
    sync = args.durability == "sync"
    raw = RawLog(os.path.join(root, "raw"), sync)
    seq = open_store(os.path.join(root, "seq"), args.durability)
    conc = open_store(os.path.join(root, "conc"), args.durability)
    spent = dict.fromkeys(PHASES, 0.0)
    try:
        # Appends: SLICE_APPENDS appends of each phase in turn, the order rotating per slice.
        appenders: list[tuple[str, Callable[[list[tuple[int, int]]], float]]] = [
            ("raw append", lambda plan: raw.append(wl, plan)),
            ("seq append", lambda plan: seq_append(seq, wl, plan)),
            ("conc append", lambda plan: conc_append(conc, wl, plan, args.tasks)),
        ]
        gc.collect()
        before = conc.stats()
        for k, i in enumerate(range(0, wl.appends, SLICE_APPENDS)):
            plan = wl.plan[i:i + SLICE_APPENDS]
            r = (k + rep) % len(appenders)
            for name, fn in appenders[r:] + appenders[:r]:
                spent[name] += fn(plan)
        after = conc.stats()
        ops_per_commit = (after["ops"] - before["ops"]) / max(after["commits"] - before["commits"], 1)

        # Reads: the same offsets from both logs in turn, SLICE_READ offsets per partition.
        readers: list[tuple[str, Callable[[int, int], tuple[float, int, int]]]] = [
            ("raw read", raw.read), ("read", lambda lo, hi: store_read(seq, lo, hi)),
        ]
        per_part = wl.records // PARTITIONS
        totals = {name: [0, 0] for name, _ in readers}
        gc.collect()
        for k, lo in enumerate(range(0, per_part, SLICE_READ)):
            hi = min(lo + SLICE_READ, per_part)
            order = readers if (k + rep) % 2 == 0 else readers[::-1]
            for name, fn in order:
                dt, n, nbytes = fn(lo, hi)
                spent[name] += dt
                totals[name][0] += n
                totals[name][1] += nbytes
        for name, (n, nbytes) in totals.items():
            if n != wl.records or nbytes != wl.records * VALUE_SIZE:
                raise SystemExit(f"{name}: got {n} records / {nbytes} bytes, "
                                 f"expected {wl.records} / {wl.records * VALUE_SIZE}")
    finally:
        raw.close()
        seq.close()
        conc.close()
    rates = {name: wl.records / t for name, t in spent.items()}
    rates["_group"] = ops_per_commit
    return rates


def run(args: argparse.Namespace) -> int:
    wl = Workload(args.records)
    rates: dict[str, list[float]] = {name: [] for name in PHASES}
    ratios: dict[str, list[float]] = {name: [] for name in BASELINE_OF}
    group_sizes: list[float] = []
    root = tempfile.mkdtemp(prefix="streamrt-bench-", dir=args.tmpdir)
    print(
        f"{wl.records:,} records x {VALUE_SIZE} B values, {PARTITIONS} partitions, "
        f"{PER_APPEND:,} records per append, durability={args.durability}, "
        f"{args.tasks} concurrent task(s), {args.repeat} repeat(s)",
        flush=True,
    )
    try:
        for rep in range(args.repeat):
            d = os.path.join(root, f"r{rep}")
            os.makedirs(d)
            got = one_repeat(wl, d, rep, args)
            shutil.rmtree(d)
            group_sizes.append(got.pop("_group"))
            for name, rate in got.items():
                rates[name].append(rate)
            for name, base in BASELINE_OF.items():
                ratios[name].append(got[name] / got[base])
            print(f"  repeat {rep + 1}: "
                  + ", ".join(f"{k} {v / 1e3:,.0f}k/s" for k, v in got.items()), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in rates.items()}
    print()
    print(f"{'phase':<12} {'records/s':>11} {'vs raw':>7}  {'target':<18} ok")
    for name in PHASES:
        if name in BASELINE_OF:
            ratio = statistics.median(ratios[name])
            min_ratio, min_rate = TARGETS[name]
            ok = ratio >= min_ratio and med[name] >= min_rate
            target = f">={min_ratio:.1f}x, >={min_rate / 1e6:g}M/s"
            print(f"{name:<12} {med[name]:>11,.0f} {ratio:>6.2f}x  {target:<18} "
                  f"{'yes' if ok else 'NO'}")
        else:
            print(f"{name:<12} {med[name]:>11,.0f} {'1.00x':>7}  (baseline)")
    print(f"\nmedians of {args.repeat} repeat(s); 'vs raw' = median of the per-repeat ratios "
          f"to the raw phase. conc append: {statistics.median(group_sizes):.1f} appends per "
          f"commit (median)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000,
                    help=f"records to append and read (a multiple of {PER_APPEND * PARTITIONS})")
    ap.add_argument("--repeat", type=int, default=3, help="repeats; medians are reported")
    ap.add_argument("--durability", choices=("sync", "none"), default="sync",
                    help="sync: fsync every commit (streamrt's default); none: no fsync")
    ap.add_argument("--tasks", type=int, default=PARTITIONS,
                    help="trio tasks in the concurrent append phase")
    ap.add_argument("--tmpdir", default=None, help="where to make the temp dirs")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.tasks < 1:
        ap.error("--repeat and --tasks must be >= 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
