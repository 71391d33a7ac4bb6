"""Where queue groups and dead-letter replays keep their state: keys in the storage ``state``
database (integers big-endian, so keys sort numerically).

A queue group is named by its topic (or pattern) and group; ``qkey`` is both, each with a
length prefix, so one group's keys are never a prefix of another's::

    sqd: qkey                                    -> orjson {name, group, config}   declaration
    sqs: qkey F tid u32 partition u32            -> floor u64 | mark u64 | admitted u64
    sqs: qkey M tid u32 partition u32 offset u64 -> b"D" (done) | b"L" deliveries u32 nb i64
    sdr: tid u32 partition u32 F                 -> replay floor u64   (per dead-letter partition)
    sdr: tid u32 partition u32 M offset u64      -> b""  (this dead letter was replayed)

State stays small: per partition, the *floor* says every offset below it is done (acked,
dead or dropped), and the *mark* says every offset below it (and at or above the floor) was
delivered at least once; *admitted* is where counting into the backlog stopped (offsets from
there on have not been through ``max_length`` yet). Only messages that break those runs get a record of their own:
done above the floor (acked out of order), delivered out of order (priorities), delivered
more than once, or delayed (``nb``: not before, ms since the epoch). When the floor passes a
record, the record is deleted. In steady FIFO operation a group commit therefore writes one
key per partition, whatever the number of messages acknowledged.
"""

from __future__ import annotations

import struct

DECL = b"sqd:"
STATE = b"sqs:"
REPLAY = b"sdr:"

_U16 = struct.Struct(">H")
_TP = struct.Struct(">II")
_TPO = struct.Struct(">IIQ")
_FM = struct.Struct(">QQQ")
_LEASE = struct.Struct(">cIq")
_U64 = struct.Struct(">Q")

DONE = b"D"


def qkey(name: str, group: str) -> bytes:
    n, g = name.encode(), group.encode()
    return _U16.pack(len(n)) + n + _U16.pack(len(g)) + g


def split_qkey(key: bytes) -> tuple[str, str]:
    (n,) = _U16.unpack_from(key, 0)
    name = key[2:2 + n].decode()
    (g,) = _U16.unpack_from(key, 2 + n)
    return name, key[4 + n:4 + n + g].decode()


def decl_key(name: str, group: str) -> bytes:
    return DECL + qkey(name, group)


def state_prefix(name: str, group: str) -> bytes:
    return STATE + qkey(name, group)


def floor_key(prefix: bytes, tid: int, partition: int) -> bytes:
    return prefix + b"F" + _TP.pack(tid, partition)


def record_prefix(prefix: bytes, tid: int, partition: int) -> bytes:
    return prefix + b"M" + _TP.pack(tid, partition)


def record_key(rprefix: bytes, offset: int) -> bytes:
    return rprefix + _U64.pack(offset)


def pack_floor(floor: int, mark: int, admitted: int) -> bytes:
    return _FM.pack(floor, mark, admitted)


def unpack_floor(value: bytes) -> tuple[int, int, int]:
    f, m, a = _FM.unpack(value)
    return f, m, a


def pack_lease(deliveries: int, not_before_ms: int = 0) -> bytes:
    return _LEASE.pack(b"L", deliveries, not_before_ms)


def unpack_lease(value: bytes) -> tuple[int, int]:
    """(deliveries, not_before_ms) of a lease record (a done record gives (0, 0))."""
    if value[:1] != b"L":
        return 0, 0
    _, n, nb = _LEASE.unpack(value)
    return n, nb


def parse_state_key(prefix: bytes, key: bytes) -> tuple[str, int, int, int | None]:
    """(kind, tid, partition, offset) of a key under a group's state prefix."""
    kind = key[len(prefix):len(prefix) + 1].decode()
    rest = key[len(prefix) + 1:]
    if kind == "F":
        tid, p = _TP.unpack(rest)
        return kind, tid, p, None
    tid, p, off = _TPO.unpack(rest)
    return kind, tid, p, off


# ---- dead-letter replay markers


def replay_floor_key(tid: int, partition: int) -> bytes:
    return REPLAY + _TP.pack(tid, partition) + b"F"


def replay_prefix(tid: int, partition: int) -> bytes:
    return REPLAY + _TP.pack(tid, partition) + b"M"


def replay_key(tid: int, partition: int, offset: int) -> bytes:
    return replay_prefix(tid, partition) + _U64.pack(offset)


def pack_u64(v: int) -> bytes:
    return _U64.pack(v)


def unpack_u64(v: bytes) -> int:
    (x,) = _U64.unpack(v)
    return int(x)
