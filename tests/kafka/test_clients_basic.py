"""Three unchanged Kafka clients against the server: topics, produce/consume, offsets, groups.

Each test runs once per client (kafka-python, aiokafka, confluent-kafka) against one server
shared by the module; tests use their own topic and group names, so they do not interfere.
Covered here: CreateTopics through each admin API; Produce (acks=all) with keys and headers and
Fetch from the beginning (keys, values, headers, order per partition, dense offsets);
ListOffsets by timestamp and earliest/latest; ListGroups / DescribeGroups on a live group.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import pytest

from _clients import CLIENTS, TIMEOUT, Rec, consume_from_beginning, create_topic, produce, unique
from _kafka_server import KafkaServer

def _records(n: int) -> list[Rec]:
    """n records over 5 keys, with zero, one or repeated headers, a null key and a null value."""
    out: list[Rec] = []
    for i in range(n):
        key: bytes | None = f"user-{i % 5}".encode()
        headers = [("seq", str(i).encode())] + [("trace", b"\x00\xff" * (i % 3))] * (i % 3)
        value: bytes | None = f"value-{i}".encode() * (1 + i % 4)
        if i == 7:
            key = None  # unkeyed: any partition
        if i == 11:
            value = None  # a tombstone
        out.append((key, value, headers))
    return out


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_create_produce_consume_keys_headers(kafka_server: KafkaServer, client: str) -> None:
    """Records come back per partition in produce order, at dense offsets, byte for byte."""
    topic = unique(f"basic-{client}")
    create_topic(client, kafka_server.bootstrap, topic, partitions=3)
    records = _records(40)
    placed = produce(client, kafka_server.bootstrap, topic, records)

    # What the producer was told: per partition, offsets 0, 1, 2, ... in send order.
    sent: dict[int, list[tuple[int, Rec]]] = defaultdict(list)
    for (partition, offset), rec in zip(placed, records):
        sent[partition].append((offset, rec))
    for partition, recs in sent.items():
        assert [o for o, _ in recs] == list(range(len(recs))), f"partition {partition}"
    key_partitions: dict[bytes, set[int]] = defaultdict(set)
    for (partition, _), (key, _, _) in zip(placed, records):
        if key is not None:
            key_partitions[key].add(partition)
    assert all(len(ps) == 1 for ps in key_partitions.values()), key_partitions
    assert len({p for ps in key_partitions.values() for p in ps}) > 1, "5 keys all hashed to one partition"

    got = consume_from_beginning(client, kafka_server.bootstrap, topic, 3, len(records))
    assert {p: [(o, rec) for o, rec, _ in recs] for p, recs in got.items()} == dict(sent)


@pytest.mark.parametrize("client", CLIENTS)
def test_offsets_for_times_and_watermarks(kafka_server: KafkaServer, client: str) -> None:
    """ListOffsets: by timestamp (first offset at or after it), earliest and latest."""
    if kafka_server.target == "tansu":
        pytest.skip("tansu 0.6: ListOffsets latest counts batches, not records, and by-timestamp "
                    "lookups answer offset 0 with the current time")
    topic = unique(f"times-{client}")
    create_topic(client, kafka_server.bootstrap, topic, partitions=2)
    base = int(time.time() * 1000) - 3_600_000  # an hour ago: clearly CreateTime, not append time
    records: list[Rec] = [(b"k", f"v{i}".encode(), []) for i in range(10)]
    produce(client, kafka_server.bootstrap, topic, records, timestamps=[base + 1000 * i for i in range(10)])
    # Partition 0 holds all ten (one key); partition 1 stays empty.
    got = consume_from_beginning(client, kafka_server.bootstrap, topic, 2, 10)
    (full,) = got
    assert [ts for _, _, ts in got[full]] == [base + 1000 * i for i in range(10)]
    empty = 1 - full

    queries = {base - 1: 0, base: 0, base + 3500: 4, base + 9000: 9, base + 9001: None}
    result: dict[int, int | None] = {}
    if client == "kafka-python":
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=kafka_server.bootstrap)
        try:
            tp, tp_empty = TopicPartition(topic, full), TopicPartition(topic, empty)
            for ts in queries:
                found = consumer.offsets_for_times({tp: ts})[tp]
                result[ts] = None if found is None else found.offset
                if found is not None:
                    assert found.timestamp == base + 1000 * found.offset
            assert consumer.offsets_for_times({tp_empty: base})[tp_empty] is None
            begin = consumer.beginning_offsets([tp, tp_empty])
            end = consumer.end_offsets([tp, tp_empty])
            marks = {"full": (begin[tp], end[tp]), "empty": (begin[tp_empty], end[tp_empty])}
        finally:
            consumer.close()
    elif client == "aiokafka":
        from aiokafka import AIOKafkaConsumer, TopicPartition as ATP

        async def run() -> dict[str, tuple[int, int]]:
            consumer = AIOKafkaConsumer(bootstrap_servers=kafka_server.bootstrap)
            await consumer.start()
            try:
                tp, tp_empty = ATP(topic, full), ATP(topic, empty)
                for ts in queries:
                    found = (await consumer.offsets_for_times({tp: ts}))[tp]
                    result[ts] = None if found is None else found.offset
                    if found is not None:
                        assert found.timestamp == base + 1000 * found.offset
                assert (await consumer.offsets_for_times({tp_empty: base}))[tp_empty] is None
                begin = await consumer.beginning_offsets([tp, tp_empty])
                end = await consumer.end_offsets([tp, tp_empty])
                return {"full": (begin[tp], end[tp]), "empty": (begin[tp_empty], end[tp_empty])}
            finally:
                await consumer.stop()

        marks = asyncio.run(run())
    else:
        from confluent_kafka import Consumer, TopicPartition as CTP

        consumer = Consumer({"bootstrap.servers": kafka_server.bootstrap, "group.id": unique("unused")})
        try:
            for ts in queries:
                (found,) = consumer.offsets_for_times([CTP(topic, full, ts)], timeout=TIMEOUT)
                assert found.error is None, found.error
                result[ts] = None if found.offset == -1 else found.offset  # -1: OFFSET_END, none
            (found,) = consumer.offsets_for_times([CTP(topic, empty, base)], timeout=TIMEOUT)
            assert found.offset == -1
            marks = {"full": consumer.get_watermark_offsets(CTP(topic, full), timeout=TIMEOUT),
                     "empty": consumer.get_watermark_offsets(CTP(topic, empty), timeout=TIMEOUT)}
        finally:
            consumer.close()
    assert result == queries
    assert marks == {"full": (0, 10), "empty": (0, 0)}


def describe_live_group(client: str, bootstrap: str, topic: str, group: str, client_id: str) -> dict[str, Any]:
    """Run a one-member group on ``topic``, commit, then list and describe it with the admin API.

    Returns what the admin client said, normalised: ``listed`` (the protocol type ListGroups
    gave the group, None if missing), ``state``, ``protocol_type``, ``protocol`` (the assignor)
    and ``members`` as ``[(member_id, client_id, {(topic, partition), ...})]``.
    """
    deadline = time.monotonic() + TIMEOUT
    if client == "kafka-python":
        from kafka import KafkaAdminClient, KafkaConsumer, OffsetAndMetadata, TopicPartition

        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, client_id=client_id,
                                 session_timeout_ms=3000, heartbeat_interval_ms=500)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(1000)  # see KAFKA_PYTHON_POLL_MS in _apps/kafka_member.py
            assert {tp.partition for tp in consumer.assignment()} == {0, 1}
            consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(0, "", -1)})
            listed = {g["group_id"]: g["protocol_type"] for g in admin.list_groups()}
            desc = admin.describe_groups([group])[group]
        finally:
            consumer.close()
            admin.close()
        assert desc["error"] is None, desc
        members = [(m["member_id"], m["client_id"],
                    {(t["topic"], p) for t in m["member_assignment"]["assigned_partitions"] for p in t["partitions"]})
                   for m in desc["members"]]
        return {"listed": listed.get(group), "state": desc["group_state"], "members": members,
                "protocol_type": desc["protocol_type"], "protocol": desc["protocol_data"]}
    if client == "aiokafka":
        from aiokafka import AIOKafkaConsumer, TopicPartition as ATP
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

        async def run() -> dict[str, Any]:
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, client_id=client_id,
                                        session_timeout_ms=3000, heartbeat_interval_ms=500)
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            await consumer.start()
            try:
                while not consumer.assignment() and time.monotonic() < deadline:
                    await consumer.getmany(timeout_ms=100)
                assert {tp.partition for tp in consumer.assignment()} == {0, 1}
                await consumer.commit({ATP(topic, 0): 0})
                listed = dict(await admin.list_consumer_groups())
                (resp,) = await admin.describe_consumer_groups([group])
            finally:
                await consumer.stop()
                await admin.close()
            (g,) = resp.groups
            error_code, group_id, state, protocol_type, protocol, raw_members = g[:6]
            assert (error_code, group_id) == (0, group)
            members = []
            for member_id, member_client_id, _host, _metadata, assignment in raw_members:
                tps = ({(tp.topic, tp.partition) for tp in ConsumerProtocolMemberAssignment.decode(assignment).partitions()}
                       if assignment else set())
                members.append((member_id, member_client_id, tps))
            return {"listed": listed.get(group), "state": state, "protocol_type": protocol_type,
                    "protocol": protocol, "members": members}

        return asyncio.run(run())
    from confluent_kafka import Consumer, TopicPartition as CTP
    from confluent_kafka.admin import AdminClient

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": client_id,
                         "session.timeout.ms": 3000, "heartbeat.interval.ms": 500,
                         "enable.auto.commit": False})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        consumer.subscribe([topic])
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.1)
        assert {tp.partition for tp in consumer.assignment()} == {0, 1}
        consumer.commit(offsets=[CTP(topic, 0, 0)], asynchronous=False)
        listed = {g.group_id: g for g in admin.list_consumer_groups().result(TIMEOUT).valid}
        desc = admin.describe_consumer_groups([group])[group].result(TIMEOUT)
    finally:
        consumer.close()
    assert desc.group_id == group and not desc.is_simple_consumer_group
    members = [(m.member_id, m.client_id, {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions})
               for m in desc.members]
    # librdkafka shows neither protocol type in listings nor in descriptions: a simple (not
    # "consumer") group would say is_simple_consumer_group.
    return {"listed": "consumer" if group in listed and not listed[group].is_simple_consumer_group else None,
            "state": desc.state.name.capitalize(), "protocol_type": "consumer",
            "protocol": desc.partition_assignor, "members": members}


# Each client's default assignor, which a one-member group chooses.
DEFAULT_ASSIGNOR = {"kafka-python": "range", "aiokafka": "roundrobin", "confluent": "range"}


@pytest.mark.parametrize("client", CLIENTS)
def test_list_and_describe_groups(kafka_server: KafkaServer, client: str) -> None:
    """A live one-member group is listed and described: state, protocol, member, assignment."""
    if client == "kafka-python" and kafka_server.target == "tansu":
        pytest.skip("tansu 0.6 answers DescribeGroups with authorized_operations=15, which "
                    "kafka-python 3.0 rejects (ValueError: 15 is not a valid ACLOperation)")
    topic = unique(f"desc-{client}")
    group = unique(f"desc-group-{client}")
    create_topic(client, kafka_server.bootstrap, topic, partitions=2)
    client_id = f"describer-{client}"
    desc = describe_live_group(client, kafka_server.bootstrap, topic, group, client_id)
    assert desc["listed"] == "consumer", desc
    assert (desc["state"], desc["protocol_type"]) == ("Stable", "consumer"), desc
    if kafka_server.target == "tansu":
        pytest.skip("tansu 0.6 DescribeGroups leaves protocol, client_id and assignment empty "
                    "(and librdkafka misreads its members)")
    assert len(desc["members"]) == 1, desc
    (member_id, member_client_id, assigned), = desc["members"]
    assert desc["protocol"] == DEFAULT_ASSIGNOR[client], desc
    assert assigned == {(topic, 0), (topic, 1)}, desc
    assert member_client_id == client_id, desc  # from the JoinGroup request's header
    assert member_id.startswith(client_id + "-"), desc  # Kafka's member ids: client id + "-" + UUID


def list_and_delete(client: str, bootstrap: str, topic: str) -> tuple[set[str], set[str]]:
    """All topic names (Metadata for every topic), then delete ``topic`` and list again."""
    if client == "kafka-python":
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            before = set(admin.list_topics())
            admin.delete_topics([topic])
            return before, set(admin.list_topics())
        finally:
            admin.close()
    if client == "aiokafka":
        from aiokafka.admin import AIOKafkaAdminClient

        async def run() -> tuple[set[str], set[str]]:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                before = set(await admin.list_topics())
                resp = await admin.delete_topics([topic])
                assert [e[1] for e in resp.topic_error_codes] == [0], resp
                return before, set(await admin.list_topics())
            finally:
                await admin.close()

        return asyncio.run(run())
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    before = set(admin.list_topics(timeout=TIMEOUT).topics)
    assert admin.delete_topics([topic])[topic].result(TIMEOUT) is None
    return before, set(admin.list_topics(timeout=TIMEOUT).topics)


@pytest.mark.parametrize("client", CLIENTS)
def test_list_all_topics_and_delete(kafka_server: KafkaServer, client: str) -> None:
    """Metadata for all topics lists a created topic; DeleteTopics removes it."""
    topic = unique(f"deleted-{client}")
    create_topic(client, kafka_server.bootstrap, topic, partitions=2)
    before, after = list_and_delete(client, kafka_server.bootstrap, topic)
    assert topic in before
    assert topic not in after


def describe_after_leaving(client: str, bootstrap: str, topic: str, group: str) -> tuple[str, str]:
    """Run a one-member group until it has its assignment, close the member (it leaves), and
    describe the group until it is Empty: returns (state, protocol type) as the client shows
    them (librdkafka shows "consumer" as not is_simple_consumer_group)."""
    deadline = time.monotonic() + TIMEOUT
    if client == "kafka-python":
        from kafka import KafkaAdminClient, KafkaConsumer

        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                 session_timeout_ms=30000)
        try:
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(1000)
            assert consumer.assignment()
        finally:
            consumer.close()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            while True:
                desc = admin.describe_groups([group])[group]
                if desc["group_state"] == "Empty" or time.monotonic() > deadline:
                    return desc["group_state"], desc["protocol_type"]
        finally:
            admin.close()
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "session.timeout.ms": 30000})
    try:
        consumer.subscribe([topic])
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.1)
        assert consumer.assignment()
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    while True:
        d = admin.describe_consumer_groups([group])[group].result(TIMEOUT)
        state = d.state.name.capitalize()
        if state == "Empty" or time.monotonic() > deadline:
            return state, "" if d.is_simple_consumer_group else "consumer"


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_an_empty_group_is_still_a_consumer_group(kafka_server: KafkaServer, client: str) -> None:
    """After its last member leaves, a group keeps its protocol type, as in Kafka (it used to
    become "", which librdkafka reports as a simple consumer group)."""
    if client == "kafka-python" and kafka_server.target == "tansu":
        pytest.skip("tansu 0.6 answers DescribeGroups with authorized_operations=15, which "
                    "kafka-python 3.0 rejects (ValueError: 15 is not a valid ACLOperation)")
    topic = unique(f"emptied-{client}")
    create_topic(client, kafka_server.bootstrap, topic, partitions=1)
    got = describe_after_leaving(client, kafka_server.bootstrap, topic, unique("emptied"))
    assert got == ("Empty", "consumer")
