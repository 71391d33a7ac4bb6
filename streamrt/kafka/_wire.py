"""Kafka's primitive wire types: a bounds-checked :class:`Reader` and a :class:`Writer`.

Everything a peer sends is untrusted, so every read checks that the bytes it needs are there
and every length or count is checked against the bytes left *before* anything is allocated
for it: a frame claiming a 2-billion-element array raises :class:`~streamrt.errors.ProtocolError`
at once instead of building a list. Only ``ProtocolError`` escapes a ``Reader``; never
``IndexError``, ``struct.error`` or ``UnicodeDecodeError``.

The types follow Kafka's protocol guide: big-endian integers, ``int16``-prefixed strings and
``int32``-prefixed bytes and arrays in classic versions, and in flexible versions "compact"
ones prefixed by an unsigned varint holding length + 1 (0 meaning null), plus a tagged-field
section after each struct.
"""

from __future__ import annotations

import struct
from typing import Any
from uuid import UUID

from streamrt.errors import ProtocolError

__all__ = ["Reader", "Writer", "MAX_ARRAY_LEN"]

MAX_ARRAY_LEN = (1 << 31) - 1
"""The largest element count any array may claim (Kafka's counts are ``int32``)."""

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_ZERO_UUID = UUID(int=0)


class Reader:
    """Reads Kafka primitives from ``data[pos:end]``, raising ``ProtocolError`` on bad input.

    ``pos`` is public: callers read it to know where the next field starts. ``end`` may be
    narrowed temporarily (a tagged field is read within its declared size).
    """

    __slots__ = ("buf", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0,
                 end: int | None = None) -> None:
        view = data if isinstance(data, memoryview) else memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        self.buf = view
        self.pos = pos
        self.end = len(view) if end is None else end

    def remaining(self) -> int:
        """Bytes left before ``end``."""
        return self.end - self.pos

    def _short(self, n: int, what: str) -> ProtocolError:
        return ProtocolError(
            f"truncated frame: {what} needs {n} bytes at offset {self.pos}, "
            f"{self.end - self.pos} left")

    def unpack(self, st: struct.Struct) -> tuple:
        """Several fixed-size fields at once (``st`` is a precompiled big-endian layout)."""
        pos = self.pos
        if pos + st.size > self.end:
            raise self._short(st.size, "fields")
        self.pos = pos + st.size
        return st.unpack_from(self.buf, pos)

    def _fixed(self, st: struct.Struct, what: str) -> int:
        pos = self.pos
        if pos + st.size > self.end:
            raise self._short(st.size, what)
        self.pos = pos + st.size
        return st.unpack_from(self.buf, pos)[0]

    def int8(self) -> int:
        """A signed byte."""
        return self._fixed(_I8, "int8")

    def int16(self) -> int:
        """A big-endian signed 16-bit integer."""
        return self._fixed(_I16, "int16")

    def uint16(self) -> int:
        """A big-endian unsigned 16-bit integer."""
        return self._fixed(_U16, "uint16")

    def int32(self) -> int:
        """A big-endian signed 32-bit integer."""
        return self._fixed(_I32, "int32")

    def uint32(self) -> int:
        """A big-endian unsigned 32-bit integer."""
        return self._fixed(_U32, "uint32")

    def int64(self) -> int:
        """A big-endian signed 64-bit integer."""
        return self._fixed(_I64, "int64")

    def float64(self) -> float:
        """An IEEE 754 double."""
        return self._fixed(_F64, "float64")

    def boolean(self) -> bool:
        """A byte; any non-zero value is true (as Kafka reads it)."""
        return self._fixed(_I8, "bool") != 0

    def uuid(self) -> UUID:
        """16 bytes as a :class:`uuid.UUID`."""
        pos = self.pos
        if pos + 16 > self.end:
            raise self._short(16, "uuid")
        self.pos = pos + 16
        raw = bytes(self.buf[pos:pos + 16])
        return _ZERO_UUID if raw == bytes(16) else UUID(bytes=raw)

    def _varint_bits(self, max_bytes: int, what: str) -> int:
        # Little-endian base-128: 7 bits a byte, high bit set on every byte but the last.
        buf, pos, end = self.buf, self.pos, self.end
        value = shift = 0
        for i in range(max_bytes):
            if pos + i >= end:
                raise self._short(i + 1, what)
            b = buf[pos + i]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                self.pos = pos + i + 1
                return value
            shift += 7
        raise ProtocolError(f"malformed {what} at offset {pos}: longer than {max_bytes} bytes")

    def uvarint(self) -> int:
        """An unsigned varint of at most 32 bits (5 bytes): lengths, counts, tags."""
        pos = self.pos
        if pos < self.end:
            b = self.buf[pos]
            if b < 0x80:  # the common case: one byte
                self.pos = pos + 1
                return b
        value = self._varint_bits(5, "unsigned varint")
        if value > 0xFFFFFFFF:
            raise ProtocolError(f"unsigned varint ending at offset {self.pos} exceeds 32 bits")
        return value

    def varint(self) -> int:
        """A zigzag-encoded signed varint of at most 32 bits (5 bytes)."""
        raw = self._varint_bits(5, "varint")
        if raw > 0xFFFFFFFF:
            raise ProtocolError(f"varint ending at offset {self.pos} exceeds 32 bits")
        return (raw >> 1) ^ -(raw & 1)

    def varlong(self) -> int:
        """A zigzag-encoded signed varint of at most 64 bits (10 bytes)."""
        raw = self._varint_bits(10, "varlong")
        if raw > 0xFFFFFFFFFFFFFFFF:
            raise ProtocolError(f"varlong ending at offset {self.pos} exceeds 64 bits")
        return (raw >> 1) ^ -(raw & 1)

    def raw(self, n: int) -> memoryview:
        """The next ``n`` bytes, as a zero-copy slice."""
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise self._short(n, "data")
        self.pos = pos + n
        return self.buf[pos:pos + n]

    def skip(self, n: int) -> None:
        """Skip ``n`` bytes."""
        if n < 0 or self.pos + n > self.end:
            raise self._short(n, "skipped field")
        self.pos += n

    def _text(self, n: int) -> str:
        pos = self.pos
        if pos + n > self.end:
            raise self._short(n, "string")
        self.pos = pos + n
        try:
            return str(self.buf[pos:pos + n], "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"string at offset {pos} is not valid UTF-8: {exc}") from None

    # ---- strings: classic (int16 length, -1 = null) and compact (uvarint length + 1, 0 = null)

    def string(self) -> str:
        """A non-nullable string with an ``int16`` length."""
        n = self._fixed(_I16, "string length")
        if n < 0:
            raise ProtocolError(f"string length {n} at offset {self.pos - 2} in a non-nullable field")
        return self._text(n)

    def nullable_string(self) -> str | None:
        """A string with an ``int16`` length; -1 is null."""
        n = self._fixed(_I16, "string length")
        if n == -1:
            return None
        if n < 0:
            raise ProtocolError(f"bad string length {n} at offset {self.pos - 2}")
        return self._text(n)

    def compact_string(self) -> str:
        """A non-nullable string with an unsigned-varint length + 1."""
        n = self.uvarint()
        if n == 0:
            raise ProtocolError(f"null compact string before offset {self.pos} in a non-nullable field")
        return self._text(n - 1)

    def compact_nullable_string(self) -> str | None:
        """A string with an unsigned-varint length + 1; 0 is null."""
        n = self.uvarint()
        return None if n == 0 else self._text(n - 1)

    # ---- bytes: classic (int32 length) and compact; ``records`` variants return zero-copy views

    def _blob(self, n: int) -> memoryview:
        pos = self.pos
        if pos + n > self.end:
            raise self._short(n, "bytes")
        self.pos = pos + n
        return self.buf[pos:pos + n]

    def bytes_(self) -> bytes:
        """Non-nullable bytes with an ``int32`` length."""
        n = self._fixed(_I32, "bytes length")
        if n < 0:
            raise ProtocolError(f"bytes length {n} at offset {self.pos - 4} in a non-nullable field")
        return bytes(self._blob(n))

    def nullable_bytes(self) -> bytes | None:
        """Bytes with an ``int32`` length; -1 is null."""
        view = self.nullable_view()
        return None if view is None else bytes(view)

    def compact_bytes(self) -> bytes:
        """Non-nullable bytes with an unsigned-varint length + 1."""
        n = self.uvarint()
        if n == 0:
            raise ProtocolError(f"null compact bytes before offset {self.pos} in a non-nullable field")
        return bytes(self._blob(n - 1))

    def compact_nullable_bytes(self) -> bytes | None:
        """Bytes with an unsigned-varint length + 1; 0 is null."""
        view = self.compact_nullable_view()
        return None if view is None else bytes(view)

    def view(self) -> memoryview:
        """Like :meth:`bytes_` but a zero-copy slice (record batches)."""
        n = self._fixed(_I32, "bytes length")
        if n < 0:
            raise ProtocolError(f"bytes length {n} at offset {self.pos - 4} in a non-nullable field")
        return self._blob(n)

    def nullable_view(self) -> memoryview | None:
        """Like :meth:`nullable_bytes` but a zero-copy slice."""
        n = self._fixed(_I32, "bytes length")
        if n == -1:
            return None
        if n < 0:
            raise ProtocolError(f"bad bytes length {n} at offset {self.pos - 4}")
        return self._blob(n)

    def compact_view(self) -> memoryview:
        """Like :meth:`compact_bytes` but a zero-copy slice."""
        n = self.uvarint()
        if n == 0:
            raise ProtocolError(f"null compact bytes before offset {self.pos} in a non-nullable field")
        return self._blob(n - 1)

    def compact_nullable_view(self) -> memoryview | None:
        """Like :meth:`compact_nullable_bytes` but a zero-copy slice."""
        n = self.uvarint()
        return None if n == 0 else self._blob(n - 1)

    # ---- array counts, checked before anything is allocated for the elements

    def _count(self, n: int, min_item: int) -> int:
        # Every element takes at least ``min_item`` bytes (at least one is assumed even for
        # an element that could be empty), so a count the rest of the frame cannot hold is a
        # lie: refuse it here rather than loop or allocate on its say-so.
        if n > MAX_ARRAY_LEN or n * max(min_item, 1) > self.end - self.pos:
            raise ProtocolError(
                f"array count {n} before offset {self.pos} cannot fit in the "
                f"{self.end - self.pos} bytes left")
        return n

    def array_len(self, min_item: int = 1) -> int:
        """A non-nullable array's ``int32`` element count."""
        n = self._fixed(_I32, "array length")
        if n < 0:
            raise ProtocolError(f"array length {n} at offset {self.pos - 4} in a non-nullable field")
        return self._count(n, min_item)

    def nullable_array_len(self, min_item: int = 1) -> int | None:
        """An array's ``int32`` element count; -1 is null."""
        n = self._fixed(_I32, "array length")
        if n == -1:
            return None
        if n < 0:
            raise ProtocolError(f"bad array length {n} at offset {self.pos - 4}")
        return self._count(n, min_item)

    def compact_array_len(self, min_item: int = 1) -> int:
        """A non-nullable compact array's count (stored as count + 1)."""
        n = self.uvarint()
        if n == 0:
            raise ProtocolError(f"null compact array before offset {self.pos} in a non-nullable field")
        return self._count(n - 1, min_item)

    def compact_nullable_array_len(self, min_item: int = 1) -> int | None:
        """A compact array's count (stored as count + 1); 0 is null."""
        n = self.uvarint()
        return None if n == 0 else self._count(n - 1, min_item)

    def fixed_array(self, char: str, size: int, n: int) -> list[Any]:
        """``n`` fixed-size values of struct format ``char`` (``size`` bytes each)."""
        pos = self.pos
        if pos + n * size > self.end:
            raise self._short(n * size, "array")
        self.pos = pos + n * size
        return list(struct.unpack_from(f">{n}{char}", self.buf, pos))

    def skip_tagged_fields(self) -> None:
        """Skip a whole tagged-field section (count, then tag, size, data for each)."""
        pos = self.pos
        if pos < self.end and self.buf[pos] == 0:  # the common case: none
            self.pos = pos + 1
            return
        for _ in range(self._count(self.uvarint(), 2)):
            self.uvarint()
            self.skip(self.uvarint())


class Writer:
    """Appends Kafka primitives to ``buf`` (a ``bytearray``).

    Writing never validates beyond what ``struct`` does: values come from our own code, and a
    wrong one (out of range, ``None`` where null is not allowed) raises ``struct.error``,
    ``TypeError`` or ``ValueError`` for the caller to report.
    """

    __slots__ = ("buf",)

    def __init__(self, buf: bytearray | None = None) -> None:
        self.buf = bytearray() if buf is None else buf

    def pack(self, st: struct.Struct, *values: object) -> None:
        """Several fixed-size fields at once."""
        self.buf += st.pack(*values)

    def int8(self, v: int) -> None:
        """A signed byte."""
        self.buf += _I8.pack(v)

    def int16(self, v: int) -> None:
        """A big-endian signed 16-bit integer."""
        self.buf += _I16.pack(v)

    def uint16(self, v: int) -> None:
        """A big-endian unsigned 16-bit integer."""
        self.buf += _U16.pack(v)

    def int32(self, v: int) -> None:
        """A big-endian signed 32-bit integer."""
        self.buf += _I32.pack(v)

    def uint32(self, v: int) -> None:
        """A big-endian unsigned 32-bit integer."""
        self.buf += _U32.pack(v)

    def int64(self, v: int) -> None:
        """A big-endian signed 64-bit integer."""
        self.buf += _I64.pack(v)

    def float64(self, v: float) -> None:
        """An IEEE 754 double."""
        self.buf += _F64.pack(v)

    def boolean(self, v: bool) -> None:
        """1 or 0."""
        self.buf.append(1 if v else 0)

    def uuid(self, v: UUID) -> None:
        """16 bytes."""
        self.buf += v.bytes

    def uvarint(self, v: int) -> None:
        """An unsigned varint (lengths, counts, tags)."""
        if v < 0 or v > 0xFFFFFFFF:
            raise ValueError(f"unsigned varint {v} is out of range")
        buf = self.buf
        while v >= 0x80:
            buf.append((v & 0x7F) | 0x80)
            v >>= 7
        buf.append(v)

    def varint(self, v: int) -> None:
        """A zigzag-encoded signed 32-bit varint."""
        if not -(1 << 31) <= v < (1 << 31):
            raise ValueError(f"varint {v} is out of range")
        self._zigzag((v << 1) ^ (v >> 31))

    def varlong(self, v: int) -> None:
        """A zigzag-encoded signed 64-bit varint."""
        if not -(1 << 63) <= v < (1 << 63):
            raise ValueError(f"varlong {v} is out of range")
        self._zigzag((v << 1) ^ (v >> 63))

    def _zigzag(self, u: int) -> None:
        buf = self.buf
        while u >= 0x80:
            buf.append((u & 0x7F) | 0x80)
            u >>= 7
        buf.append(u)

    def string(self, v: str) -> None:
        """A non-nullable string with an ``int16`` length."""
        data = v.encode()
        self.buf += _I16.pack(len(data))
        self.buf += data

    def nullable_string(self, v: str | None) -> None:
        """A string with an ``int16`` length; None is written as -1."""
        if v is None:
            self.buf += b"\xff\xff"
        else:
            self.string(v)

    def compact_string(self, v: str) -> None:
        """A non-nullable string with an unsigned-varint length + 1."""
        data = v.encode()
        self.uvarint(len(data) + 1)
        self.buf += data

    def compact_nullable_string(self, v: str | None) -> None:
        """A compact string; None is written as length 0."""
        if v is None:
            self.buf.append(0)
        else:
            self.compact_string(v)

    def bytes_(self, v: bytes | bytearray | memoryview) -> None:
        """Non-nullable bytes with an ``int32`` length."""
        self.buf += _I32.pack(len(v))
        self.buf += v

    def nullable_bytes(self, v: bytes | bytearray | memoryview | None) -> None:
        """Bytes with an ``int32`` length; None is written as -1."""
        if v is None:
            self.buf += b"\xff\xff\xff\xff"
        else:
            self.bytes_(v)

    def compact_bytes(self, v: bytes | bytearray | memoryview) -> None:
        """Non-nullable bytes with an unsigned-varint length + 1."""
        self.uvarint(len(v) + 1)
        self.buf += v

    def compact_nullable_bytes(self, v: bytes | bytearray | memoryview | None) -> None:
        """Compact bytes; None is written as length 0."""
        if v is None:
            self.buf.append(0)
        else:
            self.compact_bytes(v)

    def array_len(self, n: int | None) -> None:
        """An ``int32`` element count; None (a null array) is written as -1."""
        self.buf += _I32.pack(-1 if n is None else n)

    def compact_array_len(self, n: int | None) -> None:
        """A compact array count (count + 1; None is written as 0)."""
        self.uvarint(0 if n is None else n + 1)
