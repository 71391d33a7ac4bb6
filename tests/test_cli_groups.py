"""``streamrt groups list|describe|reset`` against real data directories (in-process)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import streamrt as sr
from streamrt._cli.groups import describe
from streamrt.broker._group_fsm import GroupDescription, MemberDescription
from streamrt.cli import main


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    with sr.LogStore.open(d, maintenance_interval=None) as store:
        store.create_topic_sync("t", 2)
        # partition 0: timestamps 1000, 2000, ... 10000; partition 1: three records
        store.append_sync("t", 0, [(None, str(i).encode(), [], 1000 * (i + 1)) for i in range(10)])
        store.append_sync("t", 1, [(None, b"x", [], 5000)] * 3)
        store.commit_sync("billing", {("t", 0): 4, ("t", 1): 3})
    return d


@pytest.fixture
def cli(data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STREAMRT_DATA_DIR", raising=False)

    def run(*args: str) -> Run:
        capsys.readouterr()
        code = main(["--data-dir", str(data), *args])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def committed(data: Path, group: str) -> dict:
    with sr.LogStore.open(data, maintenance_interval=None) as store:
        return store.committed(group)


def test_list_and_describe(cli, data: Path) -> None:
    assert cli("groups", "list").out == "billing\n"
    r = cli("groups", "describe", "billing")
    assert r.code == 0
    rows = [line.split() for line in r.out.splitlines() if line.startswith("t ")]
    assert rows == [["t", "0", "4", "10", "6"], ["t", "1", "3", "3", "0"]]
    assert "generation:  none" in r.out
    r = cli("groups", "describe", "nope")
    assert r.code == 1 and "unknown group 'nope'" in r.err


def test_list_without_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path / "none"), "groups", "list"]) == 0
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(("to", "expected"), [
    ("earliest", {("t", 0): 0, ("t", 1): 0}),
    ("latest", {("t", 0): 10, ("t", 1): 3}),
    ("2", {("t", 0): 2, ("t", 1): 2}),
    ("99", {("t", 0): 10, ("t", 1): 3}),  # clamped to what is stored
    ("@3500", {("t", 0): 3, ("t", 1): 0}),
    ("@6000", {("t", 0): 5, ("t", 1): 3}),  # no record that late in partition 1: its end
    ("1970-01-01T00:00:04Z", {("t", 0): 3, ("t", 1): 0}),
])
def test_reset(cli, data: Path, to: str, expected: dict) -> None:
    r = cli("groups", "reset", "billing", "--topic", "t", "--to", to)
    assert r.code == 0, r.err
    assert committed(data, "billing") == expected
    assert "t[0]: 4 -> " in r.out


def test_reset_one_partition_dry_run_and_new_group(cli, data: Path) -> None:
    r = cli("groups", "reset", "billing", "-t", "t", "--to", "earliest", "--dry-run")
    assert "dry run" in r.out and committed(data, "billing") == {("t", 0): 4, ("t", 1): 3}
    cli("groups", "reset", "billing", "-t", "t", "--to", "1", "--partition", "1")
    assert committed(data, "billing") == {("t", 0): 4, ("t", 1): 1}
    r = cli("groups", "reset", "fresh", "-t", "t", "--to", "latest")
    assert "t[0]: none -> 10" in r.out
    assert cli("groups", "list").out == "billing\nfresh\n"


def test_reset_errors(cli) -> None:
    r = cli("groups", "reset", "billing", "-t", "t", "--to", "yesterday")
    assert r.code == 1 and "earliest, latest" in r.err
    for to in ("²", "@²", "١٢"):  # digits to str.isdigit(), not to int() or Kafka
        r = cli("groups", "reset", "billing", "-t", "t", "--to", to)
        assert r.code == 1 and f"--to {to!r}: use earliest, latest" in r.err, to
        assert "unexpected" not in r.err
    r = cli("groups", "reset", "billing", "-t", "nope", "--to", "earliest")
    assert r.code == 1 and "unknown topic" in r.err
    r = cli("groups", "reset", "billing", "-t", "t", "--to", "0", "--partition", "5")
    assert r.code == 1 and "no partition 5" in r.err
    assert cli("groups", "reset", "billing", "-t", "t").code == 2  # --to is required


def test_describe_shows_members_of_a_live_group(data: Path) -> None:
    async def run() -> str:
        async with sr.open(data, maintenance_interval=None) as broker:
            async with broker.consumer("t", group="billing", client_id="app-1") as c:
                live = await broker.groups.describe("billing")
                assert live is not None
                text = describe(broker.store, "billing", live)
                assert c.member_id in text
                return text

    text = anyio.run(run)
    assert "state:       Stable" in text and "consumer/sticky" in text
    assert "(app-1): t[0], t[1]" in text
    static = GroupDescription("billing", "Stable", 3, "consumer", "range", "m-1",
                              (MemberDescription("m-1", "app-1", b"", b"", "pod-0"),))
    with sr.LogStore.open(data, maintenance_interval=None) as store:
        assert "  m-1 (app-1, instance pod-0): -" in describe(store, "billing", static)
