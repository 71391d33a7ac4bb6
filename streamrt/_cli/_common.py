"""What every CLI command shares: opening the data directory, errors, and terminal output."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

from ..errors import DataDirLocked, UnknownTopic
from ..storage import LogStore
from ..storage._env import check_path

log = logging.getLogger("streamrt.cli")

# How often to retry a data directory that another process holds. The storage API offers no
# blocking lock, so waiting for it means polling; 50 ms keeps the wait short without spinning.
LOCK_RETRY_INTERVAL = 0.05
BROKER_ENV = "STREAMRT_BROKER"


class CliError(Exception):
    """A runtime error of the CLI itself (bad input file or line); main() prints it, exit 1."""


def broker_of(args: object) -> str | None:
    """The broker a command talks to: its ``--broker``, else ``$STREAMRT_BROKER``, else None
    (the command opens the data directory itself)."""
    return getattr(args, "broker", None) or os.environ.get(BROKER_ENV) or None


def locked_message(e: DataDirLocked) -> str:
    """The one-line error for a data directory another process holds: when that process is
    a ``streamrt serve`` (its address file is there), say so and point at ``--broker``."""
    from .serve import server_address

    address = server_address(e.path)
    if address is None:
        return str(e)
    holder = f"streamrt serve (pid {e.pid})" if e.pid else "streamrt serve"
    return f"{e.path} is held by {holder}, listening on {address}; use --broker {address}"


def is_data_dir(path: str) -> bool:
    """Whether ``path`` holds a streamrt log.

    Read-only commands use this so that they never create a data directory, nor turn an
    unrelated directory (``--data-dir ~``, say) into one.
    """
    return LogStore.exists(path)


def open_store(path: str, *, create: bool, lock_timeout: float) -> LogStore | None:
    """Open the log at ``path`` for one short command; None if it does not exist and
    ``create`` is false.

    A directory held by another process is retried for up to ``lock_timeout`` seconds: other
    CLI commands (``consume --follow`` between polls, say) hold it only for milliseconds.
    After that the DataDirLocked error, which names the holder's PID, propagates.
    """
    check_path(path)  # a file given as --data-dir is an error, not an empty directory
    if not create and not is_data_dir(path):
        return None
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            # No maintenance thread: commands are short-lived, and retention belongs to the
            # long-running process that owns the directory.
            return LogStore.open(path, create=create, maintenance_interval=None)
        except DataDirLocked:
            if time.monotonic() >= deadline:
                raise
            log.debug("data directory %s is locked; retrying", path)
            time.sleep(LOCK_RETRY_INTERVAL)


def open_existing(path: str, topic: str, lock_timeout: float) -> LogStore:
    """Open the log for a command on ``topic``; a missing log is reported as UnknownTopic,
    just as an empty one would be."""
    store = open_store(path, create=False, lock_timeout=lock_timeout)
    if store is None:
        raise UnknownTopic(topic)
    return store


def write_stdout(text: str) -> None:
    """Write ``text`` to stdout completely, then flush.

    Records are committed once printed, so a short write must not pass for a full one. With
    ``python -u`` / ``PYTHONUNBUFFERED`` stdout's binary layer is a raw file, and a signal
    arriving while a pipe is full makes its ``write`` return early; the text layer would drop
    the rest silently (a CPython quirk), so the bytes are written here until all are out.
    """
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a plain text stream (replaced by a caller): it keeps what it gets
        out.write(text)
        out.flush()
        return
    out.flush()  # whatever was printed through the text layer goes first
    data = memoryview(text.encode(out.encoding or "utf-8", errors="replace"))
    while data:
        n = buffer.write(data)
        data = data[len(data) if n is None else n:]
    buffer.flush()


def warn(message: str) -> None:
    """Tell the user something on stderr without stopping."""
    print(f"streamrt: warning: {message}", file=sys.stderr)


def plural(n: int, word: str) -> str:
    """``1 record``, ``2 records``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Progress:
    """A one-line counter on stderr, redrawn at most every ``interval`` seconds, shown only when
    stderr is a terminal (so logs and pipes stay clean)."""

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 0.5) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._label = label
        self._interval = interval
        self._enabled = is_terminal(self._stream)
        self._start = time.monotonic()
        self._next = self._start + interval
        self._shown = False

    def update(self, count: int) -> None:
        """Report ``count`` done so far (drawn only if the interval has passed)."""
        if not self._enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._interval
        rate = count / max(now - self._start, 1e-9)
        self._stream.write(f"\r\033[K{self._label}: {count:,} ({rate:,.0f}/s)")
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the line, so the final summary stands alone."""
        if self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._shown = False


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is a terminal (False for anything that cannot tell)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream is not a terminal
        return False


def print_names(names: list[str], none: str) -> None:
    """A listing, one name per line; with nothing to list, ``none`` on stderr, only for a person
    at a terminal (scripts reading stdout get an empty list)."""
    if names:
        print("\n".join(names))
    elif is_terminal(sys.stdout):
        print(none, file=sys.stderr)
