"""Partition assignors, run client-side by the group leader (as Kafka clients do), and the
bytes of Kafka's consumer protocol that carry their inputs and outputs.

An assignor is a pure function ``(partitions_per_topic, subscriptions) -> {member: [(topic,
partition), ...]}``. Every partition of a topic that at least one member subscribes to goes
to exactly one member subscribed to it:

``range``
    Kafka's RangeAssignor: per topic, members in id order get consecutive ranges; the first
    ``partitions % members`` get one more. Balanced within one per topic, but across topics
    the first members get the extras every time.
``roundrobin``
    All partitions in (topic, partition) order dealt to members in id order, skipping those
    not subscribed. Balanced within one overall when every member subscribes to the same
    topics.
``sticky``
    Balanced like round-robin, but each member keeps the partitions it owned (as its
    subscription says) as far as balance allows, so a rebalance moves few partitions: when a
    member joins, only the partitions it needs move; when one leaves, only its own.

Subscriptions and assignments travel through the group coordinator as opaque protocol
metadata. They are encoded here exactly as Kafka's ConsumerProtocolSubscription (version 2:
topics, user data, owned partitions, generation) and ConsumerProtocolAssignment (version 1),
so Kafka clients and embedded consumers can share a group once the Kafka server exists.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..errors import InvalidArgument

TopicPartition = tuple[str, int]
Assignment = dict[str, list[TopicPartition]]


@attrs.frozen
class Subscription:
    """What a member asks for: topics, plus what it owns now (for ``sticky``)."""

    topics: tuple[str, ...]
    owned_partitions: tuple[TopicPartition, ...] = ()
    generation: int = -1
    user_data: bytes | None = None


Assignor = Callable[[Mapping[str, int], Mapping[str, Subscription]], Assignment]


def _members_of(topic: str, subscriptions: Mapping[str, Subscription]) -> list[str]:
    return sorted(m for m, s in subscriptions.items() if topic in s.topics)


def _topics(partitions_per_topic: Mapping[str, int],
            subscriptions: Mapping[str, Subscription]) -> list[str]:
    wanted = {t for s in subscriptions.values() for t in s.topics}
    return sorted(t for t in wanted if partitions_per_topic.get(t, 0) > 0)


def range_assign(partitions_per_topic: Mapping[str, int],
                 subscriptions: Mapping[str, Subscription]) -> Assignment:
    """Kafka's RangeAssignor; see the module doc."""
    out: Assignment = {m: [] for m in subscriptions}
    for topic in _topics(partitions_per_topic, subscriptions):
        members = _members_of(topic, subscriptions)
        n = partitions_per_topic[topic]
        per, extra = divmod(n, len(members))
        start = 0
        for i, m in enumerate(members):
            count = per + (1 if i < extra else 0)
            out[m].extend((topic, p) for p in range(start, start + count))
            start += count
    return out


def roundrobin_assign(partitions_per_topic: Mapping[str, int],
                      subscriptions: Mapping[str, Subscription]) -> Assignment:
    """Kafka's RoundRobinAssignor; see the module doc."""
    out: Assignment = {m: [] for m in subscriptions}
    members = sorted(subscriptions)
    if not members:
        return out
    i = 0
    for topic in _topics(partitions_per_topic, subscriptions):
        for p in range(partitions_per_topic[topic]):
            # The next member in the circle that subscribes to this topic.
            while topic not in subscriptions[members[i % len(members)]].topics:
                i += 1
            out[members[i % len(members)]].append((topic, p))
            i += 1
    return out


def sticky_assign(partitions_per_topic: Mapping[str, int],
                  subscriptions: Mapping[str, Subscription]) -> Assignment:
    """Balanced, keeping prior ownership where balance allows; see the module doc.

    1. Each member keeps the partitions it owned that still exist and that it still
       subscribes to; a partition claimed by two members (one missed a rebalance) stays with
       the claim of the higher generation (then the smaller member id).
    2. Every other partition goes to the eligible member with the fewest partitions.
    3. While some member has two more than an eligible other, move one partition from it,
       preferring partitions it did not own before, to the eligible member with the fewest.
       Each move lowers the sum of squared counts, so this ends, and with equal subscriptions
       it ends balanced within one: every member then keeps at least
       ``min(owned, partitions // members)`` of the partitions it owned.
    """
    out: Assignment = {m: [] for m in subscriptions}
    if not subscriptions:
        return out
    valid = {(t, p) for t in _topics(partitions_per_topic, subscriptions)
             for p in range(partitions_per_topic[t])}
    owner: dict[TopicPartition, str] = {}
    claims = sorted(((-s.generation, m, tp) for m, s in subscriptions.items()
                     for tp in s.owned_partitions), key=lambda c: (c[0], c[1], c[2]))
    for _neg_gen, m, tp in claims:
        if tp in valid and tp not in owner and tp[0] in subscriptions[m].topics:
            owner[tp] = m
    for tp, m in sorted(owner.items()):
        out[m].append(tp)
    eligible = {t: _members_of(t, subscriptions) for t in {tp[0] for tp in valid}}
    for tp in sorted(valid - owner.keys()):
        m = min(eligible[tp[0]], key=lambda c: (len(out[c]), c))
        out[m].append(tp)
        owner[tp] = m
    previously = {m: set(s.owned_partitions) for m, s in subscriptions.items()}
    while True:
        moved = False
        for giver in sorted(out, key=lambda c: (-len(out[c]), c)):
            # Partitions it got new first, so it keeps what it owned.
            for tp in sorted(out[giver], key=lambda x: (x in previously[giver], x), reverse=False):
                taker = min(eligible[tp[0]], key=lambda c: (len(out[c]), c))
                if len(out[taker]) + 1 < len(out[giver]):
                    out[giver].remove(tp)
                    out[taker].append(tp)
                    moved = True
                    break
            if moved:
                break
        if not moved:
            break
    for m in out:
        out[m].sort()
    return out


