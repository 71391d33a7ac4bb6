"""Reading a pipeline's output topic back, for the end-to-end dataflow tests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson

import streamrt as sr


def read_topic(path: Path, topic: str) -> list[Any]:
    """Every record of ``topic`` in the data directory ``path``, JSON-decoded, partition by
    partition."""
    with sr.open_log(path, maintenance_interval=None) as log:
        return [orjson.loads(r.value) for p in range(log.topic(topic).partitions)
                for r in log.read(topic, p, 0, max_records=10**7)]


def canon(xs: list[Any]) -> Counter[bytes]:
    """Results as a multiset, order and dict key order ignored."""
    return Counter(orjson.dumps(x, option=orjson.OPT_SORT_KEYS) for x in xs)
