"""Consumer groups through the three clients: assignment, rebalances, commits, restarts.

A group of three members (two on threads, one in a subprocess) shares a 6-partition topic.
Every partition must be owned exactly once after each rebalance: when all three have joined,
after one leaves (close: LeaveGroup), and after one is killed with SIGKILL (no LeaveGroup: the
coordinator notices when its session times out, 3 s here). Commits made along the way must end
at the log end. A second test commits, restarts the server on the same data directory, and
checks that a new member resumes exactly at the committed offsets.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from _apps.kafka_member import SESSION_TIMEOUT_MS, Member
from _clients import CLIENTS, TIMEOUT, Rec, create_topic, produce, unique
from _kafka_server import KafkaServer, LineReader

PARTITIONS = 6
PER_PARTITION = 10
MEMBER_SCRIPT = Path(__file__).parent / "_apps" / "kafka_member.py"


def _wait(what: str, cond: Callable[[], bool], timeout: float, state: Callable[[], object]) -> None:
    """Poll ``cond`` (it reads state other threads update) until true; fail with ``state()``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {state()}")
        time.sleep(0.02)  # a polling interval, not a wait for something to happen


def _exactly_once(assignments: list[frozenset[int]], partitions: int = PARTITIONS) -> bool:
    """Every partition owned by exactly one of these members, and every member owns some."""
    return (all(assignments) and sum(map(len, assignments)) == partitions
            and frozenset().union(*assignments) == frozenset(range(partitions)))


def _fill(client: str, bootstrap: str, topic: str) -> dict[int, int]:
    """Create the topic and produce keyed records into it; returns each partition's end offset."""
    create_topic(client, bootstrap, topic, PARTITIONS)
    records: list[Rec] = [(f"k{i}".encode(), f"v{i}".encode(), []) for i in range(PARTITIONS * PER_PARTITION)]
    placed = produce(client, bootstrap, topic, records)
    ends = {p: 1 + max((o for q, o in placed if q == p), default=-1) for p in range(PARTITIONS)}
    assert all(ends.values()), f"some partition got no record: {ends}"
    return ends


class _RemoteMember:
    """The member in a subprocess (kafka_member.py), to be killed; reads what it reports."""

    def __init__(self, client: str, bootstrap: str, topic: str, group: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(MEMBER_SCRIPT), client, bootstrap, topic, group],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._lines = LineReader(self.proc.stdout)
        self._assignment: frozenset[int] = frozenset()
        self._consumed: set[tuple[int, int]] = set()

    def _pump(self) -> None:
        """Apply the reports printed so far (never blocks)."""
        while not self._lines.lines.empty():
            line = self._lines.lines.get_nowait()
            if line is None:
                return
            word, _, rest = line.partition(" ")
            if word == "assigned":
                self._assignment = frozenset(int(p) for p in rest.split(",") if p)
            elif word == "consumed":
                for po in rest.split(","):
                    p, o = po.split(":")
                    self._consumed.add((int(p), int(o)))

    @property
    def assignment(self) -> frozenset[int]:
        self._pump()
        return self._assignment

    @property
    def consumed(self) -> set[tuple[int, int]]:
        self._pump()
        return self._consumed

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)


