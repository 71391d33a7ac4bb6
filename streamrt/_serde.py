"""Serialisation of user keys and values: the log stores bytes, users send objects.

Values are JSON (orjson) by default; ``"bytes"`` passes bytes through; ``"str"`` is UTF-8
text; any object with ``dumps(obj) -> bytes`` and ``loads(bytes) -> obj`` plugs in. Keys are
bytes as given, ``str`` as UTF-8, anything else as JSON, so a key hashes the same in every
process (never Python's ``hash()``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

import orjson

from .errors import InvalidArgument


class Serde(Protocol):
    """Turns objects into bytes and back."""

    def dumps(self, obj: Any) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


class JsonSerde:
    """JSON via orjson; ``bytes`` values pass through unchanged (already serialised)."""

    def dumps(self, obj: Any) -> bytes:
        if type(obj) is bytes:
            return obj
        try:
            out = orjson.dumps(obj)
        except TypeError as e:
            raise InvalidArgument(
                f"cannot serialise {type(obj).__name__} as JSON ({e}); pass bytes, or choose "
                f"another serde (value_serde='bytes' | 'str' | an object with dumps/loads)"
            ) from None
        if b"null" in out:  # orjson writes NaN and infinities as null: refuse, never alter
            _check_finite(obj)
        return out

    def loads(self, data: bytes) -> Any:
        return orjson.loads(data)


class BytesSerde:
    """Bytes in, bytes out."""

    def dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"value_serde='bytes' takes bytes, got {type(obj).__name__}")
        return bytes(obj)

    def loads(self, data: bytes) -> Any:
        return data


class StrSerde:
    """UTF-8 text."""

    def dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, str):
            raise InvalidArgument(f"value_serde='str' takes str, got {type(obj).__name__}")
        return obj.encode()

    def loads(self, data: bytes) -> Any:
        return data.decode("utf-8", errors="replace")


_NAMED: dict[str, Serde] = {"json": JsonSerde(), "bytes": BytesSerde(), "str": StrSerde()}


def resolve(serde: str | Serde) -> Serde:
    """A serde from its name or an object with dumps/loads."""
    if isinstance(serde, str):
        try:
            return _NAMED[serde]
        except KeyError:
            raise InvalidArgument(
                f"unknown serde {serde!r}: use one of {sorted(_NAMED)} or an object with "
                f"dumps/loads"
            ) from None
    if not (hasattr(serde, "dumps") and hasattr(serde, "loads")):
        raise InvalidArgument(f"a serde needs dumps() and loads(), got {type(serde).__name__}")
    return serde


def key_bytes(key: Any) -> bytes | None:
    """The bytes a key is stored (and hashed) as."""
    if key is None or type(key) is bytes:
        return key
    if type(key) is str:
        return key.encode()
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    try:
        out = orjson.dumps(key)
    except TypeError:
        raise InvalidArgument(
            f"cannot use a {type(key).__name__} as a key: use str, bytes or a JSON value"
        ) from None
    if b"null" in out:
        _check_finite(key, "key")
    return out


def _check_finite(obj: Any, what: str = "value") -> None:
    """Refuse NaN and infinities anywhere in ``obj``: JSON has no such numbers, and orjson
    would write them as null, so the value read back would differ from the one sent."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, float):
            if not math.isfinite(o):
                raise InvalidArgument(
                    f"cannot serialise {o!r} in a JSON {what}: JSON has no NaN or infinity "
                    f"(it would be stored as null); send None or a string instead, or choose "
                    f"another serde")
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif dataclasses.is_dataclass(o):
            stack.extend(getattr(o, f.name) for f in dataclasses.fields(o))
