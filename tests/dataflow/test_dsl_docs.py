"""Every snippet of docs/dsl.md runs as the complete program it claims to be."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "dsl.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_doc_has_snippets() -> None:
    assert len(SNIPPETS) >= 8


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_snippet_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the snippets use the default data dir, .streamrt/
    exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})  # noqa: S102


def test_lateness_and_join_snippets_say_what_they_print(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (late,) = [s for s in SNIPPETS if "late-events" in s]
    exec(compile(late, str(DOC), "exec"), {})  # noqa: S102
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "1"
    (joins,) = [s for s in SNIPPETS if "join_table" in s]
    exec(compile(joins, str(DOC), "exec"), {})  # noqa: S102
    assert "{'order': 1, 'page': '/x'}" in capsys.readouterr().out
