"""The plain-script examples run to completion on a fresh data directory, twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script, expect", [
    ("quickstart.py", "read back 20000"),
    ("task_queue.py", "257 tasks done by 4 workers"),
])
def test_example_script(tmp_path: Path, script: str, expect: str) -> None:
    for _ in range(2):  # a second run on the same data directory works too
        r = subprocess.run([sys.executable, str(ROOT / "examples" / script)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr[-2000:]
        assert expect in r.stdout
    assert (tmp_path / ".streamrt" / "LOCK").exists()
