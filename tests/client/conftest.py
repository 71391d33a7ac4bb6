"""Client fixtures: the client API runs on trio and asyncio alike."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param
