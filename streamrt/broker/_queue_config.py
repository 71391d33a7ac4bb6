"""A queue group's declared settings: checked once, stored in LMDB, compared on re-declaration.

The settings belong to the queue group (topic or pattern, plus group name), not to one
consumer: every consumer of the group shares them. They are stored with the declaration, so
a restarted broker resumes the group with them, and the CLI finds the dead-letter topic.
A consumer that passes no settings attaches to the group as declared; one that passes some
must pass the values the group was declared with (QueueMismatch otherwise), as RabbitMQ
refuses a queue re-declared with other arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .. import _settings
from ..errors import InvalidArgument
from ..storage import check_topic_name

Overflow = Literal["dead-letter", "reject-new", "drop-oldest"]
OVERFLOW_POLICIES = ("dead-letter", "reject-new", "drop-oldest")

DEFAULT_ACK_TIMEOUT = 30.0
#: Messages a queue group keeps in memory (ready, delayed and leased): the read-ahead window.
DEFAULT_READ_AHEAD = 10_000
#: How often a pattern queue looks for new matching topics (seconds).
DEFAULT_REFRESH = 1.0
MAX_PRIORITY = 9
#: The longest duration a queue accepts (ack_timeout, ttl, a nack's delay): 100 years. A
#: bound keeps every deadline a finite float and every stored not-before time (ms since the
#: epoch) well inside the signed 64-bit field of a lease record; inf or NaN would be stored
#: as JSON null and make the declaration unreadable.
MAX_SECONDS = _settings.MAX_SECONDS  # (client settings have the same bound)
#: The largest count a queue setting accepts (max_deliveries, max_length): what the stored
#: declaration (JSON, 64-bit integers) can hold.
MAX_COUNT = 2**63 - 1


def is_seconds(v: Any) -> bool:
    """Whether ``v`` is a duration a queue accepts: a number of seconds, finite, from 0 to
    :data:`MAX_SECONDS` (callers add their own lower bound)."""
    return (not isinstance(v, bool) and isinstance(v, (int, float))
            and 0 <= v <= MAX_SECONDS)  # NaN and inf fail the comparison


def _positive_int_or_none(_i: Any, a: attrs.Attribute, v: Any) -> None:  # type: ignore[type-arg]
    if v is not None and (type(v) is not int or not 1 <= v <= MAX_COUNT):
        raise InvalidArgument(
            f"{a.name} must be an integer from 1 to 2**63-1 or None, got {v!r}")


def _seconds_or_none(_i: Any, a: attrs.Attribute, v: Any) -> None:  # type: ignore[type-arg]
    if v is not None and not (is_seconds(v) and v > 0):
        raise InvalidArgument(
            f"{a.name} must be a finite number of seconds > 0 and <= {MAX_SECONDS} "
            f"(100 years), or None, got {v!r}")


def _seconds(_i: Any, a: attrs.Attribute, v: Any) -> None:  # type: ignore[type-arg]
    if not (is_seconds(v) and v > 0):
        raise InvalidArgument(
            f"{a.name} must be a finite number of seconds > 0 and <= {MAX_SECONDS} "
            f"(100 years), got {v!r}")


def _dead_letter(_i: Any, _a: Any, v: Any) -> None:
    if v is not None:
        check_topic_name(v)


def _max_length(_i: Any, _a: Any, v: Any) -> None:
    if v is not None and (type(v) is not int or not 0 <= v <= MAX_COUNT):
        raise InvalidArgument(
            f"max_length must be an integer from 0 to 2**63-1 or None, got {v!r}")


def _overflow(_i: Any, _a: Any, v: Any) -> None:
    if v not in OVERFLOW_POLICIES:
        raise InvalidArgument(
            f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {v!r}")


def _max_priority(_i: Any, _a: Any, v: Any) -> None:
    if v is not None and (type(v) is not int or not 1 <= v <= MAX_PRIORITY):
        raise InvalidArgument(
            f"max_priority must be an integer from 1 to {MAX_PRIORITY} or None, got {v!r}")


@attrs.frozen
class QueueConfig:
    """The settings of a queue group.

    ``max_deliveries``: deliveries after which a message that comes back is dead-lettered
    (None: no limit). ``ack_timeout``: seconds a consumer holds a message before it is
    redelivered (visibility timeout). ``dead_letter``: the topic dead messages go to (created
    automatically; None: they are discarded). ``ttl``: seconds after its timestamp a waiting
    message expires. ``max_length``: most messages not yet acknowledged (None: no limit), and
    ``overflow`` what happens beyond it. ``max_priority``: the highest priority a message's
    ``priority`` header can give (None: first in, first out).
    """

    max_deliveries: int | None = attrs.field(default=None, validator=_positive_int_or_none)
    ack_timeout: float = attrs.field(default=DEFAULT_ACK_TIMEOUT, validator=_seconds)
    dead_letter: str | None = attrs.field(default=None, validator=_dead_letter)
    ttl: float | None = attrs.field(default=None, validator=_seconds_or_none)
    max_length: int | None = attrs.field(default=None, validator=_max_length)
    overflow: Overflow = attrs.field(default="dead-letter", validator=_overflow)
    max_priority: int | None = attrs.field(default=None, validator=_max_priority)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QueueConfig:
        known = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def fields(cls) -> frozenset[str]:
        return frozenset(f.name for f in attrs.fields(cls))

    def differences(self, given: Mapping[str, Any]) -> list[str]:
        """``name=declared (given: value)`` for each given setting that differs."""
        mine = self.to_dict()
        return [f"{k}={mine[k]!r} (given {v!r})" for k, v in sorted(given.items())
                if mine[k] != v and not _same_number(mine[k], v)]


def _same_number(a: Any, b: Any) -> bool:
    return (isinstance(a, (int, float)) and isinstance(b, (int, float))
            and not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b))


def make_config(settings: Mapping[str, Any]) -> QueueConfig:
    """A QueueConfig from keyword settings, with a clear error for an unknown one."""
    unknown = set(settings) - QueueConfig.fields()
    if unknown:
        raise InvalidArgument(
            f"unknown queue setting(s) {', '.join(sorted(unknown))}: the settings are "
            f"{', '.join(sorted(QueueConfig.fields()))} (and, per consumer, prefetch, "
            f"value_serde, partitions)")
    return QueueConfig(**settings)
