"""The hand-written Produce and Fetch codecs (``streamrt/kafka/_produce.py``, ``_fetch.py``).

Three kinds of evidence: frames built byte by byte from Kafka's message definitions; byte-for-
byte agreement with the protocol classes of two real clients, kafka-python (generated from the
same JSON definitions, every version) and aiokafka (hand-written, non-flexible versions); and
fuzzing, where only ProtocolError (or UnsupportedVersion) may escape and hostile counts must
not allocate. Every decoder test feeds the frame whole, behind a header, and with trailing data.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka.protocol import fetch as aio_fetch
from aiokafka.protocol import produce as aio_produce
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kafka.protocol.consumer import FetchRequest, FetchResponse
from kafka.protocol.producer import ProduceRequest, ProduceResponse

from streamrt.errors import (
    CorruptBatch,
    ProtocolError,
    UnsupportedMessageFormat,
    UnsupportedVersion,
)
from streamrt.kafka._fetch import INLINE_RECORDS_MAX, decode_fetch_request, encode_fetch_response
from streamrt.kafka._produce import decode_produce_request, encode_produce_response, split_batches
from streamrt.storage import check_batch, iter_records

PRODUCE_VERSIONS = range(3, 11)
FETCH_VERSIONS = range(4, 13)

# ---------------------------------------------------------------- body strategies

i8 = st.integers(-(2**7), 2**7 - 1)
i16 = st.integers(-(2**15), 2**15 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
names = st.text(max_size=12)
blobs = st.binary(max_size=40)


def _dicts(**fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields)


produce_requests = _dicts(
    transactional_id=st.none() | names, acks=i16, timeout_ms=i32,
    topic_data=st.lists(_dicts(name=names, partition_data=st.lists(
        _dicts(index=i32, records=st.none() | blobs), max_size=3)), max_size=3),
)

fetch_requests = _dicts(
    replica_id=i32, max_wait_ms=i32, min_bytes=i32, max_bytes=i32, isolation_level=i8,
    session_id=i32, session_epoch=i32,
    topics=st.lists(_dicts(topic=names, partitions=st.lists(_dicts(
        partition=i32, current_leader_epoch=i32, fetch_offset=i64, last_fetched_epoch=i32,
        log_start_offset=i64, partition_max_bytes=i32), max_size=3)), max_size=3),
    forgotten_topics_data=st.lists(_dicts(topic=names, partitions=st.lists(i32, max_size=4)),
                                   max_size=2),
    rack_id=names, cluster_id=st.none() | names,
)

leaders = st.none() | _dicts(leader_id=i32, leader_epoch=i32)

produce_responses = _dicts(
    responses=st.lists(_dicts(name=names, partition_responses=st.lists(_dicts(
        index=i32, error_code=i16, base_offset=i64, log_append_time_ms=i64, log_start_offset=i64,
        record_errors=st.lists(_dicts(batch_index=i32, batch_index_error_message=st.none() | names),
                               max_size=2),
        error_message=st.none() | names, current_leader=leaders), max_size=3)), max_size=3),
    throttle_time_ms=i32,
    node_endpoints=st.lists(_dicts(node_id=i32, host=names, port=i32, rack=st.none() | names),
                            max_size=2),
)

# records: null, one bytes object, or several chunks (stored batches), some past the inline size
record_sets = st.none() | blobs | st.lists(
    blobs | st.integers(INLINE_RECORDS_MAX - 1, INLINE_RECORDS_MAX + 1).map(lambda n: b"r" * n),
    max_size=3)

fetch_responses = _dicts(
    throttle_time_ms=i32, error_code=i16, session_id=i32,
    responses=st.lists(_dicts(topic=names, partitions=st.lists(_dicts(
        partition_index=i32, error_code=i16, high_watermark=i64, last_stable_offset=i64,
        log_start_offset=i64,
        aborted_transactions=st.none() | st.lists(_dicts(producer_id=i64, first_offset=i64),
                                                  max_size=2),
        preferred_read_replica=i32, records=record_sets,
        diverging_epoch=st.none() | _dicts(epoch=i32, end_offset=i64),
        current_leader=leaders,
        snapshot_id=st.none() | _dicts(end_offset=i64, epoch=i32)), max_size=3)), max_size=2),
)

# ---------------------------------------------------------------- kafka-python as the reference


def _is_default_tag(value: Any) -> bool:
    """Kafka (Java) leaves out a tagged field equal to its default; kafka-python writes any
    tagged field it is given, so defaults are dropped before handing it a body."""
    if value is None or value == []:
        return True
    return isinstance(value, Mapping) and all(v == -1 for v in value.values())


def to_kafka_python(cls: Any, d: Mapping[str, Any], version: int) -> Any:
    """A kafka-python message (or nested struct) of ``version`` from one of our dicts."""
    kw = {}
    for name, f in cls._struct.fields.items():
        if name not in d or not f.for_version_q(version):
            continue
        v = d[name]
        if f._tag is not None:
            if _is_default_tag(v):
                continue
        if f.is_struct_array() and v is not None:
            v = [to_kafka_python(f.data_class, x, version) for x in v]
        elif f.is_struct() and v is not None:
            v = to_kafka_python(f.data_class, v, version)
        elif isinstance(v, list) and name == "records":
            v = b"".join(v)
        elif isinstance(v, memoryview):
            v = bytes(v)
        kw[name] = v
    return cls(version=version, **kw)


def kp_encode(cls: Any, body: Mapping[str, Any], version: int) -> bytes:
    """kafka-python's encoding of ``body``."""
    return bytes(to_kafka_python(cls, body, version).encode())


