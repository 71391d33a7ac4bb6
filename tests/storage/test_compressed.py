"""Compressed record batches, as Kafka clients send them (gzip, snappy, lz4, zstd): stored
exactly as sent, decompressed only when records are read, and handled by everything that walks
the log (reads from inside a batch, offset_for_timestamp, retention, compaction).

Batches are built with aiokafka's and kafka-python's own RecordBatch v2 builders (the code
those clients send with), appended with ``append_raw`` to a real store in a temp directory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import crc32c
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from kafka import codec as kafka_codec
from kafka.record.default_records import DefaultRecordBatchBuilder as KafkaPythonBuilder

import streamrt as sr
from streamrt import errors
from streamrt.storage import check_batch, iter_records, parse_header

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
_KP_HAS = {"gzip": kafka_codec.has_gzip, "snappy": kafka_codec.has_snappy,
           "lz4": kafka_codec.has_lz4, "zstd": kafka_codec.has_zstd}

Rec = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]


def _records(n: int, ts0: int = 1_700_000_000_000, keys: int = 0) -> list[Rec]:
    """n records; values compressible (so compression really shrinks them); ``keys`` > 0 cycles
    through that many keys, for compaction."""
    return [(b"k%d" % (i % keys if keys else i), b"value %d " % i * 30,
             [("trace", b"t%d" % i)] if i % 3 else [], ts0 + i * 10) for i in range(n)]


def _build(builder_cls: Any, codec: int, records: list[Rec], *, producer_id: int = -1,
           producer_epoch: int = -1, base_sequence: int = -1, transactional: bool = False) -> bytes:
    b = builder_cls(2, codec, int(transactional), producer_id, producer_epoch, base_sequence,
                    1 << 30)
    for delta, (key, value, headers, ts) in enumerate(records):
        b.append(delta, ts, key, value, headers)
    return bytes(b.build())


def aiokafka_batch(codec: int, records: list[Rec], **kw: Any) -> bytes:
    """A batch as aiokafka's producer builds it."""
    return _build(AioBuilder, codec, records, **kw)


def kafka_python_batch(codec: int, records: list[Rec], **kw: Any) -> bytes:
    """A batch as kafka-python's producer builds it."""
    return _build(KafkaPythonBuilder, codec, records, **kw)


BUILDERS: list[Any] = [
    pytest.param(aiokafka_batch, name, id=f"aiokafka-{name}") for name in CODECS
] + [
    pytest.param(kafka_python_batch, name, id=f"kafka-python-{name}",
                 marks=pytest.mark.skipif(not _KP_HAS[name](),
                                          reason=f"kafka-python has no {name} library here"))
    for name in CODECS
]


def _as_tuples(records: Any) -> list[tuple[int, bytes | None, bytes | None, list, int]]:
    return [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in records]


