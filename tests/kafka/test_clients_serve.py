"""``streamrt serve`` as a process: its announcement, address file, advertised address, stop.

The contract the other tests lean on: one ``streamrt serve: listening on HOST:PORT`` line on
stdout, ``DIR/serve.addr`` while running, the data directory owned by the server (the embedded
API cannot open it meanwhile), ``--advertise`` in Metadata, and exit code 0 on SIGINT as on
SIGTERM.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
import trio

import streamrt as sr
from streamrt.errors import DataDirLocked
from _clients import TIMEOUT, unique
from _kafka_server import LISTENING_PREFIX, STOP_TIMEOUT, KafkaServer


def test_announce_addr_file_lock_and_sigint(streamrt_server: KafkaServer) -> None:
    server = streamrt_server
    assert server.stdout is not None and server.proc is not None
    assert server.stdout.seen == [f"{LISTENING_PREFIX}{server.bootstrap}"]
    assert (server.data_dir / "serve.addr").read_text() == f"{server.bootstrap}\n"

    async def open_while_served() -> None:
        async with sr.open(server.data_dir):
            pass

    with pytest.raises(DataDirLocked, match=str(server.proc.pid)):
        trio.run(open_while_served)

    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(STOP_TIMEOUT) == 0, server.stderr()
    # Nothing more on stdout: the one line was the whole announcement.
    rest = []
    while (line := server.stdout.lines.get(timeout=TIMEOUT)) is not None:
        rest.append(line)
    assert [line for line in rest if line] == []


def test_metadata_advertises_the_advertised_address(server_factory: Callable[..., KafkaServer]) -> None:
    from confluent_kafka.admin import AdminClient

    advertised = ("127.0.0.1", 1)  # nothing listens there: the address is only reported
    server = server_factory(advertise=f"{advertised[0]}:{advertised[1]}")
    topic = unique("advertised")
    md = AdminClient({"bootstrap.servers": server.bootstrap}).list_topics(topic=topic, timeout=TIMEOUT)
    assert [(b.host, b.port) for b in md.brokers.values()] == [advertised]


def _traffic(bootstrap: str, client_id: str) -> None:
    """Produce a few records and delete a topic that does not exist."""
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient

    topic = unique("traced")
    producer = Producer({"bootstrap.servers": bootstrap, "client.id": client_id})
    for i in range(3):
        producer.produce(topic, value=b"%d" % i)
    assert producer.flush(TIMEOUT) == 0
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": client_id})
    absent = unique("absent")
    with pytest.raises(KafkaException, match="UNKNOWN_TOPIC_OR_PART"):
        admin.delete_topics([absent])[absent].result(TIMEOUT)


def test_debug_logs_every_request_and_answer(server_factory: Callable[..., KafkaServer]) -> None:
    """With --debug: one line per request and one per answer, naming the API, version,
    correlation id and client id, with the answer's errors and the time taken. Without it:
    no request lines at all."""
    debug = server_factory(command=["serve", "--debug"])
    if debug.target != "streamrt":
        pytest.skip("streamrt serve's own log")
    quiet = server_factory()
    for server in (debug, quiet):
        _traffic(server.bootstrap, "tracer")
        assert server.stop() == 0, server.stderr()
    lines = [line for line in debug.stderr().splitlines() if "streamrt.kafka.requests" in line]
    text = "\n".join(lines)
    for api in ("ApiVersions", "Metadata", "Produce", "DeleteTopics"):
        assert f"'tracer': {api} v" in text, text
    produce_requests = [line for line in lines if "Produce v" in line and ": request" in line]
    assert produce_requests, text
    cid = produce_requests[0].split(" #")[1].split(":")[0]
    (answer,) = [line for line in lines if "Produce v" in line and f" #{cid}: answer" in line]
    assert " ok in " in answer and answer.endswith(" ms"), answer
    assert any("DeleteTopics v" in line and "answer with UNKNOWN_TOPIC_OR_PARTITION in" in line
               for line in lines), text
    assert "streamrt.kafka.requests" not in quiet.stderr()
