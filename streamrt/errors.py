"""Typed errors raised by streamrt.

Every error a user can meet is a subclass of :class:`StreamrtError`, and also of the matching
built-in where one fits (``ValueError`` for bad input, ``LookupError`` for unknown names), so
``except ValueError`` keeps working. Messages name the topic, partition or directory involved
and say what to do next.
"""

from __future__ import annotations

import shlex

__all__ = [
    "StreamrtError",
    "InvalidArgument",
    "InvalidTopicName",
    "UnknownTopic",
    "UnknownPartition",
    "TopicExists",
    "OffsetOutOfRange",
    "CorruptBatch",
    "UnsupportedMessageFormat",
    "ConditionFailed",
    "StaleGeneration",
    "DuplicateSequence",
    "OutOfOrderSequence",
    "ProducerFenced",
    "StorageError",
    "StorageFull",
    "DataDirLocked",
    "UnsupportedFormat",
    "DataDirMissing",
    "StoreClosed",
    "ActorError",
    "MailboxFull",
    "ActorStopped",
    "ActorCrashed",
    "AskTimeout",
    "Escalated",
    "GroupError",
    "RebalanceInProgress",
    "UnknownMemberId",
    "IllegalGeneration",
    "FencedInstanceId",
    "InconsistentGroupProtocol",
    "CoordinatorNotAvailable",
    "UnknownGroup",
    "NonEmptyGroup",
    "ConsumerClosed",
    "DeserializationError",
    "QueueError",
    "QueueFull",
    "QueueMismatch",
    "UnknownQueue",
    "MessageSettled",
    "QueueClosed",
    "ProtocolError",
    "UnsupportedVersion",
    "FrameTooLarge",
    "PipelineError",
    "IncompatibleState",
]


class StreamrtError(Exception):
    """Base class of every streamrt error."""


class InvalidArgument(StreamrtError, ValueError):
    """A caller passed a value streamrt cannot accept; the message says which and why."""


class InvalidTopicName(InvalidArgument):
    """A topic name breaks Kafka's rule: 1 to 249 characters from ``[a-zA-Z0-9._-]``."""


class UnknownTopic(StreamrtError, LookupError):
    """The topic does not exist."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"unknown topic {topic!r}: create it first "
            f"(streamrt topics create {shlex.quote(str(topic))} --partitions N)"
        )
        self.topic = topic


class UnknownPartition(StreamrtError, LookupError):
    """The topic exists but has no such partition."""

    def __init__(self, topic: str, partition: object, partitions: int) -> None:
        super().__init__(
            f"topic {topic!r} has no partition {partition!r}: "
            f"it has {partitions} (0 to {partitions - 1})"
        )
        self.topic = topic
        self.partition = partition
        self.partitions = partitions


class TopicExists(StreamrtError):
    """A topic was created again with settings other than the ones it has."""


class OffsetOutOfRange(StreamrtError, IndexError):
    """A read asked for an offset outside ``[log_start_offset, high_watermark]``."""

    def __init__(
        self, topic: str, partition: int, offset: int, log_start: int, high_watermark: int
    ) -> None:
        if offset > high_watermark:
            why = (f"offset {offset} is past the end of {topic}[{partition}]: valid offsets are "
                   f"{log_start} to {high_watermark} (the next record will get {high_watermark})")
        else:
            why = (f"offset {offset} is out of range for {topic}[{partition}]: valid offsets are "
                   f"{log_start} to {high_watermark} (older records were removed by retention; "
                   f"read from {log_start} or from the end)")
        super().__init__(why)
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.log_start = log_start
        self.high_watermark = high_watermark


class CorruptBatch(StreamrtError, ValueError):
    """Bytes offered as a Kafka RecordBatch v2 are not one (bad header, length or CRC)."""


class UnsupportedMessageFormat(CorruptBatch):
    """Records in Kafka's old message-set format (magic 0 or 1, clients before Kafka 0.11);
    streamrt stores RecordBatch v2 only. The Kafka server answers that partition with
    UNSUPPORTED_FOR_MESSAGE_FORMAT (43): upgrade the client or set its API version >= 0.11."""


class ConditionFailed(StreamrtError):
    """A write intent's condition did not hold; that intent was rejected, nothing of it written."""


