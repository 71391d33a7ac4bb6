"""Our frames against independently known byte layouts.

Three independent sources: byte strings written out by hand from Kafka's protocol guide;
the hand-written ``Struct`` classes of kafka-python (``kafka.protocol.old``) and aiokafka
(``aiokafka.protocol``), which those clients use on the wire; and whole frames (size prefix,
header, body) built by the clients' own request classes.
"""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrt.kafka import (
    SUPPORTED,
    ApiKey,
    RequestHeader,
    api_versions_error_response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    read_request_header,
)
from test_codec_roundtrip import bodies, flexible, schema

pytest.importorskip("kafka.protocol.old")
pytest.importorskip("aiokafka.protocol")

# aiokafka declares ListOffsets v4/v5's current_leader_epoch as int64; Kafka's JSON (and
# kafka-python) say int32. aiokafka itself sends ListOffsets v3 at most, so this never meets
# the wire.
_THEIR_BUGS = {("aiokafka.protocol", ApiKey.LIST_OFFSETS, 4, "request"),
               ("aiokafka.protocol", ApiKey.LIST_OFFSETS, 5, "request")}


pytestmark = pytest.mark.usefixtures("generic_codec_only")


def _struct_classes(package: str) -> list[tuple[str, int, int, str, Any]]:
    found = []
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        for name, cls in vars(module).items():
            key, version = getattr(cls, "API_KEY", None), getattr(cls, "API_VERSION", None)
            if not (inspect.isclass(cls) and hasattr(cls, "SCHEMA")
                    and isinstance(key, int) and isinstance(version, int)):
                continue
            side = "request" if "Request" in name else "response"
            lo, hi = SUPPORTED.get(key, (1, 0))
            if lo <= version <= hi and (package, key, version, side) not in _THEIR_BUGS:
                found.append((package, key, version, side, cls))
    return sorted(found, key=lambda c: c[:4])


HAND_WRITTEN = _struct_classes("kafka.protocol.old") + _struct_classes("aiokafka.protocol")


def test_the_hand_written_classes_cover_most_apis() -> None:
    covered = {(c[1], c[3]) for c in HAND_WRITTEN}
    assert len(HAND_WRITTEN) >= 150
    assert {(k, side) for k in SUPPORTED for side in ("request", "response")} - covered <= {
        (ApiKey.DESCRIBE_CONFIGS, "request"), (ApiKey.DESCRIBE_CONFIGS, "response"),
        (ApiKey.OFFSET_FOR_LEADER_EPOCH, "request"), (ApiKey.OFFSET_FOR_LEADER_EPOCH, "response"),
        (ApiKey.INIT_PRODUCER_ID, "request"), (ApiKey.INIT_PRODUCER_ID, "response")}


def _body_bytes(key: int, version: int, side: str, body: dict[str, Any]) -> bytes:
    """Our encoding of ``body`` without size prefix and header."""
    if side == "request":
        frame = encode_request(key, version, 1, "c", body)
        return frame[4 + 8 + 3 + flexible(key, version):]
    frame = encode_response(RequestHeader(key, version, 1, None, flexible(key, version)), body)
    return frame[4 + 4 + (flexible(key, version) and key != ApiKey.API_VERSIONS):]


@pytest.mark.parametrize("cls_case", HAND_WRITTEN,
                         ids=lambda c: f"{c[0].split('.')[0]}-{c[4].__name__}")
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hand_written_classes_read_and_write_our_bytes(cls_case: tuple, data: st.DataObject) -> None:
    package, key, version, side, cls = cls_case
    body = data.draw(bodies(schema(key, side), version))
    if key == ApiKey.API_VERSIONS and side == "response":
        body["error_code"] = 0  # a failed one is written in v0 (tested below)
    ours = _body_bytes(key, version, side, body)
    theirs = cls.decode(io.BytesIO(ours))
    assert bytes(theirs.encode()) == ours


# ------------------------------------------------------------- bytes written out by hand

def test_api_versions_v0_request_literal() -> None:
    frame = (b"\x00\x00\x00\x0b"  # size 11
             b"\x00\x12\x00\x00"  # api key 18, version 0
             b"\x00\x00\x00\x2a"  # correlation id 42
             b"\x00\x01x")  # client id "x" (int16 length)
    assert encode_request(ApiKey.API_VERSIONS, 0, 42, "x", {}) == frame
    header, offset = read_request_header(frame[4:])
    assert header == RequestHeader(18, 0, 42, "x", False) and offset == 11
    assert decode_request(header, frame[4:], offset) == {
        "client_software_name": "", "client_software_version": ""}


