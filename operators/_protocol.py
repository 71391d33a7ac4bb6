"""The operator protocol the dataflow executor drives.

Batch-first: ``process`` takes a :class:`Batch` and returns the batches to pass on (usually
one). Stateful operators also react to watermarks (``on_watermark`` returns what closes), and
snapshot their state changes into the checkpoint through a :class:`StateHandle`, so state
lives in LMDB and survives restarts. A user-defined operator implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ._batch import Batch

#: The watermark after the last element of a bounded input: everything closes.
END_OF_TIME = 2**62


class BatchFailed(Exception):
    """A user function raised part-way through a batch. Elements before ``index`` are applied
    (state updated, their results in ``outputs``); the runner passes ``outputs`` on and retries
    the rest one by one, so with ``on_error="dead_letter"`` nothing is applied twice."""

    def __init__(self, index: int, outputs: list[Batch], cause: BaseException) -> None:
        super().__init__(f"element {index} of the batch failed: {cause!r}")
        self.index = index
        self.outputs = outputs
        self.cause = cause


class StateHandle(Protocol):
    """Where an operator's state is kept: bytes keys under the operator's own namespace, as of
    the last checkpoint. The runtime passes it to ``restore`` and it stays valid for the
    operator's whole life, so state can live in LMDB and be read back on demand (see
    ``operators/_cache.py``); what the operator changed since the checkpoint is its own to
    keep until ``snapshot`` hands it over."""

    def get(self, key: bytes) -> bytes | None:
        """One saved value (None if absent)."""
        ...

    def scan(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
        """The saved (key, value) pairs whose key starts with ``prefix``, in key order: for
        restoring small indexes, not whole states."""
        ...

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        """Every saved (key, value) of this operator (``scan(b"")``), for operators that
        restore everything."""
        ...


class Operator(Protocol):
    """What the executor calls. Stateless operators implement ``process`` only (the base
    class gives the rest)."""

    name: str

    def process(self, batch: Batch) -> list[Batch]: ...
    def on_watermark(self, watermark: int) -> list[Batch]: ...
    def snapshot(self) -> dict[bytes, bytes | None]: ...
    def restore(self, state: StateHandle) -> None: ...


class BaseOperator:
    """Defaults for the protocol: no watermark reaction, no state."""

    name = "operator"
    #: True when the operator keeps state (its step needs a stable id).
    stateful = False

    def process(self, batch: Batch) -> list[Batch]:
        raise NotImplementedError

    def on_watermark(self, watermark: int) -> list[Batch]:
        return []

    def on_idle(self, part: int) -> list[Batch]:
        """The input partition ``part`` has no data for now: it must not hold back time."""
        return []

    def snapshot(self) -> dict[bytes, bytes | None]:
        return {}

    def restore(self, state: StateHandle) -> None:
        return None

    def describe(self) -> Any:
        """What makes this operator's saved state compatible (for restart checks)."""
        return type(self).__name__