def plain(d: Any) -> Any:
    """``d`` with memoryviews turned into bytes (for comparisons)."""
    if isinstance(d, dict):
        return {k: plain(v) for k, v in d.items()}
    if isinstance(d, list):
        return [plain(v) for v in d]
    if isinstance(d, memoryview):
        return bytes(d)
    return d


def expected_fetch_request(body: Mapping[str, Any], version: int) -> dict[str, Any]:
    """What decoding ``body`` sent at ``version`` gives: fields the version lacks take Kafka's
    defaults."""
    def part(p: Mapping[str, Any]) -> dict[str, Any]:
        return {"partition": p["partition"],
                "current_leader_epoch": p["current_leader_epoch"] if version >= 9 else -1,
                "fetch_offset": p["fetch_offset"],
                "last_fetched_epoch": p["last_fetched_epoch"] if version >= 12 else -1,
                "log_start_offset": p["log_start_offset"] if version >= 5 else -1,
                "partition_max_bytes": p["partition_max_bytes"]}

    return {
        "replica_id": body["replica_id"], "max_wait_ms": body["max_wait_ms"],
        "min_bytes": body["min_bytes"], "max_bytes": body["max_bytes"],
        "isolation_level": body["isolation_level"],
        "session_id": body["session_id"] if version >= 7 else 0,
        "session_epoch": body["session_epoch"] if version >= 7 else -1,
        "topics": [{"topic": t["topic"], "partitions": [part(p) for p in t["partitions"]]}
                   for t in body["topics"]],
        "forgotten_topics_data": body["forgotten_topics_data"] if version >= 7 else [],
        "rack_id": body["rack_id"] if version >= 11 else "",
        "cluster_id": body["cluster_id"] if version >= 12 else None,
    }


def decode_all_ways(decode: Any, version: int, body: bytes) -> dict[str, Any]:
    """Decode ``body`` alone, behind a fake 7-byte header in a bytes frame, and in a bytearray
    memoryview; all three must agree. Trailing bytes must be refused."""
    got = decode(version, body, 0)
    header = b"HEADER!"
    assert plain(decode(version, header + body, len(header))) == plain(got)
    assert plain(decode(version, memoryview(bytearray(header + body)), len(header))) == plain(got)
    with pytest.raises(ProtocolError, match="after its last field"):
        decode(version, body + b"\x00", 0)
    return got


# ---------------------------------------------------------------- round trips against kafka-python

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@given(body=produce_requests)
@SETTINGS
def test_produce_request_matches_kafka_python(version: int, body: dict[str, Any]) -> None:
    frame = kp_encode(ProduceRequest, body, version)
    assert plain(decode_all_ways(decode_produce_request, version, frame)) == body


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@given(body=produce_responses)
@SETTINGS
def test_produce_response_matches_kafka_python(version: int, body: dict[str, Any]) -> None:
    assert encode_produce_response(version, body) == kp_encode(ProduceResponse, body, version)


