"""The wire primitives (Reader / Writer), the schema notation, and the codec's sans-IO promise."""

from __future__ import annotations

import ast
import struct
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamrt.kafka
from streamrt.errors import InvalidArgument, ProtocolError
from streamrt.kafka import ApiKey, ErrorCode, RequestHeader, encode_response
from streamrt.kafka._schema import LATEST, field, parse_versions
from streamrt.kafka._wire import Reader, Writer

_CODEC_MODULES = ["__init__", "_wire", "_schema", "_messages", "_messages_groups",
                  "_messages_admin", "_codec", "_frames"]


def test_codec_modules_import_no_io() -> None:
    """Sans-IO: no socket, event loop or storage engine anywhere in the codec's imports."""
    forbidden = {"socket", "trio", "anyio", "lmdb", "asyncio", "selectors", "ssl"}
    package = Path(streamrt.kafka.__file__).parent
    for name in _CODEC_MODULES:
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
                elif node.level == 1:  # a sibling: must be a codec module too
                    siblings = [node.module] if node.module else [a.name for a in node.names]
                    assert all(s.split(".")[0] in _CODEC_MODULES for s in siblings), (name, siblings)
                else:
                    raise AssertionError(f"{name}.py imports from outside the package: {node.module}")
        assert not imported & forbidden, (name, imported & forbidden)
        assert imported <= {"__future__", "struct", "enum", "uuid", "typing", "collections",
                            "attrs", "logging", "streamrt"}, (name, imported)


def test_public_front() -> None:
    assert sorted(streamrt.kafka.__all__) == sorted([
        "ApiKey", "ErrorCode", "RequestHeader", "read_request_header", "decode_request",
        "encode_response", "encode_request", "decode_response", "SUPPORTED",
        "api_versions_error_response", "FrameDecoder"])
    assert ApiKey.DESCRIBE_CONFIGS == 32 and ErrorCode.UNKNOWN_TOPIC_ID == 100
    assert ErrorCode.UNKNOWN_SERVER_ERROR == -1 and ErrorCode.PRODUCER_FENCED == 90


def test_supported_versions() -> None:
    s = streamrt.kafka.SUPPORTED
    assert s[ApiKey.API_VERSIONS] == (0, 4) and s[ApiKey.METADATA] == (0, 12)
    assert s[ApiKey.PRODUCE] == (3, 10) and s[ApiKey.FETCH] == (4, 12)  # no topic ids (13+)
    assert s[ApiKey.OFFSET_COMMIT] == (2, 9) and s[ApiKey.OFFSET_FETCH] == (1, 9)
    assert s[ApiKey.LIST_OFFSETS][1] >= 11  # what kafka-python 3 asks for
    assert set(s) == set(ApiKey)


# ------------------------------------------------------------------------- varints

@given(st.integers(-(1 << 31), (1 << 31) - 1))
def test_varint_round_trip(n: int) -> None:
    w = Writer()
    w.varint(n)
    r = Reader(bytes(w.buf))
    assert r.varint() == n and r.remaining() == 0


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_varlong_round_trip(n: int) -> None:
    w = Writer()
    w.varlong(n)
    assert len(w.buf) <= 10
    r = Reader(bytes(w.buf))
    assert r.varlong() == n and r.remaining() == 0


@given(st.integers(0, 0xFFFFFFFF))
def test_uvarint_round_trip(n: int) -> None:
    w = Writer()
    w.uvarint(n)
    assert len(w.buf) <= 5
    assert Reader(bytes(w.buf)).uvarint() == n


