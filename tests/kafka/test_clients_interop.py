"""Interop between Kafka clients and streamrt's own APIs over one data directory.

* confluent-kafka produces through ``streamrt serve``; after the server stops, the embedded
  consumer (``streamrt.open``) reads the same records: partitions, offsets, keys, values, headers;
* the embedded producer writes; then ``streamrt serve`` starts and confluent-kafka reads them;
* ``streamrt run APP --listen`` runs a pipeline whose input kafka-python produces and whose
  output kafka-python consumes.

These need streamrt itself (the data directory, ``streamrt run``): they never run on Tansu.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

import streamrt as sr
from _clients import TIMEOUT, Rec, create_topic, produce, unique
from _kafka_server import KafkaServer

APPS = Path(__file__).parent / "_apps"


def _records(n: int) -> list[Rec]:
    return [(f"key-{i % 7}".encode(), f"value-{i}".encode() + bytes(range(i % 5)),
             [("seq", str(i).encode()), ("source", b"interop")]) for i in range(n)]


def test_confluent_produces_embedded_consumer_reads(streamrt_server: KafkaServer) -> None:
    """Records written by confluent-kafka through the server are what the embedded API reads."""
    topic = unique("interop-c2e")
    assert (streamrt_server.data_dir / "serve.addr").read_text() == streamrt_server.bootstrap + "\n"
    create_topic("confluent", streamrt_server.bootstrap, topic, 3)
    records = _records(60)
    placed = produce("confluent", streamrt_server.bootstrap, topic, records)
    assert streamrt_server.stop() == 0, streamrt_server.stderr()

    async def read() -> list[sr.Message]:
        got: list[sr.Message] = []
        async with sr.open(streamrt_server.data_dir) as broker:
            async with broker.consumer(topic, group="interop", auto_offset_reset="earliest",
                                       value_serde="bytes") as consumer:
                with trio.move_on_after(TIMEOUT):
                    while len(got) < len(records):
                        got += await consumer.getmany(timeout=0.5)
        return got

    got = trio.run(read)
    expected = {(p, o): rec for (p, o), rec in zip(placed, records)}
    assert {(m.partition, m.offset): (m.key, m.value, list(m.headers)) for m in got} == expected
    assert len(got) == len(records)
    # Per partition in offset order (and so in produce order).
    for p in {m.partition for m in got}:
        offsets = [m.offset for m in got if m.partition == p]
        assert offsets == sorted(offsets)


def test_embedded_produces_confluent_reads(streamrt_server: KafkaServer) -> None:
    """Records written by the embedded producer are served to confluent-kafka unchanged."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = unique("interop-e2c")
    records = _records(45)
    assert streamrt_server.stop() == 0, streamrt_server.stderr()

    async def write() -> list[tuple[int, int]]:
        async with sr.open(streamrt_server.data_dir) as broker:
            await broker.create_topic(topic, partitions=3)
            producer = broker.producer(value_serde="bytes")
            deliveries = [producer.send_soon(topic, v, key=k, headers=h) for k, v, h in records]
            await producer.flush()
            metas = [await d for d in deliveries]
        return [(m.partition, m.offset) for m in metas]

    placed = trio.run(write)
    streamrt_server.start()

    consumer = Consumer({"bootstrap.servers": streamrt_server.bootstrap, "group.id": unique("unused"),
                         "enable.auto.commit": False})
    got: dict[tuple[int, int], Rec] = {}
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
        deadline = time.monotonic() + TIMEOUT
        while len(got) < len(records) and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=100, timeout=0.2):
                assert m.error() is None, m.error()
                got[(m.partition(), m.offset())] = (m.key(), m.value(), list(m.headers() or []))
    finally:
        consumer.close()
    assert got == dict(zip(placed, records))


@pytest.mark.parametrize("producer", ["confluent", "kafka-python"])
def test_run_app_listen_pipeline(streamrt_run: Callable[[Path], KafkaServer], producer: str) -> None:
    """``streamrt run APP --listen``: a Kafka client feeds the pipeline's input (records
    produced by confluent-kafka, or kafka-python), kafka-python reads its output."""
    from kafka import KafkaConsumer, TopicPartition

    server = streamrt_run(APPS / "double_app.py")
    n = 200
    values: list[Rec] = [(None, json.dumps({"n": i}).encode(), []) for i in range(n)]
    produce(producer, server.bootstrap, "interop-in", values)
    consumer = KafkaConsumer(bootstrap_servers=server.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    out: list[dict[str, int]] = []
    try:
        consumer.assign([TopicPartition("interop-out", 0)])
        deadline = time.monotonic() + TIMEOUT
        while len(out) < n and time.monotonic() < deadline:
            for recs in consumer.poll(200).values():
                out += [json.loads(r.value) for r in recs]
    finally:
        consumer.close()
    assert out == [{"n": i, "doubled": 2 * i} for i in range(n)]
    assert server.stop() == 0, server.stderr()
