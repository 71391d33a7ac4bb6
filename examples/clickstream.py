"""Clickstream analytics: windowed per-user counts and sums, exactly once.

    streamrt run examples/clickstream.py

200,000 click events from a bounded generator (a deterministic demo source) are filtered,
enriched, keyed by user and counted per user in 10-second event-time windows; each window's
results go to the topic ``clicks-per-user`` when the window closes. Outputs, window state and
the source position commit together at each checkpoint, so a crash and restart (kill -9 it
mid-run and run it again) yields every result exactly once. Run it again and it says there is
nothing new; ``--reset`` processes everything afresh.
"""

import streamrt as sr

EVENTS = 200_000

app = sr.App("clickstream", guarantee="exactly_once")
per_user = app.topic("clicks-per-user", partitions=4)


def clicks():
    """Click events: ts in ms, 50 users, values 0 to 99.9."""
    for i in range(EVENTS):
        yield {"ts": i, "user": f"user-{i % 50}", "value": (i * 7919) % 1000 / 10}


(app.stream(clicks, name="clicks")
    .filter(lambda e: e["value"] >= 10)
    .map(lambda e: {**e, "v2": e["value"] * 2})
    .key_by(lambda e: e["user"])
    .window(sr.tumbling(seconds=10), timestamp=lambda e: e["ts"])
    .aggregate(count=sr.count(), total=sr.sum(lambda e: e["v2"]), name="per-user")
    .to(per_user))
