"""``streamrt produce``: append lines of stdin (or a file) to a topic, one record per line.

Input is read in chunks of whatever one read returns (up to 1 MiB), so a pipe's lines are
written as they arrive rather than when 1,000 have piled up. Each chunk is checked in full
and then written as one transaction (one fsync), split into record batches of at most
``BATCH_RECORDS``; a bad line therefore never leaves half a chunk in the log. A ``--file`` is
also checked in full before anything is written, so a bad file writes nothing at all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import BinaryIO

import orjson

from .._murmur2 import partition_for_key
from ..errors import UnknownPartition
from ..storage import LogStore, TopicInfo, WriteBatch, check_topic_name
from ._common import CliError, Progress, broker_of, is_terminal, open_existing, plural

BATCH_RECORDS = 1_000
READ_BYTES = 1 << 20

Rec = tuple[bytes | None, bytes]


def cmd_produce(args: argparse.Namespace) -> int:
    """Append each input line as a record and print how many were written."""
    if broker_of(args):
        from . import remote_records

        return remote_records.produce(args)
    topic = check_topic_name(args.topic)
    source_name = args.file if args.file is not None else "stdin"
    stream = _open_input(args.file)
    try:
        with open_existing(args.data_dir, topic, args.lock_timeout) as store:
            info = store.topic(topic)
            if args.partition is not None and args.partition >= info.partitions:
                raise UnknownPartition(topic, args.partition, info.partitions)
            if args.file is not None and args.key_field is not None:
                _check_file(args.file, args.key_field)
            writer = _Writer(store, info, args.key_field, args.partition, source_name)
            if args.file is None and is_terminal(sys.stdin):
                print("streamrt: reading records from stdin, one per line; end with Ctrl-D",
                      file=sys.stderr)
            try:
                for first, lines in iter_line_chunks(stream):
                    writer.write_chunk(first, lines)
            except KeyboardInterrupt:
                writer.progress.clear()
                print(f"streamrt: interrupted; wrote {plural(writer.written, 'record')} to "
                      f"{topic} before that", file=sys.stderr)
                raise
            writer.progress.clear()
    finally:
        if args.file is not None:
            stream.close()
    print(f"wrote {plural(writer.written, 'record')} to {topic}")
    return 0


def _open_input(path: str | None) -> BinaryIO:
    if path is None:
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as e:
        raise CliError(f"cannot read --file {path}: {e.strerror or e}") from None


def _check_file(path: str, key_field: str) -> None:
    """Parse every line of a --file before writing any, so a bad line writes nothing."""
    with _open_input(path) as check:
        for first, lines in iter_line_chunks(check):
            try:
                parse_keys(lines, first, key_field, path)
            except CliError as e:
                raise CliError(f"{e}; nothing was written") from None


def iter_line_chunks(
    stream: BinaryIO, read_bytes: int | None = None
) -> Iterator[tuple[int, list[bytes]]]:
    """Yield ``(number of the first line, lines)`` for each read's worth of complete lines.

    A line is the bytes before ``\\n``, less one trailing ``\\r`` (as Kafka's console producer
    reads lines); a last line without a newline counts too.
    """
    # read1 returns what is available after at most one system call: on a pipe, lines typed
    # or tailed into it come through at once instead of waiting for a full buffer.
    read = getattr(stream, "read1", stream.read)
    size = READ_BYTES if read_bytes is None else read_bytes
    line_no = 1
    partial: list[bytes] = []  # a line longer than one read, kept in pieces (no O(n^2) concat)
    while data := read(size):
        end = data.rfind(b"\n")
        if end < 0:
            partial.append(data)
            continue
        head = b"".join([*partial, data[:end]]) if partial else data[:end]
        partial = [data[end + 1:]] if end + 1 < len(data) else []
        lines = head.split(b"\n")
        yield line_no, _strip_cr(lines)
        line_no += len(lines)
    if partial:
        yield line_no, _strip_cr([b"".join(partial)])


def _strip_cr(lines: list[bytes]) -> list[bytes]:
    if any(line.endswith(b"\r") for line in lines):
        return [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return lines


def parse_keys(lines: list[bytes], first: int, field: str, source: str) -> list[bytes]:
    """The key of each line, which must be a JSON object holding ``field``.

    A string field is the key as it is (utf-8); any other value is its compact JSON text, so
    ``1`` is ``1`` and ``true`` is ``true`` rather than Python's ``True``.
    """
    keys = []
    for i, line in enumerate(lines):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise CliError(f"line {first + i} of {source} is not JSON ({e}); --key-field "
                           f"needs one JSON object per line") from None
        if not isinstance(obj, dict):
            raise CliError(f"line {first + i} of {source} is JSON but not an object; --key-field "
                           f"needs one JSON object per line")
        try:
            value = obj[field]
        except KeyError:
            raise CliError(f"line {first + i} of {source} has no field {field!r} "
                           f"(the --key-field)") from None
        keys.append(value.encode() if isinstance(value, str) else orjson.dumps(value))
    return keys


class _Writer:
    """Routes records to partitions and writes each input chunk in one transaction."""

    def __init__(self, store: LogStore, info: TopicInfo, key_field: str | None,
                 partition: int | None, source: str) -> None:
        self.store = store
        self.info = info
        self.key_field = key_field
        self.partition = partition
        self.source = source
        self.written = 0
        self.progress = Progress(f"writing to {info.name}")
        # Offsets per partition so far: unkeyed batches go to the emptiest partition, which is
        # round-robin within one run and also evens out many small runs (each of which would
        # otherwise start at partition 0).
        self._fill = [store.high_watermark(info.name, p) for p in range(info.partitions)]

    def write_chunk(self, first: int, lines: list[bytes]) -> None:
        """Check every line of the chunk, then write all of it atomically."""
        try:
            keys = (parse_keys(lines, first, self.key_field, self.source)
                    if self.key_field is not None else None)
        except CliError as e:
            if self.written:
                raise CliError(f"{e}; the {plural(self.written, 'record')} before line {first} "
                               f"were written, nothing from line {first} on") from None
            raise CliError(f"{e}; nothing was written") from None
        wb = WriteBatch()
        for p, recs in self._route(keys, lines):
            for i in range(0, len(recs), BATCH_RECORDS):
                wb.append(self.info.name, p, recs[i:i + BATCH_RECORDS])
        self.store.write_sync(wb)
        self.written += len(lines)
        self.progress.update(self.written)

    def _route(self, keys: list[bytes] | None, lines: list[bytes]) -> Iterator[tuple[int, list[Rec]]]:
        n = self.info.partitions
        if keys is None:
            recs: list[Rec] = [(None, v) for v in lines]
            if self.partition is not None:
                yield self.partition, recs
                return
            for i in range(0, len(recs), BATCH_RECORDS):
                batch = recs[i:i + BATCH_RECORDS]
                p = min(range(n), key=self._fill.__getitem__)
                self._fill[p] += len(batch)
                yield p, batch
            return
        if self.partition is not None:
            yield self.partition, list(zip(keys, lines))
            return
        by_part: dict[int, list[Rec]] = {}
        for k, v in zip(keys, lines):
            by_part.setdefault(partition_for_key(k, n), []).append((k, v))
        yield from by_part.items()
