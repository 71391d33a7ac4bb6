"""``streamrt topics create|list|describe|delete``."""

from __future__ import annotations

import argparse

from ..storage import LogStore, TopicConfig, TopicInfo, check_topic_name
from ._common import broker_of, open_existing, open_store, plural, print_names


def cmd_create(args: argparse.Namespace) -> int:
    """Create a topic; creating it again with the same settings is a no-op (exit 0)."""
    if broker_of(args):
        from . import remote_topics

        return remote_topics.topics_create(args)
    name = check_topic_name(args.name)
    # Built before opening the store, so a bad setting never creates a data directory.
    config = TopicConfig(
        retention_ms=args.retention_ms,
        retention_bytes=args.retention_bytes,
        retention_records=args.retention_records,
        cleanup_policy=args.cleanup_policy,
    )
    store = open_store(args.data_dir, create=True, lock_timeout=args.lock_timeout)
    assert store is not None  # create=True never yields None
    with store:
        existed = store.has_topic(name)
        # Raises TopicExists if the topic is there with other settings.
        info = store.create_topic_sync(name, args.partitions, config)
    if existed:
        print(f"topic {name!r} already exists with these settings")
    else:
        print(f"created topic {name!r} with {plural(info.partitions, 'partition')}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print topic names, one per line. A missing data directory just has no topics."""
    if broker_of(args):
        from . import remote_topics

        return remote_topics.topics_list(args)
    store = open_store(args.data_dir, create=False, lock_timeout=args.lock_timeout)
    names: list[str] = []
    if store is not None:
        with store:
            names = [t.name for t in store.topics()]
    print_names(names, f"no topics in {args.data_dir}")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    """Print a topic's config and, per partition, log start, high watermark, records, bytes."""
    if broker_of(args):
        from . import remote_topics

        return remote_topics.topics_describe(args)
    name = check_topic_name(args.name)
    with open_existing(args.data_dir, name, args.lock_timeout) as store:
        print(describe(store, store.topic(name)))
    return 0


def describe(store: LogStore, info: TopicInfo) -> str:
    """The text ``topics describe`` prints."""
    c = info.config
    settings = [
        ("cleanup-policy", c.cleanup_policy),
        ("retention-ms", _or_none(c.retention_ms)),
        ("retention-bytes", _or_none(c.retention_bytes)),
        ("retention-records", _or_none(c.retention_records)),
        ("tombstone-grace-ms", _or_none(c.tombstone_grace_ms)),
    ]
    lines = [f"topic:       {info.name}", f"partitions:  {info.partitions}"]
    lines += [f"{k + ':':<20} {v}" for k, v in settings]
    header = ("partition", "log-start", "high-watermark", "records", "bytes")
    rows = []
    total_records = total_bytes = 0
    for p in range(info.partitions):
        pi = store.partition_info(info.name, p)
        total_records += pi.records
        total_bytes += pi.bytes
        rows.append((str(p), str(pi.log_start_offset), str(pi.high_watermark),
                     str(pi.records), str(pi.bytes)))
    rows.append(("total", "", "", str(total_records), str(total_bytes)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines.append("")
    for row in [header, *rows]:
        # Names left-aligned, numbers right-aligned, as a table of counts reads best.
        cells = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _or_none(value: int | None) -> str:
    return "none" if value is None else str(value)


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a topic, its records and the offsets committed for it."""
    if broker_of(args):
        from . import remote_topics

        return remote_topics.topics_delete(args)
    name = check_topic_name(args.name)
    with open_existing(args.data_dir, name, args.lock_timeout) as store:
        store.delete_topic_sync(name)
    print(f"deleted topic {name!r}")
    return 0
