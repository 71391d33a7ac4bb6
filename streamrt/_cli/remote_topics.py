"""``topics create|list|describe|delete`` over ``--broker``.

Kafka's topic configs carry ``retention.ms``, ``retention.bytes``, ``cleanup.policy`` and
``delete.retention.ms`` (the tombstone grace); streamrt's record-count retention has no Kafka
name, so ``--retention-records`` is refused here and shown as ``unknown``, and Kafka reports
no stored bytes per partition (``-``).
"""

from __future__ import annotations

import argparse

from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ..errors import InvalidArgument, TopicExists, UnknownTopic
from ..storage import TopicConfig, check_topic_name
from ._common import plural, print_names
from .remote import Remote, check, run, table

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3


def topics_create(args: argparse.Namespace) -> int:
    """``topics create`` over the broker: CreateTopics, and on "exists" compare settings."""
    name = check_topic_name(args.name)
    if args.retention_records is not None:
        raise InvalidArgument(
            "--retention-records has no Kafka topic config, so it cannot be set over --broker; "
            "create the topic with it while no server runs on the data directory")
    wanted = {"retention.ms": _num(args.retention_ms), "retention.bytes": _num(args.retention_bytes),
              "cleanup.policy": args.cleanup_policy}

    async def main(r: Remote) -> int:
        resp = await r.admin.create_topics([NewTopic(name, args.partitions, 1, topic_configs={
            k: v for k, v in wanted.items() if v != "-1"})])
        (entry,) = resp.to_object()["topic_errors"]
        if entry["error_code"] == _TOPIC_ALREADY_EXISTS:
            n = (await r.topics()).get(name, 0)
            have = await topic_configs(r, name)
            if n == args.partitions and all(have.get(k, v) == v for k, v in wanted.items()):
                print(f"topic {name!r} already exists with these settings")
                return 0
            raise TopicExists(f"topic {name!r} already exists with {n} partitions"
                              f"{_settings(have)}; delete it first or create it with the same "
                              f"settings")
        check(entry["error_code"], f"creating topic {name!r}", entry.get("error_message"))
        print(f"created topic {name!r} with {plural(args.partitions, 'partition')}")
        return 0

    return run(args, main)


def _settings(configs: dict[str, str]) -> str:
    """Kafka configs as the local error shows a topic's settings: those not at the default."""
    fields = {"retention.ms": "retention_ms", "retention.bytes": "retention_bytes",
              "cleanup.policy": "cleanup_policy", "delete.retention.ms": "tombstone_grace_ms"}
    default = TopicConfig().to_dict()
    diff = []
    for key, field in fields.items():
        value: object = configs.get(key)
        if value is None:
            continue
        if field != "cleanup_policy":
            value = None if str(value).startswith("-") else int(str(value))
        if default.get(field) != value:
            diff.append(f"{field}={value}")
    return f" ({', '.join(diff)})" if diff else " (default settings)"


def _num(value: int | None) -> str:
    return "-1" if value is None else str(value)


async def topic_configs(r: Remote, name: str) -> dict[str, str]:
    """The topic's Kafka configs (name -> value) as DescribeConfigs reports them."""
    (resp,) = await r.admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    out: dict[str, str] = {}
    for res in resp.to_object()["resources"]:
        check(res["error_code"], f"describing topic {name!r}", res.get("error_message"))
        for c in res["config_entries"]:
            if c["config_value"] is not None:
                out[c["config_names"]] = c["config_value"]
    return out


def topics_list(args: argparse.Namespace) -> int:
    """``topics list`` over the broker."""

    async def main(r: Remote) -> int:
        names = sorted(await r.topics())
        print_names(names, f"no topics at {r.address}")
        return 0

    return run(args, main)


def topics_describe(args: argparse.Namespace) -> int:
    """``topics describe`` over the broker. Kafka reports no per-partition byte counts, nor
    streamrt's record-count retention: those cells read ``-`` and ``unknown``."""
    name = check_topic_name(args.name)

    async def main(r: Remote) -> int:
        parts = await r.partitions(name)
        cfg = await topic_configs(r, name)
        ranges = await r.log_range(name, parts)

        def setting(key: str) -> str:
            value = cfg.get(key)
            return "none" if value is None or value.startswith("-") else value

        settings = [("cleanup-policy", cfg.get("cleanup.policy", "delete")),
                    ("retention-ms", setting("retention.ms")),
                    ("retention-bytes", setting("retention.bytes")),
                    ("retention-records", "unknown"),
                    ("tombstone-grace-ms", setting("delete.retention.ms")
                     if "delete.retention.ms" in cfg else "unknown")]
        lines = [f"topic:       {name}", f"partitions:  {len(parts)}"]
        lines += [f"{k + ':':<20} {v}" for k, v in settings]
        rows = [(str(p), str(s), str(e), str(e - s), "-") for p, (s, e) in sorted(ranges.items())]
        rows.append(("total", "", "", str(sum(e - s for s, e in ranges.values())), "-"))
        lines.append("")
        lines += table(("partition", "log-start", "high-watermark", "records", "bytes"), rows)
        print("\n".join(lines))
        return 0

    return run(args, main)


def topics_delete(args: argparse.Namespace) -> int:
    """``topics delete`` over the broker."""
    name = check_topic_name(args.name)

    async def main(r: Remote) -> int:
        if name not in await r.topics():
            raise UnknownTopic(name)
        resp = await r.admin.delete_topics([name])
        for t in resp.to_object()["topic_error_codes"]:
            if t["error_code"] == _UNKNOWN_TOPIC:
                raise UnknownTopic(name)
            check(t["error_code"], f"deleting topic {name!r}")
        print(f"deleted topic {name!r}")
        return 0

    return run(args, main)
