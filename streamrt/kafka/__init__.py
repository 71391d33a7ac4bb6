"""Apache Kafka's wire protocol, sans-IO: frames, headers and message bodies.

``streamrt serve`` speaks this protocol so that Kafka clients (kafka-python, aiokafka,
confluent-kafka) work unchanged. This package front is the codec only: it takes bytes and
returns dicts, takes dicts and returns bytes, and imports no socket or event loop.
"""

from __future__ import annotations

from ._codec import (
    SUPPORTED,
    RequestHeader,
    api_versions_error_response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    read_request_header,
)
from ._frames import FrameDecoder
from ._messages import ApiKey, ErrorCode

__all__ = [
    "ApiKey",
    "ErrorCode",
    "RequestHeader",
    "read_request_header",
    "decode_request",
    "encode_response",
    "encode_request",
    "decode_response",
    "SUPPORTED",
    "api_versions_error_response",
    "FrameDecoder",
]
