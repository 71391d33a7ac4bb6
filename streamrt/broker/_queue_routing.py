"""Topic-name patterns, as RabbitMQ's topic exchange matches routing keys.

A topic name is a list of words separated by ``.``. In a pattern, ``*`` stands for exactly
one word and ``#`` for zero or more words; any other word must be equal. So ``logs.*.error``
matches ``logs.api.error`` but not ``logs.error`` nor ``logs.a.b.error``, and ``logs.#``
matches ``logs``, ``logs.api`` and ``logs.api.error``. ``*`` and ``#`` cannot occur in topic
names (Kafka's rule allows ``[a-zA-Z0-9._-]`` only), so a name holding either is a pattern.

:func:`match` is a pure function; queues (and pub/sub consumers) call it on every topic name
in the catalog when they start and when they look for new topics.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..errors import InvalidArgument

_PATTERN_WORD = re.compile(r"[a-zA-Z0-9_-]*|\*|#")
WILDCARDS = frozenset("*#")


def is_pattern(name: str) -> bool:
    """Whether ``name`` is a pattern (holds ``*`` or ``#``) rather than a topic name."""
    return "*" in name or "#" in name


def check_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid pattern, else raise InvalidArgument saying why."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > 249:
        raise InvalidArgument(
            f"invalid topic pattern {pattern!r}: use 1 to 249 characters, words of "
            f"[a-zA-Z0-9_-] separated by '.', where a word may be '*' (one word) or '#' (any)")
    for word in pattern.split("."):
        if not _PATTERN_WORD.fullmatch(word):
            raise InvalidArgument(
                f"invalid topic pattern {pattern!r}: the word {word!r} mixes a wildcard with "
                f"other characters; '*' and '#' must stand alone between dots (logs.*.error, "
                f"logs.#)")
    return pattern


def match(pattern: str, topic: str) -> bool:
    """Whether ``topic`` matches ``pattern`` (``*``: one word, ``#``: zero or more words)."""
    if not is_pattern(pattern):
        return pattern == topic
    return _compile(pattern)(topic)


@lru_cache(maxsize=1024)
def _compile(pattern: str):  # type: ignore[no-untyped-def]
    words = pattern.split(".")
    n = len(words)

    def matches(topic: str) -> bool:
        # Dynamic programming over (pattern word, topic word): ``ok`` holds, for each number
        # of topic words consumed so far, whether the pattern words seen so far can match
        # them. ``#`` may swallow any number of words, including none.
        parts = topic.split(".")
        m = len(parts)
        ok = [True] + [False] * m
        for i in range(n):
            w = words[i]
            nxt = [False] * (m + 1)
            if w == "#":
                seen = False
                for j in range(m + 1):
                    seen = seen or ok[j]
                    nxt[j] = seen
            else:
                for j in range(m):
                    if ok[j] and (w == "*" or w == parts[j]):
                        nxt[j + 1] = True
            ok = nxt
        return ok[m]

    return matches
