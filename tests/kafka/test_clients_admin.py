"""Admin requests from real clients where the answer itself is the point: refusals and edge
cases of CreateTopics and DeleteTopics, answered as Kafka answers them.

The module shares one ``streamrt serve`` (tests use their own topic names). Tests that check
streamrt's own limits or documented differences skip other targets.
"""

from __future__ import annotations

from typing import Any

import pytest

from _clients import TIMEOUT, unique
from conftest import KafkaServer

INVALID_REQUEST = 42


def _outcomes(futures: dict[str, Any]) -> dict[str, Any]:
    """confluent-kafka admin futures -> None (success) or the KafkaError, per name."""
    from confluent_kafka import KafkaException

    out: dict[str, Any] = {}
    for name, f in futures.items():
        try:
            out[name] = f.result(TIMEOUT)
        except KafkaException as e:
            out[name] = e.args[0]
    return out


def _topics(bootstrap: str) -> dict[str, int]:
    """Every topic and its partition count, as confluent-kafka's Metadata sees them."""
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=TIMEOUT)
    return {name: len(t.partitions) for name, t in md.topics.items()}


def test_create_topics_naming_a_topic_twice_creates_nothing_for_it(kafka_server: KafkaServer) -> None:
    """One INVALID_REQUEST answer for the repeated name (librdkafka fails to parse a response
    naming a topic twice), nothing created for it; the other topics of the request go ahead."""
    from confluent_kafka.admin import AdminClient, NewTopic

    dup, other = unique("dup"), unique("single")
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    got = _outcomes(admin.create_topics(
        [NewTopic(dup, 1, 1), NewTopic(other, 1, 1), NewTopic(dup, 2, 1)],
        request_timeout=TIMEOUT))
    assert got[other] is None, got
    assert got[dup] is not None and got[dup].code() == INVALID_REQUEST, got
    topics = _topics(kafka_server.bootstrap)
    assert other in topics
    assert dup not in topics


def test_delete_topics_naming_a_topic_twice_deletes_nothing_for_it(kafka_server: KafkaServer) -> None:
    """kafka-python sends both names as given: the answer is one INVALID_REQUEST, and the topic
    is still there (before, it was deleted and the client was told it failed)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import InvalidRequestError

    topic = unique("dup-delete")
    admin = KafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
        with pytest.raises(InvalidRequestError) as info:
            admin.delete_topics([topic, topic])
        assert topic in set(admin.list_topics()), info.value
        if kafka_server.target == "streamrt":
            assert "duplicate topic" in str(info.value), info.value
    finally:
        admin.close()