@pytest.mark.parametrize("version", FETCH_VERSIONS)
@given(body=fetch_requests)
@SETTINGS
def test_fetch_request_matches_kafka_python(version: int, body: dict[str, Any]) -> None:
    frame = kp_encode(FetchRequest, body, version)
    assert decode_all_ways(decode_fetch_request, version, frame) == expected_fetch_request(
        body, version)


@pytest.mark.parametrize("version", FETCH_VERSIONS)
@given(body=fetch_responses)
@SETTINGS
def test_fetch_response_matches_kafka_python(version: int, body: dict[str, Any]) -> None:
    chunks = encode_fetch_response(version, body)
    assert all(type(c) is bytes and c for c in chunks)  # bytes, none of them empty
    assert b"".join(chunks) == kp_encode(FetchResponse, body, version)


# ---------------------------------------------------------------- frames built by hand


def test_produce_v3_frame_by_hand() -> None:
    frame = (b"\xff\xff"                         # transactional_id: null
             + struct.pack(">hi", -1, 1500)       # acks, timeout_ms
             + struct.pack(">i", 1)               # one topic
             + struct.pack(">h", 3) + b"foo"      # name
             + struct.pack(">i", 2)               # two partitions
             + struct.pack(">ii", 0, 4) + b"abcd"
             + struct.pack(">ii", 7, -1))         # null records
    got = decode_all_ways(decode_produce_request, 3, frame)
    assert plain(got) == {"transactional_id": None, "acks": -1, "timeout_ms": 1500, "topic_data": [
        {"name": "foo", "partition_data": [{"index": 0, "records": b"abcd"},
                                           {"index": 7, "records": None}]}]}


def test_produce_v9_frame_by_hand_skips_unknown_tags() -> None:
    frame = (b"\x03tx"                            # compact transactional_id "tx"
             + struct.pack(">hi", 1, 30000)
             + b"\x02"                            # one topic
             + b"\x04bar"
             + b"\x02"                            # one partition
             + struct.pack(">i", 5) + b"\x04xyz"  # records: 3 bytes
             + b"\x01\x07\x02hi"                  # a tagged field we do not know (tag 7)
             + b"\x00"                            # topic tags
             + b"\x02\x00\x00\x63\x01\x05")      # two top-level tags: 0 (empty), 99 (1 byte)
    got = decode_all_ways(decode_produce_request, 9, frame)
    assert plain(got) == {"transactional_id": "tx", "acks": 1, "timeout_ms": 30000,
                          "topic_data": [{"name": "bar", "partition_data": [
                              {"index": 5, "records": b"xyz"}]}]}


def test_produce_records_are_zero_copy_slices_of_the_frame() -> None:
    records = bytes(range(256)) * 4
    for version in (3, 9):
        frame = b"head" + kp_encode(ProduceRequest, {
            "transactional_id": None, "acks": 1, "timeout_ms": 1,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": records}]}],
        }, version)
        got = decode_produce_request(version, frame, 4)["topic_data"][0]["partition_data"][0]
        view = got["records"]
        assert isinstance(view, memoryview) and view.obj is frame and view == records


def test_fetch_v4_and_v12_frames_by_hand() -> None:
    v4 = (struct.pack(">iiiib", -1, 500, 1, 1 << 20, 1)
          + struct.pack(">i", 1) + struct.pack(">h", 1) + b"t"
          + struct.pack(">i", 1) + struct.pack(">iqi", 3, 42, 65536))
    got = decode_all_ways(decode_fetch_request, 4, v4)
    assert got == {"replica_id": -1, "max_wait_ms": 500, "min_bytes": 1, "max_bytes": 1 << 20,
                   "isolation_level": 1, "session_id": 0, "session_epoch": -1,
                   "topics": [{"topic": "t", "partitions": [{
                       "partition": 3, "current_leader_epoch": -1, "fetch_offset": 42,
                       "last_fetched_epoch": -1, "log_start_offset": -1,
                       "partition_max_bytes": 65536}]}],
                   "forgotten_topics_data": [], "rack_id": "", "cluster_id": None}
    v12 = (struct.pack(">iiiibii", -1, 500, 1, 1 << 20, 0, 9, 2)
           + b"\x02" + b"\x02t"
           + b"\x02" + struct.pack(">iiqiqi", 3, 4, 42, 5, 0, 65536) + b"\x00"
           + b"\x00"                                # topic tags
           + b"\x02" + b"\x02u" + b"\x03" + struct.pack(">ii", 1, 2) + b"\x00"  # forgotten u[1,2]
           + b"\x03r1"                              # rack_id
           + b"\x02" + b"\x00\x04\x04cid" + b"\x01\x02\xab\xcd")  # ClusterId, ReplicaState-ish
    got = decode_all_ways(decode_fetch_request, 12, v12)
    assert got["cluster_id"] == "cid" and got["rack_id"] == "r1"
    assert got["session_id"] == 9 and got["session_epoch"] == 2
    assert got["topics"][0]["partitions"] == [{
        "partition": 3, "current_leader_epoch": 4, "fetch_offset": 42, "last_fetched_epoch": 5,
        "log_start_offset": 0, "partition_max_bytes": 65536}]
    assert got["forgotten_topics_data"] == [{"topic": "u", "partitions": [1, 2]}]


