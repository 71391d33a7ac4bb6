"""Drive an operator like the runner does, with optional snapshot/restore round trips.

``Driver`` keeps a dict as the store (what the checkpoints wrote), which the operator reads
through a handle for its whole life, as it reads LMDB in the runner (``get``/``scan``);
``restart()`` snapshots, builds a fresh operator with the factory and restores it from the
store, as a restart after a crash right after a checkpoint would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from operators import END_OF_TIME, Batch


class Handle:
    """The store as of the last checkpoint, read as the runner's handle reads LMDB."""

    def __init__(self, store: dict[bytes, bytes]) -> None:
        self.store = store

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)

    def scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self.store.items() if k.startswith(prefix))

    def items(self) -> Any:
        return self.scan(b"")


class Driver:
    def __init__(self, make: Callable[[], Any], parts: list[int] | None = None) -> None:
        self.make = make
        self.parts = parts
        self.store: dict[bytes, bytes] = {}
        self.op = self._fresh()
        self.out: list[Any] = []
        self.late: list[Any] = []

    def _fresh(self) -> Any:
        op = self.make()
        if self.parts is not None and hasattr(op, "open_parts"):
            op.open_parts(self.parts)
        op.restore(Handle(self.store))  # as the runner does: the handle for the op's life
        return op

    def _collect(self, batches: list[Batch]) -> None:
        for b in batches:
            assert b.keys is None or len(b.keys) == len(b.values)
            assert b.ts is None or len(b.ts) == len(b.values)
            self.out += b.values
        take = getattr(self.op, "take_late", None)
        if take is not None:
            for b in take():
                self.late += b.values

    def process(self, batch: Batch) -> None:
        self._collect(self.op.process(batch))

    def idle(self, part: int) -> None:
        self._collect(self.op.on_idle(part))

    def end(self) -> None:
        self._collect(self.op.on_watermark(END_OF_TIME))

    def checkpoint(self) -> None:
        for k, v in self.op.snapshot().items():
            if v is None:
                self.store.pop(k, None)
            else:
                assert isinstance(k, bytes) and isinstance(v, bytes)
                self.store[k] = v

    def restart(self) -> None:
        self.checkpoint()
        self.op = self._fresh()
