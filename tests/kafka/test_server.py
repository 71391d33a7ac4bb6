"""The Kafka server's own rules, over real sockets with our codec as the client: response
order, acks=0, idempotent retries, per-partition errors, limits and misbehaving peers.

The server runs in-process on a real broker (temp data dir) so limits can be set small;
the three real clients are exercised against a subprocess in test_clients_*.py.
"""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import streamrt as sr
from streamrt.kafka import decode_response, encode_request
from streamrt.kafka._handlers import ServerConfig
from streamrt.kafka._server import KafkaServer
from streamrt.storage import build_batch
from streamrt.storage._codec import parse_header

pytestmark = pytest.mark.anyio

PRODUCE, FETCH, METADATA, API_VERSIONS, INIT_PID = 0, 1, 3, 18, 22
_SIZE = struct.Struct(">i")


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@asynccontextmanager
async def serving(tmp_path: Path, **config: Any) -> AsyncIterator[tuple[Any, int]]:
    async with sr.open(tmp_path / "data", maintenance_interval=None) as broker:
        async with trio.open_nursery() as nursery:
            server = KafkaServer(broker, ServerConfig(port=0, **config))
            _, port = await nursery.start(server.serve)
            try:
                yield broker, port
            finally:
                nursery.cancel_scope.cancel()


