"""Log aggregation: lines per service and level per minute, ERROR alerts, bad lines to the DLQ.

    streamrt run examples/log_aggregation.py

Reads the sample log ``data/app.log`` (next to this file; regenerate it with
``data/make_app_log.py``; ``sr.file(path, follow=True)`` would tail a live one). Each line
looks like ``2026-11-27T10:00:00.716Z INFO  [api] GET /v1/orders/12 200 in 31ms``:

- every parsed line is counted per (service, level) in one-minute event-time windows (lines
  from several writers arrive up to a few seconds out of order), into ``log-counts``;
- ERROR lines also go, as they come, to ``alerts``;
- a line the parser rejects (stack trace continuations, truncated or binary lines) makes
  ``parse`` raise; with ``on_error="dead_letter"`` it goes to the app's dead-letter topic
  ``logs.dlq`` with the error in its headers, and processing goes on.

Look at the results with ``streamrt consume log-counts``, ``streamrt consume alerts`` and
``streamrt consume logs.dlq``.
"""

import re
from datetime import datetime, timezone
from pathlib import Path

import streamrt as sr

LOG = Path(__file__).resolve().parent / "data" / "app.log"
LINE = re.compile(r"(\S+Z) (DEBUG|INFO|WARN|ERROR) +\[([\w-]+)\] (.*)")

app = sr.App("logs", on_error="dead_letter")


def parse(line: str) -> dict:
    """``{"ts": ms, "level", "service", "message"}``; ValueError for a line that is not one."""
    m = LINE.fullmatch(line)
    if m is None:
        raise ValueError(f"not a log line: {line[:80]!r}")
    stamp, level, service, message = m.groups()
    ts = int(datetime.fromisoformat(stamp).timestamp() * 1000)
    return {"ts": ts, "level": level, "service": service, "message": message}


def minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


entries = app.stream(sr.file(LOG), name="app-log").map(parse, name="parse")

(entries
    .key_by(lambda e: (e["service"], e["level"]))
    .window(sr.tumbling(seconds=60), timestamp=lambda e: e["ts"], max_out_of_orderness=5)
    .aggregate(lines=sr.count(), name="per-minute")
    .map(lambda r: {"service": r["key"][0], "level": r["key"][1], "minute": minute(r["start"]),
                    "lines": r["lines"]})
    .to(app.topic("log-counts")))

(entries
    .filter(lambda e: e["level"] == "ERROR", name="errors")
    .to(app.topic("alerts")))
