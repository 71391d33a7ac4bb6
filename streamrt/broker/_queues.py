"""Queue groups (placeholder until queues land)."""

from __future__ import annotations

from typing import Any


async def start_queues(broker: Any) -> Any:
    """Start the queue-group actors under the broker's supervisor; returns their manager."""
    return None
