"""The Kafka-protocol TCP server: connections, framing, ordering and limits.

Each connection runs a reader (frames in, requests dispatched) and a writer (responses out,
strictly in request order, as Kafka requires). Requests are handled concurrently (a JoinGroup
or a long-polling Fetch does not hold up a Heartbeat behind it), up to ``max_in_flight`` per
connection; Produce requests are submitted to the partitions by the reader itself, in arrival
order, and the writer awaits each one's durability in its turn (no task per request: it could
not answer any earlier), while the reader goes on submitting. Every limit is checked before
bytes are buffered: a size prefix beyond the frame limit closes that one connection. A
malformed request closes its connection too (Kafka does the same); the server and its other
connections go on.

With the ``streamrt.kafka.requests`` logger at DEBUG (``streamrt serve --debug``) every request
and its answer are logged: API, version, correlation id, client id, the answer's error codes
and the time taken. A connection decides once, when it opens, by installing traced versions
of its dispatch methods; with DEBUG off the request path runs no logging code at all.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from ..errors import ProtocolError, UnsupportedVersion
from . import _codec, _fetch, _produce
from ._handlers import Caller, Handlers, ServerConfig
from ._messages import ApiKey, ErrorCode

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger(__name__)
#: One DEBUG line per request and per answer (see the module doc).
request_log = logging.getLogger("streamrt.kafka.requests")

_API_VERSIONS = 18
_PRODUCE = 0

# The data-carrying APIs go through the hand-written codecs.
_codec.FAST_DECODERS.setdefault(0, _produce.decode_produce_request)
_codec.FAST_DECODERS.setdefault(1, _fetch.decode_fetch_request)
_codec.FAST_ENCODERS.setdefault(0, _produce.encode_produce_response)
_codec.FAST_ENCODERS.setdefault(1, _fetch.encode_fetch_response)

Handler = Callable[[int, Mapping[str, Any], Caller], Awaitable[dict[str, Any]]]


class KafkaServer:
    """Serves one Broker over the Kafka wire protocol; see the module doc."""

    def __init__(self, broker: Broker, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.handlers = Handlers(broker, self.config)
        h = self.handlers
        self._routes: dict[int, Handler] = {
            1: h.fetch, 2: h.list_offsets, 3: h.metadata, 8: h.offset_commit,
            9: h.offset_fetch, 10: h.find_coordinator, 11: h.join_group, 12: h.heartbeat,
            13: h.leave_group, 14: h.sync_group, 15: h.describe_groups, 16: h.list_groups,
            18: self._api_versions, 19: h.create_topics, 20: h.delete_topics,
            22: h.init_producer_id, 23: h.offset_for_leader_epoch, 32: h.describe_configs,
            42: h.delete_groups,
        }
        self._connections = 0
        self.address: tuple[str, int] | None = None

    async def serve(
        self, *, task_status: TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and serve until cancelled; ``task_status.started`` gets the bound address
        (the real port when ``port`` was 0)."""
        cfg = self.config
        listener = await anyio.create_tcp_listener(local_host=cfg.host, local_port=cfg.port,
                                                   reuse_port=False)
        sock = listener.listeners[0]
        host, port = sock.extra(SocketAttribute.local_address)[:2]
        self.address = (str(host), int(port))
        if cfg.advertised_port is None and cfg.port == 0:
            cfg.port = int(port)
        log.info("serving the Kafka protocol on %s:%d (advertised as %s:%d)", host, port,
                 *cfg.advertised)
        task_status.started(self.address)
        async with listener:
            await listener.serve(self._accept)

    async def _accept(self, stream: SocketStream) -> None:
        if self._connections >= self.config.max_connections:
            log.warning("refused a connection: %d open (max_connections)", self._connections)
            await stream.aclose()
            return
        self._connections += 1
        try:
            await _Connection(self, stream).run()
        except Exception:  # never let one connection take the server down
            log.exception("connection failed")
        finally:
            self._connections -= 1
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _api_versions(self, version: int, body: Mapping[str, Any],
                            caller: Caller) -> dict[str, Any]:
        return {"error_code": 0, "throttle_time_ms": 0, "api_keys": [
            {"api_key": k, "min_version": lo, "max_version": hi}
            for k, (lo, hi) in sorted(_codec.SUPPORTED.items())]}


class _Slot:
    """One request's place in the connection's response order: either a response being
    built by a task (``done`` is set once ``data`` is there), or a Produce whose ``finish``
    the writer awaits itself (it could not send the response any earlier)."""

    __slots__ = ("done", "data", "finish", "header", "silent")

    def __init__(self, finish: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                 header: Any = None, silent: bool = False) -> None:
        self.done = anyio.Event() if finish is None else None
        self.data: list[bytes] | None = None  # None: no response (Produce with acks=0)
        self.finish = finish
        self.header = header
        self.silent = silent

    def set(self, data: list[bytes] | None) -> None:
        self.data = data
        assert self.done is not None
        self.done.set()


