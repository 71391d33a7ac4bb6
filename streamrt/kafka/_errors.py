"""streamrt's typed errors as Kafka error codes (what a Kafka client understands)."""

from __future__ import annotations

from ..errors import (
    ActorStopped,
    CoordinatorNotAvailable,
    CorruptBatch,
    DuplicateSequence,
    IllegalGeneration,
    InconsistentGroupProtocol,
    InvalidArgument,
    InvalidTopicName,
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

NONE = 0
UNKNOWN_SERVER_ERROR = -1
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
COORDINATOR_NOT_AVAILABLE = 15
INVALID_TOPIC_EXCEPTION = 17
INVALID_REQUIRED_ACKS = 21
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REQUEST = 42
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
INVALID_CONFIG = 40
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
KAFKA_STORAGE_ERROR = 56
GROUP_ID_NOT_FOUND = 69
FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_RECORD = 87

_BY_TYPE: tuple[tuple[type[BaseException], int], ...] = (
    (UnknownTopic, UNKNOWN_TOPIC_OR_PARTITION),
    (UnknownPartition, UNKNOWN_TOPIC_OR_PARTITION),
    (InvalidTopicName, INVALID_TOPIC_EXCEPTION),
    (TopicExists, TOPIC_ALREADY_EXISTS),
    (OffsetOutOfRange, OFFSET_OUT_OF_RANGE),
    (UnsupportedMessageFormat, UNSUPPORTED_FOR_MESSAGE_FORMAT),
    (CorruptBatch, CORRUPT_MESSAGE),
    (DuplicateSequence, DUPLICATE_SEQUENCE_NUMBER),
    (OutOfOrderSequence, OUT_OF_ORDER_SEQUENCE_NUMBER),
    (ProducerFenced, INVALID_PRODUCER_EPOCH),
    (RebalanceInProgress, REBALANCE_IN_PROGRESS),
    (UnknownMemberId, UNKNOWN_MEMBER_ID),
    (IllegalGeneration, ILLEGAL_GENERATION),
    (StaleGeneration, ILLEGAL_GENERATION),
    (InconsistentGroupProtocol, INCONSISTENT_GROUP_PROTOCOL),
    (CoordinatorNotAvailable, COORDINATOR_NOT_AVAILABLE),
    (ActorStopped, COORDINATOR_NOT_AVAILABLE),
    (UnknownGroup, GROUP_ID_NOT_FOUND),
    (UnsupportedVersion, UNSUPPORTED_VERSION),
    (ProtocolError, INVALID_REQUEST),
    (InvalidArgument, INVALID_REQUEST),
)


def error_code(exc: BaseException) -> int:
    """The Kafka error code for one of streamrt's errors (UNKNOWN_SERVER_ERROR otherwise)."""
    for cls, code in _BY_TYPE:
        if isinstance(exc, cls):
            return code
    return UNKNOWN_SERVER_ERROR
