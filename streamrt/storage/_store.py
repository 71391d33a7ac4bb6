"""The log store: topics, partitions, appends, reads, offsets and state on one LMDB environment.

Layout (named LMDB databases, integers big-endian so keys sort numerically)::

    meta       b"format" -> b"1";  b"next_topic_id" -> u32
    topics     name (utf-8) -> orjson {"id", "partitions", "config"}
    log        topic_id u32 | partition u32 | base_offset u64 -> RecordBatch v2 bytes
    parts      topic_id u32 | partition u32 -> next_offset u64 | log_start u64 | records u64 | bytes u64
    offsets    group (utf-8) | 0x00 | topic_id u32 | partition u32 -> offset u64
    groups     group (utf-8) -> generation i64
    producers  producer_id i64 | topic_id u32 | partition u32 -> epoch i16 | last_seq i32 | last_offset i64
    state      caller's key -> caller's value

Every write goes through the writer thread (``_writer.py``); offsets are assigned there,
inside the transaction, so a failed transaction leaves no gap. Reads run on the caller's thread
in LMDB read transactions (mmap, no copy until a returned batch is decoded). The in-memory
catalog (topics and partition positions) is changed only by the writer, after a commit.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .._wake import AsyncWaiter, SyncWaiter
from ..errors import (
    DuplicateSequence,
    InvalidArgument,
    OffsetOutOfRange,
    OutOfOrderSequence,
    ProducerFenced,
    StaleGeneration,
    StoreClosed,
    StorageError,
    TopicExists,
    UnknownPartition,
    UnknownTopic,
)
from . import _codec
from ._env import DEFAULT_MAP_SIZE, DataDir
from ._env import exists as _env_exists
from ._records import Records, take_from_batch
from ._types import (
    Durability,
    PartitionInfo,
    TopicConfig,
    TopicInfo,
    WriteBatch,
    WriteResult,
    check_topic_name,
)
from ._writer import Op, Overlay, Writer

_PK = struct.Struct(">II")
_LK = struct.Struct(">IIQ")
_PS = struct.Struct(">QQQQ")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_PROD = struct.Struct(">hiq")
_PRODK = struct.Struct(">qII")

MAX_PARTITIONS = 10_000
DEFAULT_MAX_RECORDS = 10_000
DEFAULT_MAX_BYTES = 4 << 20
_SEQ_MOD = 1 << 31

# A partition's position: (next_offset, log_start, records, bytes)
PartState = tuple[int, int, int, int]


def _now_ms() -> int:
    return int(time.time() * 1000)


class LogStore:
    """A durable, partitioned log in one data directory. Open it with :meth:`open`.

    Writes are ``async`` (they resolve when durable; many callers share one fsync) with
    ``*_sync`` twins for plain threads. Reads are plain methods: they read memory-mapped pages
    and never wait on a lock held by a writer.
    """

    def __init__(self, data: DataDir, maintenance_interval: float | None) -> None:
        self._data = data
        self._env = data.env
        self._dbs = data.dbs
        self._topics: dict[str, TopicInfo] = {}
        self._by_id: dict[int, TopicInfo] = {}
        self._parts: dict[tuple[int, int], PartState] = {}
        self._closed = False
        self._load_catalog()
        self._writer = Writer(data, self._publish)
        self._maint_stop = threading.Event()
        self._maint: threading.Thread | None = None
        if maintenance_interval:
            self._maint = threading.Thread(
                target=self._maintenance_loop, args=(maintenance_interval,),
                name="streamrt-maintenance", daemon=True,
            )
            self._maint.start()

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] = ".streamrt", *, durability: Durability = "sync",
        map_size: int = DEFAULT_MAP_SIZE, create: bool = True,
        maintenance_interval: float | None = 30.0,
    ) -> LogStore:
        """Open (creating if needed) the data directory at ``path`` and lock it for this process.

        ``durability="sync"`` (default) fsyncs every commit; ``"none"`` skips fsync and may lose
        or corrupt recent writes on power loss: for tests and benchmarks only.
        ``maintenance_interval`` (seconds, None to disable) runs retention and compaction.
        """
        if durability not in ("sync", "none"):
            raise InvalidArgument(f"durability must be 'sync' or 'none', got {durability!r}")
        return cls(DataDir(path, durability=durability, map_size=map_size, create=create),
                   maintenance_interval)

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` holds a streamrt log (checked without opening or locking it)."""
        return _env_exists(path)

    @property
    def path(self) -> str:
        return self._data.path

    @property
    def durability(self) -> Durability:
        return self._data.durability

    def env_flags(self) -> dict[str, Any]:
        """LMDB environment flags (to check the durable ones)."""
        return dict(self._env.flags())

    def close(self) -> None:
        """Finish queued writes, stop the background threads and release the directory."""
        if self._closed:
            return
        self._closed = True
        self._maint_stop.set()
        if self._maint is not None:
            self._maint.join()
        self._writer.close()
        self._data.close()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> LogStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the store at {self.path} is closed; open it again")
        if os.getpid() != self._data.pid:
            raise StorageError("a LogStore cannot be used across fork(): open it in the child")

    # ----------------------------------------------------------------- catalog

    def _load_catalog(self) -> None:
        with self._env.begin() as txn:
            for name, raw in txn.cursor(db=self._dbs["topics"]):
                info = _topic_from_json(name.decode(), raw)
                self._topics[info.name] = info
                self._by_id[info.topic_id] = info
            for key, raw in txn.cursor(db=self._dbs["parts"]):
                self._parts[_PK.unpack(key)] = _PS.unpack(raw)

    def _publish(self, overlay: dict) -> None:
        """Apply a committed group's in-memory changes (runs on the writer thread)."""
        for key, value in overlay.items():
            if key[0] == "p":
                if value is None:
                    self._parts.pop(key[1:], None)
                else:
                    self._parts[key[1:]] = value
            elif key[0] == "t":
                old = self._topics.get(key[1])
                if value is None:
                    if old is not None:
                        del self._topics[key[1]]
                        self._by_id.pop(old.topic_id, None)
                else:
                    self._topics[key[1]] = value
                    self._by_id[value.topic_id] = value

    def _info(self, topic: str, ov: Overlay | None = None) -> TopicInfo:
        if ov is not None and ("t", topic) in ov:
            info = ov.get(("t", topic))
        else:
            info = self._topics.get(topic)
        if info is None:
            if not isinstance(topic, str):
                raise InvalidArgument(f"a topic name is a string, got {type(topic).__name__}")
            raise UnknownTopic(topic)
        return info

    def _tp(self, topic: str, partition: int, ov: Overlay | None = None) -> tuple[TopicInfo, int]:
        info = self._info(topic, ov)
        if type(partition) is not int or not 0 <= partition < info.partitions:
            raise UnknownPartition(topic, partition, info.partitions)
        return info, info.topic_id

    def _part(self, tid: int, p: int, ov: Overlay | None = None) -> PartState:
        if ov is not None and ("p", tid, p) in ov:
            return ov.get(("p", tid, p))
        return self._parts.get((tid, p), (0, 0, 0, 0))

    def topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name."""
        return sorted(self._topics.values(), key=lambda t: t.name)

    def topic(self, name: str) -> TopicInfo:
        """One topic's info; UnknownTopic if absent."""
        return self._info(name)

    def has_topic(self, name: str) -> bool:
        return name in self._topics

    def partition_info(self, topic: str, partition: int) -> PartitionInfo:
        """Log start, high watermark, record count and bytes of one partition."""
        _, tid = self._tp(topic, partition)
        nxt, start, recs, nbytes = self._part(tid, partition)
        return PartitionInfo(topic, partition, start, nxt, recs, nbytes)

    def high_watermark(self, topic: str, partition: int) -> int:
        """The offset the next appended record will get."""
        _, tid = self._tp(topic, partition)
        return self._part(tid, partition)[0]

    def log_start_offset(self, topic: str, partition: int) -> int:
        """The first offset still stored (retention moves it forward)."""
        _, tid = self._tp(topic, partition)
        return self._part(tid, partition)[1]

    # ----------------------------------------------------------------- running ops

    def _run_sync(self, op: Op, nbytes: int = 0) -> Any:
        self._check_open()
        w = SyncWaiter()
        self._writer.submit(op, w, nbytes)
        return w.wait()

    async def _run(self, op: Op, nbytes: int = 0) -> Any:
        self._check_open()
        w = AsyncWaiter()
        self._writer.submit(op, w, nbytes)
        return await w.wait()

    # ----------------------------------------------------------------- topics

    def _create_op(self, name: str, partitions: int, config: TopicConfig) -> Op:
        check_topic_name(name)
        if type(partitions) is not int or not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidArgument(
                f"partitions must be an integer from 1 to {MAX_PARTITIONS}, got {partitions!r}"
            )
        if not isinstance(config, TopicConfig):
            raise InvalidArgument(f"config must be a TopicConfig, got {type(config).__name__}")

        def op(txn: Any, ov: Overlay) -> TopicInfo:
            existing = ov.get(("t", name)) if ("t", name) in ov else self._topics.get(name)
            if existing is not None:
                if existing.partitions == partitions and existing.config == config:
                    return existing
                raise TopicExists(
                    f"topic {name!r} already exists with {existing.partitions} partitions"
                    f"{_describe(existing.config)}; delete it first or create it with the same "
                    f"settings"
                )
            meta = self._dbs["meta"]
            raw = txn.get(b"next_topic_id", db=meta)
            tid = _U32.unpack(raw)[0] if raw else 1
            txn.put(b"next_topic_id", _U32.pack(tid + 1), db=meta)
            info = TopicInfo(name, partitions, config, tid)
            txn.put(name.encode(), orjson.dumps(
                {"id": tid, "partitions": partitions, "config": config.to_dict()}),
                db=self._dbs["topics"])
            for p in range(partitions):
                txn.put(_PK.pack(tid, p), _PS.pack(0, 0, 0, 0), db=self._dbs["parts"])
                ov.set(("p", tid, p), (0, 0, 0, 0))
            ov.set(("t", name), info)
            return info

        return op

    async def create_topic(
        self, name: str, partitions: int = 1, config: TopicConfig | None = None
    ) -> TopicInfo:
        """Create a topic (a no-op if it exists with the same settings; TopicExists otherwise)."""
        return await self._run(self._create_op(name, partitions, config or TopicConfig()))

    def create_topic_sync(
        self, name: str, partitions: int = 1, config: TopicConfig | None = None
    ) -> TopicInfo:
        """Blocking twin of :meth:`create_topic`."""
        return self._run_sync(self._create_op(name, partitions, config or TopicConfig()))

    def _delete_op(self, name: str) -> Op:
        def op(txn: Any, ov: Overlay) -> None:
            info = self._info(name, ov)
            tid = info.topic_id
            prefix = _U32.pack(tid)
            for dbname in ("log", "parts"):
                _delete_prefix(txn, self._dbs[dbname], prefix)
            for dbname, pos in (("offsets", None), ("producers", 8)):
                db = self._dbs[dbname]
                cur = txn.cursor(db=db)
                doomed = [k for k in cur.iternext(values=False)
                          if (k[pos:pos + 4] if pos is not None else k[-8:-4]) == prefix]
                for k in doomed:
                    txn.delete(k, db=db)
            txn.delete(name.encode(), db=self._dbs["topics"])
            for p in range(info.partitions):
                ov.set(("p", tid, p), None)
            ov.set(("t", name), None)

        return op

    async def delete_topic(self, name: str) -> None:
        """Delete a topic with all its records and the offsets committed for it."""
        await self._run(self._delete_op(name))

    def delete_topic_sync(self, name: str) -> None:
        """Blocking twin of :meth:`delete_topic`."""
        self._run_sync(self._delete_op(name))

    # ----------------------------------------------------------------- writes

    def _intent_op(self, wb: WriteBatch) -> Op:
        if not isinstance(wb, WriteBatch):
            raise InvalidArgument(f"write() takes a WriteBatch, got {type(wb).__name__}")

        def op(txn: Any, ov: Overlay) -> WriteResult:
            return self._apply(txn, ov, wb)

        return op

    def _apply(self, txn: Any, ov: Overlay, wb: WriteBatch) -> WriteResult:
        dbs = self._dbs
        for group in wb.group_deletes:
            gkey = group.encode()
            txn.delete(gkey, db=dbs["groups"])
            _delete_prefix(txn, dbs["offsets"], gkey + b"\x00")
        for group, gen in wb.generations:
            txn.put(group.encode(), _I64.pack(gen), db=dbs["groups"])
        for group, offsets, generation in wb.commits:
            gkey = group.encode()
            if generation is not None:
                raw = txn.get(gkey, db=dbs["groups"])
                current = _I64.unpack(raw)[0] if raw is not None else None
                if current != generation:
                    raise StaleGeneration(
                        f"offset commit for group {group!r} names generation {generation}, but "
                        f"the group is at generation {current}: this member was replaced; "
                        f"rejoin the group and re-fetch its assignment"
                    )
            for (topic, p), off in offsets.items():
                _, tid = self._tp(topic, p, ov)
                txn.put(gkey + b"\x00" + _PK.pack(tid, p), _U64.pack(off), db=dbs["offsets"])
        bases: list[int] = []
        log_db, parts_db = dbs["log"], dbs["parts"]
        for topic, p, buf in wb.appends:
            _, tid = self._tp(topic, p, ov)
            h = _codec.check_batch(buf)
            nxt, start, recs, nbytes = self._part(tid, p, ov)
            if h.producer_id >= 0 and h.base_sequence >= 0:
                self._check_sequence(txn, topic, tid, p, h, nxt)
            txn.put(_LK.pack(tid, p, nxt), _codec.rebase(buf, nxt), db=log_db, append=False)
            state = (nxt + h.offset_count, start, recs + h.record_count, nbytes + len(buf))
            txn.put(_PK.pack(tid, p), _PS.pack(*state), db=parts_db)
            ov.set(("p", tid, p), state)
            bases.append(nxt)
        state_db = dbs["state"]
        for key, value in wb.puts:
            if value is None:
                txn.delete(key, db=state_db)
            else:
                txn.put(key, value, db=state_db)
        return WriteResult(tuple(bases))

    def _check_sequence(
        self, txn: Any, topic: str, tid: int, p: int, h: _codec.BatchHeader, base: int
    ) -> None:
        db = self._dbs["producers"]
        key = _PRODK.pack(h.producer_id, tid, p)
        raw = txn.get(key, db=db)
        where = f"producer {h.producer_id} on {topic}[{p}]"
        if raw is None:
            if h.base_sequence != 0:
                raise OutOfOrderSequence(
                    f"{where}: first batch has sequence {h.base_sequence}, expected 0")
        else:
            epoch, last_seq, last_off = _PROD.unpack(raw)
            if h.producer_epoch < epoch:
                raise ProducerFenced(
                    f"{where}: epoch {h.producer_epoch} is older than {epoch}; "
                    f"a newer instance of this producer is active")
            if h.producer_epoch == epoch:
                expected = (last_seq + 1) % _SEQ_MOD
                if h.base_sequence != expected:
                    if (last_seq - h.base_sequence) % _SEQ_MOD < 1 << 30:
                        err = DuplicateSequence(
                            f"{where}: batch with sequence {h.base_sequence} is already stored "
                            f"(last sequence {last_seq}, at offset {last_off})")
                        err.last_offset = last_off  # type: ignore[attr-defined]
                        err.last_sequence = last_seq  # type: ignore[attr-defined]
                        raise err
                    raise OutOfOrderSequence(
                        f"{where}: sequence {h.base_sequence} but {expected} was expected")
            elif h.base_sequence != 0:
                raise OutOfOrderSequence(
                    f"{where}: new epoch {h.producer_epoch} must start at sequence 0")
        last = (h.base_sequence + h.last_offset_delta) % _SEQ_MOD
        txn.put(key, _PROD.pack(h.producer_epoch, last, base + h.last_offset_delta), db=db)

    async def write(self, batch: WriteBatch) -> WriteResult:
        """Commit one atomic intent; resolves when it is durable. A failed condition raises a
        ConditionFailed subclass and nothing of the intent is stored."""
        return await self._run(self._intent_op(batch), _wb_size(batch))

    def submit(self, batch: WriteBatch) -> AsyncWaiter:
        """Queue one intent now and return at once; ``await waiter.wait()`` gives its
        WriteResult once durable (or raises). Intents are committed in submission order, so
        a caller can go on working, and submit more, while earlier ones commit."""
        self._check_open()
        w = AsyncWaiter()
        self._writer.submit(self._intent_op(batch), w, _wb_size(batch))
        return w

    def write_sync(self, batch: WriteBatch) -> WriteResult:
        """Blocking twin of :meth:`write`."""
        return self._run_sync(self._intent_op(batch), _wb_size(batch))

    async def append(self, topic: str, partition: int, records: Sequence[Any]) -> int:
        """Append records as one batch; returns the base offset once durable."""
        wb = WriteBatch()
        wb.append(topic, partition, records)
        return (await self.write(wb)).base_offsets[0]

    def append_sync(self, topic: str, partition: int, records: Sequence[Any]) -> int:
        """Blocking twin of :meth:`append`."""
        wb = WriteBatch()
        wb.append(topic, partition, records)
        return self.write_sync(wb).base_offsets[0]

    async def append_raw(self, topic: str, partition: int, batch: bytes) -> int:
        """Append one Kafka RecordBatch v2 as sent by a client (header and CRC are checked,
        the base offset rewritten); returns the base offset once durable."""
        wb = WriteBatch()
        wb.append_raw(topic, partition, batch)
        return (await self.write(wb)).base_offsets[0]

    def append_raw_sync(self, topic: str, partition: int, batch: bytes) -> int:
        """Blocking twin of :meth:`append_raw`."""
        wb = WriteBatch()
        wb.append_raw(topic, partition, batch)
        return self.write_sync(wb).base_offsets[0]

    async def commit(
        self, group: str, offsets: Mapping[tuple[str, int], int], generation: int | None = None
    ) -> None:
        """Commit a consumer group's offsets (fenced on ``generation`` when given)."""
        wb = WriteBatch()
        wb.commit(group, offsets, generation)
        await self.write(wb)

    def commit_sync(
        self, group: str, offsets: Mapping[tuple[str, int], int], generation: int | None = None
    ) -> None:
        """Blocking twin of :meth:`commit`."""
        wb = WriteBatch()
        wb.commit(group, offsets, generation)
        self.write_sync(wb)

    # ----------------------------------------------------------------- reads

    def _check_offset(self, topic: str, partition: int, offset: int) -> tuple[int, int, int]:
        self._check_open()  # StoreClosed, not lmdb.Error
        _, tid = self._tp(topic, partition)
        if type(offset) is not int:
            raise InvalidArgument(f"an offset is an int, got {type(offset).__name__}")
        nxt, start, _, _ = self._part(tid, partition)
        if not start <= offset <= nxt:
            raise OffsetOutOfRange(topic, partition, offset, start, nxt)
        return tid, nxt, start

    def _batches(self, txn: Any, tid: int, p: int, offset: int) -> Any:
        """Cursor positioned at the batch holding ``offset`` (or the first after it)."""
        cur = txn.cursor(db=self._dbs["log"])
        pfx = _PK.pack(tid, p)
        found = cur.set_range(_LK.pack(tid, p, offset))
        if not found or bytes(cur.key()[:8]) != pfx or _LK.unpack(cur.key())[2] > offset:
            moved = cur.prev() if found else cur.last()
            if not moved or bytes(cur.key()[:8]) != pfx:
                cur.set_range(_LK.pack(tid, p, offset))
        return cur, pfx

    def read(
        self, topic: str, partition: int, offset: int,
        max_records: int = DEFAULT_MAX_RECORDS, max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> Records:
        """Records from ``offset`` on, in order: at most ``max_records``, and stopping before a
        batch that would pass ``max_bytes`` (at least one batch is read if any is there).

        Returns :class:`Records`: iterate it (records are decoded batch by batch as you go),
        ``len()`` it, index it, and continue from its ``next_offset``. Each record has
        ``offset``, ``timestamp``, ``key``, ``value`` and ``headers``. Reading at the high
        watermark gives no records; outside the stored range raises OffsetOutOfRange. A read
        that reaches the partition's last stored batch continues at the high watermark, also
        when compaction removed the records before it (offsets are never reused).
        """
        tid, nxt, _ = self._check_offset(topic, partition, offset)
        parts: list[tuple[bytes, int, int]] = []
        total = 0
        position = offset
        if offset < nxt and max_records > 0:
            used = 0
            parse = _codec.parse_header
            # Whether the read stopped for a limit (more is stored below the high watermark)
            # rather than at the partition's last batch.
            limited = False
            with self._data.gate.reading(), self._env.begin(buffers=True) as txn:
                cur, pfx = self._batches(txn, tid, partition, offset)
                for key, val in cur:
                    # Stop at the high watermark read above: a batch committed after it is
                    # in LMDB a moment before the writer publishes the new watermark, and
                    # handing it out early would let a reader run past the published end.
                    if key[:8] != pfx or _LK.unpack(key)[2] >= nxt:
                        break
                    n = len(val)
                    if parts and used + n > max_bytes:
                        limited = True
                        break
                    used += n
                    buf = bytes(val)
                    take, after = take_from_batch(buf, parse(buf), position, max_records - total)
                    if take:
                        parts.append((buf, position, take))
                        total += take
                    position = max(position, after)
                    if total >= max_records:
                        limited = True
                        break
            if not limited:
                # No batch is left before the high watermark: compaction removed the tail
                # of the partition (offsets are never reused). As in Kafka, reading past
                # such a gap moves the position to the high watermark; otherwise a reader
                # would stay short of it for ever and see data that is never there.
                position = nxt
        return Records(parts, total, position)

    def read_raw(
        self, topic: str, partition: int, offset: int, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> list[bytes]:
        """Stored batches (RecordBatch v2 bytes, unchanged) from the one holding ``offset``, up
        to ``max_bytes`` (at least one batch). As Kafka's Fetch, the first batch may start
        before ``offset``: the reader skips those records."""
        tid, nxt, _ = self._check_offset(topic, partition, offset)
        if offset == nxt:
            return []
        out: list[bytes] = []
        used = 0
        with self._data.gate.reading(), self._env.begin(buffers=True) as txn:
            cur, pfx = self._batches(txn, tid, partition, offset)
            for key, val in cur:
                if (key[:8] != pfx or _LK.unpack(key)[2] >= nxt  # see read()
                        or (out and used + len(val) > max_bytes)):
                    break
                used += len(val)
                out.append(bytes(val))
        return out

    def offset_for_timestamp(self, topic: str, partition: int, timestamp: int) -> int | None:
        """The first offset whose record timestamp is >= ``timestamp``; None if there is none
        (Kafka's ListOffsets then answers the high watermark)."""
        self._check_open()  # StoreClosed, not lmdb.Error
        _, tid = self._tp(topic, partition)
        pfx = _PK.pack(tid, partition)
        with self._data.gate.reading(), self._env.begin(buffers=True) as txn:
            cur = txn.cursor(db=self._dbs["log"])
            if not cur.set_range(pfx):
                return None
            for key, val in cur:
                if key[:8] != pfx:
                    return None
                if _codec.parse_header(val).max_timestamp >= timestamp:
                    for r in _codec.iter_records(bytes(val)):
                        if r.timestamp >= timestamp:
                            return int(r.offset)
        return None

    def committed(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        """A group's committed offsets, ``{(topic, partition): offset}`` (optionally one topic)."""
        self._check_open()  # StoreClosed, not lmdb.Error
        prefix = group.encode() + b"\x00"
        want = self._info(topic).topic_id if topic is not None else None
        out: dict[tuple[str, int], int] = {}
        with self._data.gate.reading(), self._env.begin() as txn:
            cur = txn.cursor(db=self._dbs["offsets"])
            if not cur.set_range(prefix):
                return out
            for key, val in cur:
                if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                    if not key.startswith(prefix):
                        break
                    continue
                tid, p = _PK.unpack(key[len(prefix):])
                info = self._by_id.get(tid)
                if info is None or (want is not None and tid != want):
                    continue
                out[(info.name, p)] = _U64.unpack(val)[0]
        return out

    def groups(self) -> list[str]:
        """Names of groups that have committed offsets or a generation."""
        self._check_open()  # StoreClosed, not lmdb.Error
        names: set[str] = set()
        with self._data.gate.reading(), self._env.begin() as txn:
            for key in txn.cursor(db=self._dbs["offsets"]).iternext(values=False):
                names.add(key[: key.index(b"\x00")].decode())
            for key in txn.cursor(db=self._dbs["groups"]).iternext(values=False):
                names.add(key.decode())
        return sorted(names)

    def generation(self, group: str) -> int | None:
        """A group's stored generation, if any."""
        self._check_open()  # StoreClosed, not lmdb.Error
        with self._data.gate.reading(), self._env.begin() as txn:
            raw = txn.get(group.encode(), db=self._dbs["groups"])
        return _I64.unpack(raw)[0] if raw is not None else None

    def get(self, key: bytes) -> bytes | None:
        """A state key's value (None if absent)."""
        self._check_open()  # StoreClosed, not lmdb.Error
        with self._data.gate.reading(), self._env.begin() as txn:
            return txn.get(key, db=self._dbs["state"])

    def scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """State keys starting with ``prefix``, in key order."""
        self._check_open()  # StoreClosed, not lmdb.Error
        out = []
        with self._data.gate.reading(), self._env.begin() as txn:
            cur = txn.cursor(db=self._dbs["state"])
            if cur.set_range(prefix):
                for k, v in cur:
                    if not k.startswith(prefix):
                        break
                    out.append((k, v))
        return out

    # ----------------------------------------------------------------- maintenance

    def _maintenance_loop(self, interval: float) -> None:
        from ._maintenance import maintenance_op

        while not self._maint_stop.wait(interval):
            try:
                self._run_sync(maintenance_op(self, _now_ms()))
            except StoreClosed:
                return
            except Exception:  # keep the log serving; report and retry next round
                import logging

                logging.getLogger(__name__).exception("retention/compaction round failed")

    def run_retention(self, now_ms: int | None = None) -> int:
        """Apply every topic's retention now; returns how many batches were deleted."""
        from ._maintenance import retention_op

        return self._run_sync(retention_op(self, _now_ms() if now_ms is None else now_ms))

    def compact(self, topic: str | None = None, now_ms: int | None = None) -> int:
        """Compact ``compact`` topics now (one, or all); returns how many records were removed."""
        from ._maintenance import compaction_op

        if topic is not None:
            self._info(topic)
        return self._run_sync(compaction_op(self, topic, _now_ms() if now_ms is None else now_ms))

    def stats(self) -> dict[str, int]:
        """Writer statistics: transactions committed and operations they carried."""
        return {"commits": self._writer.commits, "ops": self._writer.ops}


def _describe(config: TopicConfig) -> str:
    """The settings that differ from the defaults, for messages."""
    default = TopicConfig().to_dict()
    diff = [f"{k}={v}" for k, v in config.to_dict().items() if default[k] != v]
    return f" ({', '.join(diff)})" if diff else " (default settings)"


def _wb_size(wb: WriteBatch) -> int:
    return sum(len(b) for _, _, b in wb.appends) + sum(len(v or b"") for _, v in wb.puts)


def _delete_prefix(txn: Any, db: Any, prefix: bytes) -> int:
    cur = txn.cursor(db=db)
    n = 0
    if cur.set_range(prefix):
        while cur.key()[: len(prefix)] == prefix:
            if not cur.delete():
                break
            n += 1
    return n


def _topic_from_json(name: str, raw: bytes) -> TopicInfo:
    d = orjson.loads(raw)
    return TopicInfo(name, d["partitions"], TopicConfig.from_dict(d["config"]), d["id"])
