"""A helper script run as a subprocess, its stdout lines read with deadlines (no sleeps).

The kill -9 tests (tests/storage/_storeproc.py, tests/dataflow/_dfproc.py) run their own file
as the child and talk to it in lines: the child prints what it has made durable, the test
kills it at a random moment and checks what survived. Loaded by path (see ``load``), so it
works under any pytest import mode.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def load(path: Path) -> ModuleType:
    """Import a helper module by its path (the same module for every test that asks)."""
    name = path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class Child:
    """``python script args...`` with stdout read line by line on a thread."""

    def __init__(self, script: Path, args: list[object], stderr_path: Path, *,
                 stdin: bool = False) -> None:
        self.stderr_path = stderr_path
        self._err = open(stderr_path, "wb")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONFAULTHANDLER"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *map(str, args)],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._err, cwd=str(REPO), env=env)
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.eof = False
        self.torn: bytes | None = None  # a last line without its newline (never expected)
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if raw.endswith(b"\n"):
                self._lines.put(raw[:-1].decode())
            else:
                self.torn = raw
        self._lines.put(None)

    def stderr(self) -> str:
        self._err.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def line(self, timeout: float = 30.0) -> str | None:
        """The next line, or None at end of output; fails after ``timeout`` seconds."""
        if self.eof:
            return None
        try:
            item = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"child {self.pid} said nothing for {timeout}s; stderr:\n{self.stderr()}"
            ) from None
        if item is None:
            self.eof = True
        return item

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """The next line starting with ``prefix`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(
                    f"child {self.pid} ended (rc={self.proc.wait(timeout)}) before a "
                    f"{prefix!r} line; stderr:\n{self.stderr()}")
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def kill9(self, timeout: float = 30.0) -> None:
        """SIGKILL it and reap it; it must die of that signal (not of an earlier crash)."""
        os.kill(self.pid, signal.SIGKILL)
        rc = self.proc.wait(timeout)
        assert rc == -signal.SIGKILL, f"child {self.pid} exited {rc}; stderr:\n{self.stderr()}"

    def wait_ok(self, timeout: float = 60.0) -> None:
        rc = self.proc.wait(timeout)
        assert rc == 0, f"child {self.pid} exited {rc}; stderr:\n{self.stderr()}"

    def rest(self, timeout: float = 30.0) -> list[str]:
        """Every line still unread, up to the end of output (call once it exited)."""
        out = []
        deadline = time.monotonic() + timeout
        while (line := self.line(max(0.0, deadline - time.monotonic()))) is not None:
            out.append(line)
        return out

    def finish(self, timeout: float = 60.0) -> list[str]:
        """Close its stdin, wait for a clean exit and return its remaining lines."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        rc = self.proc.wait(timeout)
        lines = self.rest()
        assert rc == 0, f"child {self.pid} exited {rc}; stderr:\n{self.stderr()}"
        return lines

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._pump.join(10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        self._err.close()
