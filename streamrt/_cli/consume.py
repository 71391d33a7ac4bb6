"""``streamrt consume``: print a topic's records, optionally as a consumer group, optionally
following new ones.

Where reading starts, per partition: ``--offset N`` (one ``--partition``); else the group's
committed offset when ``--group`` has one (``--from-beginning`` ignores it); else the log start.
That last default differs from Kafka's console consumer (which starts at the end): an
embedded log is mostly inspected after the fact, so the CLI shows what is there.

With ``--group``, positions are committed after each round of reads, once the records have
been written to stdout: at-least-once delivery, and a rerun resumes after the last record
printed.

``--follow`` does not hold the data directory while it waits. Only one process may open a
directory at a time (an flock), so a follower that kept it open would lock every producer
out; instead it opens the store, reads what is new, closes it, and polls again 0.2 s later.
Other CLI commands wait up to ``--lock-timeout`` for those few milliseconds to pass.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType

from ..errors import DataDirLocked, OffsetOutOfRange, UnknownPartition, UnknownTopic
from ..storage import LogStore, StoredRecord, check_topic_name
from ._common import broker_of, open_existing, open_store, warn, write_stdout

log = logging.getLogger("streamrt.cli")

POLL_INTERVAL = 0.2
READ_RECORDS = 5_000
LOCKED_OUT_WARNING = 5.0  # seconds a follower waits for the directory before saying so


class _StopFlag:
    """Set by SIGINT/SIGTERM so the loop can finish the records in hand and commit them."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def _graceful_signals() -> Iterator[_StopFlag]:
    """Turn the first Ctrl-C (or SIGTERM) into a stop request; a second Ctrl-C interrupts at
    once. Handlers can only be set from the main thread; elsewhere signals act as usual."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signum = signum

    saved = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def cmd_consume(args: argparse.Namespace) -> int:
    """Print records; exit 0 when done (or when a ``--follow`` is stopped), 128+signal when
    another run is interrupted."""
    topic = check_topic_name(args.topic)
    with _graceful_signals() as stop:
        if broker_of(args):
            from . import remote_records

            remote_records.consume(args, stop)
        else:
            _Consumer(args, topic, stop).run()
    if stop.signum is not None and not args.follow:
        return 128 + stop.signum
    return 0


class _Consumer:
    def __init__(self, args: argparse.Namespace, topic: str, stop: _StopFlag) -> None:
        self.args = args
        self.topic = topic
        self.stop = stop
        self.group: str | None = args.group
        self.remaining: int | None = args.max  # None: no limit
        self.positions: dict[int, int] = {}
        self.topic_id = -1
        self.locked_since: float | None = None
        self.warned_locked = False

    def run(self) -> None:
        with open_existing(self.args.data_dir, self.topic, self.args.lock_timeout) as store:
            self._start(store)
            self._drain(store)
        while self.args.follow and self.remaining != 0 and not self.stop.requested:
            # A signal does not cut the sleep short (PEP 475), so a stop waits at most this.
            time.sleep(POLL_INTERVAL)
            if self.stop.requested:
                return
            again = self._reopen()
            if again is None:
                continue
            with again:
                self._refresh(again)
                self._drain(again)

    def _reopen(self) -> LogStore | None:
        try:
            store = open_store(self.args.data_dir, create=False, lock_timeout=0)
        except DataDirLocked as e:
            # Usually a producer's few milliseconds; a long-running owner may keep it for good,
            # and then the user should know why nothing arrives.
            now = time.monotonic()
            self.locked_since = self.locked_since or now
            if now - self.locked_since >= LOCKED_OUT_WARNING and not self.warned_locked:
                warn(f"{e}; still waiting for it")
                self.warned_locked = True
            log.debug("data directory busy; polling again")
            return None
        self.locked_since = None
        self.warned_locked = False
        if store is None:  # the directory was removed while we waited
            raise UnknownTopic(self.topic)
        return store

    def _partitions(self, store: LogStore) -> list[int]:
        info = store.topic(self.topic)
        self.topic_id = info.topic_id
        if self.args.partition is None:
            return list(range(info.partitions))
        if self.args.partition >= info.partitions:
            raise UnknownPartition(self.topic, self.args.partition, info.partitions)
        return [self.args.partition]

    def _start(self, store: LogStore) -> None:
        parts = self._partitions(store)
        if self.args.offset is not None:
            (p,) = parts
            start, end = store.log_start_offset(self.topic, p), store.high_watermark(self.topic, p)
            if not start <= self.args.offset <= end:
                # The user named this offset: tell them rather than silently read elsewhere.
                raise OffsetOutOfRange(self.topic, p, self.args.offset, start, end)
            self.positions[p] = self.args.offset
            return
        committed: dict[tuple[str, int], int] = {}
        if self.group is not None and not self.args.from_beginning:
            committed = store.committed(self.group, self.topic)
        for p in parts:
            start = store.log_start_offset(self.topic, p)
            pos = committed.get((self.topic, p), start)
            if not start <= pos <= store.high_watermark(self.topic, p):
                # Retention removed records the group had not read yet: carry on from the
                # oldest one left (Kafka's auto.offset.reset=earliest).
                warn(f"group {self.group!r} committed offset {pos} for {self.topic}[{p}], which "
                     f"is no longer stored; reading from offset {start}")
                pos = start
            self.positions[p] = pos

    def _refresh(self, store: LogStore) -> None:
        """After reopening: follow a topic that was deleted and created again meanwhile."""
        old_id = self.topic_id
        parts = self._partitions(store)
        if self.topic_id != old_id:
            warn(f"topic {self.topic!r} was deleted and created again; reading it from the start")
            self.positions = {}
        self.positions = {p: self.positions.get(p, store.log_start_offset(self.topic, p))
                          for p in parts}

    def _drain(self, store: LogStore) -> None:
        """Read round-robin over the partitions until caught up, --max is reached, or a stop."""
        while self.remaining != 0 and not self.stop.requested:
            progressed = False
            chunks: list[str] = []
            commits: dict[tuple[str, int], int] = {}
            for p, pos in list(self.positions.items()):
                if self.remaining == 0 or self.stop.requested:
                    break
                want = READ_RECORDS if self.remaining is None else min(READ_RECORDS, self.remaining)
                try:
                    recs = store.read(self.topic, p, pos, max_records=want)
                except OffsetOutOfRange as e:
                    # Retention ran (in another process, between our polls) past our position.
                    warn(f"{e}; continuing from offset {e.log_start}")
                    self.positions[p] = e.log_start
                    progressed = True
                    continue
                if not recs:
                    continue
                chunks.append(format_records(p, recs, self.args.verbose))
                self.positions[p] = recs.next_offset
                commits[(self.topic, p)] = self.positions[p]
                if self.remaining is not None:
                    self.remaining -= len(recs)
                progressed = True
            if commits:
                # Commit only what has reached stdout: a broken pipe here commits nothing.
                write_stdout("".join(chunks))
                if self.group is not None:
                    store.commit_sync(self.group, commits)
            if not progressed:
                return


def format_records(partition: int, records: Sequence[StoredRecord], verbose: bool) -> str:
    """Lines to print for ``records``: the values, or with ``verbose`` tab-separated
    ``partition:P offset:O timestamp:T key:K`` then the value. Null is printed ``null``."""
    if verbose:
        lines = [f"partition:{partition}\toffset:{r.offset}\ttimestamp:{format_timestamp(r.timestamp)}"
                 f"\tkey:{_text(r.key)}\t{_text(r.value)}" for r in records]
    else:
        lines = [_text(r.value) for r in records]
    lines.append("")
    return "\n".join(lines)


def _text(b: bytes | None) -> str:
    return "null" if b is None else b.decode("utf-8", errors="replace")


def format_timestamp(ms: int) -> str:
    """A record timestamp (ms since the epoch) as ISO 8601 UTC with milliseconds; a value
    that is no date (Kafka's -1 for "none") is shown as the raw number."""
    if ms < 0:
        return str(ms)
    try:
        dt = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(ms)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
