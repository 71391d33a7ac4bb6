"""``groups list|describe|reset|delete`` over ``--broker``.

Over the network the group's live side is visible, so ``describe`` shows its state and
members as well as the committed offsets; Kafka's DescribeGroups does not report the
generation, which is shown as ``unknown``.

``reset`` commits offsets for the group from outside it (a commit with no member id and
generation -1, as Kafka's own offset tool does). That is only safe while nobody consumes
for the group: a member would overwrite the reset with its next commit. The local command
gets this for free (it holds the data directory, so no member can run); here the group is
described first, and a group with members is refused.
"""

from __future__ import annotations

import argparse
from typing import Any

from aiokafka import TopicPartition

from ..broker._assignors import decode_assignment
from ..errors import UnknownGroup
from ..storage import check_topic_name
from ._common import CliError, plural, print_names
from .groups import parse_target, target_offset
from .remote import JOIN_TIMEOUT, Remote, run, table


async def _describe_group(r: Remote, group: str) -> dict[str, Any]:
    # One group per request: aiokafka 0.14 decodes DescribeGroups v3 with the v2 schema,
    # which drops each group's trailing authorized_operations and so garbles every group
    # after the first.
    (resp,) = await r.admin.describe_consumer_groups([group])
    (entry,) = resp.to_object()["groups"]
    return dict(entry)


async def _committed(r: Remote, group: str,
                     partitions: list[TopicPartition] | None = None) -> dict[tuple[str, int], int]:
    offsets = await r.admin.list_consumer_group_offsets(group, partitions=partitions)
    return {(tp.topic, tp.partition): om.offset for tp, om in offsets.items() if om.offset >= 0}


def groups_list(args: argparse.Namespace) -> int:
    """``groups list`` over the broker."""

    async def main(r: Remote) -> int:
        names = sorted({g[0] for g in await r.admin.list_consumer_groups()})
        print_names(names, f"no consumer groups at {r.address}")
        return 0

    return run(args, main)


def groups_describe(args: argparse.Namespace) -> int:
    """``groups describe`` over the broker: state, members and their partitions, offsets."""
    group = args.group

    async def main(r: Remote) -> int:
        d = await _describe_group(r, group)
        committed = await _committed(r, group)
        members = d.get("members") or []
        if d.get("state") in ("Dead", "") and not members and not committed:
            raise UnknownGroup(group)
        lines = [f"group:       {group}",
                 "generation:  unknown (Kafka's DescribeGroups does not report it)",
                 f"state:       {d.get('state') or '-'}",
                 f"protocol:    {d.get('protocol_type') or '-'}/{d.get('protocol') or '-'}",
                 f"members:     {len(members)}"]
        for m in sorted(members, key=lambda m: m["member_id"]):
            try:
                parts = decode_assignment(bytes(m["member_assignment"]))
            except (ValueError, IndexError):  # not the consumer protocol's assignment
                parts = []
            shown = ", ".join(f"{t}[{p}]" for t, p in parts) or "-"
            lines.append(f"  {m['member_id']} ({m['client_id']}): {shown}")
        lines.append("")
        if not committed:
            lines.append("no committed offsets")
            print("\n".join(lines))
            return 0
        ends: dict[tuple[str, int], int] = {}
        topics = await r.topics()
        for topic in sorted({t for t, _ in committed}):
            if topic in topics:
                parts_of = sorted(p for t, p in committed if t == topic)
                ends.update({(topic, p): e for p, (_s, e) in
                             (await r.log_range(topic, parts_of)).items()})
        rows = []
        for (topic, p), off in sorted(committed.items()):
            end = ends.get((topic, p))
            rows.append((topic, str(p), str(off), "-" if end is None else str(end),
                         "-" if end is None else str(max(end - off, 0))))
        lines += table(("topic", "partition", "committed", "log-end", "lag"), rows)
        print("\n".join(lines))
        return 0

    return run(args, main)


def groups_reset(args: argparse.Namespace) -> int:
    """``groups reset`` over the broker: refused while the group has members."""
    topic = check_topic_name(args.topic)
    target = parse_target(args.to)
    group = args.group

    async def main(r: Remote) -> int:
        parts = await r.partitions(topic, args.partition)
        members = (await _describe_group(r, group)).get("members") or []
        if members:
            raise CliError(
                f"group {group!r} has {plural(len(members), 'active member')}: stop its "
                f"consumers first (their next commit would undo the reset), then run this again")
        ranges = await r.log_range(topic, parts)
        kind, value = target
        new: dict[int, int] = {}
        for p in parts:
            start, end = ranges[p]
            found = await r.offset_for_time(topic, p, value) if kind == "timestamp" else None
            new[p] = target_offset(target, start, end, f"{topic}[{p}]", found)
        tps = [TopicPartition(topic, p) for p in parts]
        old = await _committed(r, group, tps)
        for p, off in sorted(new.items()):
            before = old.get((topic, p))
            print(f"{topic}[{p}]: {'none' if before is None else before} -> {off}")
        if args.dry_run:
            print("dry run: nothing changed")
            return 0
        await commit_for(r, group, {tp: new[tp.partition] for tp in tps})
        return 0

    return run(args, main)


async def commit_for(r: Remote, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` from outside it (no member id, generation -1)."""
    consumer = await r.connect(r.consumer(group), JOIN_TIMEOUT)
    consumer.assign(list(offsets))
    await consumer.commit(offsets)


def groups_delete(args: argparse.Namespace) -> int:
    """``groups delete`` over the broker: Kafka's DeleteGroups, which refuses a group that
    has members (aiokafka's admin client has no call for it, so the request is sent as is)."""
    from aiokafka.protocol.admin import DeleteGroupsRequest

    group = args.group

    async def main(r: Remote) -> int:
        node = await r.admin.find_coordinator(group)
        resp = await r.admin._send_request_to_node(node, DeleteGroupsRequest([group]))
        ((_name, code),) = resp.results
        if code == 69:  # GROUP_ID_NOT_FOUND
            raise UnknownGroup(group)
        if code == 68:  # NON_EMPTY_GROUP
            raise CliError(f"group {group!r} has active members: stop its consumers first, "
                           f"then run this again")
        if code:
            raise CliError(f"the broker refused to delete group {group!r} (Kafka error {code})")
        print(f"deleted group {group!r}")
        return 0

    return run(args, main)
