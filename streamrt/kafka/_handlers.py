"""Kafka requests mapped onto the :class:`~streamrt.broker.Broker`, one method per API.

Each handler takes the decoded request body (a dict with Kafka's field names in snake_case,
see ``_codec.py``) and returns the response body. They speak only to the Broker facade, so
a Kafka client gets the same guarantees as an embedded one: produce goes through the
partition actors' group commit, groups through the same group actors (generations,
heartbeats, fenced commits), reads through the same log.

Produce is split in two (:meth:`Handlers.produce_submit`): the connection submits a
request's batches in arrival order, then waits for durability while it reads the next
request, so one connection's produce requests are written in order yet pipelined.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ..errors import DuplicateSequence, InvalidArgument, InvalidTopicName, StreamrtError
from ..storage import TopicConfig, WriteBatch
from ..storage._codec import batch_end, empty_batch, parse_header
from ..storage._store import MAX_PARTITIONS
from ..storage._types import check_topic_name
from ._messages import ErrorCode as E
from ._errors import error_code
from ._produce import split_batches

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger(__name__)

#: A decoded request body and a response body (Kafka's field names in snake_case).
Body = Mapping[str, Any]
Resp = dict[str, Any]

#: The one node of this cluster: every partition's leader and every group's coordinator.
NODE_ID = 0
EARLIEST = -2
LATEST = -1
MAX_TIMESTAMP = -3
_AUTHORIZED_OPS_NONE = -(2**31)
_PRODUCER_ID_KEY = b"kafka/next-producer-id"
_I64 = struct.Struct(">q")
_NO_TRANSACTIONS = ("streamrt serve does not support Kafka transactions: use a producer without "
                    "transactional.id (enable.idempotence still works)")

#: Kafka's topic config names <-> TopicConfig fields.
_CONFIGS = {
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "cleanup.policy": "cleanup_policy",
    "delete.retention.ms": "tombstone_grace_ms",
}


@attrs.frozen
class Caller:
    """Who sent a request: the client id from its header and the peer's host."""

    client_id: str
    host: str


@attrs.define
class ServerConfig:
    """Settings of ``streamrt serve`` (the names of the CLI options, with ``_``)."""

    host: str = "127.0.0.1"
    port: int = 9092
    #: The address clients are told to connect to (Metadata, FindCoordinator).
    advertised_host: str | None = None
    advertised_port: int | None = None
    #: Largest request frame, and the smaller limit before a client's first valid request.
    max_frame_bytes: int = 100 << 20
    first_frame_bytes: int = 512 << 10
    max_connections: int = 1024
    #: Requests of one connection being processed at once (more wait unread).
    max_in_flight: int = 64
    #: Response bytes of one connection built but not yet sent before reading stops.
    max_outbound_bytes: int = 64 << 20
    #: A connection without a request for this long is closed (Kafka's connections.max.idle.ms).
    idle_timeout: float = 600.0
    #: A peer that leaves a frame half-sent, or does not read a response, for this long is cut.
    stall_timeout: float = 30.0
    #: Unknown topics named in Metadata requests are created (Kafka's auto.create.topics.enable).
    auto_create_topics: bool = True
    default_partitions: int = 1
    cluster_id: str = "streamrt"

    @property
    def advertised(self) -> tuple[str, int]:
        return (self.advertised_host or self.host, self.advertised_port or self.port)


