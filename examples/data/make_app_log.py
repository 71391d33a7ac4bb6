"""Regenerate ``app.log``, the sample input of ``examples/log_aggregation.py``.

    python examples/data/make_app_log.py

Deterministic (a fixed seed): about 3,000 lines from five services over 40 minutes, in the
format ``2026-11-27T10:00:00.123Z LEVEL [service] message key=value...``, slightly out of
order (as lines from several writers are), with a few lines no parser would take: stack
trace continuations, a truncated line, garbage.
"""

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

SERVICES = {
    "api": ["GET /v1/orders/{n} 200 in {ms}ms", "POST /v1/orders 201 in {ms}ms",
            "GET /v1/users/{n} 404 in {ms}ms", "rate limit hit for client c-{n}"],
    "auth": ["login ok user_id={n}", "login failed user_id={n} reason=bad_password",
             "token refreshed user_id={n}", "session expired user_id={n}"],
    "billing": ["invoice {n} created amount={ms}.00 EUR", "charge {n} captured",
                "charge {n} declined code=insufficient_funds", "refund {n} issued"],
    "search": ["query took {ms}ms hits={n}", "index segment merged size={n}kB",
               "reindex batch {n} done"],
    "worker": ["job {n} started", "job {n} finished in {ms}ms", "job {n} retry 1/3",
               "queue depth {n}"],
}
LEVELS = ["DEBUG"] * 3 + ["INFO"] * 12 + ["WARN"] * 3 + ["ERROR"]
ERRORS = {
    "api": "upstream timeout after {ms}ms on /v1/orders/{n}",
    "auth": "LDAP connection refused (attempt {n})",
    "billing": "payment provider returned 502 for charge {n}",
    "search": "shard {n} unavailable",
    "worker": "job {n} failed: KeyError('customer_id')",
}
JUNK = [
    "Traceback (most recent call last):",
    '  File "/srv/worker/jobs.py", line 88, in run',
    "    customer = payload['customer_id']",
    "KeyError: 'customer_id'",
    "2026-11-27T10:1",
    "\x00\x00\x00 binary garbage \x7f",
    "---- restarting ----",
    "INFO [api] line without a timestamp",
]


def main() -> None:
    rng = random.Random(20261127)
    t0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
    lines = []
    ms = 0
    for _ in range(3000):
        ms += rng.randint(100, 1500)
        jitter = rng.randint(-2000, 0)  # several writers: slightly out of order
        ts = t0 + timedelta(milliseconds=max(0, ms + jitter))
        service = rng.choice(list(SERVICES))
        level = rng.choice(LEVELS)
        tpl = ERRORS[service] if level == "ERROR" else rng.choice(SERVICES[service])
        msg = tpl.format(n=rng.randint(1, 99999), ms=rng.randint(1, 3000))
        stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
        lines.append(f"{stamp} {level:<5} [{service}] {msg}")
        if rng.random() < 0.01:
            lines += rng.sample(JUNK, rng.randint(1, 3))
    path = Path(__file__).with_name("app.log")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{path}: {len(lines)} lines, {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