class _Connection:
    def __init__(self, server: KafkaServer, stream: SocketStream) -> None:
        self.server = server
        self.cfg = server.config
        self.stream = stream
        try:
            self.host = str(stream.extra(SocketAttribute.remote_address)[0])
            self.peer = "%s:%s" % stream.extra(SocketAttribute.remote_address)[:2]
        except Exception:  # noqa: BLE001 - a peer name is only for logs and DescribeGroups
            self.host = self.peer = "?"
        self.outbound = 0
        self.room = anyio.Event()  # set when outbound drops below the limit
        self._callers: dict[str, Caller] = {}
        if request_log.isEnabledFor(logging.DEBUG):
            # Instance attributes shadow the methods: only this connection pays for tracing.
            self._dispatch = self._dispatch_traced  # type: ignore[method-assign]
            self._handle = self._handle_traced  # type: ignore[method-assign]

    async def run(self) -> None:
        send, recv = anyio.create_memory_object_stream[_Slot](self.cfg.max_in_flight)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._writer, recv, tg.cancel_scope)
                async with send:
                    await self._reader(send, tg)
                tg.cancel_scope.cancel()  # the peer closed: nobody reads what is pending
        except* ProtocolError as eg:
            log.info("closing connection from %s: %s", self.peer, eg.exceptions[0])
        except* TimeoutError:
            log.info("closing connection from %s: idle or stalled", self.peer)
        except* (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream,
                 ConnectionError):
            pass

    async def _reader(self, send: Any, tg: Any) -> None:
        decoder = _codec.FrameDecoder(self.cfg.max_frame_bytes, self.cfg.first_frame_bytes)
        valid = False
        receive = self.stream.receive
        # One scope whose deadline moves (cheaper than a new fail_after per receive); it only
        # runs while waiting for bytes, not while a request is dispatched.
        with anyio.CancelScope() as deadline:
            while True:
                timeout = (self.cfg.stall_timeout if decoder_partial(decoder)
                           else self.cfg.idle_timeout)
                deadline.deadline = anyio.current_time() + timeout
                try:
                    data = await receive(1 << 20)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                deadline.deadline = math.inf
                for frame in decoder.feed(data):
                    while self.outbound > self.cfg.max_outbound_bytes:
                        self.room = anyio.Event()
                        await self.room.wait()
                    header, offset = _codec.read_request_header(frame)
                    await send.send(await self._dispatch(header, frame, offset, tg))
                    if not valid:
                        valid = True
                        decoder.mark_valid()
        if deadline.cancelled_caught:
            raise TimeoutError

    async def _dispatch(self, header: Any, frame: Any, offset: int, tg: Any) -> _Slot:
        """Start one request; its slot goes into the response order."""
        key, version = header.api_key, header.api_version
        try:
            body = _codec.decode_request(header, frame, offset)
        except UnsupportedVersion as e:
            if key == _API_VERSIONS:
                slot = _Slot()
                self._complete(slot, [_codec.api_versions_error_response(header)])
                return slot
            raise ProtocolError(f"{e} (api key {key} v{version})") from None
        if key == _PRODUCE:
            # Submitted here, in arrival order; the writer awaits durability in its turn.
            finish = await self.server.handlers.produce_submit(version, body, self._caller(header))
            return _Slot(finish, header, body.get("acks", -1) == 0)
        handler = self.server._routes.get(key)
        if handler is None:
            raise ProtocolError(f"api key {key} is not supported")
        slot = _Slot()
        tg.start_soon(self._handle, header, handler, body, slot)
        return slot

    def _caller(self, header: Any) -> Caller:
        client_id = header.client_id or ""
        caller = self._callers.get(client_id)
        if caller is None:
            caller = self._callers[client_id] = Caller(client_id, self.host)
        return caller

    async def _handle(self, header: Any, handler: Handler, body: Mapping[str, Any],
                      slot: _Slot) -> None:
        try:
            resp = await handler(header.api_version, body, self._caller(header))
        except Exception as e:  # a bug or an unexpected state: this connection only
            log.exception("api key %d v%d failed", header.api_key, header.api_version)
            raise ProtocolError(f"request failed: {e!r}") from e
        self._complete(slot, _codec.encode_response_parts(header, resp))

    # -------------------------------------------------------- tracing (DEBUG only)

    def _who(self, header: Any) -> str:
        return (f"{self.peer} {header.client_id!r}: {_api_name(header.api_key)} "
                f"v{header.api_version} #{header.correlation_id}")

    async def _dispatch_traced(self, header: Any, frame: Any, offset: int, tg: Any) -> _Slot:
        """:meth:`_dispatch`, logging the request, and the answer of a Produce (other
        requests' answers are logged by :meth:`_handle_traced`)."""
        request_log.debug("%s: request (%d bytes)", self._who(header), len(frame))
        start = time.perf_counter()
        slot = await _Connection._dispatch(self, header, frame, offset, tg)
        if slot.finish is not None:
            finish, silent = slot.finish, slot.silent

            async def traced_finish() -> dict[str, Any]:
                resp = await finish()
                _log_answer(self._who(header), resp, start,
                            "no answer (acks=0)" if silent else "answer")
                return resp

            slot.finish = traced_finish
        elif slot.done is not None and slot.done.is_set():  # answered at once (ApiVersions)
            request_log.debug("%s: error answer (unsupported version) in %.1f ms",
                              self._who(header), (time.perf_counter() - start) * 1000)
        return slot

    async def _handle_traced(self, header: Any, handler: Handler, body: Mapping[str, Any],
                             slot: _Slot) -> None:
        """:meth:`_handle`, logging the answer with its error codes and the time taken."""
        start = time.perf_counter()
        try:
            resp = await handler(header.api_version, body, self._caller(header))
        except Exception as e:
            log.exception("api key %d v%d failed", header.api_key, header.api_version)
            raise ProtocolError(f"request failed: {e!r}") from e
        _log_answer(self._who(header), resp, start, "answer")
        self._complete(slot, _codec.encode_response_parts(header, resp))

    def _complete(self, slot: _Slot, data: list[bytes] | None) -> None:
        if data is not None:
            self.outbound += sum(map(len, data))
        slot.set(data)

    async def _writer(self, recv: Any, scope: anyio.CancelScope) -> None:
        stall = self.cfg.stall_timeout if self.cfg.stall_timeout > 0 else math.inf
        send = self.stream.send
        try:
            async with recv:
                # One scope whose deadline moves: it only runs while a response is sent.
                with anyio.CancelScope() as deadline:
                    async for slot in recv:
                        if slot.finish is not None:
                            resp = await slot.finish()
                            if slot.silent:
                                continue
                            data = [_codec.encode_response(slot.header, resp)]
                            counted = False
                        else:
                            assert slot.done is not None
                            await slot.done.wait()
                            if slot.data is None:
                                continue
                            data, counted = slot.data, True
                        size = 0
                        deadline.deadline = anyio.current_time() + stall
                        for chunk in _coalesce(data):
                            await send(chunk)
                            size += len(chunk)
                        deadline.deadline = math.inf
                        if counted:
                            self.outbound -= size
                            if self.outbound <= self.cfg.max_outbound_bytes:
                                self.room.set()
                if deadline.cancelled_caught:
                    raise TimeoutError
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError):
            scope.cancel()  # the peer is gone or not reading: drop the connection


