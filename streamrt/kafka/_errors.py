"""streamrt's typed errors as Kafka error codes (what a Kafka client understands).

The codes themselves are :class:`ErrorCode` (``_messages.py``), re-exported here as ``E``
for the handlers."""

from __future__ import annotations

from ..errors import (
    ActorStopped,
    CoordinatorNotAvailable,
    CorruptBatch,
    DuplicateSequence,
    FencedInstanceId,
    IllegalGeneration,
    InconsistentGroupProtocol,
    InvalidArgument,
    InvalidTopicName,
    NonEmptyGroup,
    OffsetOutOfRange,
    OutOfOrderSequence,
    ProducerFenced,
    ProtocolError,
    RebalanceInProgress,
    StaleGeneration,
    TopicExists,
    UnknownGroup,
    UnknownMemberId,
    UnknownPartition,
    UnknownTopic,
    UnsupportedMessageFormat,
    UnsupportedVersion,
)
from ._messages import ErrorCode as E

_BY_TYPE: tuple[tuple[type[BaseException], int], ...] = (
    (UnknownTopic, E.UNKNOWN_TOPIC_OR_PARTITION),
    (UnknownPartition, E.UNKNOWN_TOPIC_OR_PARTITION),
    (InvalidTopicName, E.INVALID_TOPIC_EXCEPTION),
    (TopicExists, E.TOPIC_ALREADY_EXISTS),
    (OffsetOutOfRange, E.OFFSET_OUT_OF_RANGE),
    (UnsupportedMessageFormat, E.UNSUPPORTED_FOR_MESSAGE_FORMAT),
    (CorruptBatch, E.CORRUPT_MESSAGE),
    (DuplicateSequence, E.DUPLICATE_SEQUENCE_NUMBER),
    (OutOfOrderSequence, E.OUT_OF_ORDER_SEQUENCE_NUMBER),
    (ProducerFenced, E.INVALID_PRODUCER_EPOCH),
    (RebalanceInProgress, E.REBALANCE_IN_PROGRESS),
    (UnknownMemberId, E.UNKNOWN_MEMBER_ID),
    (FencedInstanceId, E.FENCED_INSTANCE_ID),
    (IllegalGeneration, E.ILLEGAL_GENERATION),
    (StaleGeneration, E.ILLEGAL_GENERATION),
    (InconsistentGroupProtocol, E.INCONSISTENT_GROUP_PROTOCOL),
    (CoordinatorNotAvailable, E.COORDINATOR_NOT_AVAILABLE),
    (ActorStopped, E.COORDINATOR_NOT_AVAILABLE),
    (UnknownGroup, E.GROUP_ID_NOT_FOUND),
    (NonEmptyGroup, E.NON_EMPTY_GROUP),
    (UnsupportedVersion, E.UNSUPPORTED_VERSION),
    (ProtocolError, E.INVALID_REQUEST),
    (InvalidArgument, E.INVALID_REQUEST),
)


def error_code(exc: BaseException) -> int:
    """The Kafka error code for one of streamrt's errors (UNKNOWN_SERVER_ERROR otherwise)."""
    for cls, code in _BY_TYPE:
        if isinstance(exc, cls):
            return code
    return E.UNKNOWN_SERVER_ERROR
