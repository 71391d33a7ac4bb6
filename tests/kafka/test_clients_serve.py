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
from conftest import LISTENING_PREFIX, STOP_TIMEOUT, KafkaServer


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
