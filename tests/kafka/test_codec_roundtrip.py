"""Round trips through the generic Kafka codec, for every API, version and direction.

Bodies are generated from the schema tables themselves (``bodies``), so every field of every
version is exercised: encode -> decode must give the body back, with the fields the version
lacks at their defaults. The same bodies are then read and re-encoded by kafka-python's
independent implementation of Kafka's message JSON, and its bytes must equal ours: that is the
check that the tables and the interpreter describe the real wire layout.

``bodies`` and ``expected`` are imported by the other codec test modules.
"""

from __future__ import annotations

import importlib
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrt.kafka import (
    SUPPORTED,
    ApiKey,
    RequestHeader,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    read_request_header,
)
from streamrt.kafka import _codec
from streamrt.kafka._schema import Field

_INTS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
_SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])


pytestmark = pytest.mark.usefixtures("generic_codec_only")


def _within(rng: tuple[int, int] | None, version: int) -> bool:
    return rng is not None and rng[0] <= version <= rng[1]


def _primitive(t: str) -> st.SearchStrategy[Any]:
    if t in _INTS:
        bits = _INTS[t]
        return st.integers(-(1 << bits - 1), (1 << bits - 1) - 1)
    if t == "uint16":
        return st.integers(0, 0xFFFF)
    if t == "uint32":
        return st.integers(0, 0xFFFFFFFF)
    if t == "bool":
        return st.booleans()
    if t == "float64":
        return st.floats(allow_nan=False)
    if t == "string":
        return st.text(max_size=12)
    if t in ("bytes", "records"):
        return st.binary(max_size=24)
    if t == "uuid":
        return st.uuids() | st.just(UUID(int=0))
    raise AssertionError(t)


def _value(f: Field, version: int) -> st.SearchStrategy[Any]:
    if f.type == "[]":
        s = st.lists(bodies(f.fields, version), max_size=3)
    elif f.type == "{}":
        s = bodies(f.fields, version)
    elif f.type.startswith("[]"):
        s = st.lists(_primitive(f.type[2:]), max_size=4)
    else:
        s = _primitive(f.type)
    return st.none() | s if _within(f.nullable, version) else s


def bodies(fields: tuple[Field, ...], version: int) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with a random value for every field ``fields`` have in ``version``."""
    return st.fixed_dictionaries(
        {f.name: _value(f, version) for f in fields if _within(f.versions, version)})


def expected(fields: tuple[Field, ...], version: int, body: dict[str, Any]) -> dict[str, Any]:
    """What decoding ``body`` must give: its fields, and defaults for the version's absent ones."""
    out = {}
    for f in fields:
        if not _within(f.versions, version):
            out[f.name] = f.fresh_default()
            continue
        v = body.get(f.name, f.default)
        if v is not None and f.type == "[]":
            v = [expected(f.fields, version, item) for item in v]
        elif v is not None and f.type == "{}":
            v = expected(f.fields, version, v)
        out[f.name] = v
    return out


def plain(value: Any) -> Any:
    """``value`` with memoryviews turned into bytes, for comparison."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def schema(key: int, side: str) -> tuple[Field, ...]:
    """The request or response fields of an API."""
    a = _codec.APIS[key]
    return a.request if side == "request" else a.response


def flexible(key: int, version: int) -> bool:
    """Whether that version of that API is flexible."""
    return _codec.APIS[key].is_flexible(version)


CASES = [(key, v, side) for key, (lo, hi) in SUPPORTED.items() for v in range(lo, hi + 1)
         for side in ("request", "response")]


def _case_id(case: tuple[int, int, str]) -> str:
    return f"{ApiKey(case[0]).name}-v{case[1]}-{case[2]}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@_SETTINGS
@given(data=st.data())
def test_round_trip(case: tuple[int, int, str], data: st.DataObject) -> None:
    key, version, side = case
    fields = schema(key, side)
    body = data.draw(bodies(fields, version))
    if side == "request":
        frame = encode_request(key, version, 1234, "client-1", body)
        header, offset = read_request_header(frame[4:])
        assert header == RequestHeader(key, version, 1234, "client-1", flexible(key, version))
        back = decode_request(header, memoryview(frame)[4:], offset, strict=True)
    else:
        if key == ApiKey.API_VERSIONS and body["error_code"] != 0:
            version = 0  # a failed ApiVersions is answered in the v0 layout
        header = RequestHeader(key, case[1], -5, None, flexible(key, case[1]))
        frame = encode_response(header, body)
        correlation_id, back = decode_response(key, case[1], frame[4:])
        assert correlation_id == -5
    assert int.from_bytes(frame[:4], "big", signed=True) == len(frame) - 4
    assert plain(back) == expected(fields, version, body)


def test_missing_keys_take_defaults() -> None:
    frame = encode_response(RequestHeader(ApiKey.METADATA, 12, 1, None, True), {})
    _, back = decode_response(ApiKey.METADATA, 12, frame[4:])
    assert back["brokers"] == [] and back["topics"] == []
    assert back["cluster_id"] is None and back["controller_id"] == -1
    # a field of another version is ignored on encode and defaulted on decode
    frame = encode_response(RequestHeader(ApiKey.METADATA, 0, 1, None, False),
                            {"cluster_id": "x", "throttle_time_ms": 5})
    _, back = decode_response(ApiKey.METADATA, 0, frame[4:])
    assert back["cluster_id"] is None and back["throttle_time_ms"] == 0
    assert frame[8:] == b"\0\0\0\0" * 2  # no brokers, no topics: nothing else written


@pytest.mark.parametrize("version", [11, 12])
def test_records_as_chunks(version: int) -> None:
    """Fetch's records may be a list of stored batches: one length prefix, no joining first."""
    chunks = [b"batch-one", memoryview(b"batch-two"), b""]
    part = {"partition_index": 0, "high_watermark": 3, "records": chunks}
    body = {"responses": [{"topic": "t", "partitions": [part]}]}
    header = RequestHeader(ApiKey.FETCH, version, 9, None, version >= 12)
    frame = encode_response(header, body)
    joined = encode_response(header, {"responses": [{"topic": "t", "partitions": [
        dict(part, records=b"batch-onebatch-two")]}]})
    assert frame == joined
    _, back = decode_response(ApiKey.FETCH, version, frame[4:])
    records = back["responses"][0]["partitions"][0]["records"]
    assert isinstance(records, memoryview) and bytes(records) == b"batch-onebatch-two"


