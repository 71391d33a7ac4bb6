"""Per-client helpers of the Kafka client tests: create topics, produce, read back.

Each helper takes the client's name ("kafka-python", "aiokafka" or "confluent") and does the
same thing through that client's own API, so a test can be parametrized over the three.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from typing import Any

CLIENTS = ["kafka-python", "aiokafka", "confluent"]
TIMEOUT = 20.0  # seconds any single wait may take before the test fails

# One record as the tests compare them: (key, value, headers), headers as a list of pairs.
Rec = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def unique(prefix: str) -> str:
    """A topic or group name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- per-client helpers -------------------------------------------------------------------


def create_topic(client: str, bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` through the client's own admin API."""
    if client == "kafka-python":
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            result = admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}})
            assert [t["error_code"] for t in result["topics"]] == [0], result
        finally:
            admin.close()
    elif client == "aiokafka":
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        async def run() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                resp = await admin.create_topics([NewTopic(topic, partitions, 1)])
                assert [e[1] for e in resp.topic_errors] == [0], resp
            finally:
                await admin.close()

        asyncio.run(run())
    else:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        assert futures[topic].result(TIMEOUT) is None


def produce(client: str, bootstrap: str, topic: str, records: list[Rec],
            timestamps: list[int] | None = None) -> list[tuple[int, int]]:
    """Produce with acks=all; returns each record's (partition, offset) from the client."""
    ts = timestamps or [None] * len(records)
    if client == "kafka-python":
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        try:
            futures = [producer.send(topic, key=k, value=v, headers=h, timestamp_ms=t)
                       for (k, v, h), t in zip(records, ts)]
            producer.flush(TIMEOUT)
            metas = [f.get(TIMEOUT) for f in futures]
        finally:
            producer.close()
        return [(m.partition, m.offset) for m in metas]
    if client == "aiokafka":
        from aiokafka import AIOKafkaProducer

        async def run() -> list[tuple[int, int]]:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
            await producer.start()
            try:
                futures = [await producer.send(topic, key=k, value=v, headers=h, timestamp_ms=t)
                           for (k, v, h), t in zip(records, ts)]
                metas = await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
            finally:
                await producer.stop()
            return [(m.partition, m.offset) for m in metas]

        return asyncio.run(run())
    from confluent_kafka import Producer

    # murmur2 keeps keyed records where Java (and streamrt's embedded producer) put them.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "partitioner": "murmur2_random"})
    results: list[Any] = [None] * len(records)

    def delivered(i: int) -> Any:
        def cb(err: Any, msg: Any) -> None:
            results[i] = err or (msg.partition(), msg.offset())
        return cb

    for i, ((k, v, h), t) in enumerate(zip(records, ts)):
        kw: dict[str, Any] = {"timestamp": t} if t is not None else {}
        producer.produce(topic, key=k, value=v, headers=h, on_delivery=delivered(i), **kw)
    assert producer.flush(TIMEOUT) == 0, "confluent producer did not deliver everything in time"
    bad = [r for r in results if not isinstance(r, tuple)]
    assert not bad, bad
    return results


def consume_from_beginning(client: str, bootstrap: str, topic: str, partitions: int,
                           expected: int) -> dict[int, list[tuple[int, Rec, int]]]:
    """Assign every partition from the beginning and read ``expected`` records.

    Returns ``{partition: [(offset, (key, value, headers), timestamp), ...]}`` in fetch order.
    """
    got: dict[int, list[tuple[int, Rec, int]]] = defaultdict(list)
    deadline = time.monotonic() + TIMEOUT
    if client == "kafka-python":
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            while sum(map(len, got.values())) < expected and time.monotonic() < deadline:
                for tp, recs in consumer.poll(200).items():
                    got[tp.partition] += [(r.offset, (r.key, r.value, list(r.headers)), r.timestamp)
                                          for r in recs]
        finally:
            consumer.close()
    elif client == "aiokafka":
        from aiokafka import AIOKafkaConsumer, TopicPartition as ATP

        async def run() -> None:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                        auto_offset_reset="earliest")
            await consumer.start()
            try:
                consumer.assign([ATP(topic, p) for p in range(partitions)])
                while sum(map(len, got.values())) < expected and time.monotonic() < deadline:
                    for tp, recs in (await consumer.getmany(timeout_ms=200)).items():
                        got[tp.partition] += [(r.offset, (r.key, r.value, list(r.headers)), r.timestamp)
                                              for r in recs]
            finally:
                await consumer.stop()

        asyncio.run(run())
    else:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition as CTP

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("unused"),
                             "enable.auto.commit": False})
        try:
            consumer.assign([CTP(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
            while sum(map(len, got.values())) < expected and time.monotonic() < deadline:
                for m in consumer.consume(num_messages=1000, timeout=0.2):
                    assert m.error() is None, m.error()
                    got[m.partition()].append((m.offset(), (m.key(), m.value(), list(m.headers() or [])),
                                               m.timestamp()[1]))
        finally:
            consumer.close()
    return dict(got)
