"""Value types of the storage API: records, topic configs, write batches and results."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import attrs

from ..errors import InvalidArgument, InvalidTopicName

_TOPIC_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}")

Headers = Sequence[tuple[str, bytes | None]]
Durability = Literal["sync", "none"]
CleanupPolicy = Literal["delete", "compact"]


class StoredRecord(Protocol):
    """What a read returns for each record (aiokafka's C record type satisfies it)."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


class Record:
    """One record: offset (set by the log), timestamp in ms, key, value and headers.

    A ``__slots__`` class, cheap enough for hot paths. For appends the offset is ignored and a
    ``None`` timestamp becomes the append time.
    """

    __slots__ = ("offset", "timestamp", "key", "value", "headers")

    def __init__(
        self,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers = (),
        timestamp: int | None = None,
        offset: int = -1,
    ) -> None:
        self.value = value
        self.key = key
        self.headers = headers
        self.timestamp = timestamp
        self.offset = offset

    def __repr__(self) -> str:
        return (
            f"Record(offset={self.offset}, timestamp={self.timestamp}, key={self.key!r}, "
            f"value={self.value!r:.60}, headers={list(self.headers)!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (self.offset, self.timestamp, self.key, self.value, list(self.headers)) == (
            other.offset, other.timestamp, other.key, other.value, list(other.headers))


def check_topic_name(name: object) -> str:
    """Return the name if it follows Kafka's rule, else raise InvalidTopicName."""
    if not isinstance(name, str) or not _TOPIC_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidTopicName(
            f"invalid topic name {name!r}: use 1 to 249 characters from letters, digits, "
            f"'.', '_' and '-' (and not '.' or '..')"
        )
    return name


#: The largest value of a TopicConfig integer setting: a signed 64-bit integer, what the
#: stored config (JSON through orjson) and Kafka's configs (Java longs) can hold.
MAX_CONFIG_INT = 2**63 - 1


def _non_negative_or_none(_inst: Any, attr: attrs.Attribute, value: Any) -> None:  # type: ignore[type-arg]
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or not 0 <= value <= MAX_CONFIG_INT):
        raise InvalidArgument(
            f"{attr.name} must be an integer from 0 to 2**63-1 ({MAX_CONFIG_INT}) or None, "
            f"got {value!r}")


def _policy(_inst: Any, _attr: Any, value: Any) -> None:
    if value not in ("delete", "compact"):
        raise InvalidArgument(f"cleanup_policy must be 'delete' or 'compact', got {value!r}")


@attrs.frozen
class TopicConfig:
    """Per-topic settings, as Kafka names them.

    ``retention_ms``/``retention_bytes``/``retention_records``: delete whole batches from the
    head of each partition once older / larger / longer than this (None: keep forever).
    ``cleanup_policy``: ``delete`` (retention only) or ``compact`` (keep the latest record per
    key; a ``None`` value is a tombstone removed after ``tombstone_grace_ms``; None: tombstones
    are kept forever, as Kafka's ``delete.retention.ms=-1`` is read).
    """

    retention_ms: int | None = attrs.field(default=None, validator=_non_negative_or_none)
    retention_bytes: int | None = attrs.field(default=None, validator=_non_negative_or_none)
    retention_records: int | None = attrs.field(default=None, validator=_non_negative_or_none)
    cleanup_policy: CleanupPolicy = attrs.field(default="delete", validator=_policy)
    tombstone_grace_ms: int | None = attrs.field(
        default=86_400_000, validator=_non_negative_or_none)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TopicConfig:
        known = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@attrs.frozen
class TopicInfo:
    """A topic as stored: its name, partition count and config."""

    name: str
    partitions: int
    config: TopicConfig
    topic_id: int


@attrs.frozen
class PartitionInfo:
    """Where a partition stands: first and next offsets, record count and stored bytes."""

    topic: str
    partition: int
    log_start_offset: int
    high_watermark: int
    records: int
    bytes: int


@attrs.define(eq=False)
class WriteBatch:
    """One atomic write intent: any mix of appends, offset commits, group generations and
    deletions, state puts and deletes, and producer-sequence checks. Either all of it is
    committed in one LMDB transaction, or (if a condition fails) none of it and the caller
    gets a typed error.
    Many callers' intents share one transaction (group commit); a failing one is rejected alone.
    """

    appends: list[tuple[str, int, bytes]] = attrs.field(factory=list)
    commits: list[tuple[str, Mapping[tuple[str, int], int], int | None]] = attrs.field(factory=list)
    generations: list[tuple[str, int]] = attrs.field(factory=list)
    puts: list[tuple[bytes, bytes | None]] = attrs.field(factory=list)
    group_deletes: list[str] = attrs.field(factory=list)

    def append(self, topic: str, partition: int, records: Sequence[Any], **producer: int) -> None:
        """Append records (Records or ``(key, value[, headers[, timestamp]])`` tuples).

        ``producer_id``, ``producer_epoch``, ``base_sequence`` make it an idempotent append
        whose sequence is checked in the same transaction.
        """
        from ._codec import build_batch

        self.appends.append((topic, partition, build_batch(records, **producer)))

    def append_raw(self, topic: str, partition: int, batch: bytes) -> None:
        """Append one ready Kafka RecordBatch v2 (checked when the intent is applied)."""
        if not isinstance(batch, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"append_raw takes RecordBatch v2 bytes, got {type(batch).__name__}")
        self.appends.append((topic, partition, bytes(batch)))

    def commit(
        self, group: str, offsets: Mapping[tuple[str, int], int], generation: int | None = None
    ) -> None:
        """Commit consumer-group offsets (the next offset to read), fenced on ``generation``
        when given: applied only if the group's stored generation equals it."""
        if not isinstance(group, str) or not group:
            raise InvalidArgument(f"a group name is a non-empty string, got {group!r}")
        for (t, p), off in offsets.items():
            if not isinstance(off, int) or off < 0:
                raise InvalidArgument(f"committed offset for {t}[{p}] must be an int >= 0, got {off!r}")
        self.commits.append((group, dict(offsets), generation))

    def set_generation(self, group: str, generation: int) -> None:
        """Record a consumer group's current generation (what fenced commits compare with)."""
        self.generations.append((group, generation))

    def delete_group(self, group: str) -> None:
        """Forget a consumer group: its committed offsets and its generation (applied before
        this intent's other group changes)."""
        if not isinstance(group, str) or not group:
            raise InvalidArgument(f"a group name is a non-empty string, got {group!r}")
        self.group_deletes.append(group)

    def put(self, key: bytes, value: bytes) -> None:
        """Put an arbitrary state key (operator state, checkpoints)."""
        if not isinstance(key, bytes) or not isinstance(value, bytes) or not key:
            raise InvalidArgument("state keys and values must be bytes (non-empty key)")
        self.puts.append((key, value))

    def delete(self, key: bytes) -> None:
        """Delete a state key (no error if absent)."""
        if not isinstance(key, bytes) or not key:
            raise InvalidArgument("state keys must be non-empty bytes")
        self.puts.append((key, None))


@attrs.frozen
class WriteResult:
    """What a committed intent got: the base offset of each append, in order."""

    base_offsets: tuple[int, ...]
