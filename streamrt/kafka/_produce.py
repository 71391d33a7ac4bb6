"""Hand-written codec for Produce (API key 0, versions 3 to 10), and the split of a partition's
records into RecordBatch v2 slices.

Produce carries the data, so it does not go through the generic schema-driven codec, which walks
a field table value by value: each version here is straight-line ``struct`` code, and a
partition's records come out as a memoryview of the request frame, never copied. The dicts have
the generic codec's shapes (Kafka's field names in snake_case, fields a version lacks given their
defaults), so the server can use either. Versions 9 and later are "flexible": strings, arrays
and bytes carry unsigned-varint lengths plus one (zero means null), and every struct ends with a
tagged-field section.

Malformed input raises ProtocolError: truncated, a length or count beyond the bytes left, a bad
varint, bytes left over. Counts are checked against the bytes left before anything is built, so
a hostile count costs nothing. The wire primitives are in ``_fastwire.py``, shared with
``_fetch.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from ..errors import (
    CorruptBatch,
    InvalidArgument,
    ProtocolError,
    UnsupportedMessageFormat,
)

from ._fastwire import (
    I32,
    TRUNCATED,
    as_bytes_view,
    check_version,
    compact_nullable_string,
    compact_string,
    nullable_string,
    read_compact_count,
    read_compact_nullable_string,
    read_compact_string,
    read_count,
    read_nullable_string,
    read_string,
    read_uvarint,
    skip_tagged_fields,
    string,
    uvarint,
)

__all__ = ["decode_produce_request", "encode_produce_response", "split_batches"]

PRODUCE_VERSIONS = range(3, 11)
PRODUCE_FIRST_FLEXIBLE = 9

# ------------------------------------------------------------------ Produce request

_ACKS_TIMEOUT = struct.Struct(">hi")
_INDEX_SIZE = struct.Struct(">ii")


def decode_produce_request(version: int, frame: bytes | memoryview, offset: int) -> dict[str, Any]:
    """Decode the body of a Produce request (``frame[offset:]``, after the request header).

    Returns ``{"transactional_id", "acks", "timeout_ms", "topic_data": [{"name",
    "partition_data": [{"index", "records"}]}]}`` where ``records`` is a memoryview slice of
    ``frame`` (zero-copy) or None. Raises UnsupportedVersion outside versions 3 to 10 and
    ProtocolError for malformed bytes; the records themselves are not looked at here (see
    :func:`split_batches`).
    """
    check_version("Produce", version, PRODUCE_VERSIONS)
    buf = as_bytes_view(frame)
    try:
        if version >= PRODUCE_FIRST_FLEXIBLE:
            return _decode_request_flexible(buf, offset, len(buf))
        return _decode_request_classic(buf, offset, len(buf))
    except TRUNCATED:
        raise ProtocolError(f"Produce v{version} request is truncated") from None
    except UnicodeDecodeError as e:
        raise ProtocolError(f"Produce v{version} request: a string is not UTF-8 ({e})") from None


def _decode_request_classic(buf: memoryview, pos: int, end: int) -> dict[str, Any]:
    tid, pos = read_nullable_string(buf, pos, end, "Produce transactional_id")
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(buf, pos)
    pos += 6
    # a topic takes at least 6 bytes (name length, partition count), a partition 8
    ntopics, pos = read_count(buf, pos, end, 6, "Produce topic_data")
    topics = []
    for _ in range(ntopics):
        name, pos = read_string(buf, pos, end, "Produce topic name")
        nparts, pos = read_count(buf, pos, end, 8, "Produce partition_data")
        parts = []
        for _ in range(nparts):
            index, size = _INDEX_SIZE.unpack_from(buf, pos)
            pos += 8
            if size >= 0:
                if size > end - pos:
                    raise ProtocolError(
                        f"Produce {name}[{index}]: records of {size} bytes, {end - pos} bytes left")
                records: memoryview | None = buf[pos:pos + size]
                pos += size
            elif size == -1:
                records = None
            else:
                raise ProtocolError(f"Produce {name}[{index}]: records length {size}")
            parts.append({"index": index, "records": records})
        topics.append({"name": name, "partition_data": parts})
    if pos != end:
        raise ProtocolError(f"Produce request has {end - pos} bytes after its last field")
    return {"transactional_id": tid, "acks": acks, "timeout_ms": timeout_ms, "topic_data": topics}


def _decode_request_flexible(buf: memoryview, pos: int, end: int) -> dict[str, Any]:
    tid, pos = read_compact_nullable_string(buf, pos, end, "Produce transactional_id")
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(buf, pos)
    pos += 6
    # a topic takes at least 3 bytes (name, partition count, tags), a partition 6
    ntopics, pos = read_compact_count(buf, pos, end, 3, "Produce topic_data")
    topics = []
    unpack_i32 = I32.unpack_from
    for _ in range(ntopics):
        name, pos = read_compact_string(buf, pos, end, "Produce topic name")
        nparts, pos = read_compact_count(buf, pos, end, 6, "Produce partition_data")
        parts = []
        for _ in range(nparts):
            index = unpack_i32(buf, pos)[0]
            size, pos = read_uvarint(buf, pos + 4)
            if size:
                size -= 1
                if size > end - pos:
                    raise ProtocolError(
                        f"Produce {name}[{index}]: records of {size} bytes, {end - pos} bytes left")
                records: memoryview | None = buf[pos:pos + size]
                pos += size
            else:
                records = None
            # inline: a partition almost never has tagged fields
            pos = pos + 1 if buf[pos] == 0 else skip_tagged_fields(buf, pos, end)
            parts.append({"index": index, "records": records})
        pos = skip_tagged_fields(buf, pos, end)
        topics.append({"name": name, "partition_data": parts})
    pos = skip_tagged_fields(buf, pos, end)
    if pos != end:
        raise ProtocolError(f"Produce request has {end - pos} bytes after its last field")
    return {"transactional_id": tid, "acks": acks, "timeout_ms": timeout_ms, "topic_data": topics}


# ------------------------------------------------------------------ Produce response

_PART_V3 = struct.Struct(">ihqq")  # index, error_code, base_offset, log_append_time_ms
_PART_V5 = struct.Struct(">ihqqq")  # ... log_start_offset
_LEADER_TAG = struct.Struct(">BBii")  # tag 0, size 9, leader_id, leader_epoch (+ empty tags)


def encode_produce_response(version: int, body: Mapping[str, Any]) -> bytes:
    """Encode the body of a Produce response (without the response header).

    ``body`` is ``{"responses": [{"name", "partition_responses": [{"index", "error_code",
    "base_offset", "log_append_time_ms", "log_start_offset", "record_errors",
    "error_message"}]}], "throttle_time_ms"}``; fields a version lacks are ignored, optional
    ones default as in Kafka's schema. From version 10 a partition's ``current_leader``
    (``{"leader_id", "leader_epoch"}``) and the top-level ``node_endpoints`` (``[{"node_id",
    "host", "port", "rack"}]``) go out as tagged fields when given and not default.
    """
    check_version("Produce", version, PRODUCE_VERSIONS)
    try:
        if version >= PRODUCE_FIRST_FLEXIBLE:
            return _encode_response_flexible(version, body)
        return _encode_response_classic(version, body)
    except (struct.error, KeyError, TypeError, AttributeError) as e:
        raise InvalidArgument(f"Produce v{version} response body is not encodable: {e!r}") from None


def _encode_response_classic(version: int, body: Mapping[str, Any]) -> bytes:
    out = bytearray()
    responses = body["responses"]
    out += I32.pack(len(responses))
    with_start = version >= 5
    with_errors = version >= 8
    for topic in responses:
        out += string(topic["name"])
        parts = topic["partition_responses"]
        out += I32.pack(len(parts))
        for p in parts:
            if with_start:
                out += _PART_V5.pack(p["index"], p["error_code"], p["base_offset"],
                                     p.get("log_append_time_ms", -1), p.get("log_start_offset", -1))
            else:
                out += _PART_V3.pack(p["index"], p["error_code"], p["base_offset"],
                                     p.get("log_append_time_ms", -1))
            if with_errors:
                errs = p.get("record_errors") or ()
                out += I32.pack(len(errs))
                for e in errs:
                    out += I32.pack(e["batch_index"])
                    out += nullable_string(e.get("batch_index_error_message"))
                out += nullable_string(p.get("error_message"))
    out += I32.pack(body.get("throttle_time_ms", 0))
    return bytes(out)


def _encode_response_flexible(version: int, body: Mapping[str, Any]) -> bytes:
    out = bytearray()
    responses = body["responses"]
    out += uvarint(len(responses) + 1)
    with_leader = version >= 10
    for topic in responses:
        out += compact_string(topic["name"])
        parts = topic["partition_responses"]
        out += uvarint(len(parts) + 1)
        for p in parts:
            out += _PART_V5.pack(p["index"], p["error_code"], p["base_offset"],
                                 p.get("log_append_time_ms", -1), p.get("log_start_offset", -1))
            errs = p.get("record_errors") or ()
            out += uvarint(len(errs) + 1)
            for e in errs:
                out += I32.pack(e["batch_index"])
                out += compact_nullable_string(e.get("batch_index_error_message"))
                out += b"\x00"
            out += compact_nullable_string(p.get("error_message"))
            leader = p.get("current_leader") if with_leader else None
            leader_id = leader.get("leader_id", -1) if leader else -1
            leader_epoch = leader.get("leader_epoch", -1) if leader else -1
            if leader_id != -1 or leader_epoch != -1:
                out += b"\x01"  # one tagged field: CurrentLeader, sent when not default
                out += _LEADER_TAG.pack(0, 9, leader_id, leader_epoch)
                out += b"\x00"
            else:
                out += b"\x00"
        out += b"\x00"
    out += I32.pack(body.get("throttle_time_ms", 0))
    nodes = body.get("node_endpoints") if with_leader else None
    if nodes:
        field = bytearray(uvarint(len(nodes) + 1))
        for n in nodes:
            field += I32.pack(n["node_id"])
            field += compact_string(n["host"])
            field += I32.pack(n["port"])
            field += compact_nullable_string(n.get("rack"))
            field += b"\x00"
        out += b"\x01\x00"  # one tagged field, tag 0
        out += uvarint(len(field))
        out += field
    else:
        out += b"\x00"
    return bytes(out)


# ------------------------------------------------------------------ record batches

_BATCH_PREFIX = struct.Struct(">qiib")  # base offset, length, leader epoch, magic
_BATCH_PREFIX_SIZE = 17
_HEADER_SIZE = 61  # a RecordBatch v2 header; `length` counts all of it but the first 12 bytes
_LENGTH_OVERHEAD = 12
_ATTRIBUTES_LOW_BYTE = 22  # attributes is an int16 at 21; its flags sit in the low byte
_CONTROL_FLAG = 0x20


def split_batches(records: bytes | memoryview | None) -> list[memoryview]:
    """Split a Produce partition's records into its RecordBatch v2 batches (zero-copy slices).

    Batches are found by their header's length field, checked against the bytes left, and must
    have magic 2. Raises UnsupportedMessageFormat for the old message-set format (magic 0 or 1:
    answer UNSUPPORTED_FOR_MESSAGE_FORMAT) and CorruptBatch for anything else that is not a
    sequence of batches: no records at all, a truncated or overlong batch, an unknown magic, a
    control batch (only a broker writes those). Only that partition is refused. The CRC is
    checked later, by the store (``check_batch``), and nothing is decompressed.
    """
    if records is None:
        raise CorruptBatch("the partition's records are null: a produce needs one record batch")
    buf = as_bytes_view(records)
    end = len(buf)
    if end == 0:
        raise CorruptBatch("the partition's records are empty: a produce needs one record batch")
    out = []
    pos = 0
    while pos < end:
        if end - pos < _BATCH_PREFIX_SIZE:
            raise CorruptBatch(f"{end - pos} stray bytes after the last record batch")
        _, length, _, magic = _BATCH_PREFIX.unpack_from(buf, pos)
        if magic != 2:
            if magic in (0, 1):
                raise UnsupportedMessageFormat(
                    f"records in the message format of magic {magic} (Kafka before 0.11); "
                    f"streamrt takes RecordBatch v2 (magic 2) only: use a client of Kafka "
                    f"0.11 or later with its API version >= 0.11")
            raise CorruptBatch(f"record batch with magic {magic}; only magic 2 exists")
        size = length + _LENGTH_OVERHEAD
        if size < _HEADER_SIZE or size > end - pos:
            raise CorruptBatch(
                f"record batch length field says {size} bytes; a batch takes at least "
                f"{_HEADER_SIZE} and {end - pos} are left")
        if buf[pos + _ATTRIBUTES_LOW_BYTE] & _CONTROL_FLAG:
            raise CorruptBatch("clients may not write control batches (transaction markers)")
        out.append(buf[pos:pos + size])
        pos += size
    return out