class Handlers:
    """The Kafka API over one Broker; see the module doc."""

    def __init__(self, broker: Broker, config: ServerConfig) -> None:
        self.broker = broker
        self.config = config
        self._pid_lock = anyio.Lock()

    # ------------------------------------------------------------------ cluster

    def _broker_entry(self) -> dict[str, Any]:
        host, port = self.config.advertised
        return {"node_id": NODE_ID, "host": host, "port": port, "rack": None}

    async def metadata(self, version: int, body: Body, caller: Caller) -> Resp:
        requested = body.get("topics")
        auto = self.config.auto_create_topics and body.get("allow_auto_topic_creation", True)
        if requested is None or (version == 0 and not requested):
            names = [t.name for t in self.broker.topics()]
        else:
            names = [t.get("name") for t in requested]
        topics = []
        for name in names:
            topics.append(await self._topic_metadata(name, auto))
        return {
            "throttle_time_ms": 0,
            "brokers": [self._broker_entry()],
            "cluster_id": self.config.cluster_id,
            "controller_id": NODE_ID,
            "topics": topics,
            "cluster_authorized_operations": _AUTHORIZED_OPS_NONE,
        }

    async def _topic_metadata(self, name: str | None, auto: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name, "is_internal": False, "partitions": [],
                                 "topic_authorized_operations": _AUTHORIZED_OPS_NONE}
        if name is None:  # a topic asked for by id only: we have no topic ids
            entry["error_code"] = E.UNKNOWN_TOPIC_OR_PARTITION
            return entry
        try:
            check_topic_name(name)
        except StreamrtError:
            entry["error_code"] = E.INVALID_TOPIC_EXCEPTION
            return entry
        if not self.broker.store.has_topic(name):
            if not auto:
                entry["error_code"] = E.UNKNOWN_TOPIC_OR_PARTITION
                return entry
            try:
                await self.broker.create_topic(name, self.config.default_partitions)
                log.info("created topic %s (%d partitions) on a client's request", name,
                         self.config.default_partitions)
            except StreamrtError as e:
                entry["error_code"] = error_code(e)
                return entry
        info = self.broker.topic(name)
        entry["error_code"] = E.NONE
        entry["partitions"] = [
            {"error_code": E.NONE, "partition_index": p, "leader_id": NODE_ID, "leader_epoch": 0,
             "replica_nodes": [NODE_ID], "isr_nodes": [NODE_ID], "offline_replicas": []}
            for p in range(info.partitions)
        ]
        return entry

    async def find_coordinator(self, version: int, body: Body, caller: Caller) -> Resp:
        host, port = self.config.advertised
        key_type = body.get("key_type", 0)
        err, msg = E.NONE, None
        if key_type != 0:
            # A transaction coordinator: there is none. The error must be one clients do not
            # retry (COORDINATOR_NOT_AVAILABLE would make them retry until their own timeout),
            # and it is the one InitProducerId and Produce give a transactional id.
            err, msg = E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, _NO_TRANSACTIONS
        if version >= 4:
            return {"throttle_time_ms": 0, "coordinators": [
                {"key": k, "node_id": NODE_ID, "host": host, "port": port, "error_code": err,
                 "error_message": msg} for k in body.get("coordinator_keys") or []]}
        return {"throttle_time_ms": 0, "error_code": err, "error_message": msg,
                "node_id": NODE_ID, "host": host, "port": port}

    # ------------------------------------------------------------------ topics

    async def create_topics(self, version: int, body: Body, caller: Caller) -> Resp:
        topics = body.get("topics") or []
        repeated = _repeated([t["name"] for t in topics])
        out = []
        for t in topics:
            name = t["name"]
            if name in repeated:  # one INVALID_REQUEST answer for the name, as Kafka gives
                if repeated[name]:
                    repeated[name] = False
                    out.append({"name": name, "error_code": E.INVALID_REQUEST,
                                "error_message": _duplicate_message(name, "created"),
                                "num_partitions": -1, "replication_factor": -1, "configs": []})
                continue
            n = t.get("num_partitions", -1)
            n = self.config.default_partitions if n == -1 else n
            entry: dict[str, Any] = {"name": name, "error_code": E.NONE, "error_message": None,
                                     "num_partitions": n, "replication_factor": 1, "configs": []}
            out.append(entry)
            code, message, config = self._check_new_topic(name, n, t)
            if code == E.NONE and not body.get("validate_only"):
                try:
                    await self.broker.create_topic(name, n, config)
                except StreamrtError as e:
                    code, message = error_code(e), str(e)
            entry["error_code"], entry["error_message"] = code, message
        return {"throttle_time_ms": 0, "topics": out}

    def _check_new_topic(self, name: str, n: int,
                         t: Mapping[str, Any]) -> tuple[int, str | None, TopicConfig]:
        """Every check a create makes before it writes, as (error code, message, config):
        validate_only answers with exactly this, so it agrees with the real create."""
        config = TopicConfig()
        rf = t.get("replication_factor", -1)
        if t.get("assignments"):
            return (E.INVALID_REQUEST,
                    "manual replica assignments are not supported: streamrt is one node", config)
        if rf not in (-1, 1):
            return (E.INVALID_REPLICATION_FACTOR,
                    f"replication factor {rf}: streamrt serve is one node, use 1 or -1", config)
        if not 1 <= n <= MAX_PARTITIONS:
            return (E.INVALID_PARTITIONS,
                    f"a topic has from 1 to {MAX_PARTITIONS} partitions, got {n}", config)
        try:
            check_topic_name(name)
        except InvalidTopicName as e:
            return E.INVALID_TOPIC_EXCEPTION, str(e), config
        try:
            config = _topic_config(t.get("configs") or [])
        except InvalidArgument as e:
            return E.INVALID_CONFIG, str(e), config
        if self.broker.store.has_topic(name):
            return E.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists", config
        return E.NONE, None, config

    async def delete_topics(self, version: int, body: Body, caller: Caller) -> Resp:
        if version >= 6:
            names = [t.get("name") for t in body.get("topics") or []]
        else:
            names = list(body.get("topic_names") or [])
        repeated = _repeated(names)
        out = []
        for name in names:
            entry: dict[str, Any] = {"name": name, "error_code": E.NONE, "error_message": None}
            if name in repeated:  # one INVALID_REQUEST answer for the name, as Kafka gives
                if repeated[name]:
                    repeated[name] = False
                    entry["error_code"] = E.INVALID_REQUEST
                    entry["error_message"] = _duplicate_message(name, "deleted")
                    out.append(entry)
                continue
            out.append(entry)
            if name is None or not self.broker.store.has_topic(name):
                entry["error_code"] = E.UNKNOWN_TOPIC_OR_PARTITION
                continue
            try:
                await self.broker.delete_topic(name)
            except StreamrtError as e:
                entry["error_code"], entry["error_message"] = error_code(e), str(e)
        return {"throttle_time_ms": 0, "responses": out}

    async def describe_configs(self, version: int, body: Body, caller: Caller) -> Resp:
        results = []
        for r in body.get("resources") or []:
            rtype, name = r.get("resource_type"), r.get("resource_name")
            keys = r.get("configuration_keys")
            entry: dict[str, Any] = {"error_code": E.NONE, "error_message": None,
                                     "resource_type": rtype, "resource_name": name, "configs": []}
            results.append(entry)
            if rtype == 2:  # topic
                if not self.broker.store.has_topic(name):
                    entry["error_code"] = E.UNKNOWN_TOPIC_OR_PARTITION
                    entry["error_message"] = f"no topic {name!r}"
                    continue
                values = _kafka_configs(self.broker.topic(name).config)
            elif rtype == 4:  # broker
                values = {"advertised.listeners": "PLAINTEXT://%s:%d" % self.config.advertised,
                          "num.partitions": str(self.config.default_partitions),
                          "auto.create.topics.enable": str(self.config.auto_create_topics).lower()}
            else:
                entry["error_code"] = E.INVALID_REQUEST
                entry["error_message"] = f"resource type {rtype} is not supported"
                continue
            for k, v in values.items():
                if keys is None or k in keys:
                    entry["configs"].append({
                        "name": k, "value": v, "read_only": rtype == 4, "is_default": False,
                        "config_source": 1 if rtype == 2 else 4, "is_sensitive": False,
                        "synonyms": [], "config_type": 0, "documentation": None})
        return {"throttle_time_ms": 0, "results": results}

    # ------------------------------------------------------------------ produce

    async def produce_submit(
        self, version: int, body: Mapping[str, Any], caller: Caller
    ) -> Callable[[], Awaitable[dict[str, Any]]]:
        """Queue every partition's batches now (in the caller's order); the returned
        function waits until they are durable and builds the response."""
        acks = body.get("acks", -1)
        if body.get("transactional_id") is not None:
            return _const(_produce_error(body, E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                         _NO_TRANSACTIONS))
        if acks not in (0, 1, -1):
            return _const(_produce_error(body, E.INVALID_REQUIRED_ACKS,
                                         f"acks must be 0, 1 or -1 (all), got {acks}"))
        waits: list[tuple[dict[str, Any], Any, list[memoryview]]] = []
        responses = []
        for t in body.get("topic_data") or []:
            parts: list[dict[str, Any]] = []
            responses.append({"name": t["name"], "partition_responses": parts})
            for pd in t.get("partition_data") or []:
                entry = {"index": pd["index"], "error_code": E.NONE, "base_offset": -1,
                         "log_append_time_ms": -1, "log_start_offset": -1,
                         "record_errors": [], "error_message": None}
                parts.append(entry)
                try:
                    batches = split_batches(pd.get("records"))
                    wb = WriteBatch()
                    for b in batches:
                        wb.append_raw(t["name"], pd["index"], b)
                    pending = await self.broker.submit(t["name"], pd["index"], wb)
                except StreamrtError as e:
                    _fail(entry, e)
                    continue
                waits.append((entry, pending, batches))

        async def finish() -> dict[str, Any]:
            for entry, pending, batches in waits:
                try:
                    result = await pending.result()
                    entry["base_offset"] = result.base_offsets[0]
                except DuplicateSequence as e:
                    _duplicate(entry, e, batches)
                except StreamrtError as e:
                    _fail(entry, e)
                    continue
                try:
                    entry["log_start_offset"] = self.broker.log_start_offset(
                        _topic_of(responses, entry), entry["index"])
                except StreamrtError:
                    pass
            return {"responses": responses, "throttle_time_ms": 0}

        return finish

    async def init_producer_id(self, version: int, body: Body, caller: Caller) -> Resp:
        if body.get("transactional_id") is not None:
            return {"throttle_time_ms": 0, "error_code": E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "producer_id": -1, "producer_epoch": -1}
        pid, epoch = body.get("producer_id", -1), body.get("producer_epoch", -1)
        if pid >= 0 and 0 <= epoch < 32767:  # KIP-360: bump the epoch of a known producer
            return {"throttle_time_ms": 0, "error_code": E.NONE, "producer_id": pid,
                    "producer_epoch": epoch + 1}
        async with self._pid_lock:  # durable before the id is handed out: never reused
            raw = self.broker.store.get(_PRODUCER_ID_KEY)
            pid = _I64.unpack(raw)[0] if raw else 1000
            wb = WriteBatch()
            wb.put(_PRODUCER_ID_KEY, _I64.pack(pid + 1))
            await self.broker.write(wb)
        return {"throttle_time_ms": 0, "error_code": E.NONE, "producer_id": pid,
                "producer_epoch": 0}

    # ------------------------------------------------------------------ reads

    async def fetch(self, version: int, body: Body, caller: Caller) -> Resp:
        if body.get("session_id", 0) not in (0,) and body.get("session_epoch", -1) > 0:
            return {"throttle_time_ms": 0, "error_code": E.FETCH_SESSION_ID_NOT_FOUND,
                    "session_id": 0, "responses": []}
        max_wait = max(0, body.get("max_wait_ms", 0)) / 1000.0
        min_bytes = body.get("min_bytes", 1)
        resp, size = self._read(body)  # size -1: no data, and an error to report at once
        if 0 <= size < max(min_bytes, 1) and max_wait > 0:
            positions = {(t["topic"], p["partition"]): p["fetch_offset"]
                         for t in body.get("topics") or [] for p in t.get("partitions") or []}
            known = {tp: off for tp, off in positions.items()
                     if self.broker.store.has_topic(tp[0])}
            if known:
                deadline = anyio.current_time() + max_wait
                while size < max(min_bytes, 1):
                    left = deadline - anyio.current_time()
                    if left <= 0 or not await self.broker.wait_any(known, left):
                        break
                    resp, size = self._read(body)
                    if 0 <= size < min_bytes and min_bytes > 1:
                        known = {tp: self.broker.high_watermark(*tp) for tp in known
                                 if self.broker.store.has_topic(tp[0])}
                        if not known:
                            break
                    else:
                        break
        return {"throttle_time_ms": 0, "error_code": E.NONE, "session_id": 0, "responses": resp}

    def _read(self, body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """The Fetch response's topics, and the bytes of records in them (-1 when there are
        none and some partition has an error to report)."""
        store = self.broker.store
        budget = body.get("max_bytes", 0x7FFFFFFF)
        total = 0
        out = []
        for t in body.get("topics") or []:
            name = t["topic"]
            parts: list[dict[str, Any]] = []
            out.append({"topic": name, "partitions": parts})
            for p in t.get("partitions") or []:
                idx, off = p["partition"], p["fetch_offset"]
                entry: dict[str, Any] = {
                    "partition_index": idx, "error_code": E.NONE, "high_watermark": -1,
                    "last_stable_offset": -1, "log_start_offset": -1,
                    "aborted_transactions": [], "preferred_read_replica": -1, "records": b""}
                parts.append(entry)
                try:
                    hw = store.high_watermark(name, idx)
                    start = store.log_start_offset(name, idx)
                    entry["high_watermark"] = entry["last_stable_offset"] = hw
                    entry["log_start_offset"] = start
                    if off < start or off > hw:
                        entry["error_code"] = E.OFFSET_OUT_OF_RANGE
                        continue
                    if off == hw:
                        continue
                    limit = min(p.get("partition_max_bytes", budget), budget - total)
                    if limit <= 0 and total > 0:
                        continue
                    batches = store.read_raw(name, idx, off, max(limit, 1))
                    if not batches or batch_end(batches[-1]) <= off:  # off is in a gap
                        batches = self._past_gap(name, idx, off, hw, max(limit, 1))
                except StreamrtError as e:
                    entry["error_code"] = error_code(e)
                    continue
                if batches:
                    entry["records"] = batches
                    total += sum(len(b) for b in batches)
        if total == 0 and any(p["error_code"] for t in out for p in t["partitions"]):
            total = -1  # an error to report: answer now, as Kafka does, not after max_wait
        return out, total

    def _past_gap(self, name: str, idx: int, off: int, hw: int, limit: int) -> list[bytes]:
        """Fetch from an offset that no stored batch reaches, although the high watermark
        ``hw`` (read before) is past it: compaction removed the records there. If a later
        batch holds records, serve from it; if compaction removed the partition's tail, answer
        an empty batch spanning up to ``hw``, as Kafka's cleaner leaves one, so clients move
        on instead of fetching the same offset for ever."""
        store = self.broker.store
        later = store.read(name, idx, off, max_records=1)
        if len(later):
            return store.read_raw(name, idx, later[0].offset, limit)
        return [empty_batch(off, hw - 1 - off, int(time.time() * 1000))]

    async def list_offsets(self, version: int, body: Body, caller: Caller) -> Resp:
        store = self.broker.store
        topics = []
        for t in body.get("topics") or []:
            parts: list[dict[str, Any]] = []
            topics.append({"name": t["name"], "partitions": parts})
            for p in t.get("partitions") or []:
                idx, ts = p["partition_index"], p["timestamp"]
                entry: dict[str, Any] = {"partition_index": idx, "error_code": E.NONE,
                                         "timestamp": -1, "offset": -1, "leader_epoch": 0,
                                         "old_style_offsets": []}
                parts.append(entry)
                try:
                    if ts == EARLIEST:
                        off = store.log_start_offset(t["name"], idx)
                    elif ts == LATEST:
                        off = store.high_watermark(t["name"], idx)
                    elif ts == MAX_TIMESTAMP:
                        off, found_ts = _max_timestamp(store, t["name"], idx)
                        entry["timestamp"] = found_ts
                    else:
                        found = store.offset_for_timestamp(t["name"], idx, ts)
                        off = -1 if found is None else found
                        if found is not None:
                            recs = store.read(t["name"], idx, found, 1)
                            entry["timestamp"] = recs[0].timestamp if recs else -1
                except StreamrtError as e:
                    entry["error_code"] = error_code(e)
                    continue
                entry["offset"] = off
                entry["old_style_offsets"] = [off] if off >= 0 else []
        return {"throttle_time_ms": 0, "topics": topics}

    async def offset_for_leader_epoch(self, version: int, body: Body, caller: Caller) -> Resp:
        topics = []
        for t in body.get("topics") or []:
            parts = []
            topics.append({"topic": t["topic"], "partitions": parts})
            for p in t.get("partitions") or []:
                entry = {"error_code": E.NONE, "partition": p["partition"], "leader_epoch": 0,
                         "end_offset": -1}
                parts.append(entry)
                try:
                    entry["end_offset"] = self.broker.high_watermark(t["topic"], p["partition"])
                except StreamrtError as e:
                    entry["error_code"] = error_code(e)
                    continue
                if p.get("leader_epoch", 0) > 0:  # we only ever had epoch 0
                    entry["leader_epoch"], entry["end_offset"] = -1, -1
        return {"throttle_time_ms": 0, "topics": topics}

    # ------------------------------------------------------------------ groups

    async def join_group(self, version: int, body: Body, caller: Caller) -> Resp:
        group = body["group_id"]
        session = body["session_timeout_ms"] / 1000.0
        rebalance = body.get("rebalance_timeout_ms", -1)
        rebalance = session if rebalance is None or rebalance < 0 else rebalance / 1000.0
        # protocol_name is nullable from v7 only: before, an error answer carries "" (as
        # Kafka's JoinGroupResponse sets it), or the answer could not be encoded at all.
        fail = {"throttle_time_ms": 0, "generation_id": -1, "protocol_type": None,
                "protocol_name": None if version >= 7 else "", "leader": "",
                "member_id": body.get("member_id") or "", "members": []}
        if not group:
            return {**fail, "error_code": E.INVALID_GROUP_ID}
        if not session > 0:
            return {**fail, "error_code": E.INVALID_SESSION_TIMEOUT}
        try:
            r = await self.broker.groups.join(
                group, member_id=body.get("member_id") or "", client_id=caller.client_id,
                session_timeout=session, rebalance_timeout=rebalance,
                protocol_type=body.get("protocol_type") or "",
                protocols=[(p["name"], bytes(p["metadata"])) for p in body.get("protocols") or []],
                group_instance_id=_instance_id(body))
        except StreamrtError as e:
            return {**fail, "error_code": error_code(e)}
        instance_ids = dict(r.instance_ids)
        return {"throttle_time_ms": 0, "error_code": E.NONE, "generation_id": r.generation,
                "protocol_type": r.protocol_type, "protocol_name": r.protocol,
                "leader": r.leader, "skip_assignment": False, "member_id": r.member_id,
                "members": [{"member_id": m, "group_instance_id": instance_ids.get(m),
                             "metadata": meta} for m, meta in r.members]}

    async def sync_group(self, version: int, body: Body, caller: Caller) -> Resp:
        assignments = body.get("assignments") or []
        try:
            a = await self.broker.groups.sync(
                body["group_id"], member_id=body["member_id"], generation=body["generation_id"],
                assignments={x["member_id"]: bytes(x["assignment"]) for x in assignments}
                if assignments else None, group_instance_id=_instance_id(body))
        except StreamrtError as e:
            return {"throttle_time_ms": 0, "error_code": error_code(e), "assignment": b"",
                    "protocol_type": body.get("protocol_type"),
                    "protocol_name": body.get("protocol_name")}
        return {"throttle_time_ms": 0, "error_code": E.NONE, "assignment": a,
                "protocol_type": body.get("protocol_type"),
                "protocol_name": body.get("protocol_name")}

    async def heartbeat(self, version: int, body: Body, caller: Caller) -> Resp:
        try:
            await self.broker.groups.heartbeat(body["group_id"], member_id=body["member_id"],
                                               generation=body["generation_id"],
                                               group_instance_id=_instance_id(body))
        except StreamrtError as e:
            return {"throttle_time_ms": 0, "error_code": error_code(e)}
        return {"throttle_time_ms": 0, "error_code": E.NONE}

    async def leave_group(self, version: int, body: Body, caller: Caller) -> Resp:
        group = body["group_id"]
        if version >= 3:  # a batch; static members may be named by instance id alone
            members = [(m.get("member_id") or "", _instance_id(m))
                       for m in body.get("members") or []]
        else:
            members = [(body.get("member_id") or "", None)]
        results = []
        for m, instance in members:
            code = E.NONE
            try:
                await self.broker.groups.leave(group, member_id=m, group_instance_id=instance)
            except StreamrtError as e:
                code = error_code(e)
            results.append({"member_id": m, "group_instance_id": instance, "error_code": code})
        top = results[0]["error_code"] if version < 3 and results else E.NONE
        return {"throttle_time_ms": 0, "error_code": top, "members": results}

    async def offset_commit(self, version: int, body: Body, caller: Caller) -> Resp:
        generation = body.get("generation_id_or_member_epoch", body.get("generation_id", -1))
        codes: dict[tuple[str, int], int] = {}  # per partition; the rest share the commit's
        good: dict[tuple[str, int], int] = {}
        for t in body.get("topics") or []:
            for p in t.get("partitions") or []:
                tp, off = (t["name"], p["partition_index"]), p["committed_offset"]
                if off < 0:
                    codes[tp] = E.INVALID_REQUEST
                elif not self._has_partition(*tp):
                    codes[tp] = E.UNKNOWN_TOPIC_OR_PARTITION
                else:
                    good[tp] = off
        code = E.NONE
        if good:
            try:
                await self.broker.groups.commit(
                    body["group_id"], good, member_id=body.get("member_id") or "",
                    generation=-1 if generation is None else generation,
                    group_instance_id=_instance_id(body))
            except StreamrtError as e:
                code = error_code(e)
        return {"throttle_time_ms": 0, "topics": [
            {"name": t["name"], "partitions": [
                {"partition_index": p["partition_index"],
                 "error_code": codes.get((t["name"], p["partition_index"]), code)}
                for p in t.get("partitions") or []]}
            for t in body.get("topics") or []]}

    def _has_partition(self, topic: str, partition: int) -> bool:
        store = self.broker.store
        return store.has_topic(topic) and 0 <= partition < store.topic(topic).partitions

    async def offset_fetch(self, version: int, body: Body, caller: Caller) -> Resp:
        if version >= 8:
            groups = [{"group_id": g["group_id"], "error_code": E.NONE,
                       "topics": self._fetched(g["group_id"], g.get("topics"))}
                      for g in body.get("groups") or []]
            return {"throttle_time_ms": 0, "groups": groups}
        return {"throttle_time_ms": 0, "error_code": E.NONE,
                "topics": self._fetched(body["group_id"], body.get("topics"))}

    def _fetched(self, group: str, topics: Any) -> list[dict[str, Any]]:
        committed = self.broker.committed(group)
        if topics is None:  # every committed partition
            by_topic: dict[str, list[int]] = {}
            for t, p in sorted(committed):
                by_topic.setdefault(t, []).append(p)
            topics = [{"name": t, "partition_indexes": ps} for t, ps in by_topic.items()]
        out = []
        for t in topics:
            out.append({"name": t["name"], "partitions": [
                {"partition_index": p, "committed_offset": committed.get((t["name"], p), -1),
                 "committed_leader_epoch": -1, "metadata": "", "error_code": E.NONE}
                for p in t.get("partition_indexes") or []]})
        return out

    async def describe_groups(self, version: int, body: Body, caller: Caller) -> Resp:
        out = []
        for g in body.get("groups") or []:
            entry: dict[str, Any] = {"error_code": E.NONE, "error_message": None, "group_id": g,
                                     "group_state": "Dead", "protocol_type": "",
                                     "protocol_data": "", "members": [],
                                     "authorized_operations": _AUTHORIZED_OPS_NONE}
            out.append(entry)
            try:
                d = await self.broker.groups.describe(g)
            except StreamrtError as e:
                entry["error_code"] = error_code(e)
                continue
            stored = d is None or not d.protocol_type  # a group this process has not seen join
            if stored and g in self.broker.groups.list_groups():
                # Known from storage only (committed offsets, a generation): groups that store
                # anything are consumer groups, as list_groups says.
                entry["group_state"] = "Empty"
                entry["protocol_type"] = "consumer"
            if d is None:
                continue
            entry.update(group_state=d.state, protocol_type=d.protocol_type or
                         entry["protocol_type"],
                         protocol_data=d.protocol if d.state == "Stable" else "")
            entry["members"] = [
                {"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                 "client_id": m.client_id,
                 "client_host": "", "member_metadata": m.metadata,
                 "member_assignment": m.assignment} for m in d.members]
        return {"throttle_time_ms": 0, "groups": out}

    async def delete_groups(self, version: int, body: Body, caller: Caller) -> Resp:
        results = []
        for g in dict.fromkeys(body.get("groups_names") or []):  # a name once, as in Kafka
            code = E.NONE
            if not g:
                code = E.INVALID_GROUP_ID
            else:
                try:
                    await self.broker.groups.delete(g)
                    log.info("deleted group %s on a client's request", g)
                except StreamrtError as e:
                    code = error_code(e)
            results.append({"group_id": g, "error_code": code})
        return {"throttle_time_ms": 0, "results": results}

    async def list_groups(self, version: int, body: Body, caller: Caller) -> Resp:
        states = body.get("states_filter") or []
        groups = []
        for g in self.broker.groups.list_groups():
            d = await self.broker.groups.describe(g)
            state = d.state if d is not None else "Empty"
            if states and state not in states:
                continue
            groups.append({"group_id": g, "protocol_type":
                           (d.protocol_type if d is not None else "consumer") or "consumer",
                           "group_state": state, "group_type": "classic"})
        return {"throttle_time_ms": 0, "error_code": E.NONE, "groups": groups}


# ---------------------------------------------------------------------- helpers


def _instance_id(body: Body) -> str | None:
    """A request's ``group_instance_id`` (KIP-345): None for a dynamic member, and for
    versions before the field (the codec fills in its null default)."""
    return body.get("group_instance_id") or None


def _repeated(names: list[str | None]) -> dict[str, bool]:
    """The names that occur more than once in one CreateTopics or DeleteTopics request (each
    mapped to True: its answer is still to be given). Kafka refuses such a name as a whole:
    acting on one entry and failing the other would leave the client reporting a failure for
    a change that happened. Topics named only by id (None) are not compared."""
    counts: dict[str, int] = {}
    for name in names:
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    return {name: True for name, n in counts.items() if n > 1}


def _duplicate_message(name: str, done: str) -> str:
    return (f"the request contains duplicate topic {name!r} (named more than once); it was not "
            f"{done}: name each topic once")


def _fail(entry: dict[str, Any], e: BaseException) -> None:
    entry["error_code"] = error_code(e)
    entry["error_message"] = str(e)
    entry["base_offset"] = -1


def _duplicate(entry: dict[str, Any], e: DuplicateSequence, batches: list[memoryview]) -> None:
    """A retried batch that is already stored: if it is the producer's last one, answer
    success with its offset (what the client would have heard); older ones get Kafka's
    DUPLICATE_SEQUENCE_NUMBER, which idempotent clients also treat as written."""
    last_off = getattr(e, "last_offset", None)
    h = parse_header(batches[-1])
    if (last_off is not None and len(batches) == 1
            and (h.base_sequence + h.last_offset_delta) % 2**31 == getattr(e, "last_sequence", -1)):
        entry["base_offset"] = last_off - h.last_offset_delta
        return
    entry["error_code"] = E.DUPLICATE_SEQUENCE_NUMBER
    entry["error_message"] = str(e)


def _topic_of(responses: list[dict[str, Any]], entry: dict[str, Any]) -> str:
    for r in responses:
        if any(x is entry for x in r["partition_responses"]):
            return str(r["name"])
    raise LookupError("entry not in responses")


def _produce_error(body: Mapping[str, Any], code: int, msg: str) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "responses": [
        {"name": t["name"], "partition_responses": [
            {"index": p["index"], "error_code": code, "base_offset": -1, "log_append_time_ms": -1,
             "log_start_offset": -1, "record_errors": [], "error_message": msg}
            for p in t.get("partition_data") or []]}
        for t in body.get("topic_data") or []]}


