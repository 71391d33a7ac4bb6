"""Kafka's murmur2 key hash, bit-for-bit as the Java client computes it.

Kafka's default partitioner sends a keyed record to
``toPositive(murmur2(key)) % numPartitions``. Using the very same function means a key lands
on the same partition number whether it was written by ``streamrt produce`` or by a Kafka
client, so data keyed here stays co-partitioned with data keyed there.

Java does the arithmetic on signed 32-bit ints with wrap-around; here it is done on unsigned
32-bit values (masking after every multiply) and converted to signed only at the end, which
gives the same bits. ``>>>`` (Java's unsigned shift) is a plain ``>>`` on the unsigned value.
"""

from __future__ import annotations

import functools

__all__ = ["murmur2", "to_positive", "partition_for_key"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The signed 32-bit murmur2 hash of ``data``, equal to Java's ``Utils.murmur2(data)``."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end4 = length & ~3
    # Four bytes at a time, little-endian, as the Java loop assembles them.
    for i in range(0, end4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> _R
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    # The Java switch falls through: 3 takes bytes 2, 1 and 0; 2 takes 1 and 0; 1 takes 0.
    rest = length & 3
    if rest == 3:
        h ^= data[end4 + 2] << 16
    if rest >= 2:
        h ^= data[end4 + 1] << 8
    if rest >= 1:
        h ^= data[end4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(n: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not ``abs``, which overflows on MIN)."""
    return n & 0x7FFFFFFF


@functools.lru_cache(maxsize=1 << 16)
def positive_hash(key: bytes) -> int:
    """``toPositive(murmur2(key))``, cached: the pure-Python hash costs about 2 µs a key and
    real key sets (users, devices, services) repeat, so a bounded cache makes it ~0.1 µs."""
    return murmur2(key) & 0x7FFFFFFF


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null ``key``."""
    return positive_hash(key) % partitions
