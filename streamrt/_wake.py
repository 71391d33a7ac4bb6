"""Waking a caller from another thread: the storage writer resolves waiters this way.

An async waiter records how to reach its event loop (trio's token or asyncio's loop) when it
is made, so the writer thread can hand it the result without blocking on that loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio

log = logging.getLogger(__name__)


def _loop_scheduler() -> Callable[[Callable[[], object]], None]:
    try:
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    except (ImportError, RuntimeError):
        pass
    import asyncio

    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:
        raise RuntimeError(
            "streamrt's async API must be awaited under trio or asyncio (anyio)"
        ) from None


class Waiter:
    """A one-shot result slot resolved from any thread."""

    __slots__ = ("result", "error", "_done")

    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result = result
        self.error = error
        self._signal()

    def _signal(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class SyncWaiter(Waiter):
    """Blocks a plain thread until resolved."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        super().__init__()
        self._event = threading.Event()

    def _signal(self) -> None:
        self._event.set()

    def wait(self) -> Any:
        self._event.wait()
        return self.outcome()


class AsyncWaiter(Waiter):
    """Awaited by a task on a trio or asyncio loop; resolved from the writer thread."""

    __slots__ = ("_event", "_schedule", "_callbacks")

    def __init__(self) -> None:
        super().__init__()
        self._event = anyio.Event()
        self._schedule = _loop_scheduler()
        self._callbacks: list[Callable[[], object]] | None = None

    def _signal(self) -> None:
        try:
            self._schedule(self._fire)
        except RuntimeError:  # the loop is gone; nobody is waiting any more
            pass

    def _fire(self) -> None:  # on the waiter's loop
        self._event.set()
        if self._callbacks is not None:
            for callback in self._callbacks:
                _call(callback)

    def on_settled(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` on the waiter's loop once it is resolved (at once if it is);
        cheaper than a task that awaits :meth:`settled` when many waiters are in flight."""
        if self._event.is_set():
            _call(callback)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    async def wait(self) -> Any:
        await self._event.wait()
        return self.outcome()

    async def settled(self) -> None:
        """Wait until resolved, whatever the outcome (its owner reads it with ``wait``)."""
        await self._event.wait()


def _call(callback: Callable[[], object]) -> None:
    try:
        callback()
    except Exception:  # a callback's bug must not stop the loop's other callbacks
        log.exception("waiter callback %r failed", callback)
