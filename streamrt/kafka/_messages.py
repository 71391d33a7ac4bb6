"""Kafka's API keys and error codes, and the message tables of the data-path APIs.

The tables transcribe apache/kafka's ``clients/src/main/resources/common/message/
<Name>Request.json`` / ``<Name>Response.json`` (see ``_schema.py`` for the notation), kept
to the versions ``streamrt serve`` implements: field names are Kafka's in snake_case, and
version ranges, nullable versions, defaults and tags are as there. Versions Kafka 4 dropped
(older Produce, Fetch, ListOffsets ...) are still described by the fields' ranges, so the
ranges come from the JSON as it stood before the removal.

Group APIs are in ``_messages_groups.py``, topic administration in ``_messages_admin.py``.
"""

from __future__ import annotations

import enum

from ._schema import Api, api, array, field, nested

__all__ = ["ApiKey", "ErrorCode", "APIS"]


class ApiKey(enum.IntEnum):
    """The Kafka APIs ``streamrt serve`` speaks, by their protocol numbers."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    DESCRIBE_CONFIGS = 32
    DELETE_GROUPS = 42


class ErrorCode(enum.IntEnum):
    """Kafka's error codes (``org.apache.kafka.common.protocol.Errors``), those we may send."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    INVALID_FETCH_SIZE = 4
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    BROKER_NOT_AVAILABLE = 8
    REPLICA_NOT_AVAILABLE = 9
    MESSAGE_TOO_LARGE = 10
    OFFSET_METADATA_TOO_LARGE = 12
    NETWORK_EXCEPTION = 13
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    RECORD_LIST_TOO_LARGE = 18
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    INVALID_REQUIRED_ACKS = 21
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    INVALID_COMMIT_OFFSET_SIZE = 28
    TOPIC_AUTHORIZATION_FAILED = 29
    GROUP_AUTHORIZATION_FAILED = 30
    CLUSTER_AUTHORIZATION_FAILED = 31
    INVALID_TIMESTAMP = 32
    UNSUPPORTED_VERSION = 35
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_REPLICA_ASSIGNMENT = 39
    INVALID_CONFIG = 40
    NOT_CONTROLLER = 41
    INVALID_REQUEST = 42
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    POLICY_VIOLATION = 44
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    DUPLICATE_SEQUENCE_NUMBER = 46
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_PRODUCER_ID_MAPPING = 49
    INVALID_TRANSACTION_TIMEOUT = 50
    CONCURRENT_TRANSACTIONS = 51
    TRANSACTION_COORDINATOR_FENCED = 52
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
    KAFKA_STORAGE_ERROR = 56
    UNKNOWN_PRODUCER_ID = 59
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    FETCH_SESSION_ID_NOT_FOUND = 70
    INVALID_FETCH_SESSION_EPOCH = 71
    TOPIC_DELETION_DISABLED = 73
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    UNSUPPORTED_COMPRESSION_TYPE = 76
    OFFSET_NOT_AVAILABLE = 78
    MEMBER_ID_REQUIRED = 79
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_INSTANCE_ID = 82
    GROUP_SUBSCRIBED_TO_TOPIC = 86
    INVALID_RECORD = 87
    UNSTABLE_OFFSET_COMMIT = 88
    THROTTLING_QUOTA_EXCEEDED = 89
    PRODUCER_FENCED = 90
    RESOURCE_NOT_FOUND = 91
    UNKNOWN_TOPIC_ID = 100
    TRANSACTIONAL_ID_NOT_FOUND = 105


API_VERSIONS = api(
    ApiKey.API_VERSIONS, "0-4", flexible="3+",
    request=(
        field("client_software_name", "string", "3+"),
        field("client_software_version", "string", "3+"),
    ),
    response=(
        field("error_code", "int16", "0+"),
        array("api_keys", "0+", fields=(
            field("api_key", "int16", "0+"),
            field("min_version", "int16", "0+"),
            field("max_version", "int16", "0+"),
        )),
        field("throttle_time_ms", "int32", "1+"),
        array("supported_features", "3+", tag=0, tagged="3+", fields=(
            field("name", "string", "3+"),
            field("min_version", "int16", "3+"),
            field("max_version", "int16", "3+"),
        )),
        field("finalized_features_epoch", "int64", "3+", default="-1", tag=1, tagged="3+"),
        array("finalized_features", "3+", tag=2, tagged="3+", fields=(
            field("name", "string", "3+"),
            field("max_version_level", "int16", "3+"),
            field("min_version_level", "int16", "3+"),
        )),
        field("zk_migration_ready", "bool", "3+", default="false", tag=3, tagged="3+"),
    ),
)

