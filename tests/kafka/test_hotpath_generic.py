"""The hand-written Produce and Fetch codecs against the generic, table-driven codec
(``streamrt/kafka/_codec.py``), which describes the same messages and is their reference.

For hypothesis-generated bodies in every version: a request the generic codec encodes decodes
to the same dict by hand as by the tables, and a response encodes to the same frame either way
(and decodes back through the tables). The hand-written codecs are the server's
``FAST_DECODERS`` / ``FAST_ENCODERS``; "generic" below is the codec with those set aside.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hotpath import (
    FETCH_VERSIONS,
    PRODUCE_VERSIONS,
    fetch_requests,
    fetch_responses,
    plain,
    produce_requests,
    produce_responses,
)

from streamrt.kafka import _codec
from streamrt.kafka._fetch import decode_fetch_request, encode_fetch_response
from streamrt.kafka._produce import decode_produce_request, encode_produce_response

PRODUCE, FETCH = 0, 1
HAND = {
    PRODUCE: (decode_produce_request, encode_produce_response),
    FETCH: (decode_fetch_request, encode_fetch_response),
}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def registered(hand: bool) -> Iterator[None]:
    """For the duration, the codec's fast paths are exactly the hand-written Produce and Fetch
    codecs (as the server registers them), or none: the generic codec alone."""
    saved = dict(_codec.FAST_DECODERS), dict(_codec.FAST_ENCODERS)
    _codec.FAST_DECODERS.clear()
    _codec.FAST_ENCODERS.clear()
    if hand:
        for key, (decode, encode) in HAND.items():
            _codec.FAST_DECODERS[key] = decode
            _codec.FAST_ENCODERS[key] = encode
    try:
        yield
    finally:
        _codec.FAST_DECODERS.clear()
        _codec.FAST_ENCODERS.clear()
        _codec.FAST_DECODERS.update(saved[0])
        _codec.FAST_ENCODERS.update(saved[1])


def _header(api_key: int, version: int) -> _codec.RequestHeader:
    flexible = version >= (9 if api_key == PRODUCE else 12)
    return _codec.RequestHeader(api_key, version, 1234, "test", flexible)


def _generic_request(api_key: int, version: int, body: Mapping[str, Any]) -> tuple[bytes, int]:
    """A request frame as the generic codec writes it (no size prefix), and the body offset."""
    with registered(hand=False):
        frame = _codec.encode_request(api_key, version, 1234, "test", body)[4:]
    header, offset = _codec.read_request_header(frame)
    assert (header.api_key, header.api_version) == (api_key, version)
    return frame, offset


def _without_none_tags(body: Any) -> Any:
    """``body`` without tagged struct fields set to None: the hand-written encoders read None
    as "not set", the tables want the field left out (or set to its default)."""
    if isinstance(body, dict):
        return {k: _without_none_tags(v) for k, v in body.items()
                if not (v is None and k in ("current_leader", "diverging_epoch", "snapshot_id"))}
    if isinstance(body, list):
        return [_without_none_tags(v) for v in body]
    return body


def _joined_records(body: Any) -> Any:
    """``body`` with list-of-chunks records joined (the tables decode one buffer)."""
    if isinstance(body, dict):
        return {k: (b"".join(v) if k == "records" and isinstance(v, list)
                    else _joined_records(v)) for k, v in body.items()}
    if isinstance(body, list):
        return [_joined_records(v) for v in body]
    return body


@pytest.mark.parametrize(("api_key", "version", "bodies"),
                         [(PRODUCE, v, produce_requests) for v in PRODUCE_VERSIONS]
                         + [(FETCH, v, fetch_requests) for v in FETCH_VERSIONS])
@given(data=st.data())
@SETTINGS
def test_requests_decode_alike(api_key: int, version: int, bodies: Any,
                                data: st.DataObject) -> None:
    body = data.draw(bodies)
    frame, offset = _generic_request(api_key, version, body)
    with registered(hand=False):
        generic = _codec.decode_request(_header(api_key, version), frame, offset)
    hand = HAND[api_key][0](version, frame, offset)
    assert plain(hand) == plain(generic)
    # and through the server's entry point, where the hand-written decoder is registered
    with registered(hand=True):
        assert plain(_codec.decode_request(_header(api_key, version), frame, offset)) == plain(
            hand)


@pytest.mark.parametrize(("api_key", "version", "bodies"),
                         [(PRODUCE, v, produce_responses) for v in PRODUCE_VERSIONS]
                         + [(FETCH, v, fetch_responses) for v in FETCH_VERSIONS])
@given(data=st.data())
@SETTINGS
def test_responses_encode_alike(api_key: int, version: int, bodies: Any,
                                 data: st.DataObject) -> None:
    body = _without_none_tags(data.draw(bodies))
    header = _header(api_key, version)
    with registered(hand=False):
        generic = _codec.encode_response(header, body)
    encoded = HAND[api_key][1](version, body)
    hand = b"".join(encoded) if isinstance(encoded, list) else encoded
    assert generic[8 + header.flexible:] == hand  # after size, correlation id (and tags)
    with registered(hand=True):
        assert _codec.encode_response(header, body) == generic
    # the tables read it back as what was sent (fields of other versions aside)
    _, decoded = _codec.decode_response(api_key, version, generic[4:])
    with registered(hand=False):
        again = _codec.encode_response(header, decoded)
    assert again == generic
    assert plain(decoded)["responses"] == _project_responses(
        api_key, version, _joined_records(body))["responses"]


def _project_responses(api_key: int, version: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` as the tables decode it at ``version``: only the fields that version has,
    tagged structs left unset read as their defaults."""
    leader_default = {"leader_id": -1, "leader_epoch": -1}
    if api_key == PRODUCE:
        def part(p: Mapping[str, Any]) -> dict[str, Any]:
            out = {"index": p["index"], "error_code": p["error_code"],
                   "base_offset": p["base_offset"],
                   "log_append_time_ms": p["log_append_time_ms"],
                   "log_start_offset": p["log_start_offset"] if version >= 5 else -1,
                   "record_errors": p["record_errors"] if version >= 8 else [],
                   "error_message": p["error_message"] if version >= 8 else None,
                   "current_leader": leader_default}
            if version >= 10 and p.get("current_leader"):
                out["current_leader"] = p["current_leader"]
            return out
        return {"responses": [{"name": t["name"], "partition_responses": [
            part(p) for p in t["partition_responses"]]} for t in body["responses"]]}

    def fpart(p: Mapping[str, Any]) -> dict[str, Any]:
        out = {"partition_index": p["partition_index"], "error_code": p["error_code"],
               "high_watermark": p["high_watermark"],
               "last_stable_offset": p["last_stable_offset"],
               "log_start_offset": p["log_start_offset"] if version >= 5 else -1,
               "diverging_epoch": {"epoch": -1, "end_offset": -1},
               "current_leader": leader_default,
               "snapshot_id": {"end_offset": -1, "epoch": -1},
               "aborted_transactions": p["aborted_transactions"],
               "preferred_read_replica": p["preferred_read_replica"] if version >= 11 else -1,
               "records": p["records"]}
        if version >= 12:
            for tag in ("diverging_epoch", "current_leader", "snapshot_id"):
                if p.get(tag):
                    out[tag] = p[tag]
        return out
    return {"responses": [{"topic": t["topic"], "partitions": [fpart(p) for p in t["partitions"]]}
                          for t in body["responses"]]}
