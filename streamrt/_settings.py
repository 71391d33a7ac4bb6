"""Checks of numeric settings given to client and queue constructors.

A setting is checked where it is given, so a bad one raises InvalidArgument from the
constructor, naming it, instead of failing later in a background task (``anyio.sleep(nan)``
raises there) or being stored and failing on every reopen (JSON writes infinity as null).
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidArgument

#: The longest duration a setting may have, in seconds: 100 years (queue settings too). Enough
#: for "for ever", and small enough to stay exact as int64 milliseconds past now.
MAX_SECONDS = 100 * 365 * 86_400


def seconds(name: str, value: Any, *, zero_ok: bool = True) -> float:
    """``value`` as a finite duration in seconds: >= 0 (> 0 unless ``zero_ok``), at most
    :data:`MAX_SECONDS`; InvalidArgument naming the setting otherwise."""
    low = ">= 0" if zero_ok else "> 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(
            f"{name} must be a number of seconds {low}, got {type(value).__name__} "
            f"{value!r:.60}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise InvalidArgument(
            f"{name} must be a finite number of seconds {low}, got {value!r}")
    if value > MAX_SECONDS:
        raise InvalidArgument(
            f"{name} must be at most {MAX_SECONDS} seconds (100 years), got {value!r}")
    return float(value)


def count(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (not a bool); InvalidArgument otherwise."""
    if type(value) is not int or value < minimum:
        raise InvalidArgument(f"{name} must be an integer >= {minimum}, got {value!r:.60}")
    return value
