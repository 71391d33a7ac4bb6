"""`streamrt run` on the examples and on broken app files: one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamrt", "run", "--data-dir", str(tmp_path / "d"), *args],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def test_clickstream_example_runs_then_has_nothing_new(tmp_path: Path) -> None:
    r = _run(tmp_path, str(ROOT / "examples" / "clickstream.py"))
    assert r.returncode == 0, r.stderr
    assert "200,000 records in" in r.stdout and "0 restarts" in r.stdout
    again = _run(tmp_path, str(ROOT / "examples" / "clickstream.py"))
    assert again.returncode == 0 and "nothing new" in again.stdout


BAD = {
    "import_error.py": ("import streamrt as sr\nx = 1\nraise ValueError('boom at import')\n",
                        r"import_error.py:3: ValueError: boom at import"),
    "no_app.py": ("x = 1\n", r"defines no streamrt App"),
    "no_sink.py": ("import streamrt as sr\napp = sr.App('a')\napp.stream(range(3)).map(str)\n",
                   r"no pipeline with a sink"),
    "raises.py": ("import streamrt as sr\napp = sr.App('a')\n"
                  "app.stream(range(3)).map(lambda e: 1 / 0).print()\n",
                  r"failed 3 times.*map0.*raises.py:3.*ZeroDivisionError"),
    "syntax.py": ("import streamrt as sr\ndef f(:\n", r"syntax.py:2: syntax error"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_app_files_give_one_line_errors(tmp_path: Path, name: str) -> None:
    import re

    source, pattern = BAD[name]
    (tmp_path / name).write_text(source)
    r = _run(tmp_path, name)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("streamrt: error: ") and re.search(pattern, last), r.stderr
    assert "Traceback" not in r.stderr


def test_missing_app_file(tmp_path: Path) -> None:
    r = _run(tmp_path, "nope.py")
    assert r.returncode == 1 and "no such app file: nope.py" in r.stderr
