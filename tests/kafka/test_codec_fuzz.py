"""Hostile input: only ProtocolError (or UnsupportedVersion, a subclass) may escape the codec.

Truncated frames, random bytes, random mutations of valid frames, bogus lengths and counts,
overlong varints, trailing bytes, unknown api keys and versions. Every valid frame is also fed
through the FrameDecoder whole, byte by byte and followed by the start of another frame.
"""

from __future__ import annotations

import struct
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrt.errors import FrameTooLarge, ProtocolError, UnsupportedVersion
from streamrt.kafka import (
    SUPPORTED,
    ApiKey,
    FrameDecoder,
    RequestHeader,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    read_request_header,
)
from test_codec_roundtrip import CASES, _case_id, bodies, flexible, schema

_SETTINGS = settings(max_examples=5, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])


pytestmark = pytest.mark.usefixtures("generic_codec_only")


def parse_request(frame: bytes | memoryview,
                  strict: bool = True) -> tuple[RequestHeader, dict[str, Any]]:
    """What the server does with one frame (but refusing trailing bytes, unless not strict)."""
    header, offset = read_request_header(frame)
    return header, decode_request(header, frame, offset, strict=strict)


def _frame(case: tuple[int, int, str], body: dict[str, Any]) -> bytes:
    key, version, side = case
    if side == "request":
        return encode_request(key, version, 9, "fuzz", body)
    if key == ApiKey.API_VERSIONS:
        body = dict(body, error_code=0)
    return encode_response(RequestHeader(key, version, 9, None, flexible(key, version)), body)


def _parse(case: tuple[int, int, str], frame: bytes | memoryview) -> Any:
    key, version, side = case
    if side == "request":
        return parse_request(frame)
    return decode_response(key, version, frame)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@_SETTINGS
@given(data=st.data())
def test_every_prefix_and_trailing_bytes_raise_protocol_error(case: tuple[int, int, str],
                                                              data: st.DataObject) -> None:
    frame = _frame(case, data.draw(bodies(schema(case[0], case[2]), case[1])))
    body = frame[4:]
    expected = _parse(case, body)
    for n in range(len(body)):
        with pytest.raises(ProtocolError) as info:
            _parse(case, body[:n])
        assert not isinstance(info.value, UnsupportedVersion) or n < 4
    with pytest.raises(ProtocolError, match="trailing"):
        _parse(case, body + b"\x00")

    # through the frame decoder: whole, byte by byte, and followed by part of the next frame
    assert [bytes(f) for f in FrameDecoder().feed(frame)] == [body]
    decoder = FrameDecoder()
    got = [bytes(f) for i in range(len(frame)) for f in decoder.feed(frame[i:i + 1])]
    assert got == [body] and decoder.pending == 0
    decoder = FrameDecoder()
    (only,) = decoder.feed(frame + frame[:5])
    assert _parse(case, only) == expected and decoder.pending == 5


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@_SETTINGS
@given(data=st.data())
def test_mutated_frames_raise_only_protocol_errors(case: tuple[int, int, str],
                                                   data: st.DataObject) -> None:
    frame = bytearray(_frame(case, data.draw(bodies(schema(case[0], case[2]), case[1])))[4:])
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    try:
        _parse(case, bytes(frame))
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(sorted(SUPPORTED)), st.integers(-1, 14))
def test_random_bodies_raise_only_protocol_errors(tail: bytes, key: int, version: int) -> None:
    frame = struct.pack(">hhih", key, version, 1, -1) + tail
    try:
        parse_request(frame)
    except ProtocolError:
        pass
    try:
        decode_response(key, max(version, SUPPORTED[key][0]), tail)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_random_frames_raise_only_protocol_errors(frame: bytes) -> None:
    try:
        parse_request(frame)
    except ProtocolError:
        pass


def test_huge_counts_fail_before_allocating() -> None:
    """A count of 2**31-1 with 10 bytes left: refused at once, nothing allocated for it."""
    head = struct.pack(">hhih", ApiKey.METADATA, 1, 1, -1)
    tracemalloc.start()
    try:
        for body in (
            struct.pack(">i", 0x7FFFFFFF) + bytes(10),  # topics: classic array count
            struct.pack(">i", 1) + struct.pack(">h", 0x7FFF) + bytes(10),  # string length
        ):
            with pytest.raises(ProtocolError):
                parse_request(head + body)
        flex = struct.pack(">hhih", ApiKey.METADATA, 12, 1, -1) + b"\x00"
        with pytest.raises(ProtocolError, match="cannot fit"):
            parse_request(flex + b"\xff\xff\xff\xff\x07" + bytes(10))  # compact count 2**32-2
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024

    # an int32 array of 1,000 elements needs 4,000 bytes, not 1,000
    frame = struct.pack(">hhih", ApiKey.DESCRIBE_GROUPS, 0, 1, -1)
    with pytest.raises(ProtocolError, match="cannot fit"):
        parse_request(struct.pack(">hhih", ApiKey.OFFSET_FETCH, 1, 1, -1)
                      + b"\x00\x01g" + struct.pack(">i", 1) + b"\x00\x01t"
                      + struct.pack(">i", 1000) + bytes(1000))
    with pytest.raises(ProtocolError):
        parse_request(frame + struct.pack(">i", -2))  # a negative count other than null
    with pytest.raises(ProtocolError):
        parse_request(frame + struct.pack(">i", -1))  # null where the array is not nullable


