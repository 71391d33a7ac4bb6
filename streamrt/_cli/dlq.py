"""``streamrt dlq list|inspect|replay``: dead letters of queue groups.

``NAME`` is a queue (``NAME`` for every group of it, or ``NAME/GROUP``) or a dead-letter
topic. The commands open the data directory itself (no broker needs to run, and none may:
one process owns a directory), read the dead-letter topic, and for ``replay`` append each
letter back to its source topic and mark it replayed in the same LMDB transaction, a chunk
at a time, so an interrupted replay resumes where it stopped and never replays a letter
twice. Replayed letters stay in the dead-letter topic (its retention removes them), hidden
unless ``--all``.
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections import Counter

import orjson

from ..broker import _queue_dlq as dlq
from ..broker._queue_state import REASONS
from ..errors import UnknownQueue
from ..storage import LogStore
from ._common import CliError, broker_of, open_store, plural, warn, write_stdout

REPLAY_CHUNK = 1_000
#: Letters that cannot be replayed named one per line on stderr; the rest are counted.
MAX_PROBLEMS_SHOWN = 20


def _open(args: argparse.Namespace, name: str | None) -> LogStore | None:
    """The data directory's log (None if there is none and no NAME needs it)."""
    store = open_store(args.data_dir, create=False, lock_timeout=args.lock_timeout)
    if store is None and name is not None:
        raise UnknownQueue(f"no queue or dead-letter topic named {name!r}: the data directory "
                           f"{args.data_dir} has no log")
    return store


def _need(args: argparse.Namespace) -> LogStore:
    store = _open(args, args.name)
    assert store is not None  # a NAME was given: a missing log raised UnknownQueue
    return store


def cmd_list(args: argparse.Namespace) -> int:
    """One line per dead-letter topic: the queues using it, pending and replayed letters,
    and the pending ones per reason."""
    if broker_of(args):
        from . import remote_dlq

        return remote_dlq.dlq_list(args)
    store = _open(args, args.name)
    if store is None:
        return 0
    with store:
        users = dlq.dlq_topics(store)
        topics = dlq.resolve(store, args.name) if args.name else sorted(
            t for t in users if store.has_topic(t))
        rows = [("DLQ", "QUEUES", "PENDING", "REPLAYED", "REASONS")]
        for topic in topics:
            pending: Counter[str] = Counter()
            replayed = 0
            for d in dlq.read(store, topic, include_replayed=True):
                if d.replayed:
                    replayed += 1
                else:
                    pending[d.reason] += 1
            reasons = " ".join(f"{r}={pending[r]}" for r in REASONS if pending[r]) or "-"
            rows.append((topic, ",".join(users.get(topic, [])) or "-", str(sum(pending.values())),
                         str(replayed), reasons))
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        write_stdout("".join(
            "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] + "\n"
            for r in rows))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print dead letters with their reason, source, delivery count, key, headers, value."""
    if broker_of(args):
        from . import remote_dlq

        return remote_dlq.dlq_inspect(args)
    with _need(args) as store:
        letters = []
        for topic in dlq.resolve(store, args.name):
            left = None if args.max is None else args.max - len(letters)
            if left == 0:
                break
            letters += dlq.read(store, topic, include_replayed=args.all,
                                reasons=args.reason, limit=left)
    if args.json:
        write_stdout("".join(orjson.dumps(d.to_dict()).decode() + "\n" for d in letters))
    else:
        write_stdout("".join(_describe(d) for d in letters))
    return 0


def _describe(d: dlq.DeadLetter) -> str:
    when = datetime.datetime.fromtimestamp(d.dead_lettered_at / 1000, datetime.timezone.utc)
    state = "  (replayed)" if d.replayed else ""
    out = [f"{d.topic}[{d.partition}]@{d.offset}  reason={d.reason}  from "
           f"{d.source_topic}[{d.source_partition}]@{d.source_offset} (queue {d.source_queue})  "
           f"deliveries={d.deliveries}  at {when.isoformat(timespec='milliseconds')}{state}"]
    if d.key is not None:
        out.append(f"  key: {_show(d.key)}")
    if d.headers:
        out.append("  headers: " + ", ".join(f"{k}={_show(v)}" for k, v in d.headers))
    out.append(f"  value: {_show(d.value)}")
    return "\n".join(out) + "\n"


def _show(b: bytes | None) -> str:
    if b is None:
        return "null"
    text = b.decode(errors="replace")
    return text if len(text) <= 200 else text[:200] + f"... ({len(b)} bytes)"


def cmd_replay(args: argparse.Namespace) -> int:
    """Append dead letters back to their source topics, each exactly once.

    Every selected letter is checked first (a read-only pass, the whole of ``--dry-run``):
    if any cannot be replayed (its source topic or partition is gone), each such letter is
    named on stderr and nothing is replayed, so a dry run and a real run always agree.
    """
    if broker_of(args):
        from . import remote_dlq

        return remote_dlq.dlq_replay(args)
    with _need(args) as store:
        topics = dlq.resolve(store, args.name)
        total, sources, problems = _check_replay(store, topics, args)
        refuse_unreplayable(problems, total, args.dry_run)
        if not args.dry_run:
            total = 0
            for topic in topics:
                while args.max is None or total < args.max:
                    n = REPLAY_CHUNK if args.max is None else min(REPLAY_CHUNK, args.max - total)
                    letters = list(dlq.read(store, topic, reasons=args.reason, limit=n))
                    if not letters:
                        break
                    dlq.check_sources(store, letters)
                    store.write_sync(dlq.replay_batch(store, letters, int(time.time() * 1000)))
                    total += len(letters)
    where = ", ".join(f"{t} ({n})" for t, n in sorted(sources.items())) or "nowhere"
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {plural(total, 'dead letter')} to {where}")
    return 0


def refuse_unreplayable(problems: list[Exception], total: int, dry_run: bool) -> None:
    """Name each letter that cannot be replayed (up to MAX_PROBLEMS_SHOWN) and fail the
    command, before anything is replayed; nothing if there are none."""
    if not problems:
        return
    for err in problems[:MAX_PROBLEMS_SHOWN]:
        warn(f"cannot replay: {err}")
    if len(problems) > MAX_PROBLEMS_SHOWN:
        warn(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more that cannot be replayed")
    raise CliError(
        f"{len(problems)} of the {plural(total, 'selected dead letter')} cannot be replayed "
        f"(see above); " + ("a replay would replay none of them" if dry_run
                            else "nothing was replayed"))


def _check_replay(
    store: LogStore, topics: list[str], args: argparse.Namespace,
) -> tuple[int, Counter[str], list[Exception]]:
    """The letters a replay selects: how many, per source topic, and why any of them cannot
    be replayed (one error per such letter, naming it)."""
    total = 0
    sources: Counter[str] = Counter()
    problems: list[Exception] = []
    for topic in topics:
        left = None if args.max is None else args.max - total
        if left == 0:
            break
        for d in dlq.read(store, topic, reasons=args.reason, limit=left):
            total += 1
            sources[d.source_topic] += 1
            err = dlq.source_problem(store, d)
            if err is not None:
                problems.append(err)
    return total, sources, problems
