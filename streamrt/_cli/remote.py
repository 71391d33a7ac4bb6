"""``--broker HOST:PORT``: the CLI's commands over the Kafka protocol, against a running server.

One data directory has one owning process (``streamrt serve``, say); other processes reach it
over the network. Each command module keeps its local code path and, when ``--broker`` (or
``$STREAMRT_BROKER``) is given, hands over to a function here (or in ``remote_consume``,
``remote_groups``, ``remote_dlq``), which does the same work with aiokafka under
``asyncio.run`` and prints the same output.

Kafka clients retry forever by default; here every connection attempt is bounded
(:data:`CONNECT_TIMEOUT`), so an unreachable broker is one line and exit 1 within seconds.
Kafka errors become the typed streamrt errors the local mode raises (UnknownTopic, ...) where
one matches, else a one-line :class:`CliError` naming the broker.

Topic metadata is always read for all topics at once: a Metadata request naming an unknown
topic makes a server with auto-creation (streamrt serve's default, Kafka's too) create it,
and a mistyped name must not leave a topic behind.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code

from ..errors import UnknownPartition, UnknownTopic
from ._common import BROKER_ENV, CliError, broker_of

log = logging.getLogger("streamrt.cli")

#: Seconds to connect to the broker before giving up (aiokafka would retry for ever).
CONNECT_TIMEOUT = 5.0
#: Seconds a consumer of a group may take to start and be handed its partitions.
JOIN_TIMEOUT = 30.0
#: Milliseconds a request may take once connected.
REQUEST_TIMEOUT_MS = 15_000


def _bootstrap(text: str) -> str:
    from .serve import parse_address

    try:
        host, port = parse_address(text)
    except argparse.ArgumentTypeError as e:
        raise CliError(f"--broker / ${BROKER_ENV}: {e}") from None
    if port == 0:
        raise CliError(f"--broker {text}: port 0 is no broker's port")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Remote:
    """One command's connection to the broker: an admin client, plus clients made on demand
    (all closed together when the command ends)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.admin = AIOKafkaAdminClient(bootstrap_servers=address, **self._timeouts())
        self._clients: list[Any] = []
        self._offsets: AIOKafkaConsumer | None = None

    @staticmethod
    def _timeouts() -> dict[str, Any]:
        return {"request_timeout_ms": REQUEST_TIMEOUT_MS, "retry_backoff_ms": 100,
                "client_id": "streamrt-cli"}

    async def connect(self, client: Any, timeout: float = CONNECT_TIMEOUT) -> Any:
        """Start ``client`` within ``timeout`` seconds; remember it for :meth:`close`.

        A consumer of a group also finds its coordinator while starting, which can take
        longer than a connection (a broker may still be loading the group): give it more.
        """
        self._clients.append(client)
        try:
            await asyncio.wait_for(client.start(), timeout)
        except (KafkaConnectionError, OSError) as e:
            raise self.unreachable(e) from None
        except TimeoutError:
            if timeout != CONNECT_TIMEOUT:
                raise CliError(f"the broker at {self.address} did not let a client start "
                               f"within {timeout:g} s") from None
            raise self.unreachable(TimeoutError()) from None
        return client

    def unreachable(self, e: BaseException) -> CliError:
        if isinstance(e, TimeoutError):
            why = f"no answer within {CONNECT_TIMEOUT:g} s"
        else:
            # aiokafka only says "Unable to bootstrap"; one plain connect tells the reason.
            why = _connect_error(self.address) or str(e) or type(e).__name__
        return CliError(f"cannot reach a broker at {self.address} ({why})")

    async def close(self) -> None:
        for client in reversed(self._clients):
            stop = getattr(client, "stop", None) or client.close
            try:
                await asyncio.wait_for(stop(), CONNECT_TIMEOUT)
            except (KafkaError, OSError, TimeoutError) as e:
                log.debug("closing %r: %s", client, e)

    def consumer(self, group: str | None = None, **kw: Any) -> AIOKafkaConsumer:
        """A consumer that never commits on its own and starts at the log start."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.address, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", **self._timeouts(), **kw)

    async def producer(self) -> AIOKafkaProducer:
        """A started producer that waits for the broker's durable acknowledgement."""
        return await self.connect(AIOKafkaProducer(
            bootstrap_servers=self.address, acks="all", linger_ms=5,
            max_request_size=16 << 20, **self._timeouts()))

    # ---- metadata and offsets

    async def topics(self) -> dict[str, int]:
        """Every topic and its partition count (one Metadata request for all topics)."""
        out = {}
        for t in await self.admin.describe_topics(None):
            if t.get("is_internal") or t["topic"].startswith("__"):
                continue
            out[t["topic"]] = len(t["partitions"])
        return out

    async def partitions(self, topic: str, partition: int | None = None) -> list[int]:
        """``topic``'s partitions (only ``partition`` if given); UnknownTopic/Partition else."""
        n = (await self.topics()).get(topic)
        if n is None:
            raise UnknownTopic(topic)
        if partition is None:
            return list(range(n))
        if partition >= n:
            raise UnknownPartition(topic, partition, n)
        return [partition]

    async def _offsets_client(self) -> AIOKafkaConsumer:
        if self._offsets is None:
            self._offsets = await self.connect(self.consumer())
        return self._offsets

    async def log_range(self, topic: str, parts: Sequence[int]) -> dict[int, tuple[int, int]]:
        """``{partition: (log start, high watermark)}``."""
        c = await self._offsets_client()
        tps = [TopicPartition(topic, p) for p in parts]
        starts = await c.beginning_offsets(tps)
        ends = await c.end_offsets(tps)
        return {tp.partition: (starts[tp], ends[tp]) for tp in tps}

    async def offset_for_time(self, topic: str, partition: int, ms: int) -> int | None:
        """The first offset with a timestamp at or after ``ms`` (None: no such record)."""
        c = await self._offsets_client()
        tp = TopicPartition(topic, partition)
        found = (await c.offsets_for_times({tp: ms})).get(tp)
        return None if found is None else int(found.offset)


def run(args: argparse.Namespace, main: Callable[[Remote], Awaitable[int]]) -> int:
    """Run ``main`` against the broker of ``args`` and return its exit code."""
    address = _bootstrap(broker_of(args) or "")
    if not args.debug:
        # aiokafka logs each failed connection attempt; the one-line error says it all.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def session() -> int:
        remote = Remote(address)
        try:
            await remote.connect(remote.admin)
            return await main(remote)
        except KafkaConnectionError as e:
            raise remote.unreachable(e) from None
        except KafkaError as e:
            raise CliError(f"broker at {address}: {_kafka_message(e)}") from None
        finally:
            await remote.close()

    return asyncio.run(session())


def _connect_error(address: str) -> str | None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return None
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__


def _kafka_message(e: KafkaError) -> str:
    text = str(e)
    name = type(e).__name__
    return f"{name}: {text}" if text and text != name else name


def check(code: int, what: str, message: str | None = None) -> None:
    """Raise the Kafka error ``code`` of a response (0: nothing)."""
    if code:
        err = for_code(code)
        raise CliError(f"{what}: {err.__name__}" + (f" ({message})" if message else ""))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The CLI's tables: first column left-aligned, the numbers right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]
        out.append("  ".join(cells).rstrip())
    return out
