"""Kafka codec micro-benchmark: the hand-written Produce/Fetch codecs against the generic,
table-driven codec and against plain ``bytes`` baselines.

Run from the repository root::

    python bench/kafka_codec.py                      # 4 partitions x 1 MB, 7 repeats
    python bench/kafka_codec.py --partitions 64 --batch-bytes 1024 --repeat 5

Two workloads, each timed as the median of ``--repeat`` repeats (each repeat runs the
operation enough times to take about 50 ms, and reports the time of one operation):

Produce request, decode: a Produce v9 request carrying ``--partitions`` record batches of
``--batch-bytes`` each (built by aiokafka's batch builder, uncompressed), as a client sends it.

``copy``      baseline: slicing each partition's records out of the frame as ``bytes`` (what a
              decoder that copies the records pays at least)
``hand``      ``decode_produce_request`` (records are memoryviews of the frame)
``hand+split`` the same plus ``split_batches`` on every partition (the server's full path
              before the store)
``generic``   the table-driven ``decode_request`` with the hand-written decoders set aside

Fetch response, encode: a Fetch v12 response serving ``--partitions`` stored batches of
``--batch-bytes`` each (``bytes`` objects, as ``read_raw`` returns them).

``join``      baseline: ``b"".join`` of the batches (one buffer holding the records, nothing else)
``hand``      ``encode_fetch_response``: a list of chunks, stored batches not copied
``hand+join`` the same, then joined into one buffer (what ``encode_response`` does today)
``generic``   the table-driven ``encode_response`` with the hand-written encoders set aside
              (a whole frame: size prefix and response header too, a few bytes)

The ratio column is each row's median time over the baseline's median (lower is faster). The
machine is shared and noisy: read ratios, not absolute times, and prefer several repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka.record.default_records import DefaultRecordBatchBuilder  # noqa: E402

from streamrt.kafka import _codec  # noqa: E402
from streamrt.kafka._fetch import encode_fetch_response  # noqa: E402
from streamrt.kafka._produce import decode_produce_request, split_batches  # noqa: E402

PRODUCE_VERSION = 9
FETCH_VERSION = 12
TARGET_SECONDS = 0.05


def make_batch(nbytes: int) -> bytes:
    """An uncompressed RecordBatch v2 of about ``nbytes`` (records of 1 KB values)."""
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    value = b"v" * 1000
    delta = 0
    while True:
        b.append(delta, 1_700_000_000_000 + delta, b"key-%d" % delta, value, [])
        delta += 1
        if b.size() >= nbytes:
            return bytes(b.build())


def timed(fn: Callable[[], Any]) -> float:
    """Seconds per call of ``fn``, calling it enough times to take about TARGET_SECONDS."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= TARGET_SECONDS:
            return dt / n
        n = max(n * 2, int(n * TARGET_SECONDS / max(dt, 1e-9)) + 1)


def without_fast_paths(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with the generic codec alone (no hand-written codec registered)."""
    def run() -> Any:
        saved = dict(_codec.FAST_DECODERS), dict(_codec.FAST_ENCODERS)
        _codec.FAST_DECODERS.clear()
        _codec.FAST_ENCODERS.clear()
        try:
            return fn()
        finally:
            _codec.FAST_DECODERS.update(saved[0])
            _codec.FAST_ENCODERS.update(saved[1])
    return run


def produce_cases(partitions: int, batch_bytes: int) -> dict[str, Callable[[], Any]]:
    """The Produce-decode contenders, baseline first."""
    batches = [make_batch(batch_bytes) for _ in range(partitions)]
    body = {"transactional_id": None, "acks": -1, "timeout_ms": 30000, "topic_data": [
        {"name": "bench", "partition_data": [{"index": i, "records": b}
                                             for i, b in enumerate(batches)]}]}
    frame = without_fast_paths(
        lambda: _codec.encode_request(0, PRODUCE_VERSION, 1, "bench", body))()[4:]
    header, offset = _codec.read_request_header(frame)
    spans = []
    pos = 0
    for b in batches:
        start = frame.index(b[:64], pos)
        spans.append((start, start + len(b)))
        pos = start + len(b)

    def copy() -> list[bytes]:
        return [frame[s:e] for s, e in spans]

    def hand() -> dict[str, Any]:
        return decode_produce_request(PRODUCE_VERSION, frame, offset)

    def hand_split() -> list[list[memoryview]]:
        req = decode_produce_request(PRODUCE_VERSION, frame, offset)
        return [split_batches(p["records"]) for t in req["topic_data"]
                for p in t["partition_data"]]

    generic = without_fast_paths(lambda: _codec.decode_request(header, frame, offset))
    got = hand()["topic_data"][0]["partition_data"]
    assert [bytes(p["records"]) for p in got] == batches
    return {"copy": copy, "hand": hand, "hand+split": hand_split, "generic": generic}


def fetch_cases(partitions: int, batch_bytes: int) -> dict[str, Callable[[], Any]]:
    """The Fetch-encode contenders, baseline first."""
    batches = [make_batch(batch_bytes) for _ in range(partitions)]
    body = {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": [
        {"topic": "bench", "partitions": [
            {"partition_index": i, "error_code": 0, "high_watermark": 1000,
             "last_stable_offset": 1000, "log_start_offset": 0, "aborted_transactions": None,
             "preferred_read_replica": -1, "records": [b]} for i, b in enumerate(batches)]}]}
    header = _codec.RequestHeader(1, FETCH_VERSION, 1, "bench", True)

    def join() -> bytes:
        return b"".join(batches)

    def hand() -> list[bytes]:
        return encode_fetch_response(FETCH_VERSION, body)

    def hand_join() -> bytes:
        return b"".join(encode_fetch_response(FETCH_VERSION, body))

    generic = without_fast_paths(lambda: _codec.encode_response(header, body))
    assert generic()[9:] == hand_join()
    return {"join": join, "hand": hand, "hand+join": hand_join, "generic": generic}


def run(title: str, cases: dict[str, Callable[[], Any]], repeat: int) -> None:
    """Time ``cases`` (interleaved within each repeat) and print medians and ratios."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    base_name = next(iter(cases))
    base = statistics.median(times[base_name])
    print(f"\n{title}")
    print(f"  {'':<11} {'median':>11} {'vs ' + base_name:>9}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<11} {_fmt(med):>11} {med / base:>8.2f}x")


def _fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def main(argv: list[str] | None = None) -> int:
    """Run both workloads and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch-bytes", type=int, default=1 << 20)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    print(f"{args.partitions} partitions x {args.batch_bytes:,} bytes, "
          f"medians of {args.repeat} repeats; Python {sys.version.split()[0]}")
    run(f"Produce v{PRODUCE_VERSION} request, decode",
        produce_cases(args.partitions, args.batch_bytes), args.repeat)
    run(f"Fetch v{FETCH_VERSION} response, encode",
        fetch_cases(args.partitions, args.batch_bytes), args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