def _coalesce(chunks: list[bytes], small: int = 64 << 10) -> list[bytes]:
    """Runs of small chunks joined (one send each), large ones passed as they are (no copy)."""
    if len(chunks) == 1:
        return chunks
    out: list[bytes] = []
    run: list[bytes] = []
    for c in chunks:
        if len(c) >= small:
            if run:
                out.append(b"".join(run))
                run = []
            out.append(c)
        else:
            run.append(c)
    if run:
        out.append(b"".join(run))
    return out


def _api_name(key: int) -> str:
    """Kafka's name of an API (``ApiVersions``)."""
    try:
        return "".join(word.capitalize() for word in ApiKey(key).name.split("_"))
    except ValueError:
        return f"api key {key}"


def _log_answer(who: str, resp: Mapping[str, Any], start: float, what: str) -> None:
    errors = sorted(_error_codes(resp, set()))
    names = ", ".join(ErrorCode(c).name if c in ErrorCode._value2member_map_ else str(c)
                      for c in errors)
    request_log.debug("%s: %s %s in %.1f ms", who, what, f"with {names}" if names else "ok",
                      (time.perf_counter() - start) * 1000)


def _error_codes(value: Any, found: set[int]) -> set[int]:
    """Every non-zero ``error_code`` in a response body (top level and per topic, partition,
    group or member)."""
    if isinstance(value, Mapping):
        code = value.get("error_code")
        if code:
            found.add(code)
        for v in value.values():
            if isinstance(v, (list, Mapping)):
                _error_codes(v, found)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, (list, Mapping)):
                _error_codes(v, found)
    return found


def decoder_partial(decoder: Any) -> bool:
    """Whether the frame decoder holds part of a frame (then the stall deadline applies)."""
    return bool(getattr(decoder, "pending", 0))


__all__ = ["KafkaServer", "ServerConfig"]
