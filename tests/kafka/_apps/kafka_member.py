"""One consumer-group member on any of the three Kafka clients, for the group tests.

Used two ways: imported by the tests, which run members in threads (:class:`Member`), and run as
a script, ``python kafka_member.py CLIENT BOOTSTRAP TOPIC GROUP``, for the member the test kills
with SIGKILL. The script prints, flushed, ``assigned P,P,...`` whenever its assignment changes
and ``consumed P:O,P:O,...`` after each batch it has committed.

Members use short group timeouts (session 3 s, heartbeat 0.5 s) so a killed member is detected
quickly; they commit synchronously after each non-empty batch and ignore commit failures caused
by a rebalance (those records are read again by the next owner: at-least-once).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable

__all__ = ["Member", "run_member"]

SESSION_TIMEOUT_MS = 3000
HEARTBEAT_MS = 500
POLL_S = 0.1
#: kafka-python 3.0 polls for longer: when a poll's timeout runs out while a JoinGroup or
#: SyncGroup is in flight (likely at 0.1 s on a loaded machine), the client can take the
#: SyncGroup answer without ever applying the assignment or heartbeating again, so the
#: coordinator drops it after the session timeout (seen in CI; the server's log showed the
#: answer sent, the client's debug log showed it received). A poll still returns as soon as
#: records arrive, so the longer timeout only delays noticing ``stop``.
KAFKA_PYTHON_POLL_MS = 1000

OnAssign = Callable[[frozenset[int]], None]
OnRecords = Callable[[list[tuple[int, int]]], None]


def run_member(client: str, bootstrap: str, topic: str, group: str, stop: threading.Event,
               on_assign: OnAssign, on_records: OnRecords, client_id: str = "member",
               instance_id: str | None = None,
               session_timeout_ms: int = SESSION_TIMEOUT_MS) -> dict[int, int | None]:
    """Consume ``topic`` in ``group`` until ``stop`` is set, then leave the group (close).

    Calls ``on_assign`` with the partitions owned after every poll that changed them and
    ``on_records`` with the (partition, offset) of each committed batch. Returns the group's
    committed offsets of the partitions the member last owned, read just before closing.
    With ``instance_id`` the member is static (``group.instance.id``): closing sends no
    LeaveGroup, as in Kafka.
    """
    args = (bootstrap, topic, group, stop, on_assign, on_records, client_id, instance_id,
            session_timeout_ms)
    if client == "aiokafka":
        return asyncio.run(_run_aiokafka(*args))
    if client == "kafka-python":
        return _run_kafka_python(*args)
    if client == "confluent":
        return _run_confluent(*args)
    raise ValueError(f"unknown client {client!r}")


def _run_kafka_python(bootstrap: str, topic: str, group: str, stop: threading.Event,
                      on_assign: OnAssign, on_records: OnRecords, client_id: str,
                      instance_id: str | None, session_timeout_ms: int) -> dict[int, int | None]:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, client_id=client_id,
                             session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=HEARTBEAT_MS,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             group_instance_id=instance_id)
    owned: frozenset[int] = frozenset()
    try:
        while not stop.is_set():
            batch = [(r.partition, r.offset) for recs in consumer.poll(KAFKA_PYTHON_POLL_MS).values()
                     for r in recs]
            now = frozenset(tp.partition for tp in consumer.assignment())
            if now != owned:
                owned = now
                on_assign(owned)
            if batch:
                try:
                    consumer.commit()
                except KafkaError:
                    continue  # a rebalance took the partitions: their next owner reads them
                on_records(batch)
        from kafka import TopicPartition

        return {p: consumer.committed(TopicPartition(topic, p)) for p in owned}
    finally:
        consumer.close()


async def _run_aiokafka(bootstrap: str, topic: str, group: str, stop: threading.Event,
                        on_assign: OnAssign, on_records: OnRecords, client_id: str,
                        instance_id: str | None, session_timeout_ms: int) -> dict[int, int | None]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, client_id=client_id,
                                session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=HEARTBEAT_MS,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_instance_id=instance_id)
    await consumer.start()
    owned: frozenset[int] = frozenset()
    try:
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=int(POLL_S * 1000))
            batch = [(r.partition, r.offset) for recs in got.values() for r in recs]
            now = frozenset(tp.partition for tp in consumer.assignment())
            if now != owned:
                owned = now
                on_assign(owned)
            if batch:
                try:
                    await consumer.commit()
                except KafkaError:
                    continue
                on_records(batch)
        from aiokafka import TopicPartition

        return {p: await consumer.committed(TopicPartition(topic, p)) for p in owned}
    finally:
        await consumer.stop()


def _run_confluent(bootstrap: str, topic: str, group: str, stop: threading.Event,
                   on_assign: OnAssign, on_records: OnRecords, client_id: str,
                   instance_id: str | None, session_timeout_ms: int) -> dict[int, int | None]:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    config = {"bootstrap.servers": bootstrap, "group.id": group, "client.id": client_id,
              "session.timeout.ms": session_timeout_ms, "heartbeat.interval.ms": HEARTBEAT_MS,
              "auto.offset.reset": "earliest", "enable.auto.commit": False}
    if instance_id is not None:
        config["group.instance.id"] = instance_id
    consumer = Consumer(config)
    consumer.subscribe([topic])
    owned: frozenset[int] = frozenset()
    try:
        while not stop.is_set():
            msgs = consumer.consume(num_messages=500, timeout=POLL_S)
            errors = [m.error() for m in msgs if m.error() is not None]
            if errors:
                raise KafkaException(errors[0])
            batch = [(m.partition(), m.offset()) for m in msgs]
            now = frozenset(tp.partition for tp in consumer.assignment())
            if now != owned:
                owned = now
                on_assign(owned)
            if batch:
                try:
                    consumer.commit(asynchronous=False)
                except KafkaException:
                    continue
                on_records(batch)
        got = consumer.committed([TopicPartition(topic, p) for p in owned], timeout=10)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in got}
    finally:
        consumer.close()


class Member:
    """A group member running on a thread; ``close()`` makes it leave the group."""

    def __init__(self, client: str, bootstrap: str, topic: str, group: str, name: str,
                 instance_id: str | None = None, session_timeout_ms: int = SESSION_TIMEOUT_MS) -> None:
        self.name = name
        self.assignment: frozenset[int] = frozenset()
        self.consumed: list[tuple[int, int]] = []
        self.committed: dict[int, int | None] | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._args = (client, bootstrap, topic, group)
        self._static = {"instance_id": instance_id, "session_timeout_ms": session_timeout_ms}
        self._thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.committed = run_member(*self._args, self._stop, self._assigned, self._records,
                                        client_id=self.name, **self._static)
        except BaseException as e:  # surfaced by the test through .error / close()
            self.error = e

    def _assigned(self, partitions: frozenset[int]) -> None:
        self.assignment = partitions

    def _records(self, batch: list[tuple[int, int]]) -> None:
        with self._lock:
            self.consumed += batch

    def close(self, timeout: float = 20.0) -> None:
        """Leave the group and wait for the thread; re-raises what the member failed with."""
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"member {self.name} did not close within {timeout}s"
        self.assignment = frozenset()
        if self.error is not None:
            raise self.error


def _main(argv: list[str]) -> int:
    client, bootstrap, topic, group = argv

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    run_member(client, bootstrap, topic, group, threading.Event(),
               lambda ps: say("assigned " + ",".join(map(str, sorted(ps)))),
               lambda batch: say("consumed " + ",".join(f"{p}:{o}" for p, o in batch)),
               client_id="killed")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

