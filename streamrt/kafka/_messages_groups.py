"""Message tables of the consumer-group APIs (coordinator lookup, membership, offsets).

Transcribed from apache/kafka's message JSON like ``_messages.py`` (which see).
"""

from __future__ import annotations

from ._messages import ApiKey
from ._schema import Api, api, array, field

__all__ = ["APIS"]

FIND_COORDINATOR = api(
    ApiKey.FIND_COORDINATOR, "0-6", flexible="3+",
    request=(
        field("key", "string", "0-3"),
        field("key_type", "int8", "1+", default="0"),
        field("coordinator_keys", "[]string", "4+"),
    ),
    response=(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "0-3"),
        field("error_message", "string", "1-3", nullable="1-3"),
        field("node_id", "int32", "0-3"),
        field("host", "string", "0-3"),
        field("port", "int32", "0-3"),
        array("coordinators", "4+", fields=(
            field("key", "string", "4+"),
            field("node_id", "int32", "4+"),
            field("host", "string", "4+"),
            field("port", "int32", "4+"),
            field("error_code", "int16", "4+"),
            field("error_message", "string", "4+", nullable="4+"),
        )),
    ),
)

JOIN_GROUP = api(
    ApiKey.JOIN_GROUP, "0-7", flexible="6+",
    request=(
        field("group_id", "string", "0+"),
        field("session_timeout_ms", "int32", "0+"),
        field("rebalance_timeout_ms", "int32", "1+", default="-1"),
        field("member_id", "string", "0+"),
        field("group_instance_id", "string", "5+", nullable="5+", default="null"),
        field("protocol_type", "string", "0+"),
        array("protocols", "0+", fields=(
            field("name", "string", "0+"),
            field("metadata", "bytes", "0+"),
        )),
    ),
    response=(
        field("throttle_time_ms", "int32", "2+"),
        field("error_code", "int16", "0+"),
        field("generation_id", "int32", "0+", default="-1"),
        field("protocol_type", "string", "7+", nullable="7+", default="null"),
        field("protocol_name", "string", "0+", nullable="7+"),
        field("leader", "string", "0+"),
        field("member_id", "string", "0+"),
        array("members", "0+", fields=(
            field("member_id", "string", "0+"),
            field("group_instance_id", "string", "5+", nullable="5+", default="null"),
            field("metadata", "bytes", "0+"),
        )),
    ),
)

SYNC_GROUP = api(
    ApiKey.SYNC_GROUP, "0-5", flexible="4+",
    request=(
        field("group_id", "string", "0+"),
        field("generation_id", "int32", "0+"),
        field("member_id", "string", "0+"),
        field("group_instance_id", "string", "3+", nullable="3+", default="null"),
        field("protocol_type", "string", "5+", nullable="5+", default="null"),
        field("protocol_name", "string", "5+", nullable="5+", default="null"),
        array("assignments", "0+", fields=(
            field("member_id", "string", "0+"),
            field("assignment", "bytes", "0+"),
        )),
    ),
    response=(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "0+"),
        field("protocol_type", "string", "5+", nullable="5+", default="null"),
        field("protocol_name", "string", "5+", nullable="5+", default="null"),
        field("assignment", "bytes", "0+"),
    ),
)

HEARTBEAT = api(
    ApiKey.HEARTBEAT, "0-4", flexible="4+",
    request=(
        field("group_id", "string", "0+"),
        field("generation_id", "int32", "0+"),
        field("member_id", "string", "0+"),
        field("group_instance_id", "string", "3+", nullable="3+", default="null"),
    ),
    response=(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "0+"),
    ),
)

LEAVE_GROUP = api(
    ApiKey.LEAVE_GROUP, "0-5", flexible="4+",
    request=(
        field("group_id", "string", "0+"),
        field("member_id", "string", "0-2"),
        array("members", "3+", fields=(
            field("member_id", "string", "3+"),
            field("group_instance_id", "string", "3+", nullable="3+", default="null"),
            field("reason", "string", "5+", nullable="5+", default="null"),
        )),
    ),
    response=(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "0+"),
        array("members", "3+", fields=(
            field("member_id", "string", "3+"),
            field("group_instance_id", "string", "3+", nullable="3+"),
            field("error_code", "int16", "3+"),
        )),
    ),
)