class StaleGeneration(ConditionFailed):
    """A fenced offset commit named a group generation that no longer holds (a zombie member)."""


class DuplicateSequence(ConditionFailed):
    """An idempotent producer re-sent a batch that is already in the log."""


class OutOfOrderSequence(ConditionFailed):
    """An idempotent producer's sequence number skips ahead: a batch in between is missing."""


class ProducerFenced(ConditionFailed):
    """A producer with an older epoch wrote after a newer one started."""


class StorageError(StreamrtError, OSError):
    """The storage engine could not do its work; the message says why."""


class StorageFull(StorageError):
    """The disk is full; nothing of the failed write was stored. Free space and retry."""


class DataDirLocked(StorageError):
    """Another process owns the data directory."""

    def __init__(self, path: str, pid: int | None) -> None:
        import os

        if pid == os.getpid():
            holder = f"this process ({pid}; it is already open here: reuse that store)"
        else:
            holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"data directory {path} is in use by {holder}: one process owns a data directory; "
            f"stop it, or use another --data-dir"
        )
        self.path = path
        self.pid = pid


class DataDirMissing(StorageError, FileNotFoundError):
    """A data directory was opened without ``create`` and there is no log there."""


class UnsupportedFormat(StorageError):
    """The data directory was written in an on-disk format this version does not know."""


class StoreClosed(StreamrtError, RuntimeError):
    """The store was closed; open it again to use it."""


class ActorError(StreamrtError):
    """Base class of actor-runtime errors."""


class MailboxFull(ActorError):
    """``send_nowait`` found the actor's bounded mailbox full; use ``await send`` to wait."""


class ActorStopped(ActorError):
    """The actor is stopped (or its supervisor gave up on it): it takes no more messages."""


class ActorCrashed(ActorError):
    """The actor raised while handling this ask; the original error is the ``__cause__``."""


class AskTimeout(ActorError, TimeoutError):
    """An ``ask`` got no reply in time; the actor may still handle the message later."""


class Escalated(ActorError):
    """A child failed more often than its restart policy allows; its supervisor gives up."""


# ---- consumer groups (Kafka's group-coordinator errors, by the same names)


class GroupError(StreamrtError):
    """Base class of consumer-group errors."""


class RebalanceInProgress(GroupError):
    """The group is rebalancing: the member must rejoin (consumers do so by themselves)."""

    def __init__(self, group: str) -> None:
        super().__init__(
            f"group {group!r} is rebalancing: rejoin the group (a Consumer does this itself; "
            f"retry after its next assignment)")
        self.group = group


class UnknownMemberId(GroupError, StaleGeneration, LookupError):
    """The member is not (or no longer) in the group: its session expired, it left, or the
    coordinator restarted. A zombie's commit is refused with this error."""

    def __init__(self, group: str, member_id: str) -> None:
        super().__init__(
            f"member {member_id!r} is not in group {group!r} (its session expired, it left, or "
            f"the coordinator restarted): join again with an empty member id; offsets it "
            f"did not commit will be processed again by the partitions' new owners")
        self.group = group
        self.member_id = member_id


class IllegalGeneration(GroupError, StaleGeneration):
    """A request named a generation other than the group's current one (a zombie member)."""

    def __init__(self, group: str, generation: int, current: int) -> None:
        super().__init__(
            f"group {group!r} is at generation {current}, not {generation}: this member "
            f"missed a rebalance; rejoin the group and fetch its new assignment")
        self.group = group
        self.generation = generation
        self.current = current


class FencedInstanceId(GroupError, StaleGeneration):
    """A static member (Kafka's ``group.instance.id``) was replaced: another consumer joined
    with the same instance id and took its place, so this one must stop (Kafka's
    FENCED_INSTANCE_ID, fatal in Kafka clients)."""

    def __init__(self, group: str, instance_id: str, member_id: str) -> None:
        super().__init__(
            f"member {member_id!r} of group {group!r} was fenced: another consumer joined with "
            f"the same group.instance.id {instance_id!r} and replaced it; give every consumer "
            f"instance its own group.instance.id, and stop this one")
        self.group = group
        self.instance_id = instance_id
        self.member_id = member_id