class Client:
    """A bare connection: send frames, read frames (with deadlines, no sleeps)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.cid = 0

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, key: int, version: int, body: dict[str, Any]) -> int:
        self.cid += 1
        await self.stream.send_all(encode_request(key, version, self.cid, "test", body))
        return self.cid

    async def frame(self, timeout: float = 10.0) -> bytes:
        with trio.fail_after(timeout):
            while len(self.buf) < 4 or len(self.buf) < 4 + _SIZE.unpack_from(self.buf)[0]:
                data = await self.stream.receive_some(1 << 16)
                if not data:
                    raise EOFError("server closed the connection")
                self.buf += data
        n = _SIZE.unpack_from(self.buf)[0]
        out = bytes(self.buf[4:4 + n])
        del self.buf[:4 + n]
        return out

    async def call(self, key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
        cid = await self.send(key, version, body)
        got, resp = decode_response(key, version, await self.frame())
        assert got == cid
        return resp

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        with trio.move_on_after(timeout):
            try:
                while await self.stream.receive_some(1 << 16):
                    pass
            except trio.BrokenResourceError:
                pass
            return True
        return False


def produce_body(topic: str, parts: dict[int, bytes], acks: int = -1) -> dict[str, Any]:
    return {"acks": acks, "timeout_ms": 5000, "transactional_id": None, "topic_data": [
        {"name": topic, "partition_data": [{"index": p, "records": b} for p, b in parts.items()]}]}


def batch(*values: bytes, **producer: int) -> bytes:
    return build_batch([(None, v) for v in values], **producer)


async def test_responses_come_back_in_request_order_even_behind_a_long_poll(tmp_path: Path) -> None:
    async with serving(tmp_path) as (broker, port):
        await broker.create_topic("t")
        c = await Client.connect(port)
        fetch = {"max_wait_ms": 300, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
                 "topics": [{"topic": "t", "partitions": [
                     {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}]}]}
        ids = [await c.send(FETCH, 11, fetch), await c.send(METADATA, 5, {"topics": None}),
               await c.send(API_VERSIONS, 0, {})]
        got = [struct.unpack_from(">i", await c.frame())[0] for _ in ids]
        assert got == ids  # the Fetch waited 300 ms; the others were ready long before


async def test_acks_zero_writes_without_a_response(tmp_path: Path) -> None:
    async with serving(tmp_path) as (broker, port):
        await broker.create_topic("t")
        c = await Client.connect(port)
        await c.send(PRODUCE, 7, produce_body("t", {0: batch(b"a", b"b")}, acks=0))
        meta = await c.call(METADATA, 5, {"topics": [{"name": "t"}]})  # the next frame is this
        assert meta["topics"][0]["name"] == "t"
        with trio.fail_after(5):
            while broker.high_watermark("t", 0) < 2:
                await broker.wait_for_data("t", 0, broker.high_watermark("t", 0), 1.0)


async def test_idempotent_retry_is_written_once_and_a_gap_is_reported(tmp_path: Path) -> None:
    async with serving(tmp_path) as (broker, port):
        await broker.create_topic("t")
        c = await Client.connect(port)
        ident = await c.call(INIT_PID, 0, {"transactional_id": None, "transaction_timeout_ms": 60000})
        pid, epoch = ident["producer_id"], ident["producer_epoch"]
        assert ident["error_code"] == 0 and pid >= 0
        again = await c.call(INIT_PID, 0, {"transactional_id": None, "transaction_timeout_ms": 60000})
        assert again["producer_id"] != pid  # never handed out twice
        first = batch(b"a", b"b", producer_id=pid, producer_epoch=epoch, base_sequence=0)
        offsets = []
        for _ in range(2):  # the retry of a batch whose response was lost
            r = await c.call(PRODUCE, 7, produce_body("t", {0: first}))
            part = r["responses"][0]["partition_responses"][0]
            assert part["error_code"] == 0
            offsets.append(part["base_offset"])
        assert offsets == [0, 0]
        assert broker.high_watermark("t", 0) == 2
        gap = batch(b"z", producer_id=pid, producer_epoch=epoch, base_sequence=5)
        r = await c.call(PRODUCE, 7, produce_body("t", {0: gap}))
        assert r["responses"][0]["partition_responses"][0]["error_code"] == 45  # out of order
        assert broker.high_watermark("t", 0) == 2


async def test_a_corrupt_batch_fails_its_partition_only(tmp_path: Path) -> None:
    async with serving(tmp_path) as (broker, port):
        await broker.create_topic("t", partitions=2)
        c = await Client.connect(port)
        bad = bytearray(batch(b"hello"))
        bad[-1] ^= 0xFF  # flip a bit in the record: the CRC no longer matches
        r = await c.call(PRODUCE, 7, produce_body("t", {0: bytes(bad), 1: batch(b"ok")}))
        codes = {p["index"]: p["error_code"] for p in r["responses"][0]["partition_responses"]}
        assert codes == {0: 2, 1: 0}  # CORRUPT_MESSAGE
        assert (broker.high_watermark("t", 0), broker.high_watermark("t", 1)) == (0, 1)
        r = await c.call(PRODUCE, 7, produce_body("nope", {0: batch(b"x")}))
        assert r["responses"][0]["partition_responses"][0]["error_code"] == 3


async def test_unsupported_api_versions_version_gets_error_35_with_the_ranges(tmp_path: Path) -> None:
    async with serving(tmp_path) as (_broker, port):
        c = await Client.connect(port)
        frame = bytearray(encode_request(API_VERSIONS, 3, 77, "x", {"client_software_name": "t",
                                                                   "client_software_version": "1"}))
        struct.pack_into(">h", frame, 6, 99)  # ask for ApiVersions v99 (flexible, as v3+ are)
        await c.stream.send_all(bytes(frame))
        cid, resp = decode_response(API_VERSIONS, 0, await c.frame())
        assert cid == 77 and resp["error_code"] == 35
        assert {k["api_key"] for k in resp["api_keys"]} >= {0, 1, 3, 18}


async def test_the_first_frame_has_a_smaller_limit_then_large_requests_pass(tmp_path: Path) -> None:
    async with serving(tmp_path, first_frame_bytes=64 << 10) as (broker, port):
        await broker.create_topic("t")
        rude = await Client.connect(port)
        await rude.stream.send_all(_SIZE.pack(1 << 20))  # 1 MiB before any valid request
        assert await rude.closed_by_server()
        c = await Client.connect(port)
        await c.call(API_VERSIONS, 0, {})
        big = batch(b"x" * (512 << 10))
        r = await c.call(PRODUCE, 7, produce_body("t", {0: big}))
        assert r["responses"][0]["partition_responses"][0]["error_code"] == 0


async def test_oversized_garbage_and_stalled_peers_lose_only_their_connection(tmp_path: Path) -> None:
    async with serving(tmp_path, max_frame_bytes=1 << 20, stall_timeout=0.5) as (_b, port):
        ok = await Client.connect(port)
        await ok.call(API_VERSIONS, 0, {})
        huge = await Client.connect(port)
        await huge.call(API_VERSIONS, 0, {})
        await huge.stream.send_all(_SIZE.pack(2 << 20))  # over max_frame_bytes
        garbage = await Client.connect(port)
        await garbage.stream.send_all(_SIZE.pack(12) + b"\xff" * 12)  # api key -1, nonsense
        stalled = await Client.connect(port)
        await stalled.stream.send_all(_SIZE.pack(100) + b"\x00\x12")  # half a frame, then silence
        negative = await Client.connect(port)
        await negative.stream.send_all(_SIZE.pack(-5))
        for peer in (huge, garbage, stalled, negative):
            assert await peer.closed_by_server()
        assert (await ok.call(METADATA, 5, {"topics": None}))["brokers"][0]["node_id"] == 0


async def test_connection_limit_and_idle_timeout(tmp_path: Path) -> None:
    async with serving(tmp_path, max_connections=2, idle_timeout=0.5) as (_b, port):
        a, b = await Client.connect(port), await Client.connect(port)
        await a.call(API_VERSIONS, 0, {})
        await b.call(API_VERSIONS, 0, {})
        third = await Client.connect(port)
        assert await third.closed_by_server(2.0)  # refused: two are open
        assert await a.closed_by_server(5.0)  # idle for 0.5 s: closed
        assert await b.closed_by_server(5.0)
        again = await Client.connect(port)  # room again
        await again.call(API_VERSIONS, 0, {})


async def test_metadata_creates_unknown_topics_unless_told_not_to(tmp_path: Path) -> None:
    async with serving(tmp_path, default_partitions=3) as (broker, port):
        c = await Client.connect(port)
        r = await c.call(METADATA, 5, {"topics": [{"name": "auto"}, {"name": "bad name!"}],
                                       "allow_auto_topic_creation": True})
        by_name = {t["name"]: t for t in r["topics"]}
        assert by_name["auto"]["error_code"] == 0 and len(by_name["auto"]["partitions"]) == 3
        assert by_name["bad name!"]["error_code"] == 17
        r = await c.call(METADATA, 5, {"topics": [{"name": "manual"}],
                                       "allow_auto_topic_creation": False})
        assert r["topics"][0]["error_code"] == 3 and not broker.store.has_topic("manual")


async def test_a_fetch_with_an_error_answers_at_once_not_after_max_wait(tmp_path: Path) -> None:
    async with serving(tmp_path) as (broker, port):
        await broker.create_topic("t")
        await broker.produce("t", 0, [(None, b"x")])
        c = await Client.connect(port)
        fetch = {"max_wait_ms": 30_000, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
                 "topics": [{"topic": "t", "partitions": [
                     {"partition": 0, "fetch_offset": 5, "partition_max_bytes": 1 << 20}]}]}
        with trio.fail_after(5):  # not 30 s: the client must hear OFFSET_OUT_OF_RANGE now
            r = await c.call(FETCH, 11, fetch)
        assert r["responses"][0]["partitions"][0]["error_code"] == 1


def _records_of(part: dict[str, Any]) -> list[Any]:
    raw = part["records"]
    raw = b"".join(raw) if isinstance(raw, list) else bytes(raw or b"")
    out, pos = [], 0
    while pos < len(raw):
        h = parse_header(raw[pos:])
        out.append(h)
        pos += h.size
    return out


async def test_a_fetch_inside_a_gap_compaction_left_moves_clients_on(tmp_path: Path) -> None:
    """Compaction removed the tail (b and its tombstone) of c, and everything of e: a fetch
    from inside such a gap gets an empty batch reaching the high watermark, as Kafka's
    cleaner leaves one (clients fetched the same offset for ever); with a later batch, and a
    byte limit that a first batch ending before the offset fills, it gets the later batch."""
    async with serving(tmp_path) as (broker, port):
        cfg = sr.TopicConfig(cleanup_policy="compact", tombstone_grace_ms=0)
        for t in ("c", "e", "m"):
            await broker.create_topic(t, config=cfg)
        for t, recs in (("c", [(b"a", b"1"), (b"b", b"1"), (b"b", None)]),
                        ("e", [(b"a", b"1"), (b"a", None)]),
                        ("m", [(b"a", b"1"), (b"b", b"1"), (b"b", None), (b"c", b"1")])):
            for key, value in recs:
                await broker.produce(t, 0, [(key, value, [], 10)])
            broker.store.compact(t, now_ms=1000)  # tombstones past their grace
        c = await Client.connect(port)

        async def fetch(topic: str, offset: int, max_bytes: int = 1 << 20) -> list[Any]:
            r = await c.call(FETCH, 11, {
                "max_wait_ms": 0, "min_bytes": 1, "max_bytes": max_bytes, "isolation_level": 0,
                "topics": [{"topic": topic, "partitions": [
                    {"partition": 0, "fetch_offset": offset, "partition_max_bytes": max_bytes}]}]})
            part = r["responses"][0]["partitions"][0]
            assert part["error_code"] == 0
            return _records_of(part)

        (tail,) = await fetch("c", 1)
        assert (tail.base_offset, tail.last_offset_delta, tail.record_count) == (1, 1, 0)
        (whole,) = await fetch("e", 0)
        assert (whole.base_offset, whole.last_offset_delta, whole.record_count) == (0, 1, 0)
        (later,) = await fetch("m", 1, max_bytes=1)  # the batch of a fills 1 byte
        assert (later.base_offset, later.record_count) == (3, 1)
        assert [h.base_offset for h in await fetch("c", 0)] == [0]  # no gap reached: as stored


async def test_a_kafka_client_reads_to_the_end_past_a_compacted_tail(tmp_path: Path) -> None:
    async with serving(tmp_path) as (broker, port):
        await broker.create_topic(
            "c", config=sr.TopicConfig(cleanup_policy="compact", tombstone_grace_ms=0))
        for key, value in ((b"a", b"1"), (b"b", b"1"), (b"b", None)):
            await broker.produce("c", 0, [(key, value, [], 10)])
        assert broker.store.compact("c", now_ms=1000) == 2

        def consume() -> tuple[list[bytes], int]:
            from kafka import KafkaConsumer, TopicPartition

            consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}",
                                     enable_auto_commit=False)
            try:
                tp = TopicPartition("c", 0)
                consumer.assign([tp])
                consumer.seek_to_beginning(tp)
                got: list[bytes] = []
                deadline = time.monotonic() + 20
                while consumer.position(tp) < 3 and time.monotonic() < deadline:
                    got += [m.value for ms in consumer.poll(200).values() for m in ms]
                return got, consumer.position(tp)
            finally:
                consumer.close()

        assert await trio.to_thread.run_sync(consume) == ([b"1"], 3)


JOIN = 11


@pytest.mark.parametrize("version", [0, 5, 6, 7])
async def test_a_join_group_error_is_answered_in_every_version(tmp_path: Path, version: int) -> None:
    """protocol_name is nullable from v7 only: older error answers carry "" (as Kafka's do)."""
    async with serving(tmp_path) as (broker, port):
        c = await Client.connect(port)
        r = await c.call(JOIN, version, {
            "group_id": "g", "session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000,
            "member_id": "nobody", "group_instance_id": None, "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": b""}]})
        assert r["error_code"] == 25 and r["generation_id"] == -1  # UNKNOWN_MEMBER_ID
        assert r["protocol_name"] == (None if version >= 7 else "")


