"""The data directory: one owner (flock, freed by the kernel on kill -9), the on-disk format
check, clearing reader slots of killed processes, and map growth under concurrent reads.

Subprocesses run ``_storeproc.py`` (see its doc for the modes and the line protocol).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

import streamrt as sr
from streamrt import errors
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


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    s = H.Spawner(tmp_path)
    yield s
    s.cleanup()


def _open(path: Path, **kw: object) -> sr.LogStore:
    return sr.LogStore.open(path, maintenance_interval=None, **kw)  # type: ignore[arg-type]


def _reader_pids(text: str) -> set[int]:
    """PIDs in LMDB's reader table as ``Environment.readers()`` prints it (rows ``pid thread
    txnid``; newlines may have been replaced by ``|``)."""
    pids = set()
    for row in text.replace("|", "\n").splitlines():
        tok = row.split()
        if tok and tok[0].isdigit():
            pids.add(int(tok[0]))
    return pids


def _hold_records(s: sr.LogStore) -> list[bytes]:
    return [r.value for r in s.read("t", 0, 0)]


# ----------------------------------------------------------------------------- the lock


def test_second_process_refused_with_holder_pid_then_free_after_kill9(
    tmp_path: Path, spawn: object
) -> None:
    d = tmp_path / "data"
    holder = spawn("hold", d, name="holder")
    pid = int(holder.expect("READY").split()[1])
    assert pid == holder.pid

    # This test process is a second process: refused, and told who holds the directory.
    with pytest.raises(errors.DataDirLocked) as ei:
        _open(d)
    assert ei.value.pid == pid
    assert f"process {pid}" in str(ei.value) and str(d) in str(ei.value)
    assert isinstance(ei.value, errors.StorageError) and isinstance(ei.value, OSError)
    # So is another one; and being refused disturbed neither the lock nor the holder.
    other = spawn("try-open", d, name="other")
    assert other.expect("LOCKED") == f"LOCKED {pid}"
    holder.send("append")
    assert holder.expect("APPENDED") == "APPENDED 5"

    holder.kill9()  # no clean close: only the kernel can release the flock now
    third = spawn("try-open", d, name="third")
    assert third.expect("OPENED") == f"OPENED {third.pid}"
    third.expect("DONE", timeout=60)
    assert third.proc.wait(30) == 0, third.stderr()
    with _open(d) as s:  # and this process too, now that the third one closed it
        assert _hold_records(s) == [f"hold-{i}".encode() for i in range(5)] + [b"more", b"hold-0"]
        assert (d / "LOCK").read_text().strip() == str(os.getpid())


def test_same_process_second_open_refused(tmp_path: Path, spawn: object) -> None:
    """flock locks belong to the open file description, so the second open's new descriptor
    conflicts even in the owning process (LMDB must never be opened twice in one process)."""
    d = tmp_path / "data"
    s = _open(d)
    try:
        s.create_topic_sync("t", 1)
        s.append_sync("t", 0, [(None, b"a")])
        with pytest.raises(errors.DataDirLocked) as ei:
            _open(d)
        assert ei.value.pid == os.getpid()
        assert f"this process ({os.getpid()}" in str(ei.value)
        with pytest.raises(errors.DataDirLocked):
            _open(d, durability="none")
        # The refused open closed only its own descriptor: the directory is still locked...
        other = spawn("try-open", d, name="other")
        assert other.expect("LOCKED") == f"LOCKED {os.getpid()}"
        # ...and the first store still works.
        assert s.append_sync("t", 0, [(None, b"b")]) == 1
        assert [r.value for r in s.read("t", 0, 0)] == [b"a", b"b"]
    finally:
        s.close()
    with _open(d) as s2:  # closing released it
        assert s2.high_watermark("t", 0) == 2


# ----------------------------------------------------------------------------- format


def _set_format(d: Path, value: bytes | None) -> bytes | None:
    """Read the stored format version (and overwrite it unless ``value`` is None) with LMDB
    directly; the store must be closed (LMDB must not be opened twice in one process)."""
    env = lmdb.open(str(d / "log"), max_dbs=16)
    try:
        meta = env.open_db(b"meta")
        with env.begin(write=value is not None) as txn:
            old = txn.get(b"format", db=meta)
            if value is not None:
                txn.put(b"format", value, db=meta)
        return old
    finally:
        env.close()


def test_new_directory_gets_format_1(tmp_path: Path) -> None:
    d = tmp_path / "data"
    _open(d).close()
    assert _set_format(d, None) == b"1"


def test_unknown_format_refused(tmp_path: Path, spawn: object) -> None:
    d = tmp_path / "data"
    with _open(d) as s:
        s.create_topic_sync("t", 1)
        s.append_sync("t", 0, [(None, b"kept")])
    assert _set_format(d, b"99") == b"1"

    with pytest.raises(errors.UnsupportedFormat) as ei:
        _open(d)
    msg = str(ei.value)
    assert "'99'" in msg and str(d) in msg and "format 1" in msg
    assert isinstance(ei.value, errors.StorageError)
    # The refused open released the directory: another process gets the same answer,
    # not DataDirLocked.
    other = spawn("try-open", d, name="other")
    assert other.expect("ERROR").startswith("ERROR UnsupportedFormat ")
    assert other.proc.wait(30) == 0
    del ei
    # Nothing was changed on disk: setting the version back makes the data readable again.
    assert _set_format(d, b"1") == b"99"
    with _open(d) as s:
        assert [r.value for r in s.read("t", 0, 0)] == [b"kept"]


@pytest.mark.parametrize("dbs", [
    {b"meta": (b"format", b"2"), b"segments": (b"k", b"v")},  # a future streamrt format
    {b"other": (b"k", b"v")},  # an LMDB environment streamrt did not write
], ids=["format-2", "foreign"])
def test_refused_open_leaves_directory_untouched(tmp_path: Path, dbs: dict) -> None:
    """Refused before anything is created in it: opening the named databases first would
    write them into a directory this version does not own."""
    d = tmp_path / "data"
    (d / "log").mkdir(parents=True)

    def contents() -> list[tuple[bytes, bytes]]:
        env = lmdb.open(str(d / "log"), max_dbs=16)
        try:
            with env.begin() as txn:
                return list(txn.cursor())  # the main database: one entry per named database
        finally:
            env.close()

    env = lmdb.open(str(d / "log"), max_dbs=16)
    with env.begin(write=True) as txn:
        for name, (k, v) in dbs.items():
            txn.put(k, v, db=env.open_db(name, txn=txn))
    env.close()
    before = contents()
    assert [k for k, _ in before] == sorted(dbs)

    with pytest.raises(errors.UnsupportedFormat) as ei:
        _open(d)
    assert str(d) in str(ei.value)
    del ei
    assert [k for k, _ in contents()] == sorted(dbs), "the refused open created databases"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_refused_open_closes_its_environment(tmp_path: Path) -> None:
    """The flock is released on a refused open, so the LMDB environment must be closed too,
    not left to the garbage collector: while the exception (its traceback) lives, a reopen in
    this process would open LMDB twice in one process, which LMDB forbids."""
    d = tmp_path / "data"
    _open(d).close()
    _set_format(d, b"2")

    def open_files() -> list[str]:
        out = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(d)):
                out.append(target)
        return out

    kept = None
    try:
        _open(d)
    except errors.UnsupportedFormat as e:
        kept = e  # as a log record, a retry loop or a test framework would keep it
    assert kept is not None
    assert open_files() == []


# ----------------------------------------------------------------------------- stale readers


def test_reader_slot_of_killed_process_is_cleared(tmp_path: Path, spawn: object) -> None:
    """A process killed inside a read transaction leaves its slot in LMDB's reader table;
    while the slot stays, pages freed after its snapshot cannot be reused and the file grows
    with every overwrite. An LMDB user without the directory lock (``rawenv``) keeps the lock
    table alive across the kill, so the slot really survives until the next store's
    ``reader_check()`` at open."""
    d = tmp_path / "data"
    holder = spawn("hold", d, "--read-txn", name="holder")
    dead = int(holder.expect("READY").split()[1])
    raw = spawn("rawenv", d, name="rawenv")
    raw.expect("READY")
    raw.send("readers")
    assert dead in _reader_pids(raw.expect("READERS"))
    holder.kill9()
    raw.send("readers")
    assert dead in _reader_pids(raw.expect("READERS")), "the stale slot should outlive the kill"
    size0 = (d / "log" / "data.mdb").stat().st_size

    writes = 200  # 200 overwrites of a 64 KiB value: ~13 MB of freed pages if none is reused
    nxt = spawn("try-open", d, writes, name="next")
    assert nxt.expect("OPENED") == f"OPENED {nxt.pid}"
    assert dead not in _reader_pids(nxt.expect("READERS")), "reader_check() left the slot"
    size1 = int(nxt.expect("DONE", timeout=120).split()[1])
    assert nxt.proc.wait(30) == 0, nxt.stderr()
    assert size1 - size0 < 4 << 20, f"data.mdb grew {size0} -> {size1}: freed pages not reused"
    raw.send("readers")
    assert dead not in _reader_pids(raw.expect("READERS"))
    raw.finish()

    with _open(d) as s:
        assert _hold_records(s) == [f"hold-{i}".encode() for i in range(5)] + [b"hold-0"]
        assert len(s.get(b"churn") or b"") == 64 << 10


def test_open_and_write_after_reader_killed(tmp_path: Path, spawn: object) -> None:
    d = tmp_path / "data"
    holder = spawn("hold", d, "--read-txn", name="holder")
    dead = int(holder.expect("READY").split()[1])
    holder.kill9()
    with _open(d) as s:
        assert dead not in _reader_pids(s._data.env.readers())
        size0 = (d / "log" / "data.mdb").stat().st_size
        blob = os.urandom(64 << 10)
        for i in range(100):
            wb = sr.WriteBatch()
            wb.put(b"churn", blob[i:] + blob[:i])
            s.write_sync(wb)
        assert s.append_sync("t", 0, [(None, b"after")]) == 5
        assert (d / "log" / "data.mdb").stat().st_size - size0 < 4 << 20
    with _open(d) as s:
        assert _hold_records(s) == [f"hold-{i}".encode() for i in range(5)] + [b"after"]
        assert s.get(b"churn") == blob[99:] + blob[:99]


# ----------------------------------------------------------------------------- map growth


def _big(p: int, o: int) -> bytes:
    seed = hashlib.blake2b(f"{p}/{o}".encode(), digest_size=64).digest()
    return f"{p}/{o}/".encode() + seed * 256  # ~16 KB


def test_map_grows_while_readers_read(tmp_path: Path) -> None:
    """A 1 MiB map grown to hold ~20 MB, appended from 4 threads, while 2 threads keep reading
    and checking what they read: growth remaps only when no read transaction is open."""
    d = tmp_path / "data"
    parts, appends, per = 4, 80, 4  # 4 x 80 x 4 records x 16 KB ~ 21 MB
    s = _open(d, map_size=1 << 20)
    stop = threading.Event()
    failures: list[BaseException] = []
    map_sizes: set[int] = set()
    reads = [0]
    try:
        s.create_topic_sync("big", parts)

        def writer(p: int) -> None:
            try:
                for i in range(appends):
                    recs = [(None, _big(p, i * per + j)) for j in range(per)]
                    base = s.append_sync("big", p, recs)
                    assert base == i * per
            except BaseException as e:
                failures.append(e)

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            try:
                while not stop.is_set():
                    p = rng.randrange(parts)
                    hw = s.high_watermark("big", p)
                    if hw == 0:
                        continue
                    o = rng.randrange(hw)
                    with s._data.gate.reading():  # not while the writer remaps
                        map_sizes.add(s._data.env.info()["map_size"])
                    for b in s.read_raw("big", p, o, max_bytes=256 << 10):
                        check_batch(b)
                        for r in iter_records(b):
                            assert r.value == _big(p, r.offset), (p, r.offset)
                    recs = s.read("big", p, o, max_records=8)
                    assert [r.offset for r in recs] == list(range(o, o + len(recs)))
                    assert len(recs) >= min(8, hw - o)  # appends may have come meanwhile
                    assert all(r.value == _big(p, r.offset) for r in recs)
                    reads[0] += 1
            except BaseException as e:
                failures.append(e)

        readers = [threading.Thread(target=reader, args=(k,)) for k in range(2)]
        writers = [threading.Thread(target=writer, args=(p,)) for p in range(parts)]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join(120)
        stop.set()
        for t in readers:
            t.join(60)
        assert not any(t.is_alive() for t in readers + writers)
        assert not failures, failures[0]
        assert reads[0] > 50
        assert len(map_sizes) >= 3, f"reads saw map sizes {sorted(map_sizes)} only"
        assert s._data.env.info()["map_size"] >= 16 << 20
        for p in range(parts):
            assert s.high_watermark("big", p) == appends * per
    finally:
        stop.set()
        s.close()
    assert (d / "log" / "data.mdb").stat().st_size > 20 << 20

    # Reopened with the tiny map again: LMDB maps at least the used size; everything reads back.
    with _open(d, map_size=1 << 20) as s:
        for p in range(parts):
            recs = s.read("big", p, 0, max_records=1 << 20, max_bytes=1 << 30)
            assert [r.offset for r in recs] == list(range(appends * per))
            assert all(r.value == _big(p, r.offset) for r in recs)
        assert s.append_sync("big", 0, [(None, _big(0, appends * per))] * 64) == appends * per


def test_a_path_that_cannot_be_a_data_directory_gets_a_clear_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for create in (True, False):
        with pytest.raises(errors.StorageError, match="is a file, not a data directory"):
            sr.LogStore.open(afile, create=create, maintenance_interval=None)
    for create in (True, False):  # a path under a file: that file is named
        with pytest.raises(errors.StorageError, match=r"afile \(in .*afile/sub/x\) is a file"):
            sr.LogStore.open(afile / "sub" / "x", create=create, maintenance_interval=None)
    with pytest.raises(errors.InvalidArgument, match="path is empty"):
        sr.LogStore.open("", maintenance_interval=None)
    assert afile.read_text() == "mine"