def test_known_varint_bytes() -> None:
    """Zigzag: 0, -1, 1, -2 -> 0, 1, 2, 3; 300 -> ac 02 (the protobuf example)."""
    for n, raw in ((0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (-2, b"\x03"), (150, b"\xac\x02")):
        w = Writer()
        w.varint(n)
        assert bytes(w.buf) == raw
    w = Writer()
    w.uvarint(300)
    assert bytes(w.buf) == b"\xac\x02"


def test_bad_varints() -> None:
    with pytest.raises(ProtocolError, match="longer than 5"):
        Reader(b"\x80\x80\x80\x80\x80\x00").uvarint()
    with pytest.raises(ProtocolError, match="32 bits"):
        Reader(b"\xff\xff\xff\xff\x1f").uvarint()
    with pytest.raises(ProtocolError, match="longer than 10"):
        Reader(b"\x80" * 10 + b"\x00").varlong()
    with pytest.raises(ProtocolError, match="truncated"):
        Reader(b"\x80\x80").varint()
    with pytest.raises(ValueError):
        Writer().uvarint(-1)


# ------------------------------------------------------------------------- strings, bytes, arrays

def test_strings_and_bytes() -> None:
    w = Writer()
    w.string("héllo")
    w.nullable_string(None)
    w.compact_string("")
    w.compact_nullable_string(None)
    w.bytes_(b"ab")
    w.nullable_bytes(None)
    w.compact_bytes(b"xyz")
    w.compact_nullable_bytes(None)
    w.uuid(UUID(int=5))
    w.boolean(True)
    w.float64(2.5)
    r = Reader(bytes(w.buf))
    assert r.string() == "héllo" and r.nullable_string() is None
    assert r.compact_string() == "" and r.compact_nullable_string() is None
    assert r.bytes_() == b"ab" and r.nullable_bytes() is None
    assert r.compact_bytes() == b"xyz" and r.compact_nullable_bytes() is None
    assert r.uuid() == UUID(int=5) and r.boolean() is True and r.float64() == 2.5
    assert r.remaining() == 0


def test_nulls_where_not_allowed() -> None:
    for read, raw in ((Reader.string, b"\xff\xff"), (Reader.compact_string, b"\x00"),
                      (Reader.bytes_, b"\xff\xff\xff\xff"), (Reader.compact_bytes, b"\x00"),
                      (Reader.array_len, b"\xff\xff\xff\xff"), (Reader.compact_array_len, b"\x00")):
        with pytest.raises(ProtocolError, match="non-nullable"):
            read(Reader(raw))
    with pytest.raises(ProtocolError):
        Reader(b"\xff\xfe").nullable_string()  # -2 is not null


def test_counts_checked_against_bytes_left() -> None:
    assert Reader(struct.pack(">i", 3) + bytes(12)).array_len(4) == 3
    with pytest.raises(ProtocolError, match="cannot fit"):
        Reader(struct.pack(">i", 4) + bytes(12)).array_len(4)
    with pytest.raises(ProtocolError, match="cannot fit"):
        Reader(struct.pack(">i", 0x7FFFFFFF) + bytes(10)).array_len(1)
    with pytest.raises(ProtocolError, match="cannot fit"):
        Reader(b"\xff\xff\xff\xff\x0f").compact_array_len(0)  # min size 0 counts as 1


def test_views_are_zero_copy_and_bounded() -> None:
    data = b"\x00\x00\x00\x03abcdef"
    r = Reader(memoryview(data), 0, 7)
    view = r.view()
    assert isinstance(view, memoryview) and view.obj is data and bytes(view) == b"abc"
    with pytest.raises(ProtocolError):
        Reader(data, 0, 6).view()  # `end` bounds the read, not the buffer


def test_tagged_field_sections_skip() -> None:
    r = Reader(b"\x02\x00\x01x\x05\x00" + b"!")
    r.skip_tagged_fields()
    assert r.pos == 6
    with pytest.raises(ProtocolError):
        Reader(b"\x01\x00\x05ab").skip_tagged_fields()


# ------------------------------------------------------------------------- schema notation

def test_version_ranges_and_defaults() -> None:
    assert parse_versions("3+") == (3, LATEST) and parse_versions("0-4") == (0, 4)
    assert parse_versions("7") == (7, 7) and parse_versions("none") is None
    assert field("x", "int32", "0+", default="0x7fffffff").default == 0x7FFFFFFF
    assert field("x", "bool", "0+", default="true").default is True
    assert field("x", "string", "0+", nullable="0+", default="null").default is None
    assert field("x", "records", "0+", nullable="0+").default is None
    assert field("x", "[]int32", "0+").default == []
    with pytest.raises(ValueError):
        field("x", "string", "0+", default="null")  # not nullable
    with pytest.raises(ValueError):
        field("x", "int33", "0+")


def test_encode_errors_name_the_field() -> None:
    header = RequestHeader(ApiKey.METADATA, 12, 1, None, True)
    with pytest.raises(InvalidArgument, match=r"topics\[1\]\.partitions\[0\]\.leader_id"):
        encode_response(header, {"topics": [
            {"name": "a"}, {"name": "b", "partitions": [{"leader_id": "zero"}]}]})
    with pytest.raises(InvalidArgument, match=r"brokers\[0\]\.host"):
        encode_response(header, {"brokers": [{"host": None}]})  # not nullable
    with pytest.raises(InvalidArgument, match="throttle_time_ms"):
        encode_response(header, {"throttle_time_ms": 1 << 40})
