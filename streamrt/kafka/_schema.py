"""A small declarative description of Kafka messages, and the codecs compiled from it.

The tables in ``_messages*.py`` transcribe Kafka's message JSON files (``clients/src/main/
resources/common/message/*.json`` in apache/kafka) with :func:`field`, :func:`array` and
:func:`nested`: a name (Kafka's in snake_case), a type, the versions that carry it ("3+",
"0-4"), the versions where it may be null, its default, and for tagged fields the tag.

:func:`compile_struct` turns a field list into a :class:`StructCodec` for one version: a
list of small closures, one per field or per run of consecutive fixed-size fields (read and
written with a single precompiled ``struct.Struct``), so no version string is looked at
while a message is decoded or encoded. Codecs are built on first use and cached by the
caller.

Bodies are plain dicts: a field absent in the version decodes to its default, a missing key
encodes as its default, and fields of other versions are ignored on encode.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import attrs

from streamrt.errors import ProtocolError

from ._wire import Reader, Writer

__all__ = ["Field", "Api", "StructCodec", "field", "array", "nested", "api", "compile_struct",
           "parse_versions", "LATEST"]

LATEST = 0x7FFF
"""The open end of a version range such as "3+"."""

_UNSET: Any = object()

# Fixed-size primitives: struct format character and size.
_FIXED = {"int8": ("b", 1), "int16": ("h", 2), "uint16": ("H", 2), "int32": ("i", 4),
          "uint32": ("I", 4), "int64": ("q", 8), "float64": ("d", 8), "bool": ("?", 1)}
_VARIABLE = ("string", "bytes", "records", "uuid")
_ZERO_UUID = UUID(int=0)


def parse_versions(spec: str) -> tuple[int, int] | None:
    """``"3+"`` -> (3, LATEST), ``"0-4"`` -> (0, 4), ``"2"`` -> (2, 2), ``"none"`` -> None."""
    if spec == "none":
        return None
    if spec.endswith("+"):
        return int(spec[:-1]), LATEST
    lo, _, hi = spec.partition("-")
    return int(lo), int(hi or lo)


def _within(rng: tuple[int, int] | None, version: int) -> bool:
    return rng is not None and rng[0] <= version <= rng[1]


@attrs.frozen(eq=False)
class Field:
    """One field of a message or of a nested struct.

    ``type`` is a primitive (``int8`` ... ``int64``, ``uint16``, ``uint32``, ``float64``,
    ``bool``, ``string``, ``bytes``, ``records``, ``uuid``), ``[]<primitive>`` for an array
    of them, ``[]`` for an array of structs or ``{}`` for a single struct (both with
    ``fields``).
    """

    name: str
    type: str
    versions: tuple[int, int]
    nullable: tuple[int, int] | None
    default: Any
    tag: int | None
    tagged: tuple[int, int] | None
    fields: tuple[Field, ...]

    def fresh_default(self) -> Any:
        """The default value, as a new object when it is mutable (a list or a dict)."""
        return _copy(self.default)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _parse_default(type_: str, raw: Any, nullable: tuple[int, int] | None) -> Any:
    # Kafka's defaults: numbers 0, bools false, strings "", bytes empty, records null, uuid
    # zero, arrays empty; "null" only where the field is nullable somewhere.
    if raw == "null":
        if nullable is None:
            raise ValueError("a default of null needs nullableVersions")
        return None
    if raw is _UNSET:
        if type_ in _FIXED:
            return False if type_ == "bool" else (0.0 if type_ == "float64" else 0)
        return {"string": "", "bytes": b"", "records": None, "uuid": _ZERO_UUID}[type_]
    if type_ == "bool":
        if raw not in ("true", "false", True, False):
            raise ValueError(f"bad bool default {raw!r}")
        return raw in ("true", True)
    if type_ == "float64":
        return float(raw)
    if type_ in _FIXED:
        return raw if isinstance(raw, int) else int(raw, 0)
    if type_ == "string":
        return str(raw)
    raise ValueError(f"no default of {raw!r} for type {type_}")


def field(name: str, type: str, versions: str, *, nullable: str | None = None,
          default: Any = _UNSET, tag: int | None = None, tagged: str | None = None) -> Field:
    """A field of a primitive type or an array of primitives (``"[]int32"``)."""
    nrange = parse_versions(nullable) if nullable else None
    vrange = parse_versions(versions)
    assert vrange is not None, name
    base = type[2:] if type.startswith("[]") else type
    if base not in _FIXED and base not in _VARIABLE:
        raise ValueError(f"field {name}: unknown type {type!r}")
    if type.startswith("[]"):
        dflt = None if default == "null" else []
    else:
        dflt = _parse_default(type, default, nrange)
    return Field(name, type, vrange, nrange, dflt, tag,
                 parse_versions(tagged) if tagged else None, ())


def array(name: str, versions: str, *, fields: tuple[Field, ...], nullable: str | None = None,
          default: Any = _UNSET, tag: int | None = None, tagged: str | None = None) -> Field:
    """An array of structs whose fields are ``fields``."""
    _check_unique(name, fields)
    vrange = parse_versions(versions)
    assert vrange is not None, name
    return Field(name, "[]", vrange, parse_versions(nullable) if nullable else None,
                 None if default == "null" else [], tag,
                 parse_versions(tagged) if tagged else None, fields)


def nested(name: str, versions: str, *, fields: tuple[Field, ...], tag: int | None = None,
           tagged: str | None = None) -> Field:
    """A single struct (not an array) whose fields are ``fields``."""
    _check_unique(name, fields)
    vrange = parse_versions(versions)
    assert vrange is not None, name
    return Field(name, "{}", vrange, None, {f.name: f.default for f in fields}, tag,
                 parse_versions(tagged) if tagged else None, fields)


def _check_unique(where: str, fields: tuple[Field, ...]) -> None:
    names = [f.name for f in fields]
    if len(names) != len(set(names)):
        raise ValueError(f"{where}: duplicate field names in {names}")


@attrs.frozen(eq=False)
class Api:
    """One Kafka API: its key, the versions we implement, and its request and response."""

    key: int
    versions: tuple[int, int]
    flexible_from: int
    request: tuple[Field, ...]
    response: tuple[Field, ...]

    def is_flexible(self, version: int) -> bool:
        """Whether ``version`` uses compact types and tagged fields."""
        return version >= self.flexible_from


def api(key: int, versions: str, *, flexible: str, request: tuple[Field, ...],
        response: tuple[Field, ...]) -> Api:
    """Declare an API (``versions``: the range we support, ``flexible``: e.g. "9+")."""
    _check_unique(f"api {key} request", request)
    _check_unique(f"api {key} response", response)
    vrange = parse_versions(versions)
    frange = parse_versions(flexible)
    assert vrange is not None
    return Api(int(key), vrange, LATEST + 1 if frange is None else frange[0], request, response)


# --------------------------------------------------------------------------- compilation

Decode = Callable[[Reader], Any]
Encode = Callable[[Writer, Any], None]


@attrs.frozen(eq=False)
class StructCodec:
    """The compiled codec of one struct in one version.

    ``decode(reader) -> dict`` and ``encode(writer, body)``; ``min_size`` is the fewest
    bytes an encoded instance takes (used to reject array counts the frame cannot hold).
    """

    decode: Callable[[Reader], dict[str, Any]]
    encode: Callable[[Writer, Mapping[str, Any]], None]
    min_size: int
    fields: tuple[Field, ...]
    version: int
    flexible: bool

    def locate(self, body: Any) -> str:
        """The path of the first field of ``body`` that cannot be encoded ("topics[2].name").

        Only called after ``encode`` failed: it encodes field by field to find the culprit.
        """
        if not isinstance(body, Mapping):
            return f"(a {type(body).__name__}, not a mapping)"
        for f in self.fields:
            if not _within(f.versions, self.version):
                continue
            value = body.get(f.name, f.default)
            try:
                _value_codec(f, self.version, self.flexible)[1](Writer(), value)
                continue
            except Exception:  # noqa: BLE001 - diagnosing a failure, any cause will do
                pass
            if f.fields and value is not None:
                sub = compile_struct(f.fields, self.version, self.flexible)
                items = list(enumerate(value)) if f.type == "[]" else [(None, value)]
                for i, item in items:
                    try:
                        sub.encode(Writer(), item)
                    except Exception:  # noqa: BLE001
                        where = f.name if i is None else f"{f.name}[{i}]"
                        return f"{where}.{sub.locate(item)}"
            return f"{f.name} (value {value!r:.80})"
        return "(tagged fields)"


_cache: dict[tuple[int, int, bool], StructCodec] = {}


def compile_struct(fields: tuple[Field, ...], version: int, flexible: bool) -> StructCodec:
    """The codec of the struct ``fields`` in ``version`` (cached)."""
    key = (id(fields), version, flexible)
    codec = _cache.get(key)
    if codec is None:
        codec = _cache[key] = _compile(fields, version, flexible)
    return codec


def _compile(fields: tuple[Field, ...], version: int, flexible: bool) -> StructCodec:
    present = [f for f in fields if _within(f.versions, version)]
    tagged = [f for f in present if flexible and f.tag is not None and _within(f.tagged, version)]
    plain = [f for f in present if f not in tagged]

    # Defaults for what this version does not carry (and tagged fields, until read).
    absent = [f for f in fields if f not in plain]
    static = {f.name: f.default for f in absent if not isinstance(f.default, (list, dict))}
    fresh = tuple((f.name, f.fresh_default) for f in absent if isinstance(f.default, (list, dict)))

    dsteps: list[Callable[[Reader, dict[str, Any]], None]] = []
    esteps: list[Callable[[Writer, Mapping[str, Any]], None]] = []
    min_size = 1 if flexible else 0
    i = 0
    while i < len(plain):
        f = plain[i]
        if f.type in _FIXED:
            # A run of consecutive fixed-size fields is one struct.Struct.
            run = [f]
            while i + len(run) < len(plain) and plain[i + len(run)].type in _FIXED:
                run.append(plain[i + len(run)])
            i += len(run)
            st = struct.Struct(">" + "".join(_FIXED[g.type][0] for g in run))
            min_size += st.size
            dsteps.append(_decode_run(st, tuple(g.name for g in run)))
            esteps.append(_encode_run(st, tuple((g.name, g.default) for g in run)))
            continue
        i += 1
        dec, enc, size = _value_codec(f, version, flexible)
        min_size += size
        dsteps.append(_decode_one(f.name, dec))
        esteps.append(_encode_one(f.name, f.default, enc))

    # Tagged fields: read by tag in any order, written in ascending tag order.
    tags: dict[int, tuple[str, Decode]] = {}
    writers = []
    for f in sorted(tagged, key=lambda f: f.tag):
        dec, enc, _ = _value_codec(f, version, flexible)
        tags[f.tag] = (f.name, dec)
        writers.append((f.tag, f.name, f.default, enc))
    tag_writers = tuple(writers)

    def decode(r: Reader) -> dict[str, Any]:
        d = static.copy()
        for name, make in fresh:
            d[name] = make()
        for step in dsteps:
            step(r, d)
        if flexible:
            _read_tagged(r, d, tags)
        return d

    def encode(w: Writer, d: Mapping[str, Any]) -> None:
        for step in esteps:
            step(w, d)
        if flexible:
            if tag_writers:
                _write_tagged(w, d, tag_writers)
            else:
                w.buf.append(0)

    return StructCodec(decode, encode, min_size, fields, version, flexible)


def _decode_run(st: struct.Struct, names: tuple[str, ...]) -> Callable[[Reader, dict], None]:
    if len(names) == 1:
        name = names[0]

        def one(r: Reader, d: dict[str, Any]) -> None:
            d[name] = r.unpack(st)[0]
        return one

    def run(r: Reader, d: dict[str, Any]) -> None:
        d.update(zip(names, r.unpack(st)))
    return run


def _encode_run(st: struct.Struct, pairs: tuple[tuple[str, Any], ...]) -> Callable[[Writer, Mapping], None]:
    pack = st.pack
    if len(pairs) == 1:
        (name, dflt), = pairs

        def one(w: Writer, d: Mapping[str, Any]) -> None:
            w.buf += pack(d.get(name, dflt))
        return one

    def run(w: Writer, d: Mapping[str, Any]) -> None:
        g = d.get
        w.buf += pack(*[g(n, dv) for n, dv in pairs])
    return run


def _decode_one(name: str, dec: Decode) -> Callable[[Reader, dict], None]:
    def step(r: Reader, d: dict[str, Any]) -> None:
        d[name] = dec(r)
    return step


def _encode_one(name: str, dflt: Any, enc: Encode) -> Callable[[Writer, Mapping], None]:
    def step(w: Writer, d: Mapping[str, Any]) -> None:
        enc(w, d.get(name, dflt))
    return step


def _read_tagged(r: Reader, d: dict[str, Any], tags: dict[int, tuple[str, Decode]]) -> None:
    pos = r.pos
    if pos < r.end and r.buf[pos] == 0:  # the common case: no tagged fields
        r.pos = pos + 1
        return
    count = r.uvarint()
    if count * 2 > r.end - r.pos:
        raise ProtocolError(f"tagged field count {count} before offset {r.pos} cannot fit "
                            f"in the {r.end - r.pos} bytes left")
    for _ in range(count):
        tag = r.uvarint()
        size = r.uvarint()
        known = tags.get(tag)
        if known is None:
            r.skip(size)  # a tag from a newer version: ignore it, as Kafka does
            continue
        stop = r.pos + size
        if stop > r.end:
            raise ProtocolError(f"tagged field {tag} of {size} bytes at offset {r.pos} "
                                f"overruns the {r.end - r.pos} bytes left")
        outer, r.end = r.end, stop
        try:
            d[known[0]] = known[1](r)
        finally:
            r.end = outer
        if r.pos != stop:
            raise ProtocolError(f"tagged field {known[0]!r} (tag {tag}) declares {size} bytes "
                                f"but its value ends at offset {r.pos}, not {stop}")


def _write_tagged(w: Writer, d: Mapping[str, Any],
                  writers: tuple[tuple[int, str, Any, Encode], ...]) -> None:
    # A tagged field is written only when it differs from its default; tags ascend.
    items = []
    for tag, name, dflt, enc in writers:
        value = d.get(name, dflt)
        if value is not dflt and value != dflt:
            items.append((tag, enc, value))
    w.uvarint(len(items))
    for tag, enc, value in items:
        tmp = Writer()
        enc(tmp, value)
        w.uvarint(tag)
        w.uvarint(len(tmp.buf))
        w.buf += tmp.buf


# ----------------------------------------------------------------- per-type value codecs

_STRINGS = {  # (compact, nullable) -> reader, writer
    (False, False): (Reader.string, Writer.string),
    (False, True): (Reader.nullable_string, Writer.nullable_string),
    (True, False): (Reader.compact_string, Writer.compact_string),
    (True, True): (Reader.compact_nullable_string, Writer.compact_nullable_string),
}
_BYTES = {
    (False, False): (Reader.bytes_, Writer.bytes_),
    (False, True): (Reader.nullable_bytes, Writer.nullable_bytes),
    (True, False): (Reader.compact_bytes, Writer.compact_bytes),
    (True, True): (Reader.compact_nullable_bytes, Writer.compact_nullable_bytes),
}
_VIEWS = {
    (False, False): Reader.view, (False, True): Reader.nullable_view,
    (True, False): Reader.compact_view, (True, True): Reader.compact_nullable_view,
}
_COUNTS = {
    (False, False): Reader.array_len, (False, True): Reader.nullable_array_len,
    (True, False): Reader.compact_array_len, (True, True): Reader.compact_nullable_array_len,
}


def _value_codec(f: Field, version: int, flexible: bool) -> tuple[Decode, Encode, int]:
    """(decode, encode, min_size) of one field's value in ``version``."""
    nullable = _within(f.nullable, version)
    key = (flexible, nullable)
    t = f.type
    if t in _FIXED:
        st = struct.Struct(">" + _FIXED[t][0])
        pack = st.pack

        def dec_fixed(r: Reader) -> Any:
            return r.unpack(st)[0]

        def enc_fixed(w: Writer, v: Any) -> None:
            w.buf += pack(v)
        return dec_fixed, enc_fixed, st.size
    if t == "string":
        rd, wr = _STRINGS[key]
        return rd, wr, 1 if flexible else 2
    if t == "bytes":
        rd, wr = _BYTES[key]
        return rd, wr, 1 if flexible else 4
    if t == "records":
        return _VIEWS[key], _records_writer(flexible, nullable), 1 if flexible else 4
    if t == "uuid":
        return Reader.uuid, Writer.uuid, 16
    if t == "{}":
        sub = compile_struct(f.fields, version, flexible)
        return sub.decode, sub.encode, sub.min_size
    count = _COUNTS[key]
    write_count = Writer.compact_array_len if flexible else Writer.array_len
    if t == "[]":
        sub = compile_struct(f.fields, version, flexible)
        sdec, senc, item_size = sub.decode, sub.encode, sub.min_size

        def dec_structs(r: Reader) -> list[dict[str, Any]] | None:
            n = count(r, item_size)
            return None if n is None else [sdec(r) for _ in range(n)]

        def enc_structs(w: Writer, v: Any) -> None:
            if v is None:
                write_count(w, None)
                return
            write_count(w, len(v))
            for item in v:
                senc(w, item)
        return dec_structs, enc_structs, 1 if flexible else 4

    elem = t[2:]
    if elem in _FIXED:
        char, size = _FIXED[elem]

        def dec_fixed_array(r: Reader) -> list[Any] | None:
            n = count(r, size)
            if n is None:
                return None
            return r.fixed_array(char, size, n) if n else []

        def enc_fixed_array(w: Writer, v: Any) -> None:
            if v is None:
                write_count(w, None)
                return
            write_count(w, len(v))
            if v:
                w.buf += struct.pack(f">{len(v)}{char}", *v)
        return dec_fixed_array, enc_fixed_array, 1 if flexible else 4

    edec, eenc, esize = _value_codec(
        Field(f.name, elem, f.versions, None, None, None, None, ()), version, flexible)

    def dec_array(r: Reader) -> list[Any] | None:
        n = count(r, esize)
        return None if n is None else [edec(r) for _ in range(n)]

    def enc_array(w: Writer, v: Any) -> None:
        if v is None:
            write_count(w, None)
            return
        write_count(w, len(v))
        for item in v:
            eenc(w, item)
    return dec_array, enc_array, 1 if flexible else 4


def _records_writer(compact: bool, nullable: bool) -> Encode:
    # Records may be given as one buffer or as a list of chunks (stored batches served as
    # they are): the length prefix covers them all and they are written one after another.
    def write(w: Writer, v: Any) -> None:
        if v is None:
            if not nullable:
                raise ValueError("records may not be null in this version")
            if compact:
                w.buf.append(0)
            else:
                w.buf += b"\xff\xff\xff\xff"
            return
        chunks = v if isinstance(v, (list, tuple)) else (v,)
        n = sum(map(len, chunks)) if len(chunks) != 1 else len(chunks[0])
        if compact:
            w.uvarint(n + 1)
        else:
            w.int32(n)
        for c in chunks:
            w.buf += c
    return write
