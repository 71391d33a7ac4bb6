"""Admin requests from real clients where the answer itself is the point: refusals and edge
cases of CreateTopics and DeleteTopics, answered as Kafka answers them.

The module shares one ``streamrt serve`` (tests use their own topic names). Tests that check
streamrt's own limits or documented differences skip other targets.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from _clients import TIMEOUT, unique
from _kafka_server import KafkaServer

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


def _not_on_tansu(server: KafkaServer, why: str) -> None:
    """Skip where Tansu 0.6 differs from Kafka (these tests check Kafka's answer)."""
    if server.target == "tansu":
        pytest.skip(f"tansu 0.6 {why}")


def test_create_topics_naming_a_topic_twice_creates_nothing_for_it(kafka_server: KafkaServer) -> None:
    """One INVALID_REQUEST answer for the repeated name (librdkafka fails to parse a response
    naming a topic twice), nothing created for it; the other topics of the request go ahead."""
    from confluent_kafka.admin import AdminClient, NewTopic

    _not_on_tansu(kafka_server, "answers each entry of a repeated name, creating the topic")

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

    _not_on_tansu(kafka_server, "deletes the topic and answers UNKNOWN_TOPIC for the repeat")
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


INVALID_PARTITIONS = 37
INVALID_CONFIG = 40


def _create(bootstrap: str, topic: Any, *, validate_only: bool) -> Any:
    """One confluent-kafka create_topics call: None (created or valid) or the KafkaError."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    return _outcomes(admin.create_topics([topic], validate_only=validate_only,
                                         request_timeout=TIMEOUT))[topic.topic]


@pytest.mark.parametrize("partitions", [20_000, 0])
def test_validate_only_gives_the_real_creates_answer_for_a_partition_count(
        kafka_server: KafkaServer, partitions: int) -> None:
    """Out of streamrt's 1..10000 range: INVALID_PARTITIONS from both (validate_only used to
    accept 20000, then the create failed with INVALID_REQUEST)."""
    from confluent_kafka.admin import NewTopic

    _not_on_tansu(kafka_server, "accepts 0 partitions with validate_only, and the 10000 limit "
                                "is streamrt's")
    topic = NewTopic(unique("wide"), partitions, 1)
    checked = _create(kafka_server.bootstrap, topic, validate_only=True)
    created = _create(kafka_server.bootstrap, topic, validate_only=False)
    assert checked is not None and checked.code() == INVALID_PARTITIONS, checked
    assert created is not None and created.code() == INVALID_PARTITIONS, created
    assert topic.topic not in _topics(kafka_server.bootstrap)


def test_an_unsupported_cleanup_policy_is_refused_by_validate_only_and_create(
        kafka_server: KafkaServer) -> None:
    from confluent_kafka.admin import NewTopic

    _not_on_tansu(kafka_server, "is not checked: the message is streamrt's")
    topic = NewTopic(unique("shred"), 1, 1, config={"cleanup.policy": "shred"})
    for validate_only in (True, False):
        err = _create(kafka_server.bootstrap, topic, validate_only=validate_only)
        assert err is not None and err.code() == INVALID_CONFIG, (validate_only, err)
        assert "use delete, compact, or compact,delete" in err.str(), err
    assert topic.topic not in _topics(kafka_server.bootstrap)


@pytest.mark.parametrize("policy", ["compact,delete", "delete, compact"])
def test_compact_delete_compacts_and_applies_retention(streamrt_server: KafkaServer,
                                                       policy: str) -> None:
    """Kafka's compact,delete is streamrt's compact policy with retention: after a
    maintenance round the batch past retention.ms is gone and a superseded value too."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    import streamrt as sr

    name = unique("cd")
    retention_ms = 60_000
    topic = NewTopic(name, 1, 1, config={"cleanup.policy": policy,
                                         "retention.ms": str(retention_ms)})
    bootstrap = streamrt_server.bootstrap
    assert _create(bootstrap, topic, validate_only=True) is None
    assert _create(bootstrap, topic, validate_only=False) is None
    now = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for key, value, ts in [(b"a", b"expired", now - 10 * retention_ms), (b"b", b"old", now),
                           (b"b", b"new", now)]:
        producer.produce(name, key=key, value=value, timestamp=ts)
        assert producer.flush(TIMEOUT) == 0  # one batch each: retention drops whole batches
    del producer
    assert streamrt_server.stop() == 0, streamrt_server.stderr()

    log = sr.open_log(str(streamrt_server.data_dir))
    try:
        config = log.topic(name).config
        assert (config.cleanup_policy, config.retention_ms) == ("compact", retention_ms)
        assert log.run_retention(now) == 1
        assert log.compact(name, now) == 1
        assert log.log_start_offset(name, 0) == 1
        assert [(r.offset, r.value) for r in log.read(name, 0, 1, 10)] == [(2, b"new")]
    finally:
        log.close()


NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69


def test_delete_consumer_groups(kafka_server: KafkaServer) -> None:
    """confluent-kafka's delete_consumer_groups: an empty group is deleted with its committed
    offsets, a group with a member gets NON_EMPTY_GROUP until the member leaves, an unknown one
    GROUP_ID_NOT_FOUND. (Before DeleteGroups was supported, librdkafka failed the call and
    then aborted the process in its unsupported-feature path.)"""
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    _not_on_tansu(kafka_server, "answers DeleteGroups with success for every group")
    bootstrap = kafka_server.bootstrap
    topic, idle, live, unknown = unique("dg"), unique("idle"), unique("live"), unique("nobody")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert _create(bootstrap, _new_topic(topic), validate_only=False) is None
    admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(idle, [TopicPartition(topic, 0, 3)])])[idle].result(TIMEOUT)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": live,
                         "session.timeout.ms": 30000})
    deadline = time.monotonic() + TIMEOUT
    try:
        consumer.subscribe([topic])
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.1)
        assert consumer.assignment()

        got = _outcomes(admin.delete_consumer_groups([idle, live, unknown],
                                                    request_timeout=TIMEOUT))
        assert got[idle] is None, got
        assert got[live] is not None and got[live].code() == NON_EMPTY_GROUP, got
        assert got[unknown] is not None and got[unknown].code() == GROUP_ID_NOT_FOUND, got
        listed = {g.group_id for g in admin.list_consumer_groups().result(TIMEOUT).valid}
        assert idle not in listed and live in listed, listed
        (offsets,) = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(idle, [TopicPartition(topic, 0)])]).values()
        assert [tp.offset for tp in offsets.result(TIMEOUT).topic_partitions] == [-1001]
    finally:
        consumer.close()  # leaves the group
    while True:  # the leave is processed by now, or very soon
        got = _outcomes(admin.delete_consumer_groups([live], request_timeout=TIMEOUT))
        if got[live] is None or got[live].code() != NON_EMPTY_GROUP or time.monotonic() > deadline:
            break
    assert got[live] is None, got
    listed = {g.group_id for g in admin.list_consumer_groups().result(TIMEOUT).valid}
    assert live not in listed, listed


def _new_topic(name: str, partitions: int = 1) -> Any:
    from confluent_kafka.admin import NewTopic

    return NewTopic(name, partitions, 1)