@pytest.mark.slow
@pytest.mark.parametrize("client", CLIENTS)
def test_group_rebalances_on_leave_and_kill(kafka_server: KafkaServer, client: str) -> None:
    """3 members over 6 partitions; one leaves, one is killed; owners cover all 6 each time."""
    bootstrap = kafka_server.bootstrap
    topic, group = unique(f"grp-{client}"), unique(f"grp-{client}")
    end_offsets = _fill(client, bootstrap, topic)

    a = Member(client, bootstrap, topic, group, "member-a")
    b = Member(client, bootstrap, topic, group, "member-b")
    c = _RemoteMember(client, bootstrap, topic, group)

    def states() -> dict[str, object]:
        return {"a": a.assignment, "b": b.assignment, "c": c.assignment,
                "a.error": a.error, "b.error": b.error, "c.exit": c.proc.poll()}

    try:
        # 1. All three joined: each partition owned exactly once, nobody idle.
        _wait("3 members to share the 6 partitions",
              lambda: _exactly_once([a.assignment, b.assignment, c.assignment]), TIMEOUT * 2, states)

        # 2. b leaves the group (LeaveGroup on close): a and c take its partitions.
        b.close()
        _wait("a and c to cover all partitions after b left",
              lambda: _exactly_once([a.assignment, c.assignment]), TIMEOUT, states)

        # 3. c is killed: no LeaveGroup; after its session times out a owns everything.
        c.kill()
        t_kill = time.monotonic()
        _wait("a to own all partitions after c was killed",
              lambda: a.assignment == frozenset(range(PARTITIONS)),
              TIMEOUT + SESSION_TIMEOUT_MS / 1000, states)
        # Not before the session timeout (half of it: heartbeats are scheduled loosely).
        assert time.monotonic() - t_kill > SESSION_TIMEOUT_MS / 1000 * 0.5

        # 4. a reads what is left; together the members read every record, and the group's
        # commits reach the log end.
        everything = {(p, o) for p, n in end_offsets.items() for o in range(n)}

        def seen() -> set[tuple[int, int]]:
            return set(a.consumed) | set(b.consumed) | c.consumed

        _wait("the members to have consumed every record", lambda: seen() >= everything, TIMEOUT,
              lambda: sorted(everything - seen()))
        assert seen() == everything
        a.close()
        assert a.committed == end_offsets
    finally:
        c.kill()
        for m in (a, b):
            try:
                m.close()
            except BaseException:
                pass


@pytest.mark.parametrize("client", CLIENTS)
def test_commit_restart_resume(streamrt_server: KafkaServer, client: str) -> None:
    """Committed offsets survive a server restart: a new member starts right after them."""
    bootstrap = streamrt_server.bootstrap
    topic, group = unique(f"resume-{client}"), unique(f"resume-{client}")
    create_topic(client, bootstrap, topic, 2)
    first: list[Rec] = [(f"k{i}".encode(), f"v{i}".encode(), []) for i in range(30)]
    produce(client, bootstrap, topic, first)

    member = Member(client, bootstrap, topic, group, "before-restart")
    try:
        _wait("the member to read and commit all 30", lambda: len(set(member.consumed)) >= 30, TIMEOUT,
              lambda: (member.assignment, len(member.consumed), member.error))
    finally:
        member.close()
    committed = member.committed
    assert committed is not None and sum(v or 0 for v in committed.values()) == 30, committed

    streamrt_server.restart()
    second: list[Rec] = [(f"k{i}".encode(), f"w{i}".encode(), []) for i in range(30, 50)]
    placed = produce(client, bootstrap, topic, second)

    member = Member(client, bootstrap, topic, group, "after-restart")
    try:
        _wait("the new member to read the 20 new records", lambda: len(set(member.consumed)) >= 20, TIMEOUT,
              lambda: (member.assignment, member.consumed, member.error))
    finally:
        member.close()
    # Exactly the records produced after the restart: nothing committed is read again.
    assert sorted(member.consumed) == sorted(placed)
    assert all(o >= (committed.get(p) or 0) for p, o in member.consumed)


# ------------------------------------------------------------- static membership (KIP-345)

STATIC_SESSION_MS = 20_000  # long, so a restart that waited for the old session would show


def _generations_logged(server: KafkaServer, group: str) -> int:
    """How many generations the server's group log (INFO) shows for ``group``."""
    return server.stderr(tail=10**8).count(f"group {group}: generation ")


