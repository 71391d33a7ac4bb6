"""Stream framing for the Kafka protocol: split a byte stream into size-prefixed frames.

Every Kafka request and response is a big-endian ``int32`` size followed by that many bytes.
:class:`FrameDecoder` is fed whatever the socket delivered and hands back the complete frames
(without their prefix); a partial frame waits in the decoder. A size prefix is checked against
the limit before any of its frame is buffered, and the limit starts small: until the server
has decoded a first request (:meth:`FrameDecoder.mark_valid`), the peer might be speaking
something else entirely (an HTTP ``GET `` reads as a 1.2 GB frame) and gets only
``first_max_frame_bytes``.
"""

from __future__ import annotations

import struct

from streamrt.errors import FrameTooLarge, ProtocolError

__all__ = ["FrameDecoder", "DEFAULT_MAX_FRAME_BYTES", "DEFAULT_FIRST_MAX_FRAME_BYTES"]

DEFAULT_MAX_FRAME_BYTES = 100 << 20
"""Largest frame once a connection has sent a valid request (Kafka's
``socket.request.max.bytes`` default is 100 MiB)."""

DEFAULT_FIRST_MAX_FRAME_BYTES = 512 << 10
"""Largest first frame: before a valid request, a peer gets no big buffers (Kafka uses the
same 512 KiB for unauthenticated connections)."""

_SIZE = struct.Struct(">i")


class FrameDecoder:
    """Sans-IO framing: ``feed(bytes) -> [frame, ...]``.

    Frames are returned as memoryviews over immutable bytes (zero-copy when a frame arrived
    within one ``feed``), valid for as long as the caller keeps them. After ``FrameTooLarge``
    or ``ProtocolError`` the stream is out of sync and the connection must be closed.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 first_max_frame_bytes: int = DEFAULT_FIRST_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.first_max_frame_bytes = min(first_max_frame_bytes, max_frame_bytes)
        self._limit = self.first_max_frame_bytes
        self._chunks: list[bytes] = []  # received, not yet returned
        self._have = 0  # bytes in _chunks
        self._need = 4  # bytes needed before _chunks can yield something (prefix or frame)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held (0 when the stream is at a frame boundary)."""
        return self._have

    @property
    def limit(self) -> int:
        """The largest frame accepted now."""
        return self._limit

    def mark_valid(self) -> None:
        """The connection sent a valid request: from now on ``max_frame_bytes`` applies."""
        self._limit = self.max_frame_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> list[memoryview | bytes]:
        """Add received bytes; return the frames now complete, in order."""
        if not data:
            return []
        if not isinstance(data, bytes):
            data = bytes(data)  # the frames we return must not change under the caller
        self._have += len(data)
        self._chunks.append(data)
        if self._have < self._need:
            # Short of a prefix, or of a frame whose prefix was already checked.
            return []
        buf = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        view = memoryview(buf)
        frames: list[memoryview | bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= 4:
            size = self._checked_size(_SIZE.unpack_from(buf, pos)[0])
            if end - pos - 4 < size:
                break
            frames.append(view[pos + 4:pos + 4 + size])
            pos += 4 + size
        rest = buf[pos:] if pos else buf
        self._chunks = [rest] if rest else []
        self._have = len(rest)
        self._need = 4 if len(rest) < 4 else 4 + _SIZE.unpack_from(rest, 0)[0]
        return frames

    def _checked_size(self, size: int) -> int:
        if size < 0:
            raise ProtocolError(f"negative frame size {size}: not a Kafka client, or out of sync")
        if size > self._limit:
            if self._limit < self.max_frame_bytes:
                hint = (f"the limit before a first valid request is {self._limit} bytes "
                        f"(is the peer speaking the Kafka protocol?)")
            else:
                hint = f"the limit is {self._limit} bytes (raise max_frame_bytes to allow it)"
            raise FrameTooLarge(f"frame of {size} bytes refused: {hint}")
        return size