def test_trailing_bytes_after_a_request_are_ignored_unless_strict() -> None:
    """As Kafka does: librdkafka 2.16's Metadata v12 for all topics (captured) has 3 extra."""
    frame = bytes.fromhex("0003000c00000002000772646b61666b6100" "00000000010000")
    header, body = parse_request(frame, strict=False)
    assert header == RequestHeader(ApiKey.METADATA, 12, 2, "rdkafka", True)
    assert body == {"topics": None, "allow_auto_topic_creation": False,
                    "include_cluster_authorized_operations": False,
                    "include_topic_authorized_operations": False}
    with pytest.raises(ProtocolError, match="3 trailing bytes"):
        parse_request(frame)


def test_malformed_varints() -> None:
    head = struct.pack(">hhih", ApiKey.HEARTBEAT, 4, 1, -1)
    for bad in (b"\x80\x80\x80\x80\x80\x01",  # six bytes
                b"\xff\xff\xff\xff\x7f",  # five bytes, but 35 bits
                b"\x80\x80"):  # ends in the middle
        with pytest.raises(ProtocolError):
            parse_request(head + b"\x00" + bad + b"g\x00")  # group_id's compact length
        with pytest.raises(ProtocolError):
            parse_request(head + bad)  # the header's tagged-field count
    with pytest.raises(ProtocolError):  # a tagged field longer than the frame
        parse_request(head + b"\x01\x00\x7f" + b"x")
    with pytest.raises(ProtocolError):  # a null compact string where null is not allowed
        parse_request(head + b"\x00\x00")


def test_bad_utf8_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="UTF-8"):
        parse_request(struct.pack(">hhih", ApiKey.FIND_COORDINATOR, 0, 1, 2) + b"\xff\xfe"
                      + b"\x00\x01g")
    with pytest.raises(ProtocolError, match="UTF-8"):
        read_request_header(struct.pack(">hhih", ApiKey.FIND_COORDINATOR, 0, 1, 2) + b"\xc3(")


def test_unknown_api_keys_and_versions() -> None:
    for key, version in ((99, 0), (ApiKey.METADATA, 13), (ApiKey.FETCH, 3), (ApiKey.PRODUCE, 2),
                         (ApiKey.FETCH, 13), (ApiKey.LIST_OFFSETS, 0), (-1, 0)):
        frame = struct.pack(">hhih", key, version, 77, 3) + b"abc" + b"\x00" * 8
        header, offset = read_request_header(frame)
        assert header == RequestHeader(key, version, 77, "abc", False) and offset == 13
        with pytest.raises(UnsupportedVersion):
            decode_request(header, frame, offset)
        with pytest.raises(UnsupportedVersion):
            encode_response(header, {})
    with pytest.raises(ProtocolError):
        read_request_header(b"\x00\x03\x00\x00\x00\x00\x00")  # 7 bytes
    with pytest.raises(ProtocolError):
        read_request_header(struct.pack(">hhih", 3, 0, 1, 5) + b"ab")  # client id overruns


# -------------------------------------------------------------------------- framing


def test_frames_split_anywhere() -> None:
    frames = [b"", b"a", b"bc" * 300, bytes(range(256))]
    stream = b"".join(struct.pack(">i", len(f)) + f for f in frames)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(0, len(stream)), max_size=8))
    def check(cuts: list[int]) -> None:
        bounds = [0, *sorted(cuts), len(stream)]
        decoder = FrameDecoder()
        got = [bytes(f) for a, b in zip(bounds, bounds[1:]) for f in decoder.feed(stream[a:b])]
        assert got == frames and decoder.pending == 0

    check()


def test_frame_limits() -> None:
    decoder = FrameDecoder(max_frame_bytes=1 << 20, first_max_frame_bytes=512 << 10)
    assert decoder.feed(struct.pack(">i", 512 << 10)) == []  # the first limit itself is fine
    with pytest.raises(FrameTooLarge, match="first valid request"):
        FrameDecoder().feed(struct.pack(">i", (512 << 10) + 1))  # refused from the prefix alone
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(b"GET / HTTP/1.1\r\n")  # 1.2 GB, as a size prefix
    with pytest.raises(ProtocolError, match="negative"):
        FrameDecoder().feed(b"\xff\xff\xff\xfe")

    decoder = FrameDecoder(max_frame_bytes=1 << 20, first_max_frame_bytes=16)
    (first,) = decoder.feed(struct.pack(">i", 3) + b"abc")
    assert bytes(first) == b"abc"
    with pytest.raises(FrameTooLarge):
        decoder.feed(struct.pack(">i", 17))  # not marked valid yet
    decoder = FrameDecoder(max_frame_bytes=1 << 20, first_max_frame_bytes=16)
    decoder.feed(struct.pack(">i", 3) + b"abc")
    decoder.mark_valid()
    big = bytes(1 << 20)
    assert decoder.feed(struct.pack(">i", len(big)) + big[:100]) == []
    assert decoder.pending == 104
    (frame,) = decoder.feed(big[100:])
    assert len(frame) == 1 << 20 and decoder.pending == 0
    with pytest.raises(FrameTooLarge, match="max_frame_bytes"):
        decoder.feed(struct.pack(">i", (1 << 20) + 1))


def test_frames_stay_valid_after_more_data() -> None:
    decoder = FrameDecoder()
    data = bytearray(struct.pack(">i", 3) + b"abc" + struct.pack(">i", 2) + b"x")
    (frame,) = decoder.feed(data)
    data[4:7] = b"zzz"  # the caller reuses its buffer
    (second,) = decoder.feed(b"y")
    assert bytes(frame) == b"abc" and bytes(second) == b"xy"
