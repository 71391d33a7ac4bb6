"""The logical graph the DSL builds: frozen nodes, each a step with a stable id.

Building a pipeline runs nothing: ``app.stream(...).map(...)`` only adds nodes. The runner
(``_runner.py``) turns the graph into operators when the app runs. Every step's id comes from an
explicit ``name=`` or from its kind and position, so the same app file gives the same ids on
every run, which is what ties checkpointed state to its step.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(eq=False)
class Node:
    """One step: ``kind`` (source, map, filter, window, sink, ...), its inputs and arguments."""

    id: str
    kind: str
    inputs: tuple[Node, ...]
    args: dict[str, Any] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.id}>"


def user_line(fn: Any) -> str:
    """Where a user function was defined, for error messages."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return repr(fn)
    name = getattr(fn, "__name__", "function")
    return f"{name} at {code.co_filename}:{code.co_firstlineno}"