def test_api_versions_v3_request_literal() -> None:
    """Header v2: the client id keeps its int16 length; then tagged fields, compact strings."""
    frame = (b"\x00\x00\x00\x18"
             b"\x00\x12\x00\x03\x00\x00\x00\x07"
             b"\xff\xff"  # null client id
             b"\x00"  # header tagged fields: none
             b"\x08kafkapy"  # compact string: length 7 + 1
             b"\x04"b"3.0"  # compact string: length 3 + 1
             b"\x00")  # body tagged fields: none
    body = {"client_software_name": "kafkapy", "client_software_version": "3.0"}
    assert encode_request(ApiKey.API_VERSIONS, 3, 7, None, body) == frame
    header, offset = read_request_header(frame[4:])
    assert header == RequestHeader(18, 3, 7, None, True)
    assert decode_request(header, frame[4:], offset) == body


def test_metadata_v0_response_literal() -> None:
    body = {"brokers": [{"node_id": 1, "host": "h", "port": 9092}],
            "topics": [{"error_code": 0, "name": "t", "partitions": [
                {"error_code": 0, "partition_index": 0, "leader_id": 1,
                 "replica_nodes": [1], "isr_nodes": [1]}]}]}
    frame = (b"\x00\x00\x00\x3a" b"\x00\x00\x00\x05"  # size 58, correlation id 5
             b"\x00\x00\x00\x01" b"\x00\x00\x00\x01" b"\x00\x01h" b"\x00\x00\x23\x84"
             b"\x00\x00\x00\x01" b"\x00\x00" b"\x00\x01t"
             b"\x00\x00\x00\x01" b"\x00\x00" b"\x00\x00\x00\x00" b"\x00\x00\x00\x01"
             b"\x00\x00\x00\x01\x00\x00\x00\x01" b"\x00\x00\x00\x01\x00\x00\x00\x01")
    assert encode_response(RequestHeader(3, 0, 5, None, False), body) == frame


def test_heartbeat_v4_response_literal() -> None:
    """Response header v1 (tagged fields) in a flexible version."""
    frame = encode_response(RequestHeader(ApiKey.HEARTBEAT, 4, 3, "c", True),
                            {"throttle_time_ms": 0, "error_code": 27})
    assert frame == b"\x00\x00\x00\x0c" b"\x00\x00\x00\x03\x00" b"\x00\x00\x00\x00\x00\x1b\x00"


def test_api_versions_v3_response_header_is_v0() -> None:
    frame = encode_response(RequestHeader(ApiKey.API_VERSIONS, 3, 3, "c", True),
                            {"api_keys": [{"api_key": 18, "min_version": 0, "max_version": 4}]})
    assert frame == (b"\x00\x00\x00\x13" b"\x00\x00\x00\x03"  # no tagged fields after the id
                     b"\x00\x00" b"\x02" b"\x00\x12\x00\x00\x00\x04\x00"
                     b"\x00\x00\x00\x00" b"\x00")


# ------------------------------------------------------------- ApiVersions, version too new

def test_unsupported_api_versions_answered_in_v0_that_kafka_python_reads() -> None:
    from kafka.protocol.old.api_versions import ApiVersionsResponse_v0
    from kafka.protocol.metadata.api_versions import ApiVersionsResponse

    # a future ApiVersions v9: header v2, and a body we know nothing of
    request = b"\x00\x12\x00\x09\x00\x00\x00\x0b\x00\x02kp\x00" b"\x05\x01\x02\x00"
    header, offset = read_request_header(request)
    assert offset == 13
    assert header.api_version == 9 and header.flexible  # v3+ headers are v2: still parsed
    frame = api_versions_error_response(header)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4

    old = ApiVersionsResponse_v0.decode(frame[8:])
    assert old.error_code == 35
    assert {k: (lo, hi) for k, lo, hi in old.api_keys} == SUPPORTED

    # kafka-python 3 reads it with the version it asked for, and retries with the max listed
    new = ApiVersionsResponse.decode(frame[4:], version=4, header=True)
    assert new.header.correlation_id == 11 and new.error_code == 35
    listed = {k.api_key: k.max_version for k in new.api_keys}
    assert listed[ApiKey.API_VERSIONS] == SUPPORTED[ApiKey.API_VERSIONS][1]

    assert decode_response(ApiKey.API_VERSIONS, 4, frame[4:]) == (11, {
        "error_code": 35, "throttle_time_ms": 0, "supported_features": [],
        "finalized_features_epoch": -1, "finalized_features": [], "zk_migration_ready": False,
        "api_keys": [{"api_key": k, "min_version": lo, "max_version": hi}
                     for k, (lo, hi) in SUPPORTED.items()]})


def test_aiokafka_reads_the_error_response() -> None:
    from aiokafka.protocol.admin import ApiVersionResponse_v0

    frame = api_versions_error_response(RequestHeader(18, 7, 1, None, True))
    resp = ApiVersionResponse_v0.decode(io.BytesIO(frame[8:]))
    assert resp.error_code == 35 and len(resp.api_versions) == len(SUPPORTED)


# ------------------------------------------------------------- whole frames built by clients

def _aiokafka_frame(request: Any, correlation_id: int, client_id: str) -> bytes:
    data = request.build_request_header(correlation_id, client_id).encode() + request.encode()
    return len(data).to_bytes(4, "big") + data