def test_fetch_v12_cluster_id_must_fill_its_tag() -> None:
    base = struct.pack(">iiiibii", -1, 0, 0, 0, 0, 0, -1) + b"\x01" + b"\x01" + b"\x01"
    good = base + b"\x01\x00\x04\x04cid"
    assert decode_fetch_request(12, good, 0)["cluster_id"] == "cid"
    with pytest.raises(ProtocolError, match="cluster_id"):
        decode_fetch_request(12, base + b"\x01\x00\x05\x04cidX", 0)


def test_fetch_response_v12_tagged_fields_by_hand() -> None:
    body = {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": [
        {"topic": "t", "partitions": [{
            "partition_index": 0, "error_code": 6, "high_watermark": 10, "last_stable_offset": 10,
            "log_start_offset": 0, "aborted_transactions": None, "preferred_read_replica": -1,
            "records": None, "current_leader": {"leader_id": 2, "leader_epoch": 7},
            "diverging_epoch": {"epoch": -1, "end_offset": -1}}]}]}
    want = (struct.pack(">ihi", 0, 0, 0) + b"\x02" + b"\x02t" + b"\x02"
            + struct.pack(">ihqqq", 0, 6, 10, 10, 0)
            + b"\x00"                               # aborted_transactions: null
            + struct.pack(">i", -1)                 # preferred_read_replica
            + b"\x00"                               # records: null
            + b"\x01" + b"\x01\x09" + struct.pack(">ii", 2, 7) + b"\x00"  # only CurrentLeader
            + b"\x00"                               # topic tags
            + b"\x00")                              # top-level tags
    assert b"".join(encode_fetch_response(12, body)) == want


def test_produce_response_v10_tagged_fields_by_hand() -> None:
    body = {"responses": [{"name": "t", "partition_responses": [{
        "index": 1, "error_code": 6, "base_offset": -1, "current_leader": {"leader_id": 3,
                                                                         "leader_epoch": 1}}]}],
        "throttle_time_ms": 0,
        "node_endpoints": [{"node_id": 3, "host": "h", "port": 9092, "rack": None}]}
    node = struct.pack(">i", 3) + b"\x02h" + struct.pack(">i", 9092) + b"\x00" + b"\x00"
    fields = (b"\x02" + b"\x02t" + b"\x02"
              + struct.pack(">ihqqq", 1, 6, -1, -1, -1)
              + b"\x01"                             # record_errors: empty
              + b"\x00")                            # error_message: null
    want = (fields
            + b"\x01" + b"\x00\x09" + struct.pack(">ii", 3, 1) + b"\x00"  # CurrentLeader
            + b"\x00"                               # topic tags
            + struct.pack(">i", 0)                  # throttle_time_ms
            + b"\x01\x00" + bytes([len(node) + 1]) + b"\x02" + node)  # NodeEndpoints
    assert encode_produce_response(10, body) == want
    # Before version 10 neither exists.
    assert encode_produce_response(9, body) == fields + b"\x00\x00" + struct.pack(">i", 0) + b"\x00"


