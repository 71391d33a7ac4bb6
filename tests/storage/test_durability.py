"""Durability under kill -9: every acknowledged append survives, nothing torn, offsets dense.

A subprocess (``_storeproc.py append``) appends from 12 pipelined trio tasks and 2 threads
(so the writer is nearly always in the middle of a group commit) and reports each
acknowledgement on its stdout. The test kills it with SIGKILL after a random number of
acknowledgements, reopens the directory and checks every byte against what was acknowledged,
then starts the next round on the same directory (recovery, then appending from the high
watermark). Set STREAMRT_FAULT_SEED to replay a run; the seed is printed.
"""

from __future__ import annotations

import bisect
import importlib.util
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import streamrt as sr
from streamrt.storage import check_batch, iter_records


def _load_helper():  # by path: independent of pytest's import mode
    path = Path(__file__).parent / "_storeproc.py"
    spec = importlib.util.spec_from_file_location("_storeproc", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_storeproc", mod)
    spec.loader.exec_module(mod)
    return mod


H = _load_helper()

TOPIC = "durable"
PARTITIONS = 6  # 4 written by trio tasks (3 each), 2 by threads


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    s = H.Spawner(tmp_path)
    yield s
    s.cleanup()


class Model:
    """What the test knows: each round's starting high watermarks and every acknowledgement."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.starts: list[list[int]] = [[] for _ in range(partitions)]  # per p: start of each round
        self.hw = [0] * partitions  # as last verified
        self.acks: list[tuple[int, int, int, int, int]] = []  # (round, p, base, count, seq)
        self.max_grouped = 0  # max (ops - commits) the writer reported: > 0 means grouping

    def round_of(self, p: int, offset: int) -> int:
        """The round that wrote ``offset``: the last one that started at or before it."""
        return bisect.bisect_right(self.starts[p], offset) - 1

    def take(self, rnd: int, line: str) -> None:
        if line.startswith("A "):
            p, base, count, seq, commits, ops = map(int, line.split()[1:])
            self.acks.append((rnd, p, base, count, seq))
            self.max_grouped = max(self.max_grouped, ops - commits)
        elif line.startswith("READY"):
            # The appender's recovery sees exactly what the test verified after the last kill.
            assert [int(x) for x in line.split()[1:]] == self.hw, (line, self.hw)


def verify(path: Path, m: Model, rnd: int, ctx: str) -> None:
    """Reopen the directory and check it against the model; then advance ``m.hw``."""
    with sr.LogStore.open(path, maintenance_interval=None) as s:
        if not s.has_topic(TOPIC):  # killed before its create_topic committed, every time
            assert not m.acks and m.hw == [0] * m.partitions, f"{ctx}: the topic is gone"
            return
        assert s.topic(TOPIC).partitions == m.partitions
        values: list[list[bytes]] = []
        for p in range(m.partitions):
            info = s.partition_info(TOPIC, p)
            hw = info.high_watermark
            assert info.log_start_offset == 0, ctx
            assert hw >= m.hw[p], f"{ctx}: p{p} high watermark went back {m.hw[p]} -> {hw}"
            # Every stored batch: CRC and header check, dense bases, nothing past the watermark.
            vals: list[bytes] = []
            off = nbytes = 0
            while off < hw:
                batches = s.read_raw(TOPIC, p, off)
                assert batches, f"{ctx}: p{p} no batch at offset {off} < hw {hw}"
                for b in batches:
                    h = check_batch(b)
                    assert h.base_offset == off, f"{ctx}: p{p} batch at {h.base_offset} != {off}"
                    recs = list(iter_records(b))
                    assert [r.offset for r in recs] == list(range(off, off + h.offset_count)), ctx
                    assert h.record_count == len(recs) == h.offset_count, ctx
                    vals += [r.value for r in recs]
                    nbytes += len(b)
                    off += h.offset_count
                    assert off <= hw, f"{ctx}: p{p} batch ends at {off}, past hw {hw}"
            assert off == hw and len(vals) == hw, ctx
            assert info.records == hw, f"{ctx}: p{p} records {info.records} != {hw}"
            assert info.bytes == nbytes, f"{ctx}: p{p} bytes {info.bytes} != {nbytes}"
            # Record order: sequence numbers are the offsets (dense, +1 each), exact bytes.
            for o, v in enumerate(vals):
                vp, seq, vr = H.parse(v)
                assert (vp, seq) == (p, o), f"{ctx}: p{p} offset {o} holds seq {seq} of p{vp}"
                assert vr == m.round_of(p, o), (
                    f"{ctx}: p{p} offset {o} says round {vr}, expected {m.round_of(p, o)}")
                same = v == H.value(p, seq, vr)
                assert same, f"{ctx}: p{p} offset {o} value differs"
            # The read path (batch lookup by offset) agrees at a few random offsets.
            for o in random.Random(hw).sample(range(hw), min(hw, 20)):
                (r,) = s.read(TOPIC, p, o, max_records=1)
                same = (r.offset, r.value) == (o, vals[o])
                assert same, f"{ctx}: p{p} read() at {o} returns offset {r.offset}"
            assert s.read(TOPIC, p, hw) == []
            values.append(vals)
        # Every acknowledged append, of every round so far, at its acknowledged offsets.
        for ar, p, base, count, seq in m.acks:
            where = f"{ctx}: acknowledged in round {ar}: p{p} offsets {base}..{base + count - 1}"
            assert base == seq, f"{where} carry seq {seq}.."
            hw = len(values[p])
            assert base + count <= hw, f"{where} lost: the high watermark is {hw}"
            want = [H.value(p, seq + i, ar) for i in range(count)]
            same = values[p][base:base + count] == want
            assert same, f"{where} hold other values"
            if ar == rnd:
                got = s.read(TOPIC, p, base, max_records=count)
                same = [(r.offset, r.value) for r in got] == list(zip(range(base, hw), want))
                assert same, f"{where}: read() at the acknowledged offset returns other records"
        for p in range(m.partitions):
            m.hw[p] = len(values[p])


def kill_rounds(
    path: Path, spawn: object, kills: int, acks: tuple[int, int], open_kill: float
) -> Model:
    """``kills`` rounds on one directory: start the appender, kill it after a random number
    of acknowledgements in ``acks`` (or, with probability ``open_kill``, as it opens the
    store), then verify everything."""
    seed = int(os.environ.get("STREAMRT_FAULT_SEED", random.randrange(1 << 32)))
    print(f"STREAMRT_FAULT_SEED={seed}")
    rng = random.Random(seed)
    m = Model(PARTITIONS)
    for rnd in range(kills):
        for p in range(PARTITIONS):
            m.starts[p].append(m.hw[p])
        child = spawn("append", path, TOPIC, PARTITIONS, rnd, rng.randrange(1 << 30),
                      name=f"append-{rnd}")
        ctx = f"seed {seed} round {rnd}"
        if rng.random() < open_kill:
            child.expect("OPENING")  # killed while opening/recovering the environment
            target = -1
        else:
            target = rng.randint(*acks)
            m.take(rnd, child.expect("READY"))
            seen = 0
            while seen < target:
                line = child.expect("A ")
                m.take(rnd, line)
                seen += 1
        child.kill9()
        for line in child.rest():  # acknowledged before the kill landed: they count too
            m.take(rnd, line)
        assert child.torn is None, f"{ctx}: torn ack line {child.torn!r}"
        print(f"round {rnd}: target {target}, {sum(a[0] == rnd for a in m.acks)} acks")
        verify(path, m, rnd, ctx)
    return m


def test_acknowledged_appends_survive_kill9(tmp_path: Path, spawn: object) -> None:
    m = kill_rounds(tmp_path / "data", spawn, kills=3, acks=(20, 400), open_kill=0.0)
    assert len(m.acks) >= 60
    assert m.max_grouped > 0, "the writer never grouped two appends in one commit"


@pytest.mark.slow
def test_acknowledged_appends_survive_many_kill9(tmp_path: Path, spawn: object) -> None:
    m = kill_rounds(tmp_path / "data", spawn, kills=24, acks=(0, 300), open_kill=0.1)
    assert len(m.acks) > 500
    assert m.max_grouped > 0, "the writer never grouped two appends in one commit"
    assert sum(m.hw) > 0


# ----------------------------------------------------------------------------- flags


def test_sync_durability_opens_lmdb_with_fsync(tmp_path: Path) -> None:
    """kill -9 cannot catch a missing fsync (the page cache survives it): check the flags."""
    with sr.LogStore.open(tmp_path / "d", maintenance_interval=None) as s:
        assert s.durability == "sync"
        f = s.env_flags()
        assert f["sync"] is True and f["metasync"] is True
        assert f["writemap"] is False and f["map_async"] is False
        assert f["readonly"] is False and f["lock"] is True
    with sr.LogStore.open(tmp_path / "d", durability="sync", maintenance_interval=None) as s:
        assert s.env_flags()["sync"] is True and s.env_flags()["metasync"] is True


def test_durability_none_turns_fsync_off(tmp_path: Path) -> None:
    with sr.LogStore.open(tmp_path / "d", durability="none", maintenance_interval=None) as s:
        assert s.durability == "none"
        f = s.env_flags()
        assert f["sync"] is False and f["metasync"] is False
        assert f["writemap"] is False
    # The same directory reopened durable gets fsync back: the flag is per open, not stored.
    with sr.LogStore.open(tmp_path / "d", maintenance_interval=None) as s:
        assert s.env_flags()["sync"] is True and s.env_flags()["metasync"] is True


def test_unknown_durability_refused(tmp_path: Path) -> None:
    with pytest.raises(sr.errors.InvalidArgument):
        sr.LogStore.open(tmp_path / "d", durability="async")  # type: ignore[arg-type]
    assert not (tmp_path / "d").exists()
