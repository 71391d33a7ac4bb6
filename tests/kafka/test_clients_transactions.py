"""Transactional producers are refused at once, with the documented error, by each client.

streamrt serve has no transaction coordinator. A transactional client's first request is
FindCoordinator(TRANSACTION); the answer must be an error the client does not retry
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED), or the client retries until its own deadline and the
user sees a timeout instead of the reason. Each client here is given a long deadline, and must
fail well within it with that error.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from _clients import CLIENTS, unique
from _kafka_server import KafkaServer

DEADLINE = 30.0  # what each client is allowed; the refusal must come long before it
FAST = 10.0  # generous for a loaded machine, yet a third of the deadline

TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53


def init_transactions(client: str, bootstrap: str, transactional_id: str) -> tuple[int, str]:
    """Start a transactional producer; returns the Kafka error code it failed with and the
    error's text (raises AssertionError if it succeeds)."""
    if client == "confluent":
        from confluent_kafka import KafkaException, Producer

        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id})
        try:
            producer.init_transactions(DEADLINE)
        except KafkaException as e:
            err = e.args[0]
            assert err.fatal(), err  # librdkafka will not retry it either
            return int(err.code()), str(err)
        raise AssertionError("init_transactions succeeded")
    if client == "kafka-python":
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id,
                                 max_block_ms=int(DEADLINE * 1000))
        try:
            producer.init_transactions()
        except KafkaError as e:
            return int(e.errno), repr(e)
        finally:
            producer.close(timeout=5)
        raise AssertionError("init_transactions succeeded")

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError as AIOKafkaError

    async def run() -> tuple[int, str]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)
        try:
            await asyncio.wait_for(producer.start(), DEADLINE)
        except AIOKafkaError as e:
            return int(e.errno), repr(e)
        finally:
            await asyncio.wait_for(producer.stop(), 10)
        raise AssertionError("start() of a transactional producer succeeded")

    return asyncio.run(run())


@pytest.mark.parametrize("client", CLIENTS)
def test_a_transactional_producer_fails_fast_with_the_documented_error(
        kafka_server: KafkaServer, client: str) -> None:
    if kafka_server.target != "streamrt":
        pytest.skip("Kafka-compatible brokers support transactions; streamrt serve refuses them")
    start = time.monotonic()
    code, text = init_transactions(client, kafka_server.bootstrap, unique(f"tx-{client}"))
    elapsed = time.monotonic() - start
    assert code == TRANSACTIONAL_ID_AUTHORIZATION_FAILED, text
    assert elapsed < FAST, f"{client} took {elapsed:.1f}s to fail (retried a retriable error?)"
    if client == "confluent":  # librdkafka shows the server's message; the others drop it
        assert "does not support Kafka transactions" in text, text
