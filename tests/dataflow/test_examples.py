"""The examples, run as users run them (``streamrt run``), their outputs checked."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

import streamrt as sr

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _run(tmp_path: Path, example: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamrt", "run", "--data-dir", str(tmp_path / "d"),
         str(EXAMPLES / example)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)  # not the examples' dir


def _values(path: Path, topic: str) -> list[Any]:
    with sr.open_log(path, maintenance_interval=None) as log:
        return [orjson.loads(r.value) for p in range(log.topic(topic).partitions)
                for r in log.read(topic, p, 0, max_records=10**6)]


def _module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_log_aggregation(tmp_path: Path) -> None:
    r = _run(tmp_path, "log_aggregation.py")
    assert r.returncode == 0, r.stderr
    assert "0 late" in r.stdout and "0 restarts" in r.stdout, r.stdout
    ex = _module("log_aggregation")
    assert ex.LOG.stat().st_size < 500_000
    # The reference: the sample file parsed line by line in plain Python.
    good: list[dict[str, Any]] = []
    bad: list[str] = []
    for line in ex.LOG.read_text(encoding="utf-8").splitlines():
        try:
            good.append(ex.parse(line))
        except ValueError:
            bad.append(line)
    assert len(good) > 2_000 and 10 <= len(bad) < len(good) // 10
    want = Counter({(e["service"], e["level"], ex.minute(e["ts"] - e["ts"] % 60_000)): 0
                    for e in good})
    for e in good:
        want[(e["service"], e["level"], ex.minute(e["ts"] - e["ts"] % 60_000))] += 1
    counts = _values(tmp_path / "d", "log-counts")
    got = Counter()
    for c in counts:
        key = (c["service"], c["level"], c["minute"])
        assert key not in got, f"two results for {key}"
        got[key] = c["lines"]
    assert got == want
    alerts = _values(tmp_path / "d", "alerts")
    assert alerts == [e for e in good if e["level"] == "ERROR"] and alerts
    with sr.open_log(tmp_path / "d", maintenance_interval=None) as log:
        dead = list(log.read("logs.dlq", 0, 0, max_records=10**6))
    assert [orjson.loads(d.value) for d in dead] == bad
    assert all(b"not a log line" in dict(d.headers)["error"] for d in dead)
    assert f"{len(bad)} dead-lettered" in r.stdout
