"""``streamrt groups list|describe|reset|delete``: consumer groups as stored in the data
directory.

A group's members live in the process that runs it (its coordinator is an actor there), and
that process owns the data directory; a CLI command can therefore only see what is stored:
committed offsets and the generation. ``describe`` renders members too when given a live
description (:func:`describe`, used by embedding applications and tests).

``reset`` writes the new offsets without a generation fence, and ``delete`` forgets a group
(its committed offsets and generation): with the directory locked by this command, no member
of the group can be running.
"""

from __future__ import annotations

import argparse
import datetime

from ..broker._assignors import decode_assignment
from ..broker._group_fsm import GroupDescription
from ..errors import InvalidArgument, UnknownGroup, UnknownPartition
from ..storage import LogStore, WriteBatch, check_topic_name
from ._common import broker_of, open_existing, open_store, print_names, warn


def cmd_list(args: argparse.Namespace) -> int:
    """Print group names, one per line."""
    if broker_of(args):
        from . import remote_groups

        return remote_groups.groups_list(args)
    store = open_store(args.data_dir, create=False, lock_timeout=args.lock_timeout)
    names: list[str] = []
    if store is not None:
        with store:
            names = store.groups()
    print_names(names, f"no consumer groups in {args.data_dir}")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    """Print a group's generation and per-partition committed offsets, log ends and lags."""
    if broker_of(args):
        from . import remote_groups

        return remote_groups.groups_describe(args)
    store = open_store(args.data_dir, create=False, lock_timeout=args.lock_timeout)
    if store is None:
        raise UnknownGroup(args.group)
    with store:
        print(describe(store, args.group))
    return 0


def describe(store: LogStore, group: str, live: GroupDescription | None = None) -> str:
    """The text ``groups describe`` prints; with ``live`` (from ``broker.groups.describe``)
    also the state, protocol, leader and each member's assignment."""
    if group not in store.groups() and live is None:
        raise UnknownGroup(group)
    generation = store.generation(group)
    lines = [f"group:       {group}",
             f"generation:  {'none' if generation is None else generation}"]
    if live is None:
        lines.append("members:     not shown (they live in the process that runs the group)")
    else:
        lines += [f"state:       {live.state}",
                  f"protocol:    {live.protocol_type}/{live.protocol or '-'}",
                  f"leader:      {live.leader or '-'}",
                  f"members:     {len(live.members)}"]
        for m in live.members:
            parts = decode_assignment(m.assignment) if live.protocol_type == "consumer" else []
            shown = ", ".join(f"{t}[{p}]" for t, p in parts) or "-"
            static = getattr(m, "group_instance_id", None)
            who = m.client_id + (f", instance {static}" if static else "")
            lines.append(f"  {m.member_id} ({who}): {shown}")
    header = ("topic", "partition", "committed", "log-end", "lag")
    rows = []
    for (topic, p), off in sorted(store.committed(group).items()):
        hw = store.high_watermark(topic, p)
        rows.append((topic, str(p), str(off), str(hw), str(max(hw - off, 0))))
    lines.append("")
    if not rows:
        lines.append("no committed offsets")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def parse_target(text: str) -> tuple[str, int]:
    """``--to``: ("earliest"|"latest", 0), ("offset", N) or ("timestamp", ms)."""
    if text in ("earliest", "latest"):
        return text, 0
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    if text.isascii() and text.isdigit():
        return "offset", int(text)
    if text.startswith("@") and text.isascii() and text[1:].isdigit():
        return "timestamp", int(text[1:])
    try:
        dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"--to {text!r}: use earliest, latest, an offset N, @MS (a timestamp in ms since "
            f"the epoch) or an ISO 8601 date-time like 2024-05-01T12:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return "timestamp", int(dt.timestamp() * 1000)


def reset_offsets(store: LogStore, topic: str, target: tuple[str, int],
                  partition: int | None = None) -> dict[tuple[str, int], int]:
    """The offsets ``reset`` would commit, per partition of ``topic``."""
    info = store.topic(topic)
    if partition is not None and partition >= info.partitions:
        raise UnknownPartition(topic, partition, info.partitions)
    kind, value = target
    out = {}
    for p in [partition] if partition is not None else range(info.partitions):
        start, end = store.log_start_offset(topic, p), store.high_watermark(topic, p)
        found = store.offset_for_timestamp(topic, p, value) if kind == "timestamp" else None
        out[(topic, p)] = target_offset(target, start, end, f"{topic}[{p}]", found)
    return out


def target_offset(target: tuple[str, int], start: int, end: int, where: str,
                  found: int | None = None) -> int:
    """Where a reset ``target`` puts a partition that holds ``start`` to ``end``; ``found`` is
    the first offset at or after the target time (kind ``timestamp``; None: none, the end)."""
    kind, value = target
    if kind == "earliest":
        return start
    if kind == "latest":
        return end
    if kind == "offset":
        off = min(max(value, start), end)
        if off != value:
            warn(f"offset {value} is not stored in {where} (it holds {start} to {end}); "
                 f"using {off}")
        return off
    return end if found is None else found


def cmd_reset(args: argparse.Namespace) -> int:
    """Move the group's committed offsets of a topic; prints old and new offsets."""
    if broker_of(args):
        from . import remote_groups

        return remote_groups.groups_reset(args)
    topic = check_topic_name(args.topic)
    target = parse_target(args.to)
    with open_existing(args.data_dir, topic, args.lock_timeout) as store:
        new = reset_offsets(store, topic, target, args.partition)
        old = store.committed(args.group, topic)
        for (t, p), off in sorted(new.items()):
            before = old.get((t, p))
            print(f"{t}[{p}]: {'none' if before is None else before} -> {off}")
        if args.dry_run:
            print("dry run: nothing changed")
        else:
            store.commit_sync(args.group, new)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Forget a group: its committed offsets and generation (Kafka's DeleteGroups)."""
    if broker_of(args):
        from . import remote_groups

        return remote_groups.groups_delete(args)
    store = open_store(args.data_dir, create=False, lock_timeout=args.lock_timeout)
    if store is None:
        raise UnknownGroup(args.group)
    with store:
        if args.group not in store.groups():
            raise UnknownGroup(args.group)
        wb = WriteBatch()
        wb.delete_group(args.group)
        store.write_sync(wb)
    print(f"deleted group {args.group!r}")
    return 0