OFFSET_FETCH = api(
    ApiKey.OFFSET_FETCH, "1-9", flexible="6+",
    request=(
        field("group_id", "string", "0-7"),
        array("topics", "0-7", nullable="2-7", fields=(
            field("name", "string", "0-7"),
            field("partition_indexes", "[]int32", "0-7"),
        )),
        array("groups", "8+", fields=(
            field("group_id", "string", "8+"),
            field("member_id", "string", "9+", nullable="9+", default="null"),
            field("member_epoch", "int32", "9+", default="-1"),
            array("topics", "8+", nullable="8+", fields=(
                field("name", "string", "8+"),
                field("partition_indexes", "[]int32", "8+"),
            )),
        )),
        field("require_stable", "bool", "7+", default="false"),
    ),
    response=(
        field("throttle_time_ms", "int32", "3+"),
        array("topics", "0-7", fields=(
            field("name", "string", "0-7"),
            array("partitions", "0-7", fields=(
                field("partition_index", "int32", "0-7"),
                field("committed_offset", "int64", "0-7"),
                field("committed_leader_epoch", "int32", "5-7", default="-1"),
                field("metadata", "string", "0-7", nullable="0-7"),
                field("error_code", "int16", "0-7"),
            )),
        )),
        field("error_code", "int16", "2-7", default="0"),
        array("groups", "8+", fields=(
            field("group_id", "string", "8+"),
            array("topics", "8+", fields=(
                field("name", "string", "8+"),
                array("partitions", "8+", fields=(
                    field("partition_index", "int32", "8+"),
                    field("committed_offset", "int64", "8+"),
                    field("committed_leader_epoch", "int32", "8+", default="-1"),
                    field("metadata", "string", "8+", nullable="8+"),
                    field("error_code", "int16", "8+"),
                )),
            )),
            field("error_code", "int16", "8+", default="0"),
        )),
    ),
)

OFFSET_COMMIT = api(
    ApiKey.OFFSET_COMMIT, "2-9", flexible="8+",
    request=(
        field("group_id", "string", "0+"),
        field("generation_id_or_member_epoch", "int32", "1+", default="-1"),
        field("member_id", "string", "1+"),
        field("group_instance_id", "string", "7+", nullable="7+", default="null"),
        field("retention_time_ms", "int64", "2-4", default="-1"),
        array("topics", "0+", fields=(
            field("name", "string", "0+"),
            array("partitions", "0+", fields=(
                field("partition_index", "int32", "0+"),
                field("committed_offset", "int64", "0+"),
                field("committed_leader_epoch", "int32", "6+", default="-1"),
                field("committed_metadata", "string", "0+", nullable="0+"),
            )),
        )),
    ),
    response=(
        field("throttle_time_ms", "int32", "3+"),
        array("topics", "0+", fields=(
            field("name", "string", "0+"),
            array("partitions", "0+", fields=(
                field("partition_index", "int32", "0+"),
                field("error_code", "int16", "0+"),
            )),
        )),
    ),
)

LIST_GROUPS = api(
    ApiKey.LIST_GROUPS, "0-4", flexible="3+",
    request=(
        field("states_filter", "[]string", "4+"),
    ),
    response=(
        field("throttle_time_ms", "int32", "1+"),
        field("error_code", "int16", "0+"),
        array("groups", "0+", fields=(
            field("group_id", "string", "0+"),
            field("protocol_type", "string", "0+"),
            field("group_state", "string", "4+"),
        )),
    ),
)

DESCRIBE_GROUPS = api(
    ApiKey.DESCRIBE_GROUPS, "0-5", flexible="5+",
    request=(
        field("groups", "[]string", "0+"),
        field("include_authorized_operations", "bool", "3+"),
    ),
    response=(
        field("throttle_time_ms", "int32", "1+"),
        array("groups", "0+", fields=(
            field("error_code", "int16", "0+"),
            field("group_id", "string", "0+"),
            field("group_state", "string", "0+"),
            field("protocol_type", "string", "0+"),
            field("protocol_data", "string", "0+"),
            array("members", "0+", fields=(
                field("member_id", "string", "0+"),
                field("group_instance_id", "string", "4+", nullable="4+", default="null"),
                field("client_id", "string", "0+"),
                field("client_host", "string", "0+"),
                field("member_metadata", "bytes", "0+"),
                field("member_assignment", "bytes", "0+"),
            )),
            field("authorized_operations", "int32", "3+", default="-2147483648"),
        )),
    ),
)

DELETE_GROUPS = api(
    ApiKey.DELETE_GROUPS, "0-2", flexible="2+",
    request=(
        field("groups_names", "[]string", "0+"),
    ),
    response=(
        field("throttle_time_ms", "int32", "0+"),
        array("results", "0+", fields=(
            field("group_id", "string", "0+"),
            field("error_code", "int16", "0+"),
        )),
    ),
)

APIS: tuple[Api, ...] = (FIND_COORDINATOR, JOIN_GROUP, SYNC_GROUP, HEARTBEAT, LEAVE_GROUP,
                         OFFSET_FETCH, OFFSET_COMMIT, LIST_GROUPS, DESCRIBE_GROUPS, DELETE_GROUPS)
"""The APIs described in this module."""
