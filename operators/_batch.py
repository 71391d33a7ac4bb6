"""The unit that flows between operators: a batch of elements from one input partition.

``values`` are the elements; ``keys`` is set once a stream is keyed (``key_by``), one key per
value; ``ts`` holds event-time timestamps (ms) where a source supplies them (record
timestamps), else None. ``part`` names the input partition the batch came from, which is what
per-partition watermarks are tracked by. Lists stay aligned: an operator that drops or repeats
values drops or repeats their keys and timestamps too.
"""

from __future__ import annotations

from typing import Any


class Batch:
    """Aligned lists of values (and keys, timestamps) from one input partition."""

    __slots__ = ("values", "keys", "ts", "part")

    def __init__(
        self, values: list[Any], keys: list[Any] | None = None, ts: list[int] | None = None,
        part: int = 0,
    ) -> None:
        self.values = values
        self.keys = keys
        self.ts = ts
        self.part = part

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"<Batch {len(self.values)} from part {self.part}{' keyed' if self.keys else ''}>"

    def select(self, mask: list[bool]) -> Batch:
        """The elements whose mask is true (keys and timestamps follow)."""
        vals = [v for v, m in zip(self.values, mask) if m]
        keys = [k for k, m in zip(self.keys, mask) if m] if self.keys is not None else None
        ts = [t for t, m in zip(self.ts, mask) if m] if self.ts is not None else None
        return Batch(vals, keys, ts, self.part)

    def with_values(self, values: list[Any]) -> Batch:
        return Batch(values, self.keys, self.ts, self.part)
