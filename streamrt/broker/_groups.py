"""Consumer groups (placeholder until the group coordinator lands)."""

from __future__ import annotations

from typing import Any


async def start_groups(broker: Any) -> Any:
    """Start the group coordinator's actors under the broker's supervisor; returns it."""
    return None