def test_fetch_response_hands_out_large_batches_uncopied() -> None:
    big = [b"a" * (1 << 20), b"b" * (1 << 20)]
    small = b"c" * 100
    body = {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": [
        {"topic": "t", "partitions": [
            {"partition_index": 0, "error_code": 0, "high_watermark": 1, "records": big},
            {"partition_index": 1, "error_code": 0, "high_watermark": 1, "records": small}]}]}
    for version in FETCH_VERSIONS:
        chunks = encode_fetch_response(version, body)
        assert chunks[1] is big[0] and chunks[2] is big[1]
        assert not any(c is small for c in chunks) and small in chunks[3]
        assert len(chunks) == 4
        assert b"".join(chunks) == kp_encode(FetchResponse, body, version)


# ---------------------------------------------------------------- aiokafka's protocol classes


@pytest.mark.parametrize("version", range(3, 8))  # aiokafka sends Produce up to v7
def test_produce_request_from_aiokafka(version: int) -> None:
    batch = _batch(3)
    req = aio_produce.ProduceRequest(
        transactional_id="tx-1", required_acks=-1, timeout=1234,
        topics=[("orders", [(0, batch), (2, batch)]), ("audit", [(1, batch)])])
    struct_cls = getattr(aio_produce, f"ProduceRequest_v{version}")
    frame = req.build(struct_cls).encode()
    got = decode_all_ways(decode_produce_request, version, frame)
    orders = [{"index": 0, "records": batch}, {"index": 2, "records": batch}]
    audit = [{"index": 1, "records": batch}]
    assert plain(got) == {"transactional_id": "tx-1", "acks": -1, "timeout_ms": 1234,
                          "topic_data": [{"name": "orders", "partition_data": orders},
                                         {"name": "audit", "partition_data": audit}]}


@pytest.mark.parametrize("version", range(3, 9))
def test_produce_response_read_by_aiokafka(version: int) -> None:
    body = {"responses": [{"name": "orders", "partition_responses": [
        {"index": 0, "error_code": 0, "base_offset": 42, "log_append_time_ms": -1,
         "log_start_offset": 7, "record_errors": [], "error_message": None}]}],
        "throttle_time_ms": 3}
    resp = getattr(aio_produce, f"ProduceResponse_v{version}").decode(
        encode_produce_response(version, body))
    topic, parts = resp.topics[0]
    assert topic == "orders" and resp.throttle_time_ms == 3
    assert tuple(parts[0][:4]) == (0, 0, 42, -1)
    if version >= 5:
        assert parts[0][4] == 7


@pytest.mark.parametrize("version", range(4, 12))
def test_fetch_request_from_aiokafka(version: int) -> None:
    req = aio_fetch.FetchRequest(max_wait_time=500, min_bytes=1, max_bytes=52428800,
                                 isolation_level=1, topics=[("t", [(0, 42, 1048576)])],
                                 rack_id="rack-a")
    frame = req.build(getattr(aio_fetch, f"FetchRequest_v{version}")).encode()
    got = decode_all_ways(decode_fetch_request, version, frame)
    assert (got["max_wait_ms"], got["min_bytes"], got["max_bytes"], got["isolation_level"]) == (
        500, 1, 52428800, 1)
    p = got["topics"][0]["partitions"][0]
    assert got["topics"][0]["topic"] == "t"
    assert (p["partition"], p["fetch_offset"], p["partition_max_bytes"]) == (0, 42, 1048576)
    assert got["rack_id"] == ("rack-a" if version >= 11 else "")


@pytest.mark.parametrize("version", range(4, 12))
def test_fetch_response_read_by_aiokafka(version: int) -> None:
    batches = [_batch(2), _batch(5, codec=4)]
    body = {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": [
        {"topic": "t", "partitions": [{
            "partition_index": 0, "error_code": 0, "high_watermark": 7, "last_stable_offset": 7,
            "log_start_offset": 0, "aborted_transactions": [{"producer_id": 9, "first_offset": 1}],
            "preferred_read_replica": -1, "records": batches}]}]}
    resp = getattr(aio_fetch, f"FetchResponse_v{version}").decode(
        b"".join(encode_fetch_response(version, body)))
    topic, parts = resp.topics[0]
    assert topic == "t"
    part = parts[0]
    assert part[0] == 0 and part[1] == 0 and part[2] == 7
    assert part[-1] == b"".join(batches)
    assert [tuple(a) for a in part[5 if version >= 5 else 4]] == [(9, 1)]


# ---------------------------------------------------------------- malformed input