def _const(value: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def get() -> dict[str, Any]:
        return value

    return get


def _max_timestamp(store: Any, topic: str, partition: int) -> tuple[int, int]:
    """ListOffsets MAX_TIMESTAMP: the offset and timestamp of the record with the largest
    timestamp (-1, -1 for an empty partition)."""
    best_off, best_ts = -1, -1
    off = store.log_start_offset(topic, partition)
    hw = store.high_watermark(topic, partition)
    while off < hw:
        recs = store.read(topic, partition, off, 10_000)
        if not recs:
            break
        for r in recs:
            if r.timestamp > best_ts:
                best_off, best_ts = r.offset, r.timestamp
        off = recs[-1].offset + 1
    return best_off, best_ts


def _topic_config(configs: list[Mapping[str, Any]]) -> TopicConfig:
    settings: dict[str, Any] = {}
    for c in configs:
        name, value = c.get("name"), c.get("value")
        field = _CONFIGS.get(name or "")
        if field is None:
            continue  # Kafka settings without a meaning here (segment.bytes, ...) are ignored
        if value is None:
            continue
        if field == "cleanup_policy":
            settings[field] = _cleanup_policy(value)
            continue
        try:
            n = int(value)
        except ValueError:
            raise InvalidArgument(f"config {name}={value!r} is not a number") from None
        settings[field] = None if n < 0 else n
    try:
        return TopicConfig(**settings)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"invalid topic config: {e}") from None


def _cleanup_policy(value: str) -> str:
    """Kafka's ``cleanup.policy`` (a list) as TopicConfig's. streamrt applies a topic's
    retention settings under either policy, so Kafka's ``compact,delete`` (compaction plus
    retention) is streamrt's ``compact``."""
    policies = {p.strip() for p in value.split(",")}
    if policies == {"delete"}:
        return "delete"
    if policies in ({"compact"}, {"compact", "delete"}):
        return "compact"
    raise InvalidArgument(
        f"config cleanup.policy={value!r} is not supported: use delete, compact, or "
        f"compact,delete (compaction plus retention)")


def _kafka_configs(config: TopicConfig) -> dict[str, str]:
    return {
        "retention.ms": str(config.retention_ms if config.retention_ms is not None else -1),
        "retention.bytes": str(-1 if config.retention_bytes is None else config.retention_bytes),
        "cleanup.policy": config.cleanup_policy,
        "delete.retention.ms": str(
            -1 if config.tombstone_grace_ms is None else config.tombstone_grace_ms),
    }