HEARTBEAT, LEAVE, SYNC, DESCRIBE, OFFSET_COMMIT = 12, 13, 14, 15, 8


async def test_static_membership_over_the_wire(tmp_path: Path) -> None:
    """group_instance_id in JoinGroup v5, Heartbeat/SyncGroup/LeaveGroup v3, OffsetCommit v7
    and DescribeGroups v4: a restart replaces the old member id, which is then fenced (82);
    LeaveGroup can name the instance alone."""
    async with serving(tmp_path) as (broker, port):
        await broker.create_topic("t")
        c = await Client.connect(port)

        async def join(member_id: str = "") -> dict[str, Any]:
            return await c.call(JOIN, 5, {
                "group_id": "g", "session_timeout_ms": 30_000, "rebalance_timeout_ms": 30_000,
                "member_id": member_id, "group_instance_id": "pod-1", "protocol_type": "consumer",
                "protocols": [{"name": "range", "metadata": b"m"}]})

        first = await join()
        old, gen = first["member_id"], first["generation_id"]
        assert first["error_code"] == 0 and first["leader"] == old
        assert first["members"] == [{"member_id": old, "group_instance_id": "pod-1",
                                     "metadata": b"m"}]
        sync = {"group_id": "g", "generation_id": gen, "group_instance_id": "pod-1",
                "assignments": [{"member_id": old, "assignment": b"a"}]}
        assert (await c.call(SYNC, 3, {**sync, "member_id": old}))["error_code"] == 0

        again = await join()  # the same instance restarted: it takes the old member's place
        new = again["member_id"]
        assert again["error_code"] == 0 and new != old
        who = {"group_id": "g", "generation_id": again["generation_id"],
               "group_instance_id": "pod-1"}
        assert (await c.call(SYNC, 3, {**sync, **who, "member_id": new}))["error_code"] == 0
        assert (await c.call(HEARTBEAT, 3, {**who, "member_id": old}))["error_code"] == 82
        assert (await c.call(SYNC, 3, {**sync, **who, "member_id": old}))["error_code"] == 82
        assert (await c.call(HEARTBEAT, 3, {**who, "member_id": new}))["error_code"] == 0
        commit = await c.call(OFFSET_COMMIT, 7, {
            "group_id": "g", "generation_id_or_member_epoch": again["generation_id"],
            "member_id": old, "group_instance_id": "pod-1", "topics": [
                {"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 0,
                                              "committed_metadata": None}]}]})
        assert commit["topics"][0]["partitions"][0]["error_code"] == 82
        assert (await join(old))["error_code"] == 82

        d = await c.call(DESCRIBE, 4, {"groups": ["g"], "include_authorized_operations": False})
        members = d["groups"][0]["members"]
        assert [(m["member_id"], m["group_instance_id"]) for m in members] == [(new, "pod-1")]

        left = await c.call(LEAVE, 3, {"group_id": "g", "members": [
            {"member_id": old, "group_instance_id": "pod-1"},
            {"member_id": "", "group_instance_id": "pod-1"},
            {"member_id": "", "group_instance_id": "pod-1"}]})
        assert left["error_code"] == 0
        assert [(m["member_id"], m["group_instance_id"], m["error_code"])
                for m in left["members"]] == [(old, "pod-1", 82), ("", "pod-1", 0),
                                              ("", "pod-1", 25)]
        d = await c.call(DESCRIBE, 4, {"groups": ["g"], "include_authorized_operations": False})
        assert d["groups"][0]["members"] == [] and d["groups"][0]["group_state"] == "Empty"