ASSIGNORS: dict[str, Assignor] = {
    "range": range_assign,
    "roundrobin": roundrobin_assign,
    "sticky": sticky_assign,
}


def get_assignor(name: str) -> Assignor:
    """The assignor of that (Kafka) name."""
    try:
        return ASSIGNORS[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown assignor {name!r}: use one of {sorted(ASSIGNORS)}") from None


# ---------------------------------------------------------------- Kafka consumer protocol

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")

SUBSCRIPTION_VERSION = 2
ASSIGNMENT_VERSION = 1


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def i16(self, v: int) -> None:
        self.parts.append(_I16.pack(v))

    def i32(self, v: int) -> None:
        self.parts.append(_I32.pack(v))

    def string(self, s: str) -> None:
        b = s.encode()
        self.i16(len(b))
        self.parts.append(b)

    def nbytes(self, b: bytes | None) -> None:
        if b is None:
            self.i32(-1)
        else:
            self.i32(len(b))
            self.parts.append(b)

    def partitions(self, tps: Any) -> None:
        by_topic: dict[str, list[int]] = {}
        for t, p in tps:
            by_topic.setdefault(t, []).append(p)
        self.i32(len(by_topic))
        for t in sorted(by_topic):
            self.string(t)
            self.i32(len(by_topic[t]))
            for p in sorted(by_topic[t]):
                self.i32(p)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise InvalidArgument("truncated consumer-protocol metadata")
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def i16(self) -> int:
        return int(_I16.unpack(self._take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def string(self) -> str:
        return bytes(self._take(self.i16())).decode()

    def nbytes(self) -> bytes | None:
        n = self.i32()
        return None if n < 0 else bytes(self._take(n))

    def partitions(self) -> list[TopicPartition]:
        out = []
        for _ in range(max(self.i32(), 0)):
            t = self.string()
            out.extend((t, self.i32()) for _ in range(max(self.i32(), 0)))
        return out

    def done(self) -> bool:
        return self.pos >= len(self.data)


def encode_subscription(s: Subscription) -> bytes:
    """Kafka's ConsumerProtocolSubscription, version 2."""
    w = _Writer()
    w.i16(SUBSCRIPTION_VERSION)
    w.i32(len(s.topics))
    for t in s.topics:
        w.string(t)
    w.nbytes(s.user_data)
    w.partitions(s.owned_partitions)
    w.i32(s.generation)
    return b"".join(w.parts)


def decode_subscription(data: bytes) -> Subscription:
    """Any version of ConsumerProtocolSubscription (fields of newer versions are skipped)."""
    r = _Reader(data)
    version = r.i16()
    if version < 0:
        raise InvalidArgument(f"bad consumer subscription version {version}")
    topics = tuple(r.string() for _ in range(max(r.i32(), 0)))
    user_data = r.nbytes()
    owned: list[TopicPartition] = []
    generation = -1
    if version >= 1 and not r.done():
        owned = r.partitions()
    if version >= 2 and not r.done():
        generation = r.i32()
    return Subscription(topics, tuple(owned), generation, user_data)


def encode_assignment(partitions: Any, user_data: bytes | None = None) -> bytes:
    """Kafka's ConsumerProtocolAssignment, version 1."""
    w = _Writer()
    w.i16(ASSIGNMENT_VERSION)
    w.partitions(partitions)
    w.nbytes(user_data)
    return b"".join(w.parts)


def decode_assignment(data: bytes) -> list[TopicPartition]:
    """The partitions of a ConsumerProtocolAssignment (empty bytes: none)."""
    if not data:
        return []
    r = _Reader(data)
    r.i16()
    return r.partitions()
