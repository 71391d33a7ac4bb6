"""Message tables of the topic-administration APIs (create, delete, describe configs).

Transcribed from apache/kafka's message JSON like ``_messages.py`` (which see).
"""

from __future__ import annotations

from ._messages import ApiKey
from ._schema import Api, api, array, field

__all__ = ["APIS"]

CREATE_TOPICS = api(
    ApiKey.CREATE_TOPICS, "0-7", flexible="5+",
    request=(
        array("topics", "0+", fields=(
            field("name", "string", "0+"),
            field("num_partitions", "int32", "0+"),
            field("replication_factor", "int16", "0+"),
            array("assignments", "0+", fields=(
                field("partition_index", "int32", "0+"),
                field("broker_ids", "[]int32", "0+"),
            )),
            array("configs", "0+", fields=(
                field("name", "string", "0+"),
                field("value", "string", "0+", nullable="0+"),
            )),
        )),
        field("timeout_ms", "int32", "0+", default="60000"),
        field("validate_only", "bool", "1+", default="false"),
    ),
    response=(
        field("throttle_time_ms", "int32", "2+"),
        array("topics", "0+", fields=(
            field("name", "string", "0+"),
            field("topic_id", "uuid", "7+"),
            field("error_code", "int16", "0+"),
            field("error_message", "string", "1+", nullable="0+"),
            field("topic_config_error_code", "int16", "5+", tag=0, tagged="5+"),
            field("num_partitions", "int32", "5+", default="-1"),
            field("replication_factor", "int16", "5+", default="-1"),
            array("configs", "5+", nullable="5+", fields=(
                field("name", "string", "5+"),
                field("value", "string", "5+", nullable="5+"),
                field("read_only", "bool", "5+"),
                field("config_source", "int8", "5+", default="-1"),
                field("is_sensitive", "bool", "5+"),
            )),
        )),
    ),
)

DELETE_TOPICS = api(
    ApiKey.DELETE_TOPICS, "0-6", flexible="4+",
    request=(
        array("topics", "6+", fields=(
            field("name", "string", "6+", nullable="6+", default="null"),
            field("topic_id", "uuid", "6+"),
        )),
        field("topic_names", "[]string", "0-5"),
        field("timeout_ms", "int32", "0+"),
    ),
    response=(
        field("throttle_time_ms", "int32", "1+"),
        array("responses", "0+", fields=(
            field("name", "string", "0+", nullable="6+"),
            field("topic_id", "uuid", "6+"),
            field("error_code", "int16", "0+"),
            field("error_message", "string", "5+", nullable="5+", default="null"),
        )),
    ),
)

DESCRIBE_CONFIGS = api(
    ApiKey.DESCRIBE_CONFIGS, "0-4", flexible="4+",
    request=(
        array("resources", "0+", fields=(
            field("resource_type", "int8", "0+"),
            field("resource_name", "string", "0+"),
            field("configuration_keys", "[]string", "0+", nullable="0+"),
        )),
        field("include_synonyms", "bool", "1+", default="false"),
        field("include_documentation", "bool", "3+", default="false"),
    ),
    response=(
        field("throttle_time_ms", "int32", "0+"),
        array("results", "0+", fields=(
            field("error_code", "int16", "0+"),
            field("error_message", "string", "0+", nullable="0+"),
            field("resource_type", "int8", "0+"),
            field("resource_name", "string", "0+"),
            array("configs", "0+", fields=(
                field("name", "string", "0+"),
                field("value", "string", "0+", nullable="0+"),
                field("read_only", "bool", "0+"),
                field("is_default", "bool", "0"),
                field("config_source", "int8", "1+", default="-1"),
                field("is_sensitive", "bool", "0+"),
                array("synonyms", "1+", fields=(
                    field("name", "string", "1+"),
                    field("value", "string", "1+", nullable="0+"),
                    field("source", "int8", "1+"),
                )),
                field("config_type", "int8", "3+", default="0"),
                field("documentation", "string", "3+", nullable="0+"),
            )),
        )),
    ),
)

APIS: tuple[Api, ...] = (CREATE_TOPICS, DELETE_TOPICS, DESCRIBE_CONFIGS)
"""The APIs described in this module."""
