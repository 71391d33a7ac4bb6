"""Topic patterns (RabbitMQ topic-exchange style): ``match`` against a brute-force reference,
on examples and on hypothesis-generated patterns and names."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from streamrt import errors
from streamrt.broker._queue_routing import check_pattern, is_pattern, match

WORDS = st.sampled_from(["a", "b", "logs", "error", "api", "x-1", "", "_"])
PATTERN_WORDS = st.one_of(WORDS, st.just("*"), st.just("#"))


def reference(pattern: str, topic: str) -> bool:
    """The definition, by brute force: try every way ``#`` can split the topic's words."""

    def rec(ps: list[str], ts: list[str]) -> bool:
        if not ps:
            return not ts
        w, rest = ps[0], ps[1:]
        if w == "#":
            return any(rec(rest, ts[k:]) for k in range(len(ts) + 1))
        return bool(ts) and (w == "*" or w == ts[0]) and rec(rest, ts[1:])

    return rec(pattern.split("."), topic.split("."))


@pytest.mark.parametrize(("pattern", "topic", "expected"), [
    ("logs.*.error", "logs.api.error", True),
    ("logs.*.error", "logs.error", False),
    ("logs.*.error", "logs.a.b.error", False),
    ("logs.#", "logs", True),
    ("logs.#", "logs.api", True),
    ("logs.#", "logs.api.error", True),
    ("logs.#", "logsx.api", False),
    ("#", "anything.at.all", True),
    ("#.error", "error", True),
    ("#.error", "a.b.error", True),
    ("#.error", "a.b.errors", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y.c", False),
    ("orders", "orders", True),
    ("orders", "orders.eu", False),
])
def test_examples(pattern: str, topic: str, expected: bool) -> None:
    assert match(pattern, topic) is expected
    assert reference(pattern, topic) is expected


@given(st.lists(PATTERN_WORDS, min_size=1, max_size=6), st.lists(WORDS, min_size=1, max_size=6))
def test_match_equals_reference(pwords: list[str], twords: list[str]) -> None:
    pattern, topic = ".".join(pwords), ".".join(twords)
    assert match(pattern, topic) == reference(pattern, topic)


@given(st.lists(WORDS, min_size=1, max_size=6))
def test_a_name_matches_itself_and_hash_matches_all(words: list[str]) -> None:
    topic = ".".join(words)
    assert match(topic, topic)
    assert match("#", topic)
    assert match(".".join("*" for _ in words), topic)
    assert not match(".".join("*" for _ in words) + ".*", topic)


@given(st.lists(PATTERN_WORDS, min_size=1, max_size=5), st.lists(WORDS, min_size=1, max_size=5))
def test_hash_is_at_least_as_wide_as_star(pwords: list[str], twords: list[str]) -> None:
    pattern, topic = ".".join(pwords), ".".join(twords)
    wider = pattern.replace("*", "#")
    if match(pattern, topic):
        assert match(wider, topic)


def test_patterns_are_checked() -> None:
    assert is_pattern("logs.*") and is_pattern("#") and not is_pattern("logs.api")
    assert check_pattern("logs.*.error") == "logs.*.error"
    for bad in ("logs.er*", "a.#b", "", "a b.*", 3):
        with pytest.raises(errors.InvalidArgument, match="pattern"):
            check_pattern(bad)
