"""A short coverage-guided fuzzing session of the codec (atheris), if atheris is installed.

The hypothesis tests (test_codec_fuzz.py, test_hotpath.py) run everywhere; this adds libFuzzer's
coverage guidance where atheris installs. It runs the harness in a subprocess for a bounded
number of inputs; a crash (an exception other than ProtocolError) fails the test with
libFuzzer's report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HARNESS = Path(__file__).parent / "fuzz" / "fuzz_codec.py"


def test_atheris_finds_nothing_in_a_short_session(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(HARNESS), "-runs=30000", "-max_len=4096", "-rss_limit_mb=1024",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Done 30000 runs" in run.stderr