ALL = [("produce", v) for v in PRODUCE_VERSIONS] + [("fetch", v) for v in FETCH_VERSIONS]
DECODERS = {"produce": decode_produce_request, "fetch": decode_fetch_request}
REQUESTS = {"produce": (ProduceRequest, produce_requests), "fetch": (FetchRequest, fetch_requests)}


@pytest.mark.parametrize(("api", "version"), ALL)
@given(data=st.data())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_prefix_is_refused(api: str, version: int, data: st.DataObject) -> None:
    cls, bodies = REQUESTS[api]
    frame = kp_encode(cls, data.draw(bodies), version)
    decode = DECODERS[api]
    decode(version, frame, 0)
    for cut in range(len(frame)):
        with pytest.raises(ProtocolError):
            decode(version, frame[:cut], 0)


@pytest.mark.parametrize(("api", "version"), ALL)
@given(data=st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_frames_raise_only_protocol_errors(api: str, version: int,
                                                   data: st.DataObject) -> None:
    cls, bodies = REQUESTS[api]
    frame = bytearray(kp_encode(cls, data.draw(bodies), version))
    for _ in range(data.draw(st.integers(1, 4))):
        if frame:
            frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    try:
        DECODERS[api](version, bytes(frame), 0)
    except ProtocolError:
        pass


@pytest.mark.parametrize("api", ["produce", "fetch"])
@given(version=st.integers(-2, 20), junk=st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
@example(version=9, junk=b"\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\x7f")
@example(version=12, junk=b"\x00" * 25 + b"\x80\x80\x80\x80\x80\x01")
def test_random_bytes_raise_only_protocol_errors(api: str, version: int, junk: bytes) -> None:
    try:
        DECODERS[api](version, junk, 0)
    except (ProtocolError, UnsupportedVersion):
        pass


def test_unsupported_versions() -> None:
    for bad in (0, 2, 11, 13):
        with pytest.raises(UnsupportedVersion):
            decode_produce_request(bad, b"", 0)
        with pytest.raises(UnsupportedVersion):
            encode_produce_response(bad, {"responses": []})
    for bad in (3, 13):
        with pytest.raises(UnsupportedVersion):
            decode_fetch_request(bad, b"", 0)
        with pytest.raises(UnsupportedVersion):
            encode_fetch_response(bad, {"responses": []})


HOSTILE = [
    # Produce v3: null transactional id, acks, timeout, then 2**31-1 topics
    ("produce", 3, b"\xff\xff" + b"\x00" * 6 + b"\x7f\xff\xff\xff" + b"\x00" * 8),
    # Produce v3: one topic "t" claiming 2**31-1 partitions
    ("produce", 3, b"\xff\xff" + b"\x00" * 6 + b"\x00\x00\x00\x01\x00\x01t\x7f\xff\xff\xff"),
    # Produce v3: records length 2**31-1
    ("produce", 3, b"\xff\xff" + b"\x00" * 6 + b"\x00\x00\x00\x01\x00\x01t\x00\x00\x00\x01"
     + b"\x00\x00\x00\x00\x7f\xff\xff\xff" + b"x" * 10),
    # Produce v9: 2**32-2 topics (compact count 0xffffffff)
    ("produce", 9, b"\x00" + b"\x00" * 6 + b"\xff\xff\xff\xff\x0f" + b"\x00" * 8),
    # Produce v9: a string of 2**32-2 bytes
    ("produce", 9, b"\xff\xff\xff\xff\x0f" + b"\x00" * 20),
    # Produce v9: 2**32-1 tagged fields at the top level
    ("produce", 9, b"\x00" + b"\x00" * 6 + b"\x01" + b"\xff\xff\xff\xff\x0f" + b"\x00" * 8),
    # Fetch v11: 2**31-1 topics
    ("fetch", 11, b"\x00" * 25 + b"\x7f\xff\xff\xff" + b"\x00" * 8),
    # Fetch v7: 2**31-1 forgotten partitions
    ("fetch", 7, b"\x00" * 25 + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x01\x00\x01u"
     + b"\x7f\xff\xff\xff" + b"\x00" * 8),
    # Fetch v12: 2**32-2 partitions in a topic
    ("fetch", 12, b"\x00" * 25 + b"\x02\x02t" + b"\xff\xff\xff\xff\x0f" + b"\x00" * 8),
    # Fetch v12: varint longer than 5 bytes
    ("fetch", 12, b"\x00" * 25 + b"\x80\x80\x80\x80\x80\x80\x01"),
]


@pytest.mark.parametrize(("api", "version", "frame"), HOSTILE)
def test_huge_counts_are_refused_before_allocating(api: str, version: int, frame: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            DECODERS[api](version, frame, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_non_utf8_string_is_a_protocol_error() -> None:
    frame = b"\x00\x02\xff\xfe" + b"\x00" * 6 + b"\x00\x00\x00\x00"
    with pytest.raises(ProtocolError, match="UTF-8"):
        decode_produce_request(3, frame, 0)


def test_null_topic_name_is_a_protocol_error() -> None:
    frame = b"\xff\xff" + b"\x00" * 6 + b"\x00\x00\x00\x01" + b"\xff\xff" + b"\x00\x00\x00\x00"
    with pytest.raises(ProtocolError, match="topic name"):
        decode_produce_request(3, frame, 0)


# ---------------------------------------------------------------- record batches in a Produce


def _batch(n: int, codec: int = 0, *, transactional: bool = False, producer_id: int = -1,
           base_sequence: int = -1) -> bytes:
    b = DefaultRecordBatchBuilder(2, codec, int(transactional), producer_id,
                                  0 if producer_id >= 0 else -1, base_sequence, 1 << 30)
    for i in range(n):
        b.append(i, 1_700_000_000_000 + i, b"k%d" % i, b"value-%d" % i * 20, [("h", b"v")])
    return bytes(b.build())


def test_split_batches_back_to_back() -> None:
    batches = [_batch(1), _batch(3, codec=1), _batch(2, codec=2), _batch(4, codec=3),
               _batch(5, codec=4), _batch(2, transactional=True, producer_id=7, base_sequence=0)]
    records = b"".join(batches)
    got = split_batches(memoryview(records))
    assert [bytes(g) for g in got] == batches
    assert all(g.obj is records for g in got)
    for g, n in zip(got, (1, 3, 2, 4, 5, 2), strict=True):
        assert check_batch(bytes(g)).record_count == n  # compressed ones without decompressing
        assert len(list(iter_records(bytes(g)))) == n
    assert [bytes(g) for g in split_batches(records)] == batches


def test_split_batches_refuses_what_is_not_a_batch_sequence() -> None:
    one = _batch(2)
    with pytest.raises(CorruptBatch, match="null"):
        split_batches(None)
    with pytest.raises(CorruptBatch, match="empty"):
        split_batches(b"")
    with pytest.raises(CorruptBatch, match="stray"):
        split_batches(one + one[:10])
    with pytest.raises(CorruptBatch, match="length"):
        split_batches(one + one[:-1])
    short = bytearray(one)
    struct.pack_into(">i", short, 8, 40)  # shorter than a header
    with pytest.raises(CorruptBatch, match="length"):
        split_batches(bytes(short))
    for magic in (0, 1):
        old = bytearray(one)
        old[16] = magic
        with pytest.raises(UnsupportedMessageFormat):
            split_batches(bytes(old))
    bad = bytearray(one)
    bad[16] = 3
    with pytest.raises(CorruptBatch, match="magic 3") as info:
        split_batches(bytes(bad))
    assert not isinstance(info.value, UnsupportedMessageFormat)
    control = bytearray(one)
    control[22] |= 0x20
    with pytest.raises(CorruptBatch, match="control"):
        split_batches(bytes(control))


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_split_batches_raises_only_corrupt_batch(junk: bytes) -> None:
    try:
        for b in split_batches(junk):
            assert len(b) >= 61
    except CorruptBatch:
        pass


def test_produce_request_to_stored_batches() -> None:
    """The path the server takes: decode, split, check each batch (CRC, no decompression)."""
    batches = [_batch(3, codec=c) for c in range(5)]
    body = {"transactional_id": None, "acks": 1, "timeout_ms": 1000, "topic_data": [
        {"name": "t", "partition_data": [{"index": i, "records": b}
                                         for i, b in enumerate(batches)]}]}
    for version in PRODUCE_VERSIONS:
        frame = kp_encode(ProduceRequest, body, version)
        req = decode_produce_request(version, frame, 0)
        for pd, want in zip(req["topic_data"][0]["partition_data"], batches, strict=True):
            (one,) = split_batches(pd["records"])
            assert check_batch(one).record_count == 3 and one == want