METADATA = api(
    ApiKey.METADATA, "0-12", flexible="9+",
    request=(
        array("topics", "0+", nullable="1+", fields=(
            field("topic_id", "uuid", "10+"),
            field("name", "string", "0+", nullable="10+"),
        )),
        field("allow_auto_topic_creation", "bool", "4+", default="true"),
        field("include_cluster_authorized_operations", "bool", "8-10"),
        field("include_topic_authorized_operations", "bool", "8+"),
    ),
    response=(
        field("throttle_time_ms", "int32", "3+"),
        array("brokers", "0+", fields=(
            field("node_id", "int32", "0+"),
            field("host", "string", "0+"),
            field("port", "int32", "0+"),
            field("rack", "string", "1+", nullable="1+", default="null"),
        )),
        field("cluster_id", "string", "2+", nullable="2+", default="null"),
        field("controller_id", "int32", "1+", default="-1"),
        array("topics", "0+", fields=(
            field("error_code", "int16", "0+"),
            field("name", "string", "0+", nullable="12+"),
            field("topic_id", "uuid", "10+"),
            field("is_internal", "bool", "1+", default="false"),
            array("partitions", "0+", fields=(
                field("error_code", "int16", "0+"),
                field("partition_index", "int32", "0+"),
                field("leader_id", "int32", "0+"),
                field("leader_epoch", "int32", "7+", default="-1"),
                field("replica_nodes", "[]int32", "0+"),
                field("isr_nodes", "[]int32", "0+"),
                field("offline_replicas", "[]int32", "5+"),
            )),
            field("topic_authorized_operations", "int32", "8+", default="-2147483648"),
        )),
        field("cluster_authorized_operations", "int32", "8-10", default="-2147483648"),
    ),
)

PRODUCE = api(
    ApiKey.PRODUCE, "3-10", flexible="9+",
    request=(
        field("transactional_id", "string", "3+", nullable="3+", default="null"),
        field("acks", "int16", "0+"),
        field("timeout_ms", "int32", "0+"),
        array("topic_data", "0+", fields=(
            field("name", "string", "0+"),
            array("partition_data", "0+", fields=(
                field("index", "int32", "0+"),
                field("records", "records", "0+", nullable="0+"),
            )),
        )),
    ),
    response=(
        array("responses", "0+", fields=(
            field("name", "string", "0+"),
            array("partition_responses", "0+", fields=(
                field("index", "int32", "0+"),
                field("error_code", "int16", "0+"),
                field("base_offset", "int64", "0+"),
                field("log_append_time_ms", "int64", "2+", default="-1"),
                field("log_start_offset", "int64", "5+", default="-1"),
                array("record_errors", "8+", fields=(
                    field("batch_index", "int32", "8+"),
                    field("batch_index_error_message", "string", "8+", nullable="8+", default="null"),
                )),
                field("error_message", "string", "8+", nullable="8+", default="null"),
                nested("current_leader", "10+", tag=0, tagged="10+", fields=(
                    field("leader_id", "int32", "10+", default="-1"),
                    field("leader_epoch", "int32", "10+", default="-1"),
                )),
            )),
        )),
        field("throttle_time_ms", "int32", "1+", default="0"),
        array("node_endpoints", "10+", tag=0, tagged="10+", fields=(
            field("node_id", "int32", "10+"),
            field("host", "string", "10+"),
            field("port", "int32", "10+"),
            field("rack", "string", "10+", nullable="10+", default="null"),
        )),
    ),
)

