"""Delivery guarantees under ``kill -9``: a consume-transform-produce app (_groupapp.py) in
a real subprocess is killed at random moments and restarted until it has consumed
everything; then the output topic and the deliveries it reported are checked:

* at-least-once loses nothing (every input has an output);
* exactly-once gives each input exactly one output (no loss, no duplicate);
* at-most-once never hands a message out twice (and never outputs one twice).
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

import streamrt as sr

APP = Path(__file__).with_name("_groupapp.py")
INPUTS = 3000
PARTITIONS = 4
KILLS = 4
WAIT = 30.0  # generous bound for the app to reach a state; passing runs take far less


class App:
    """One run of the app, its stdout lines read by a thread into a queue."""

    def __init__(self, data: Path, guarantee: str, seed: int) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), str(data), guarantee, str(seed)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.deliveries: list[tuple[int, int]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = WAIT, count: int = 1) -> str:
        """Read lines until the ``count``-th one starting with ``prefix`` (or ``IDLE``, the
        app's last word); returns that line."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError(f"app did not print {prefix!r} within {timeout} s: "
                                     f"{self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ''}") from None
            if line is None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"app exited ({self.proc.wait()}) before {prefix!r}:\n{err}")
            self._note(line)
            if line.startswith(prefix):
                count -= 1
                if count <= 0:
                    return line
            if line == "IDLE":
                return line

    def _note(self, line: str) -> None:
        if line.startswith("D "):
            self.deliveries += [tuple(map(int, x.split(":"))) for x in line[2:].split()]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        # everything it wrote before dying is still in the pipe
        while True:
            line = self.lines.get(timeout=WAIT)
            if line is None:
                break
            self._note(line)


def run_with_kills(data: Path, guarantee: str, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    deliveries: list[tuple[int, int]] = []
    for round_ in range(KILLS):
        app = App(data, guarantee, seed * 100 + round_)
        # Let it process a random number of batches, then kill it at a random moment.
        last = app.wait_for("P ", count=rng.randint(1, 25))
        time.sleep(rng.uniform(0, 0.02))  # the fault injection, not a synchronisation
        app.kill()
        deliveries += app.deliveries
        if last == "IDLE":
            break
    app = App(data, guarantee, seed * 100 + KILLS)
    app.wait_for("IDLE")
    app.kill()
    deliveries += app.deliveries
    return deliveries


def setup_data(data: Path) -> set[tuple[int, int]]:
    with sr.LogStore.open(data, maintenance_interval=None) as store:
        store.create_topic_sync("in", PARTITIONS)
        store.create_topic_sync("out", PARTITIONS)
        inputs = set()
        for p in range(PARTITIONS):
            n = INPUTS // PARTITIONS
            base = store.append_sync("in", p, [(f"k{i % 7}".encode(), orjson.dumps(i))
                                               for i in range(n)])
            inputs |= {(p, base + i) for i in range(n)}
    return inputs


def outputs(data: Path) -> Counter[tuple[int, int]]:
    got: Counter[tuple[int, int]] = Counter()
    with sr.LogStore.open(data, maintenance_interval=None) as store:
        for p in range(PARTITIONS):
            for r in store.read("out", p, 0, max_records=10**6):
                src = orjson.loads(r.value)["src"]
                got[(src[0], src[1])] += 1
    return got


@pytest.mark.slow
def test_at_least_once_loses_nothing_under_kill_9(tmp_path: Path) -> None:
    inputs = setup_data(tmp_path / "d")
    run_with_kills(tmp_path / "d", "at_least_once", seed=1)
    got = outputs(tmp_path / "d")
    assert inputs <= set(got)  # no loss (duplicates are allowed)


@pytest.mark.slow
def test_exactly_once_no_loss_no_duplicate_under_kill_9(tmp_path: Path) -> None:
    inputs = setup_data(tmp_path / "d")
    deliveries = run_with_kills(tmp_path / "d", "exactly_once", seed=2)
    got = outputs(tmp_path / "d")
    assert set(got) == inputs
    assert max(got.values()) == 1, [k for k, v in got.items() if v > 1][:10]
    assert len(deliveries) >= len(inputs)  # it was redelivered what a kill cut short


@pytest.mark.slow
def test_at_most_once_never_redelivers_under_kill_9(tmp_path: Path) -> None:
    inputs = setup_data(tmp_path / "d")
    deliveries = run_with_kills(tmp_path / "d", "at_most_once", seed=3)
    counts = Counter(deliveries)
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:10]
    got = outputs(tmp_path / "d")
    assert set(got) <= inputs and max(got.values()) == 1
