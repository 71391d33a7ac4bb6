"""A fault-injecting TCP proxy for the Kafka client tests.

``Proxy()`` listens on 127.0.0.1 (port chosen by the kernel, known before any server starts, so
a server can advertise it) and forwards each accepted connection to ``target``, set with
``forward_to(host, port)``. Faults:

* ``cut()`` closes every open connection at once, both sides, with a TCP reset;
* ``cut_after(n)`` arms a one-shot cut that fires when ``n`` more bytes have gone from clients
  to the server (mid-request, usually: the server sees a truncated frame and the client a dead
  connection with requests in flight).

Connections accepted after a cut are forwarded normally, so clients reconnect through the proxy.
One thread accepts; each connection gets two threads, one per direction, in blocking I/O: a cut
closes the sockets, which wakes them. Everything is for tests: no limits, no TLS.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType

_CHUNK = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Close abruptly: SO_LINGER 0 (an RST once the fd is released), and a shutdown first,
    because on Linux a bare close() does not wake the other thread blocked in recv()."""
    for op in (lambda: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
               lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            op()
        except OSError:
            pass


class Proxy:
    """A TCP forwarder from ``127.0.0.1:port`` to a target, which can cut connections on demand."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._target: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._cut_budget: int | None = None
        self._closed = False
        self.connections = 0  # connections accepted so far
        self.cuts = 0  # times cut() ran (by hand or armed)
        self.bytes_up = 0  # client -> server bytes forwarded
        self.bytes_down = 0  # server -> client bytes forwarded
        self._thread = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``"127.0.0.1:port"``: what the server should advertise and clients bootstrap to."""
        return f"127.0.0.1:{self.port}"

    def forward_to(self, host: str, port: int) -> None:
        """Set where connections go (needed before the first client connects)."""
        self._target = (host, port)

    def cut(self) -> int:
        """Reset every open connection, both sides; returns how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self._cut_budget = None
            self.cuts += 1
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        return len(pairs)

    def cut_after(self, nbytes: int) -> None:
        """Cut every connection once ``nbytes`` more bytes have been forwarded to the server."""
        with self._lock:
            self._cut_budget = nbytes

    @property
    def armed(self) -> bool:
        """True while a ``cut_after`` has not fired yet."""
        return self._cut_budget is not None

    def close(self) -> None:
        """Stop accepting and cut everything."""
        self._closed = True
        _reset(self._listener)
        self.cut()
        self._thread.join(5)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            target = self._target
            if target is None:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.append((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        """Copy src -> dst until either side closes; then close the pair."""
        while True:
            try:
                data = src.recv(_CHUNK)
            except OSError:
                data = b""
            if not data:
                break
            if up and self._consume_budget(len(data)):
                # Forward only part of this chunk, then cut: the server gets a torn request.
                try:
                    dst.sendall(data[: len(data) // 2])
                except OSError:
                    pass
                self.cut()
                return
            try:
                dst.sendall(data)
            except OSError:
                break
            with self._lock:
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
        self._drop(src, dst)

    def _consume_budget(self, n: int) -> bool:
        """Count n bytes against an armed cut; True when the cut is due."""
        with self._lock:
            if self._cut_budget is None:
                return False
            self._cut_budget -= n
            return self._cut_budget <= 0

    def _drop(self, a: socket.socket, b: socket.socket) -> None:
        with self._lock:
            self._pairs = [p for p in self._pairs if a not in p]
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
