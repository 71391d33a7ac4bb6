"""Shared fixtures: real LMDB stores in temp directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import streamrt as sr


@pytest.fixture
def store(tmp_path: Path) -> Iterator[sr.LogStore]:
    """A durable store (fsync on) in a fresh temp dir, without background maintenance."""
    s = sr.LogStore.open(tmp_path / "data", maintenance_interval=None)
    yield s
    s.close()


@pytest.fixture
def fast_store(tmp_path: Path) -> Iterator[sr.LogStore]:
    """A store without fsync, for tests that write a lot and do not test durability."""
    s = sr.LogStore.open(tmp_path / "data", durability="none", maintenance_interval=None)
    yield s
    s.close()
