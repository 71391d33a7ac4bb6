"""Hand-written codec for Fetch (API key 1): requests of versions 4 to 12, and responses whose
record data goes out as the stored batches themselves.

A Fetch response is mostly record bytes: megabytes of stored RecordBatch v2 per partition,
read from LMDB as ``bytes``. Joining them into one body would copy every byte once more, so
:func:`encode_fetch_response` returns a list of chunks: small encoded field runs, and the
stored batches as they are. The server may write them one by one or join them; the body is
their concatenation. Small record chunks are copied into the field run instead, since a chunk
of its own costs more than a few kilobytes of copying.

The dict shapes are the generic codec's (Kafka's field names in snake_case). Version 12 is
flexible (compact lengths, tagged fields: the request's ClusterId is tag 0; a response
partition's DivergingEpoch, CurrentLeader and SnapshotId are tags 0, 1 and 2, written only
when set to something other than their defaults). Wire primitives come from ``_fastwire.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidArgument, ProtocolError
from ._fastwire import (
    I32,
    TRUNCATED,
    as_bytes_view,
    check_version,
    compact_string,
    read_compact_count,
    read_compact_nullable_string,
    read_compact_string,
    read_count,
    read_string,
    read_uvarint,
    skip_tagged_fields,
    string,
    uvarint,
)

__all__ = ["decode_fetch_request", "encode_fetch_response"]

FETCH_VERSIONS = range(4, 13)
FETCH_FIRST_FLEXIBLE = 12

#: Record chunks smaller than this are copied into the surrounding field bytes rather than
#: handed out as chunks of their own.
INLINE_RECORDS_MAX = 8 * 1024

# ------------------------------------------------------------------ Fetch request

_TOP_V4 = struct.Struct(">iiiib")  # replica_id, max_wait_ms, min_bytes, max_bytes, isolation
_TOP_V7 = struct.Struct(">iiiibii")  # ... session_id, session_epoch
# A partition, by the first version of each layout.
_PART_V4 = struct.Struct(">iqi")  # partition, fetch_offset, partition_max_bytes
_PART_V5 = struct.Struct(">iqqi")  # ... log_start_offset before partition_max_bytes
_PART_V9 = struct.Struct(">iiqqi")  # current_leader_epoch after partition
_PART_V12 = struct.Struct(">iiqiqi")  # last_fetched_epoch after fetch_offset


def decode_fetch_request(version: int, frame: bytes | memoryview, offset: int) -> dict[str, Any]:
    """Decode the body of a Fetch request (``frame[offset:]``, after the request header).

    Returns ``{"replica_id", "max_wait_ms", "min_bytes", "max_bytes", "isolation_level",
    "session_id", "session_epoch", "topics": [{"topic", "partitions": [{"partition",
    "current_leader_epoch", "fetch_offset", "last_fetched_epoch", "log_start_offset",
    "partition_max_bytes"}]}], "forgotten_topics_data": [{"topic", "partitions": [int]}],
    "rack_id", "cluster_id"}``, fields a version lacks given Kafka's defaults. Raises
    UnsupportedVersion outside versions 4 to 12 and ProtocolError for malformed bytes.
    """
    check_version("Fetch", version, FETCH_VERSIONS)
    buf = as_bytes_view(frame)
    try:
        if version >= FETCH_FIRST_FLEXIBLE:
            return _decode_request_flexible(buf, offset, len(buf))
        return _decode_request_classic(version, buf, offset, len(buf))
    except TRUNCATED:
        raise ProtocolError(f"Fetch v{version} request is truncated") from None
    except UnicodeDecodeError as e:
        raise ProtocolError(f"Fetch v{version} request: a string is not UTF-8 ({e})") from None


def _decode_request_classic(version: int, buf: memoryview, pos: int, end: int) -> dict[str, Any]:
    if version >= 7:
        replica_id, max_wait, min_bytes, max_bytes, isolation, session_id, session_epoch = (
            _TOP_V7.unpack_from(buf, pos))
        pos += _TOP_V7.size
    else:
        replica_id, max_wait, min_bytes, max_bytes, isolation = _TOP_V4.unpack_from(buf, pos)
        pos += _TOP_V4.size
        session_id, session_epoch = 0, -1
    part = _PART_V9 if version >= 9 else _PART_V5 if version >= 5 else _PART_V4
    psize = part.size
    unpack = part.unpack_from
    ntopics, pos = read_count(buf, pos, end, 6, "Fetch topics")
    topics = []
    for _ in range(ntopics):
        name, pos = read_string(buf, pos, end, "Fetch topic")
        nparts, pos = read_count(buf, pos, end, psize, "Fetch partitions")
        parts = []
        # One branch per layout, hoisted out of the per-field work: partitions are the bulk.
        if version >= 9:
            for _ in range(nparts):
                p, leader_epoch, fetch_offset, start, max_b = unpack(buf, pos)
                pos += psize
                parts.append({"partition": p, "current_leader_epoch": leader_epoch,
                              "fetch_offset": fetch_offset, "last_fetched_epoch": -1,
                              "log_start_offset": start, "partition_max_bytes": max_b})
        elif version >= 5:
            for _ in range(nparts):
                p, fetch_offset, start, max_b = unpack(buf, pos)
                pos += psize
                parts.append({"partition": p, "current_leader_epoch": -1,
                              "fetch_offset": fetch_offset, "last_fetched_epoch": -1,
                              "log_start_offset": start, "partition_max_bytes": max_b})
        else:
            for _ in range(nparts):
                p, fetch_offset, max_b = unpack(buf, pos)
                pos += psize
                parts.append({"partition": p, "current_leader_epoch": -1,
                              "fetch_offset": fetch_offset, "last_fetched_epoch": -1,
                              "log_start_offset": -1, "partition_max_bytes": max_b})
        topics.append({"topic": name, "partitions": parts})
    forgotten = []
    if version >= 7:
        nforgotten, pos = read_count(buf, pos, end, 6, "Fetch forgotten_topics_data")
        for _ in range(nforgotten):
            name, pos = read_string(buf, pos, end, "Fetch forgotten topic")
            n, pos = read_count(buf, pos, end, 4, "Fetch forgotten partitions")
            forgotten.append({"topic": name, "partitions": _int32s(buf, pos, n)})
            pos += 4 * n
    rack_id = ""
    if version >= 11:
        rack_id, pos = read_string(buf, pos, end, "Fetch rack_id")
    if pos != end:
        raise ProtocolError(f"Fetch request has {end - pos} bytes after its last field")
    return {"replica_id": replica_id, "max_wait_ms": max_wait, "min_bytes": min_bytes,
            "max_bytes": max_bytes, "isolation_level": isolation, "session_id": session_id,
            "session_epoch": session_epoch, "topics": topics, "forgotten_topics_data": forgotten,
            "rack_id": rack_id, "cluster_id": None}


def _decode_request_flexible(buf: memoryview, pos: int, end: int) -> dict[str, Any]:
    replica_id, max_wait, min_bytes, max_bytes, isolation, session_id, session_epoch = (
        _TOP_V7.unpack_from(buf, pos))
    pos += _TOP_V7.size
    unpack = _PART_V12.unpack_from
    psize = _PART_V12.size
    ntopics, pos = read_compact_count(buf, pos, end, 3, "Fetch topics")
    topics = []
    for _ in range(ntopics):
        name, pos = read_compact_string(buf, pos, end, "Fetch topic")
        nparts, pos = read_compact_count(buf, pos, end, psize + 1, "Fetch partitions")
        parts = []
        for _ in range(nparts):
            p, leader_epoch, fetch_offset, fetched_epoch, start, max_b = unpack(buf, pos)
            pos += psize
            # inline: a partition almost never has tagged fields
            pos = pos + 1 if buf[pos] == 0 else skip_tagged_fields(buf, pos, end)
            parts.append({"partition": p, "current_leader_epoch": leader_epoch,
                          "fetch_offset": fetch_offset, "last_fetched_epoch": fetched_epoch,
                          "log_start_offset": start, "partition_max_bytes": max_b})
        pos = skip_tagged_fields(buf, pos, end)
        topics.append({"topic": name, "partitions": parts})
    nforgotten, pos = read_compact_count(buf, pos, end, 3, "Fetch forgotten_topics_data")
    forgotten = []
    for _ in range(nforgotten):
        name, pos = read_compact_string(buf, pos, end, "Fetch forgotten topic")
        n, pos = read_compact_count(buf, pos, end, 4, "Fetch forgotten partitions")
        forgotten.append({"topic": name, "partitions": _int32s(buf, pos, n)})
        pos = skip_tagged_fields(buf, pos + 4 * n, end)
    rack_id, pos = read_compact_string(buf, pos, end, "Fetch rack_id")
    cluster_id, pos = _read_request_tags(buf, pos, end)
    if pos != end:
        raise ProtocolError(f"Fetch request has {end - pos} bytes after its last field")
    return {"replica_id": replica_id, "max_wait_ms": max_wait, "min_bytes": min_bytes,
            "max_bytes": max_bytes, "isolation_level": isolation, "session_id": session_id,
            "session_epoch": session_epoch, "topics": topics, "forgotten_topics_data": forgotten,
            "rack_id": rack_id, "cluster_id": cluster_id}


def _int32s(buf: memoryview, pos: int, n: int) -> list[int]:
    """``n`` int32s at ``pos`` (the caller checked they are there)."""
    return list(struct.unpack_from(f">{n}i", buf, pos))


def _read_request_tags(buf: memoryview, pos: int, end: int) -> tuple[str | None, int]:
    """The request's top-level tagged fields: ClusterId (tag 0) is kept, others skipped
    (ReplicaState, tag 1, exists from version 15 only)."""
    n, pos = read_uvarint(buf, pos)
    if n > (end - pos) // 2:
        raise ProtocolError(f"{n} tagged fields announced, {end - pos} bytes left")
    cluster_id = None
    for _ in range(n):
        tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        if size > end - pos:
            raise ProtocolError(f"Fetch tagged field {tag} of {size} bytes, {end - pos} bytes left")
        if tag == 0:
            cluster_id, after = read_compact_nullable_string(buf, pos, pos + size, "cluster_id")
            if after != pos + size:
                raise ProtocolError(
                    f"Fetch cluster_id (tag 0) takes {after - pos} of its {size} bytes")
        pos += size
    return cluster_id, pos


# ------------------------------------------------------------------ Fetch response

_TOP_RESP_V4 = struct.Struct(">i")  # throttle_time_ms
_TOP_RESP_V7 = struct.Struct(">ihi")  # throttle_time_ms, error_code, session_id
_PRESP_V4 = struct.Struct(">ihqq")  # partition_index, error_code, high_watermark, last_stable
_PRESP_V5 = struct.Struct(">ihqqq")  # ... log_start_offset
_ABORTED = struct.Struct(">qq")  # producer_id, first_offset
_ABORTED_FLEX = struct.Struct(">qqB")  # ... and an empty tagged-field section
_EPOCH_END_TAG = struct.Struct(">BBiqB")  # tag 0, size 13: epoch, end_offset, no tags
_LEADER_TAG = struct.Struct(">BBiiB")  # tag 1, size 9: leader_id, leader_epoch, no tags
_SNAPSHOT_TAG = struct.Struct(">BBqiB")  # tag 2, size 13: end_offset, epoch, no tags


def encode_fetch_response(version: int, body: Mapping[str, Any]) -> list[bytes]:
    """Encode the body of a Fetch response (without the response header) as a list of chunks
    whose concatenation is the body; large record chunks are the caller's objects, uncopied.

    ``body`` is ``{"throttle_time_ms", "error_code", "session_id", "responses": [{"topic",
    "partitions": [{"partition_index", "error_code", "high_watermark", "last_stable_offset",
    "log_start_offset", "aborted_transactions", "preferred_read_replica", "records"}]}]}``.
    ``records`` is ``bytes``, a list of ``bytes`` (stored batches, sent back to back) or None;
    ``aborted_transactions`` a list of ``{"producer_id", "first_offset"}`` or None (missing:
    empty, the schema's default). In version
    12 a partition may also carry ``diverging_epoch`` (``{"epoch", "end_offset"}``),
    ``current_leader`` (``{"leader_id", "leader_epoch"}``) and ``snapshot_id`` (``{"end_offset",
    "epoch"}``), sent as tagged fields unless all -1.
    """
    check_version("Fetch", version, FETCH_VERSIONS)
    try:
        if version >= FETCH_FIRST_FLEXIBLE:
            return _encode_response_flexible(body)
        return _encode_response_classic(version, body)
    except (struct.error, KeyError, TypeError, AttributeError) as e:
        raise InvalidArgument(f"Fetch v{version} response body cannot be encoded: {e!r}") from None


def _records_chunks(records: Any) -> tuple[int, list[Any] | tuple[Any, ...]]:
    """Total length and chunks of a partition's ``records`` (not None)."""
    if type(records) is list:
        return (len(records[0]) if len(records) == 1 else sum(map(len, records))), records
    if isinstance(records, (bytes, bytearray, memoryview)):
        return len(records), (records,)
    chunks = list(records)
    return sum(map(len, chunks)), chunks


# Both encoders collect the encoded fields as a list of small pieces (a "run"); a record chunk
# of INLINE_RECORDS_MAX bytes or more ends the run: the run is joined into one chunk and the
# record chunk follows as it is. Appending pieces to a list and joining once is cheaper than
# growing a bytearray piece by piece, and copies each small record chunk once.


def _emit_records(rchunks: list[Any] | tuple[Any, ...], run: list[Any], chunks: list[bytes]) -> None:
    """A partition's record chunks into the response: small ones join the run of header
    bytes; a stored batch goes out as its own chunk, after the run so far (never copied)."""
    for c in rchunks:
        if not c:
            continue  # an empty chunk adds nothing (and must not become one)
        if len(c) < INLINE_RECORDS_MAX:
            run.append(c)
        else:
            if run:
                chunks.append(b"".join(run))
                run.clear()
            chunks.append(c if type(c) is bytes else bytes(c))


def _encode_response_classic(version: int, body: Mapping[str, Any]) -> list[bytes]:
    chunks: list[bytes] = []
    run: list[Any] = []
    put = run.append
    get = body.get
    if version >= 7:
        put(_TOP_RESP_V7.pack(get("throttle_time_ms", 0), get("error_code", 0),
                              get("session_id", 0)))
    else:
        put(_TOP_RESP_V4.pack(get("throttle_time_ms", 0)))
    responses = body["responses"]
    put(I32.pack(len(responses)))
    with_start = version >= 5
    with_replica = version >= 11
    pack_i32 = I32.pack
    for topic in responses:
        put(string(topic["topic"]))
        parts = topic["partitions"]
        put(pack_i32(len(parts)))
        for p in parts:
            get = p.get
            if with_start:
                put(_PRESP_V5.pack(p["partition_index"], p["error_code"], p["high_watermark"],
                                   get("last_stable_offset", -1), get("log_start_offset", -1)))
            else:
                put(_PRESP_V4.pack(p["partition_index"], p["error_code"], p["high_watermark"],
                                   get("last_stable_offset", -1)))
            aborted = get("aborted_transactions", ())  # the schema default: empty
            if aborted is None:
                put(b"\xff\xff\xff\xff")
            else:
                put(pack_i32(len(aborted)))
                for a in aborted:
                    put(_ABORTED.pack(a["producer_id"], a["first_offset"]))
            if with_replica:
                put(pack_i32(get("preferred_read_replica", -1)))
            records = get("records")
            if records is None:
                put(b"\xff\xff\xff\xff")
                continue
            size, rchunks = _records_chunks(records)
            put(pack_i32(size))
            _emit_records(rchunks, run, chunks)
    tail = b"".join(run)
    if tail:  # (a run of empty record chunks joins to nothing: no empty chunk)
        chunks.append(tail)
    return chunks


def _encode_response_flexible(body: Mapping[str, Any]) -> list[bytes]:
    chunks: list[bytes] = []
    run: list[Any] = []
    put = run.append
    get = body.get
    put(_TOP_RESP_V7.pack(get("throttle_time_ms", 0), get("error_code", 0), get("session_id", 0)))
    responses = body["responses"]
    put(uvarint(len(responses) + 1))
    pack_i32 = I32.pack
    for topic in responses:
        put(compact_string(topic["topic"]))
        parts = topic["partitions"]
        put(uvarint(len(parts) + 1))
        for p in parts:
            get = p.get
            put(_PRESP_V5.pack(p["partition_index"], p["error_code"], p["high_watermark"],
                               get("last_stable_offset", -1), get("log_start_offset", -1)))
            aborted = get("aborted_transactions", ())  # the schema default: empty
            if not aborted:
                put(b"\x00" if aborted is None else b"\x01")
            else:
                put(uvarint(len(aborted) + 1))
                for a in aborted:
                    put(_ABORTED_FLEX.pack(a["producer_id"], a["first_offset"], 0))
            put(pack_i32(get("preferred_read_replica", -1)))
            records = get("records")
            if records is None:
                put(b"\x00")
            else:
                size, rchunks = _records_chunks(records)
                put(uvarint(size + 1))
                _emit_records(rchunks, run, chunks)
            if "current_leader" in p or "diverging_epoch" in p or "snapshot_id" in p:
                put(_partition_tags(p))
            else:
                put(b"\x00")
        put(b"\x00")
    put(b"\x00")  # NodeEndpoints (tag 0) exists from version 16 only
    chunks.append(b"".join(run))
    return chunks


def _partition_tags(p: Mapping[str, Any]) -> bytes:
    """A response partition's tagged fields, in tag order, each only when not default."""
    tags = []
    d = p.get("diverging_epoch")
    if d and (d.get("epoch", -1) != -1 or d.get("end_offset", -1) != -1):
        tags.append(_EPOCH_END_TAG.pack(0, 13, d.get("epoch", -1), d.get("end_offset", -1), 0))
    c = p.get("current_leader")
    if c and (c.get("leader_id", -1) != -1 or c.get("leader_epoch", -1) != -1):
        tags.append(_LEADER_TAG.pack(1, 9, c.get("leader_id", -1), c.get("leader_epoch", -1), 0))
    s = p.get("snapshot_id")
    if s and (s.get("end_offset", -1) != -1 or s.get("epoch", -1) != -1):
        tags.append(_SNAPSHOT_TAG.pack(2, 13, s.get("end_offset", -1), s.get("epoch", -1), 0))
    if not tags:
        return b"\x00"
    return uvarint(len(tags)) + b"".join(tags)
