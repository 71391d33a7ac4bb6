"""Wire primitives for the hand-written Produce and Fetch codecs (``_produce.py``, ``_fetch.py``).

Plain functions over a memoryview and a position, no Reader object: the data-carrying APIs
decode in straight-line code. Readers check every length against the bytes left before
slicing (slices never raise), and callers turn ``TRUNCATED`` (what indexing or unpacking past
the end raises) into ProtocolError.
"""

from __future__ import annotations

import struct

from ..errors import ProtocolError, UnsupportedVersion


I8 = struct.Struct(">b")
I16 = struct.Struct(">h")
I32 = struct.Struct(">i")
I64 = struct.Struct(">q")

#: Errors that mean "the bytes ran out" when they escape a decoder: unpack_from past the end
#: raises struct.error and indexing past the end IndexError. Slices never raise, so every
#: length is checked by hand before slicing.
TRUNCATED = (struct.error, IndexError)

_VARINT_1 = [bytes((i,)) for i in range(128)]


def as_bytes_view(data: bytes | bytearray | memoryview) -> memoryview:
    """A flat memoryview of unsigned bytes over ``data`` (indexing it gives ints 0-255)."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` (at most 5 bytes, below 2**32) and the position after it."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    while True:
        pos += 1
        b = buf[pos]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 28:
            raise ProtocolError("unsigned varint longer than 5 bytes")
    if value > 0xFFFFFFFF:
        raise ProtocolError(f"unsigned varint {value} does not fit in 32 bits")
    return value, pos + 1


def skip_tagged_fields(buf: memoryview, pos: int, end: int) -> int:
    """Skip a tagged-field section (fields this codec does not know), returning the position
    after it."""
    if buf[pos] == 0:  # the usual case: no tagged fields
        return pos + 1
    n, pos = read_uvarint(buf, pos)
    if n > (end - pos) // 2:
        raise ProtocolError(f"{n} tagged fields announced, {end - pos} bytes left")
    for _ in range(n):
        _, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        if size > end - pos:
            raise ProtocolError(f"tagged field of {size} bytes, {end - pos} bytes left")
        pos += size
    return pos


def read_string(buf: memoryview, pos: int, end: int, what: str) -> tuple[str, int]:
    """A non-nullable int16-length string."""
    n = I16.unpack_from(buf, pos)[0]
    pos += 2
    if n < 0 or n > end - pos:
        raise ProtocolError(f"{what}: string length {n} with {end - pos} bytes left")
    return str(buf[pos:pos + n], "utf-8"), pos + n


def read_nullable_string(buf: memoryview, pos: int, end: int, what: str) -> tuple[str | None, int]:
    """An int16-length string, -1 for null."""
    n = I16.unpack_from(buf, pos)[0]
    pos += 2
    if n == -1:
        return None, pos
    if n < 0 or n > end - pos:
        raise ProtocolError(f"{what}: string length {n} with {end - pos} bytes left")
    return str(buf[pos:pos + n], "utf-8"), pos + n


def read_compact_string(buf: memoryview, pos: int, end: int, what: str) -> tuple[str, int]:
    """A non-nullable compact string (unsigned varint length + 1)."""
    n, pos = read_uvarint(buf, pos)
    n -= 1
    if n < 0 or n > end - pos:
        raise ProtocolError(f"{what}: compact string length {n} with {end - pos} bytes left")
    return str(buf[pos:pos + n], "utf-8"), pos + n


def read_compact_nullable_string(
    buf: memoryview, pos: int, end: int, what: str
) -> tuple[str | None, int]:
    """A compact string, length 0 on the wire for null."""
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    n -= 1
    if n > end - pos:
        raise ProtocolError(f"{what}: compact string length {n} with {end - pos} bytes left")
    return str(buf[pos:pos + n], "utf-8"), pos + n


def read_count(buf: memoryview, pos: int, end: int, min_size: int, what: str) -> tuple[int, int]:
    """A non-nullable int32 array count, checked against the bytes left (each element takes at
    least ``min_size`` bytes) before the caller builds anything."""
    n = I32.unpack_from(buf, pos)[0]
    pos += 4
    if n < 0 or n * min_size > end - pos:
        raise ProtocolError(f"{what}: array of {n} with {end - pos} bytes left")
    return n, pos


def read_compact_count(
    buf: memoryview, pos: int, end: int, min_size: int, what: str
) -> tuple[int, int]:
    """A non-nullable compact array count (unsigned varint + 1), checked like read_count."""
    n, pos = read_uvarint(buf, pos)
    n -= 1
    if n < 0 or n * min_size > end - pos:
        raise ProtocolError(f"{what}: compact array of {n} with {end - pos} bytes left")
    return n, pos


def uvarint(n: int) -> bytes:
    """``n`` (0 <= n < 2**32) as an unsigned varint."""
    if n < 0x80:
        return _VARINT_1[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def string(s: str) -> bytes:
    """An int16-length string."""
    b = s.encode()
    return I16.pack(len(b)) + b


def nullable_string(s: str | None) -> bytes:
    """An int16-length string, or -1 for None."""
    if s is None:
        return b"\xff\xff"
    b = s.encode()
    return I16.pack(len(b)) + b


def compact_string(s: str) -> bytes:
    """A compact string."""
    b = s.encode()
    return uvarint(len(b) + 1) + b


def compact_nullable_string(s: str | None) -> bytes:
    """A compact string, or 0 for None."""
    if s is None:
        return b"\x00"
    b = s.encode()
    return uvarint(len(b) + 1) + b


def check_version(api: str, version: int, versions: range) -> None:
    """Raise UnsupportedVersion unless ``version`` is in ``versions``."""
    if version not in versions:
        raise UnsupportedVersion(
            f"{api} version {version} is not supported: versions {versions.start} to "
            f"{versions.stop - 1} are (pick one from ApiVersions)")