FETCH = api(
    ApiKey.FETCH, "4-12", flexible="12+",
    request=(
        field("cluster_id", "string", "12+", nullable="12+", default="null", tag=0, tagged="12+"),
        field("replica_id", "int32", "0-14", default="-1"),
        field("max_wait_ms", "int32", "0+"),
        field("min_bytes", "int32", "0+"),
        field("max_bytes", "int32", "3+", default="0x7fffffff"),
        field("isolation_level", "int8", "4+", default="0"),
        field("session_id", "int32", "7+", default="0"),
        field("session_epoch", "int32", "7+", default="-1"),
        array("topics", "0+", fields=(
            field("topic", "string", "0-12"),
            array("partitions", "0+", fields=(
                field("partition", "int32", "0+"),
                field("current_leader_epoch", "int32", "9+", default="-1"),
                field("fetch_offset", "int64", "0+"),
                field("last_fetched_epoch", "int32", "12+", default="-1"),
                field("log_start_offset", "int64", "5+", default="-1"),
                field("partition_max_bytes", "int32", "0+"),
            )),
        )),
        array("forgotten_topics_data", "7+", fields=(
            field("topic", "string", "7-12"),
            field("partitions", "[]int32", "7+"),
        )),
        field("rack_id", "string", "11+", default=""),
    ),
    response=(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "7+"),
        field("session_id", "int32", "7+", default="0"),
        array("responses", "0+", fields=(
            field("topic", "string", "0-12"),
            array("partitions", "0+", fields=(
                field("partition_index", "int32", "0+"),
                field("error_code", "int16", "0+"),
                field("high_watermark", "int64", "0+"),
                field("last_stable_offset", "int64", "4+", default="-1"),
                field("log_start_offset", "int64", "5+", default="-1"),
                nested("diverging_epoch", "12+", tag=0, tagged="12+", fields=(
                    field("epoch", "int32", "12+", default="-1"),
                    field("end_offset", "int64", "12+", default="-1"),
                )),
                nested("current_leader", "12+", tag=1, tagged="12+", fields=(
                    field("leader_id", "int32", "12+", default="-1"),
                    field("leader_epoch", "int32", "12+", default="-1"),
                )),
                nested("snapshot_id", "12+", tag=2, tagged="12+", fields=(
                    field("end_offset", "int64", "0+", default="-1"),
                    field("epoch", "int32", "0+", default="-1"),
                )),
                array("aborted_transactions", "4+", nullable="4+", fields=(
                    field("producer_id", "int64", "4+"),
                    field("first_offset", "int64", "4+"),
                )),
                field("preferred_read_replica", "int32", "11+", default="-1"),
                field("records", "records", "0+", nullable="0+"),
            )),
        )),
    ),
)

LIST_OFFSETS = api(
    ApiKey.LIST_OFFSETS, "1-11", flexible="6+",
    request=(
        field("replica_id", "int32", "0+"),
        field("isolation_level", "int8", "2+"),
        array("topics", "0+", fields=(
            field("name", "string", "0+"),
            array("partitions", "0+", fields=(
                field("partition_index", "int32", "0+"),
                field("current_leader_epoch", "int32", "4+", default="-1"),
                field("timestamp", "int64", "0+"),
            )),
        )),
        field("timeout_ms", "int32", "10+"),
    ),
    response=(
        field("throttle_time_ms", "int32", "2+"),
        array("topics", "0+", fields=(
            field("name", "string", "0+"),
            array("partitions", "0+", fields=(
                field("partition_index", "int32", "0+"),
                field("error_code", "int16", "0+"),
                field("timestamp", "int64", "1+", default="-1"),
                field("offset", "int64", "1+", default="-1"),
                field("leader_epoch", "int32", "4+", default="-1"),
            )),
        )),
    ),
)

INIT_PRODUCER_ID = api(
    ApiKey.INIT_PRODUCER_ID, "0-4", flexible="2+",
    request=(
        field("transactional_id", "string", "0+", nullable="0+"),
        field("transaction_timeout_ms", "int32", "0+"),
        field("producer_id", "int64", "3+", default="-1"),
        field("producer_epoch", "int16", "3+", default="-1"),
    ),
    response=(
        field("throttle_time_ms", "int32", "0+"),
        field("error_code", "int16", "0+"),
        field("producer_id", "int64", "0+", default=-1),
        field("producer_epoch", "int16", "0+"),
    ),
)

OFFSET_FOR_LEADER_EPOCH = api(
    ApiKey.OFFSET_FOR_LEADER_EPOCH, "0-4", flexible="4+",
    request=(
        field("replica_id", "int32", "3+", default=-2),
        array("topics", "0+", fields=(
            field("topic", "string", "0+"),
            array("partitions", "0+", fields=(
                field("partition", "int32", "0+"),
                field("current_leader_epoch", "int32", "2+", default="-1"),
                field("leader_epoch", "int32", "0+"),
            )),
        )),
    ),
    response=(
        field("throttle_time_ms", "int32", "2+"),
        array("topics", "0+", fields=(
            field("topic", "string", "0+"),
            array("partitions", "0+", fields=(
                field("error_code", "int16", "0+"),
                field("partition", "int32", "0+"),
                field("leader_epoch", "int32", "1+", default="-1"),
                field("end_offset", "int64", "0+", default="-1"),
            )),
        )),
    ),
)

APIS: tuple[Api, ...] = (API_VERSIONS, METADATA, PRODUCE, FETCH, LIST_OFFSETS, INIT_PRODUCER_ID,
                         OFFSET_FOR_LEADER_EPOCH)
"""The APIs described in this module."""