def test_aiokafka_frames() -> None:
    from aiokafka.protocol.commit import OffsetCommitRequest_v2
    from aiokafka.protocol.fetch import FetchRequest_v4
    from aiokafka.protocol.group import JoinGroupRequest_v5
    from aiokafka.protocol.metadata import MetadataRequest_v5

    req = MetadataRequest_v5(["a", "b"], False)
    assert _aiokafka_frame(req, 3, "aiokafka") == encode_request(
        ApiKey.METADATA, 5, 3, "aiokafka",
        {"topics": [{"name": "a"}, {"name": "b"}], "allow_auto_topic_creation": False})

    req = JoinGroupRequest_v5("g", 10000, 300000, "", None, "consumer",
                              [("range", b"\x00\x01meta")])
    assert _aiokafka_frame(req, 4, "aiokafka") == encode_request(
        ApiKey.JOIN_GROUP, 5, 4, "aiokafka",
        {"group_id": "g", "session_timeout_ms": 10000, "rebalance_timeout_ms": 300000,
         "member_id": "", "group_instance_id": None, "protocol_type": "consumer",
         "protocols": [{"name": "range", "metadata": b"\x00\x01meta"}]})

    req = OffsetCommitRequest_v2("g", 3, "m-1", -1, [("t", [(0, 42, "md"), (1, 7, None)])])
    assert _aiokafka_frame(req, 5, "aiokafka") == encode_request(
        ApiKey.OFFSET_COMMIT, 2, 5, "aiokafka",
        {"group_id": "g", "generation_id_or_member_epoch": 3, "member_id": "m-1",
         "retention_time_ms": -1, "topics": [{"name": "t", "partitions": [
             {"partition_index": 0, "committed_offset": 42, "committed_metadata": "md"},
             {"partition_index": 1, "committed_offset": 7, "committed_metadata": None}]}]})

    req = FetchRequest_v4(-1, 500, 1, 52428800, 0, [("t", [(0, 100, 1048576)])])
    frame = _aiokafka_frame(req, 6, "aiokafka")
    header, offset = read_request_header(frame[4:])
    assert decode_request(header, frame[4:], offset) == {
        "cluster_id": None, "replica_id": -1, "max_wait_ms": 500, "min_bytes": 1,
        "max_bytes": 52428800, "isolation_level": 0, "session_id": 0, "session_epoch": -1,
        "topics": [{"topic": "t", "partitions": [
            {"partition": 0, "current_leader_epoch": -1, "fetch_offset": 100,
             "last_fetched_epoch": -1, "log_start_offset": -1, "partition_max_bytes": 1048576}]}],
        "forgotten_topics_data": [], "rack_id": ""}


def test_kafka_python_flexible_frames() -> None:
    from kafka.protocol.consumer.group import JoinGroupRequest, OffsetCommitRequest
    from kafka.protocol.metadata.api_versions import ApiVersionsRequest
    from kafka.protocol.metadata.metadata import MetadataRequest

    def theirs(msg: Any, correlation_id: int) -> bytes:
        msg.with_header(correlation_id, "kafka-python")
        return bytes(msg.encode(header=True, framed=True))

    assert theirs(ApiVersionsRequest[4](client_software_name="kafka-python",
                                        client_software_version="3.0"), 1) == encode_request(
        ApiKey.API_VERSIONS, 4, 1, "kafka-python",
        {"client_software_name": "kafka-python", "client_software_version": "3.0"})

    assert theirs(MetadataRequest[12](topics=None, allow_auto_topic_creation=False), 2) == \
        encode_request(ApiKey.METADATA, 12, 2, "kafka-python",
                       {"topics": None, "allow_auto_topic_creation": False})

    join = {"group_id": "g", "session_timeout_ms": 10000, "rebalance_timeout_ms": 300000,
            "member_id": "m", "group_instance_id": "i", "protocol_type": "consumer"}
    msg = JoinGroupRequest[7](**join, protocols=[
        JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"abc")])
    assert theirs(msg, 3) == encode_request(ApiKey.JOIN_GROUP, 7, 3, "kafka-python", dict(
        join, protocols=[{"name": "range", "metadata": b"abc"}]))

    commit = {"group_id": "g", "generation_id_or_member_epoch": 4, "member_id": "m",
              "group_instance_id": None}
    partition = {"partition_index": 2, "committed_offset": 99, "committed_leader_epoch": 5,
                 "committed_metadata": ""}
    topic_cls = OffsetCommitRequest.OffsetCommitRequestTopic
    msg = OffsetCommitRequest[8](**commit, topics=[topic_cls(name="t", partitions=[
        topic_cls.OffsetCommitRequestPartition(**partition)])])
    assert theirs(msg, 4) == encode_request(ApiKey.OFFSET_COMMIT, 8, 4, "kafka-python", dict(
        commit, topics=[{"name": "t", "partitions": [partition]}]))