class InconsistentGroupProtocol(GroupError, ValueError):
    """A member's protocol type or protocols (assignors) match none of the group's."""


class CoordinatorNotAvailable(GroupError):
    """The group's coordinator stopped (the broker is closing, or it restarted)."""

    def __init__(self, group: str) -> None:
        super().__init__(
            f"the coordinator of group {group!r} stopped (the broker is closing or the group "
            f"actor restarted): retry; a Consumer rejoins by itself")
        self.group = group


class UnknownGroup(StreamrtError, LookupError):
    """No group of that name has members, committed offsets or a generation."""

    def __init__(self, group: str) -> None:
        super().__init__(
            f"unknown group {group!r}: no member has joined it and it has no committed "
            f"offsets (streamrt groups list shows the known groups)")
        self.group = group


class NonEmptyGroup(GroupError):
    """A group with members cannot be deleted."""

    def __init__(self, group: str, members: int) -> None:
        super().__init__(
            f"group {group!r} has {members} member(s) and cannot be deleted: stop its consumers "
            f"(or wait for their sessions to expire), then delete it")
        self.group = group


class ConsumerClosed(StreamrtError, RuntimeError):
    """The consumer was closed (its ``async with`` block ended); open a new one."""


class DeserializationError(StreamrtError, ValueError):
    """A consumed record's value (or key) could not be deserialised by the consumer's serde
    (Kafka's RecordDeserializationException). The consumer's position stays at the record,
    so nothing after it is skipped silently: ``seek`` past it, or consume with
    ``value_serde="bytes"``. The serde's own error is the ``__cause__``."""

    def __init__(self, topic: str, partition: int, offset: int, part: str, error: Exception) -> None:
        super().__init__(
            f"cannot deserialise the {part} of {topic}[{partition}]@{offset} "
            f"({type(error).__name__}: {error}): the consumer stays at that record; skip it "
            f"with consumer.seek({topic!r}, {partition}, {offset + 1}), or consume with "
            f"value_serde='bytes' (key_serde=None) to get the raw bytes")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.part = part


# ---- queues (point-to-point queue groups and dead letters)


class QueueError(StreamrtError):
    """Base class of queue errors."""


class QueueFull(QueueError):
    """A publish was refused: a queue over the topic has ``overflow="reject-new"`` and its
    backlog reached ``max_length``. Nothing was appended; retry later."""


class QueueMismatch(QueueError, ValueError):
    """A queue group was declared again with settings other than its declared ones."""


class UnknownQueue(QueueError, LookupError):
    """No queue group or dead-letter topic of that name."""


class MessageSettled(QueueError, RuntimeError):
    """A queue message was acked or nacked a second time; each delivery is settled once."""


class QueueClosed(QueueError, RuntimeError):
    """The queue consumer is closed (or not opened yet: use ``async with broker.queue(...)``),
    or its queue group was deleted."""


# -------------------------------------------------------------------- Kafka wire protocol


class ProtocolError(StreamrtError, ValueError):
    """Bytes from a network peer do not follow the Kafka wire protocol (truncated, a length or
    count beyond the frame or a limit, a bad varint, trailing bytes). The server answers with
    an error code or closes that one connection."""


class UnsupportedVersion(ProtocolError):
    """A request names an API key or version the server does not support (Kafka error 35);
    the client should pick a version from ApiVersions."""


class FrameTooLarge(ProtocolError):
    """A frame's size prefix exceeds the connection's limit (``max_frame_bytes``, or the
    smaller limit before a client's first valid request); the connection is closed."""


class PipelineError(StreamrtError):
    """A step of a pipeline failed; the message names the step and the user's function."""


class IncompatibleState(StreamrtError):
    """The app's saved state belongs to a different graph; run with --reset to start afresh."""