def _describe_instances(bootstrap: str, group: str) -> list[str | None]:
    """The group_instance_id of each member, from DescribeGroups (confluent's admin client)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(TIMEOUT)
    return sorted(m.group_instance_id for m in desc.members)


def _close_all(members: list[Member]) -> None:
    """Close every member, whatever state a failed test left it in."""
    for m in members:
        try:
            m.close()
        except BaseException:  # noqa: BLE001 - teardown: the test's own error matters
            pass


@pytest.mark.parametrize("client", CLIENTS)
def test_static_member_restart_takes_its_place_at_once(kafka_server: KafkaServer, client: str) -> None:
    """A static member (group.instance.id) sends no LeaveGroup when it closes; restarted, it
    replaces its old self at once, not after the session timeout (20 s here), and keeps its
    partitions; the other member is not disturbed."""
    bootstrap = kafka_server.bootstrap
    topic, group = unique(f"static-{client}"), unique(f"static-{client}")
    create_topic(client, bootstrap, topic, 4)
    static = {"session_timeout_ms": STATIC_SESSION_MS}
    a = Member(client, bootstrap, topic, group, "static-a", instance_id="inst-a", **static)
    b = b2 = None
    members: list[Member] = [a]

    def states() -> dict[str, object]:
        return {m.name: (m.assignment, m.error) for m in members}

    try:
        _wait("a to own the 4 partitions", lambda: a.assignment == frozenset(range(4)), TIMEOUT, states)
        b = Member(client, bootstrap, topic, group, "static-b", instance_id="inst-b", **static)
        members.append(b)
        _wait("a and b to share the partitions",
              lambda: _exactly_once([a.assignment, b.assignment], 4), TIMEOUT, states)
        owned_b, owned_a = b.assignment, a.assignment
        generations = _generations_logged(kafka_server, group)
        assert kafka_server.target != "streamrt" or generations >= 2, "no group log to check"

        b.close()  # static: no LeaveGroup, its member stays in the group
        t0 = time.monotonic()
        b2 = Member(client, bootstrap, topic, group, "static-b-restarted", instance_id="inst-b", **static)
        members.append(b2)
        _wait("the restarted b to get its partitions back",
              lambda: b2.assignment == owned_b, TIMEOUT, states)
        took = time.monotonic() - t0
        assert took < 5.0, f"the restarted static member waited {took:.1f}s for its partitions"
        assert a.assignment == owned_a and a.error is None
        assert _describe_instances(bootstrap, group) == ["inst-a", "inst-b"]
        if kafka_server.target == "streamrt":
            # b's place was taken without a rebalance: no new generation.
            assert _generations_logged(kafka_server, group) == generations
    finally:
        _close_all(members)



def _fenced_in_kafka_python_log(caplog: pytest.LogCaptureFixture) -> bool:
    """kafka-python 3.0 does not raise FencedInstanceIdError from poll(): its heartbeat thread
    logs it (ERROR) and stops heartbeating. Its log is where the test sees the error."""
    return any(r.name.startswith("kafka.coordinator") and "fenced" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("client", [
    "kafka-python",
    pytest.param("aiokafka", marks=pytest.mark.skip(
        reason="aiokafka 0.14 does not know FENCED_INSTANCE_ID (82) and heartbeats with "
               "Heartbeat v1, which has no instance id: the replaced consumer hears "
               "UNKNOWN_MEMBER_ID, rejoins without a member id and takes the instance back, so "
               "two such consumers replace each other in turn (against Kafka too)")),
    "confluent",
])
def test_a_second_consumer_with_the_same_instance_id_fences_the_first(
        kafka_server: KafkaServer, client: str, caplog: pytest.LogCaptureFixture) -> None:
    """Two live consumers with one group.instance.id (a misconfiguration): the second takes
    the instance's place and its partitions; the first gets FENCED_INSTANCE_ID, fatal."""
    caplog.set_level(logging.ERROR, logger="kafka.coordinator")
    bootstrap = kafka_server.bootstrap
    topic, group = unique(f"fence-{client}"), unique(f"fence-{client}")
    create_topic(client, bootstrap, topic, 4)
    static = {"instance_id": "same-instance", "session_timeout_ms": 10_000}
    first = Member(client, bootstrap, topic, group, "first", **static)
    members = [first]

    def states() -> dict[str, object]:
        return {m.name: (m.assignment, m.error) for m in members}

    try:
        _wait("the first to own the 4 partitions", lambda: first.assignment == frozenset(range(4)),
              TIMEOUT, states)
        second = Member(client, bootstrap, topic, group, "second", **static)
        members.append(second)
        _wait("the second to own the 4 partitions", lambda: second.assignment == frozenset(range(4)),
              TIMEOUT, states)
        if client == "kafka-python":
            _wait("the first to hear it is fenced", lambda: _fenced_in_kafka_python_log(caplog),
                  TIMEOUT, states)
        else:  # librdkafka raises it as a fatal error from consume()
            _wait("the first to fail, fenced", lambda: first.error is not None, TIMEOUT, states)
            assert "fenced" in str(first.error).lower(), first.error
        assert second.error is None and second.assignment == frozenset(range(4))
        assert _describe_instances(bootstrap, group) == ["same-instance"]
    finally:
        _close_all(members)
