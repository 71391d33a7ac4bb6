"""Broker fixtures: a real broker on a temp data dir, on trio and asyncio."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param