def _expected(records: list[Rec], base: int) -> list[tuple[int, bytes | None, bytes | None,
                                                              list, int]]:
    return [(base + i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(records)]


@pytest.mark.parametrize(("build", "codec"), BUILDERS)
def test_append_raw_then_read(store: sr.LogStore, build: Callable[..., bytes], codec: str) -> None:
    store.create_topic_sync("t", 1)
    first, second = _records(40), _records(25, ts0=1_800_000_000_000)
    b1, b2 = build(CODECS[codec], first), build(CODECS[codec], second)
    assert parse_header(b1).attributes & 0x07 == CODECS[codec]
    assert len(b1) < sum(len(v) for _, v, _, _ in first)  # really compressed
    assert store.append_raw_sync("t", 0, b1) == 0
    assert store.append_raw_sync("t", 0, b2) == 40

    got = store.read("t", 0, 0, max_records=1000)
    assert len(got) == 65 and got.next_offset == 65
    assert _as_tuples(got) == _expected(first, 0) + _expected(second, 40)
    # from inside a compressed batch, and a limit that ends inside the next one
    mid = store.read("t", 0, 33, max_records=10)
    assert _as_tuples(mid) == (_expected(first, 0) + _expected(second, 40))[33:43]
    assert mid.next_offset == 43
    assert mid[0].offset == 33 and mid[-1].offset == 42

    # read_raw hands back the client's bytes: only the base offset (outside the CRC) differs
    raw = store.read_raw("t", 0, 0, max_bytes=1 << 30)
    assert raw == [b1, struct.pack(">q", 40) + b2[8:]]
    for r in raw:
        check_batch(r)
    assert store.read_raw("t", 0, 50) == [raw[1]]
    info = store.partition_info("t", 0)
    assert (info.records, info.bytes, info.high_watermark) == (65, len(b1) + len(b2), 65)


@pytest.mark.parametrize("codec", CODECS)
def test_idempotent_and_transactional_compressed_batches(store: sr.LogStore, codec: str) -> None:
    store.create_topic_sync("t", 1)
    recs = _records(10)
    first = aiokafka_batch(CODECS[codec], recs, producer_id=77, producer_epoch=0, base_sequence=0,
                           transactional=True)
    second = aiokafka_batch(CODECS[codec], recs, producer_id=77, producer_epoch=0,
                            base_sequence=10, transactional=True)
    h = check_batch(first)
    assert (h.producer_id, h.base_sequence, h.attributes & 0x10) == (77, 0, 0x10)
    assert store.append_raw_sync("t", 0, first) == 0
    with pytest.raises(errors.DuplicateSequence):
        store.append_raw_sync("t", 0, first)  # a retry of the same batch
    assert store.append_raw_sync("t", 0, second) == 10
    assert [r.offset for r in store.read("t", 0, 0, max_records=100)] == list(range(20))


@pytest.mark.parametrize("codec", CODECS)
def test_offset_for_timestamp(store: sr.LogStore, codec: str) -> None:
    store.create_topic_sync("t", 1)
    store.append_raw_sync("t", 0, aiokafka_batch(CODECS[codec], _records(20, ts0=1000)))
    store.append_raw_sync("t", 0, aiokafka_batch(CODECS[codec], _records(20, ts0=5000)))
    assert store.offset_for_timestamp("t", 0, 0) == 0
    assert store.offset_for_timestamp("t", 0, 1055) == 6  # inside the first batch
    assert store.offset_for_timestamp("t", 0, 1191) == 20  # between the batches
    assert store.offset_for_timestamp("t", 0, 5190) == 39
    assert store.offset_for_timestamp("t", 0, 5191) is None


@pytest.mark.parametrize("codec", CODECS)
def test_retention_drops_whole_compressed_batches(store: sr.LogStore, codec: str) -> None:
    store.create_topic_sync("t", 1, sr.TopicConfig(retention_ms=1000))
    for b in range(4):  # batch b: timestamps 10_000 * (b + 1) + 0..90
        store.append_raw_sync("t", 0, aiokafka_batch(CODECS[codec],
                                                     _records(10, ts0=10_000 * (b + 1))))
    assert store.run_retention(now_ms=31_000) == 2
    info = store.partition_info("t", 0)
    assert (info.log_start_offset, info.high_watermark, info.records) == (20, 40, 20)
    assert [r.offset for r in store.read("t", 0, 20, max_records=100)] == list(range(20, 40))
    assert info.bytes == sum(len(b) for b in store.read_raw("t", 0, 20, max_bytes=1 << 30))


@pytest.mark.parametrize("codec", CODECS)
def test_compaction_of_compressed_batches(store: sr.LogStore, codec: str) -> None:
    store.create_topic_sync("c", 1, sr.TopicConfig(cleanup_policy="compact"))
    first = _records(30, ts0=1000, keys=5)  # k0..k4, each written 6 times
    second = [(b"k1", b"newest k1", [], 2000), (b"k9", b"only k9", [("h", None)], 2001)]
    store.append_raw_sync("c", 0, aiokafka_batch(CODECS[codec], first))
    store.append_raw_sync("c", 0, aiokafka_batch(CODECS[codec], second))
    assert store.compact("c", now_ms=3000) == 26  # 25 superseded in the first batch, k1 once more

    got = _as_tuples(store.read("c", 0, 0, max_records=100))
    # the last writes of k0, k2, k3, k4 (offsets 25, 27, 28, 29), then the second batch
    assert got == ([(off, *first[off][:3], first[off][3]) for off in (25, 27, 28, 29)]
                   + _expected(second, 30))
    raw = store.read_raw("c", 0, 0, max_bytes=1 << 30)
    for b in raw:
        check_batch(b)  # the rewritten batch is a valid batch (uncompressed now), CRC and all
    assert parse_header(raw[0]).base_offset == 0 and parse_header(raw[0]).offset_count == 30
    assert parse_header(raw[1]).attributes & 0x07 == CODECS[codec]  # untouched: kept as sent
    info = store.partition_info("c", 0)
    assert (info.records, info.high_watermark) == (6, 32)
    assert info.bytes == sum(len(b) for b in raw)
    # reading from an offset compaction removed starts at the next survivor
    assert [r.offset for r in store.read("c", 0, 3, max_records=2)] == [25, 27]
    assert store.compact("c", now_ms=3000) == 0


def _recrc(buf: bytearray) -> bytes:
    struct.pack_into(">I", buf, 17, crc32c.crc32c(bytes(buf[21:])))
    return bytes(buf)


@pytest.mark.parametrize("codec", CODECS)
def test_payload_that_does_not_decompress(store: sr.LogStore, codec: str) -> None:
    """A client may send a batch whose CRC is right but whose payload is not valid compressed
    data. It is stored (nothing is decompressed on append); reading it raises CorruptBatch,
    not the compression library's own error."""
    store.create_topic_sync("t", 1)
    buf = bytearray(aiokafka_batch(CODECS[codec], _records(20)))
    for i in range(61, min(len(buf), 61 + 16)):
        buf[i] ^= 0x5A
    bad = _recrc(buf)
    check_batch(bad)
    store.append_raw_sync("t", 0, bad)
    with pytest.raises(errors.CorruptBatch, match=f"does not decompress \\({codec}\\)"):
        list(store.read("t", 0, 0))
    with pytest.raises(errors.CorruptBatch, match="does not decompress"):
        list(iter_records(bad))
    assert store.read_raw("t", 0, 0) == [bad]  # served to Kafka clients as it is


@pytest.mark.parametrize("codec_id", [5, 6, 7])
def test_unknown_codec_is_refused(store: sr.LogStore, codec_id: int) -> None:
    store.create_topic_sync("t", 1)
    buf = bytearray(aiokafka_batch(0, _records(3)))
    struct.pack_into(">h", buf, 21, codec_id)
    with pytest.raises(errors.CorruptBatch, match=f"codec {codec_id}"):
        store.append_raw_sync("t", 0, _recrc(buf))
    assert store.partition_info("t", 0).high_watermark == 0