def test_tagged_fields_written_only_when_not_default() -> None:
    header = RequestHeader(ApiKey.API_VERSIONS, 3, 1, None, True)
    bare = encode_response(header, {"finalized_features_epoch": -1, "zk_migration_ready": False})
    assert bare.endswith(b"\x00")  # empty tagged-field section
    tagged = encode_response(header, {"finalized_features_epoch": 7})
    # one tagged field: count 1, tag 1, size 8, int64 7
    assert tagged.endswith(b"\x01\x01\x08" + (7).to_bytes(8, "big"))
    _, back = decode_response(ApiKey.API_VERSIONS, 3, tagged[4:])
    assert back["finalized_features_epoch"] == 7 and back["zk_migration_ready"] is False


def test_unknown_tags_are_skipped() -> None:
    frame = bytearray(encode_request(ApiKey.HEARTBEAT, 4, 1, "c", {"group_id": "g"}))
    assert frame[-1] == 0  # the body's empty tagged-field section
    frame[-1:] = b"\x02\x05\x03abc\x63\x00"  # tag 5 (3 bytes) and tag 99 (empty): both unknown
    header, offset = read_request_header(frame[4:])
    body = decode_request(header, frame[4:], offset)
    assert body["group_id"] == "g" and "abc" not in repr(body)


# ------------------------------------------- the same bodies through kafka-python's codec

def _kafka_python_class(key: int, side: str) -> Any:
    """kafka-python 3's message class (generated from Kafka's JSON by its own code)."""
    where = {
        ApiKey.PRODUCE: "producer.produce", ApiKey.FETCH: "consumer.fetch",
        ApiKey.LIST_OFFSETS: "consumer.offsets", ApiKey.METADATA: "metadata.metadata",
        ApiKey.OFFSET_COMMIT: "consumer.group", ApiKey.OFFSET_FETCH: "consumer.group",
        ApiKey.FIND_COORDINATOR: "metadata.find_coordinator",
        ApiKey.JOIN_GROUP: "consumer.group", ApiKey.HEARTBEAT: "consumer.group",
        ApiKey.LEAVE_GROUP: "consumer.group", ApiKey.SYNC_GROUP: "consumer.group",
        ApiKey.DESCRIBE_GROUPS: "admin.groups", ApiKey.LIST_GROUPS: "admin.groups",
        ApiKey.API_VERSIONS: "metadata.api_versions", ApiKey.CREATE_TOPICS: "admin.topics",
        ApiKey.DELETE_TOPICS: "admin.topics", ApiKey.INIT_PRODUCER_ID: "producer.transaction",
        ApiKey.OFFSET_FOR_LEADER_EPOCH: "consumer.offsets",
        ApiKey.DESCRIBE_CONFIGS: "admin.configs", ApiKey.DELETE_GROUPS: "admin.groups",
    }[ApiKey(key)]
    module = importlib.import_module(f"kafka.protocol.{where}")
    name = {"OFFSET_FOR_LEADER_EPOCH": "OffsetForLeaderEpoch", "INIT_PRODUCER_ID": "InitProducerId",
            }.get(ApiKey(key).name) or "".join(p.capitalize() for p in ApiKey(key).name.split("_"))
    return getattr(module, name + side.capitalize())


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@_SETTINGS
@given(data=st.data())
def test_kafka_python_reads_and_writes_the_same_bytes(case: tuple[int, int, str],
                                                      data: st.DataObject) -> None:
    pytest.importorskip("kafka.protocol.api_message")
    key, version, side = case
    cls = _kafka_python_class(key, side)
    body = data.draw(bodies(schema(key, side), version))
    if side == "request":
        frame = encode_request(key, version, 77, "client-1", body)
        theirs = cls.decode(frame[4:], version=version, header=True)
        again = theirs.encode(version=version, header=True)
        assert theirs.header.correlation_id == 77 and theirs.header.client_id == "client-1"
        ours = frame[4:]
    else:
        if key == ApiKey.API_VERSIONS and body["error_code"] != 0:
            version = 0  # so kafka-python reads it, as we write it
        frame = encode_response(RequestHeader(key, case[1], 77, None, flexible(key, case[1])),
                                body)
        header_size = 5 if flexible(key, case[1]) and key != ApiKey.API_VERSIONS else 4
        ours = frame[4 + header_size:]
        theirs = cls.decode(ours, version=version)
        theirs._header = None
        again = theirs.encode(version=version)
    assert bytes(again) == bytes(ours)
