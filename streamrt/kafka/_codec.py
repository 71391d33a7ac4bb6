"""The Kafka wire codec: request and response frames to and from plain dicts, with no I/O.

The server reads a frame (:class:`~streamrt.kafka._frames.FrameDecoder`), parses its header
with :func:`read_request_header`, its body with :func:`decode_request`, and answers with
:func:`encode_response`. :func:`encode_request` and :func:`decode_response` are the client's
side of the same tables (our tests and tools use them).

Bodies are dicts keyed by Kafka's field names in snake_case; see ``_schema.py`` for defaults
and ``_messages*.py`` for the tables. Produce and Fetch carry the data and may be served by
hand-written codecs registered in :data:`FAST_DECODERS` / :data:`FAST_ENCODERS`; the generic
tables describe them too and are the reference those are tested against.

Headers: a request header is v1 (api key, version, correlation id, nullable ``int16`` client
id) or, for flexible versions, v2 (the same plus tagged fields). A response header is the
correlation id, plus tagged fields for flexible versions, except ApiVersions, whose response
header is always v0 so that a client can read it whatever version it asked for.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from streamrt.errors import InvalidArgument, ProtocolError, UnsupportedVersion

from . import _messages, _messages_admin, _messages_groups
from ._frames import FrameDecoder
from ._messages import ApiKey, ErrorCode
from ._schema import Api, StructCodec, compile_struct
from ._wire import Reader, Writer

__all__ = [
    "RequestHeader", "read_request_header", "decode_request", "encode_response",
    "encode_request", "decode_response", "api_versions_error_response", "SUPPORTED",
    "FAST_DECODERS", "FAST_ENCODERS", "FrameDecoder", "ApiKey", "ErrorCode",
]

log = logging.getLogger(__name__)

APIS: dict[int, Api] = {
    a.key: a for a in (*_messages.APIS, *_messages_groups.APIS, *_messages_admin.APIS)}
"""Every API we implement, by key."""

SUPPORTED: dict[int, tuple[int, int]] = {key: a.versions for key, a in sorted(APIS.items())}
"""api key -> (min version, max version): what the server advertises in ApiVersions."""

FAST_DECODERS: dict[int, Callable[[int, bytes | memoryview, int], dict[str, Any]]] = {}
"""Hand-written request decoders by api key, consulted before the tables:
``decoder(api_version, frame, body_offset) -> body``. Like :func:`decode_request` they raise
``UnsupportedVersion`` or ``ProtocolError`` (and must reject trailing bytes)."""

FAST_ENCODERS: dict[int, Callable[[int, Mapping[str, Any]],
                                  bytes | bytearray | list[bytes | bytearray | memoryview]]] = {}
"""Hand-written response-body encoders by api key, consulted before the tables:
``encoder(api_version, body) -> bytes`` or a list of chunks (the body only: the size prefix
and response header are added here)."""

_I32 = struct.Struct(">i")
_HEADER = struct.Struct(">hhi")  # api key, api version, correlation id
_PREFIX_CORRELATION = struct.Struct(">ii")  # size prefix, correlation id
_ENCODE_ERRORS = (struct.error, TypeError, ValueError, AttributeError, OverflowError, KeyError)
_UNSUPPORTED_VERSION = 35
_API_VERSIONS = 18


@attrs.frozen
class RequestHeader:
    """A parsed request header.

    ``flexible`` says header v2 (with tagged fields) was used; the response header then
    carries tagged fields too (except ApiVersions').
    """

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    flexible: bool


def _api(api_key: int, api_version: int) -> Api:
    a = APIS.get(api_key)
    if a is None:
        raise UnsupportedVersion(f"api key {api_key} is not supported by this server")
    lo, hi = a.versions
    if not lo <= api_version <= hi:
        raise UnsupportedVersion(
            f"{_name(api_key)} v{api_version} is not supported: this server speaks "
            f"v{lo} to v{hi}")
    return a


def _name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return f"api key {api_key}"


def _request_codec(api_key: int, api_version: int) -> StructCodec:
    a = _api(api_key, api_version)
    return compile_struct(a.request, api_version, a.is_flexible(api_version))


def _response_codec(api_key: int, api_version: int) -> StructCodec:
    a = _api(api_key, api_version)
    return compile_struct(a.response, api_version, a.is_flexible(api_version))


def _header_is_flexible(api_key: int, api_version: int) -> bool:
    if api_key == _API_VERSIONS:
        return api_version >= 3  # whatever the version: a newer client's ApiVersions must parse
    a = APIS.get(api_key)
    return a is not None and a.versions[0] <= api_version <= a.versions[1] \
        and a.is_flexible(api_version)


# ------------------------------------------------------------------------- server side


def read_request_header(frame: bytes | memoryview) -> tuple[RequestHeader, int]:
    """Parse the header of ``frame`` (one request without its size prefix).

    Returns the header and the offset of the body. An unknown api key or unsupported version
    still parses (as header v1) so the server can answer with an error; ApiVersions always
    parses (v3 and later have a flexible header). Raises ``ProtocolError`` only when not even
    that is possible (too short, a bad client id).
    """
    r = Reader(frame)
    if r.end < 10:
        raise ProtocolError(f"request of {r.end} bytes is too short for a request header")
    api_key, api_version, correlation_id = r.unpack(_HEADER)
    client_id = r.nullable_string()  # int16 length even in header v2
    flexible = _header_is_flexible(api_key, api_version)
    if flexible:
        r.skip_tagged_fields()
    return RequestHeader(api_key, api_version, correlation_id, client_id, flexible), r.pos


def decode_request(header: RequestHeader, frame: bytes | memoryview, offset: int, *,
                   strict: bool = False) -> dict[str, Any]:
    """The body of a request as a dict (fields its version lacks get their defaults).

    Raises ``UnsupportedVersion`` for an api key or version outside :data:`SUPPORTED`, and
    ``ProtocolError`` for a malformed body (truncated, a bogus length or count, a bad varint).
    Bytes after the body are ignored, as Kafka's broker ignores them, unless ``strict``
    (then they are a ``ProtocolError``; tests use it to prove a table reads whole bodies).
    """
    fast = FAST_DECODERS.get(header.api_key)
    if fast is not None:
        return fast(header.api_version, frame, offset)
    codec = _request_codec(header.api_key, header.api_version)
    r = Reader(frame, offset)
    body = codec.decode(r)
    if r.pos != r.end:
        # Clients rely on Kafka ignoring them: librdkafka 2.16 asks Metadata v12 for all
        # topics with a null compact array written in a 4-byte slot, leaving 3 stray bytes.
        # The size prefix bounds the frame, so nothing gets out of sync.
        if strict:
            raise ProtocolError(
                f"{_name(header.api_key)} v{header.api_version} request has {r.end - r.pos} "
                f"trailing bytes after its body")
        log.debug("%s v%d request has %d trailing bytes after its body (ignored, as Kafka "
                  "does)", _name(header.api_key), header.api_version, r.end - r.pos)
    return body


def encode_response(header: RequestHeader, body: Mapping[str, Any]) -> bytes:
    """The whole response frame (size prefix, response header, body in the request's version).

    Missing keys take their defaults. An ApiVersions response with a non-zero error code is
    written in the v0 layout, whatever the version: that is how clients read one (kafka-python
    reads any failed ApiVersions as v0, Kafka's own client falls back to v0). Raises
    ``UnsupportedVersion`` for a version we do not implement and ``InvalidArgument`` naming the
    field when a value cannot be encoded.
    """
    api_key, version = header.api_key, header.api_version
    a = _api(api_key, version)
    flexible_header = a.is_flexible(version) and api_key != _API_VERSIONS
    fast = FAST_ENCODERS.get(api_key)
    if fast is not None:
        return b"".join(_fast_parts(fast, header, body, flexible_header))
    if api_key == _API_VERSIONS and body.get("error_code", 0) != 0:
        version = 0  # what clients expect of a failed ApiVersions (see decode_response)
    codec = compile_struct(a.response, version, a.is_flexible(version))
    w = Writer(bytearray(_PREFIX_CORRELATION.pack(0, header.correlation_id)))
    if flexible_header:
        w.buf.append(0)
    _encode_body(codec, w, body, api_key, version, "response")
    _I32.pack_into(w.buf, 0, len(w.buf) - 4)
    return bytes(w.buf)


def _encode_body(codec: StructCodec, w: Writer, body: Mapping[str, Any], api_key: int,
                 version: int, side: str) -> None:
    try:
        codec.encode(w, body)
    except _ENCODE_ERRORS as exc:
        where = codec.locate(body)
        raise InvalidArgument(
            f"cannot encode {_name(api_key)} v{version} {side}: field {where}: "
            f"{type(exc).__name__}: {exc}") from exc


def encode_response_parts(header: RequestHeader, body: Mapping[str, Any]) -> list[bytes]:
    """:func:`encode_response` as a list of chunks whose concatenation is the frame: for the
    hand-written encoders (Fetch), stored record batches stay separate objects, so a server
    can write them without first joining megabytes into one buffer."""
    fast = FAST_ENCODERS.get(header.api_key)
    if fast is None:
        return [encode_response(header, body)]
    a = _api(header.api_key, header.api_version)
    flexible_header = a.is_flexible(header.api_version) and header.api_key != _API_VERSIONS
    return _fast_parts(fast, header, body, flexible_header)


def _fast_parts(fast: Callable[..., Any], header: RequestHeader, body: Mapping[str, Any],
                flexible_header: bool) -> list[bytes]:
    encoded = fast(header.api_version, body)
    parts = encoded if isinstance(encoded, list) else [encoded]
    size = 4 + flexible_header + sum(map(len, parts))
    head = _PREFIX_CORRELATION.pack(size, header.correlation_id)
    if flexible_header:
        head += b"\0"
    return [head, *parts]


def api_versions_error_response(header: RequestHeader) -> bytes:
    """The answer to an ApiVersions request of a version we do not support.

    Error 35 (UNSUPPORTED_VERSION) in the **v0** layout, listing :data:`SUPPORTED`: a client
    reads it whatever version it asked for, then retries with the highest ApiVersions version
    listed (kafka-python does exactly that). Returns the whole frame.
    """
    w = Writer(bytearray(_PREFIX_CORRELATION.pack(0, header.correlation_id)))
    codec = compile_struct(APIS[_API_VERSIONS].response, 0, False)
    codec.encode(w, {"error_code": _UNSUPPORTED_VERSION, "api_keys": [
        {"api_key": k, "min_version": lo, "max_version": hi}
        for k, (lo, hi) in SUPPORTED.items()]})
    _I32.pack_into(w.buf, 0, len(w.buf) - 4)
    return bytes(w.buf)


# ------------------------------------------------------------------------- client side


def encode_request(api_key: int, api_version: int, correlation_id: int, client_id: str | None,
                   body: Mapping[str, Any]) -> bytes:
    """The whole request frame (size prefix, header v1 or v2, body)."""
    a = _api(api_key, api_version)
    flexible = a.is_flexible(api_version)
    codec = compile_struct(a.request, api_version, flexible)
    w = Writer(bytearray(4))
    w.pack(_HEADER, api_key, api_version, correlation_id)
    w.nullable_string(client_id)
    if flexible:
        w.buf.append(0)
    _encode_body(codec, w, body, api_key, api_version, "request")
    _I32.pack_into(w.buf, 0, len(w.buf) - 4)
    return bytes(w.buf)


def decode_response(api_key: int, api_version: int,
                    frame: bytes | memoryview) -> tuple[int, dict[str, Any]]:
    """``(correlation_id, body)`` of a response frame (without its size prefix).

    An ApiVersions response with a non-zero error code is read in the v0 layout, as servers
    send it (and as kafka-python reads it).
    """
    a = _api(api_key, api_version)
    flexible = a.is_flexible(api_version)
    r = Reader(frame)
    correlation_id = r.int32()
    if api_key == _API_VERSIONS:
        if api_version > 0 and r.remaining() >= 2 and r.int16() != 0:
            api_version, flexible = 0, False
        r.pos = 4
    elif flexible:
        r.skip_tagged_fields()
    body = compile_struct(a.response, api_version, flexible).decode(r)
    if r.pos != r.end:
        raise ProtocolError(f"{_name(api_key)} v{api_version} response has "
                            f"{r.end - r.pos} trailing bytes after its body")
    return correlation_id, body
