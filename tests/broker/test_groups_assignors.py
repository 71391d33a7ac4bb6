"""Assignors as pure functions, checked with hypothesis: every partition exactly once, to a
member subscribed to its topic; balance; stickiness; and Kafka consumer-protocol bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrt import errors
from streamrt.broker._assignors import (
    ASSIGNORS,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
    range_assign,
    roundrobin_assign,
    sticky_assign,
)

TOPICS = ["a", "b", "c"]

topic_counts = st.dictionaries(st.sampled_from(TOPICS), st.integers(1, 12), min_size=1)
member_ids = st.lists(st.text("mnopq", min_size=1, max_size=3), min_size=1, max_size=7,
                      unique=True)


@st.composite
def groups(draw: st.DrawFn, same_topics: bool = False):
    counts = draw(topic_counts)
    members = draw(member_ids)
    topics = sorted(counts)
    subs = {}
    for m in members:
        mine = topics if same_topics else draw(st.lists(st.sampled_from(topics), min_size=1,
                                                        unique=True))
        subs[m] = Subscription(tuple(mine))
    return counts, subs


def check_exactly_once(counts, subs, plan) -> None:
    wanted = {(t, p) for t in counts if any(t in s.topics for s in subs.values())
              for p in range(counts[t])}
    got = [tp for tps in plan.values() for tp in tps]
    assert sorted(got) == sorted(wanted)  # every partition once, nothing else
    for m, tps in plan.items():
        assert all(t in subs[m].topics for t, _ in tps)


@pytest.mark.parametrize("name", sorted(ASSIGNORS))
@given(g=groups())
@settings(max_examples=150, deadline=None)
def test_every_partition_assigned_exactly_once(name, g) -> None:
    counts, subs = g
    check_exactly_once(counts, subs, ASSIGNORS[name](counts, subs))


@given(g=groups(same_topics=True))
@settings(max_examples=150, deadline=None)
def test_balanced_within_one(g) -> None:
    counts, subs = g
    for fn in (roundrobin_assign, sticky_assign):
        sizes = [len(v) for v in fn(counts, subs).values()]
        assert max(sizes) - min(sizes) <= 1, fn.__name__
    plan = range_assign(counts, subs)  # range: balanced per topic only
    for t in counts:
        sizes = [sum(1 for tt, _ in v if tt == t) for v in plan.values()]
        assert max(sizes) - min(sizes) <= 1


@given(g=groups(same_topics=True), leaving=st.integers(0, 3), joining=st.integers(0, 3),
       data=st.data())
@settings(max_examples=200, deadline=None)
def test_sticky_keeps_prior_ownership_where_balanced(g, leaving, joining, data) -> None:
    counts, subs = g
    first = sticky_assign(counts, subs)
    # the same group again: nothing moves
    again = {m: Subscription(s.topics, tuple(first[m]), 1) for m, s in subs.items()}
    assert sticky_assign(counts, again) == first
    # members leave and join: each remaining member keeps min(owned, P // M) partitions
    members = sorted(subs)
    gone = set(data.draw(st.lists(st.sampled_from(members), max_size=min(leaving, len(members) - 1),
                                  unique=True)))
    topics = next(iter(subs.values())).topics
    after = {m: again[m] for m in members if m not in gone}
    after.update({f"new{i}": Subscription(topics) for i in range(joining)})
    plan = sticky_assign(counts, after)
    check_exactly_once(counts, after, plan)
    total = sum(counts.values())
    floor = total // len(after)
    for m in after:
        if m in first:
            kept = len(set(plan[m]) & set(first[m]))
            assert kept >= min(len(first[m]), floor)


def test_sticky_conflicting_claims_go_to_newer_generation() -> None:
    subs = {"x": Subscription(("a",), (("a", 0), ("a", 1)), generation=3),
            "y": Subscription(("a",), (("a", 0),), generation=4)}
    plan = sticky_assign({"a": 2}, subs)
    assert plan == {"x": [("a", 1)], "y": [("a", 0)]}


def test_range_is_kafkas() -> None:
    subs = {"m1": Subscription(("a", "b")), "m2": Subscription(("a", "b"))}
    assert range_assign({"a": 3, "b": 3}, subs) == {
        "m1": [("a", 0), ("a", 1), ("b", 0), ("b", 1)], "m2": [("a", 2), ("b", 2)]}
    assert roundrobin_assign({"a": 3, "b": 3}, subs) == {
        "m1": [("a", 0), ("a", 2), ("b", 1)], "m2": [("a", 1), ("b", 0), ("b", 2)]}


subscriptions = st.builds(
    Subscription,
    st.lists(st.text(min_size=1, max_size=8), max_size=4).map(tuple),
    st.lists(st.tuples(st.text(min_size=1, max_size=8), st.integers(0, 2**31 - 1)),
             max_size=6, unique=True).map(lambda x: tuple(sorted(x))),
    st.integers(-1, 2**31 - 1),
    st.none() | st.binary(max_size=20),
)


@given(s=subscriptions)
def test_subscription_round_trip(s) -> None:
    data = encode_subscription(s)
    assert decode_subscription(data) == s
    assert decode_subscription(data + b"\x00\x00\xff\xff") == s  # a newer version's rack id
    for cut in range(len(data)):  # truncated input fails with our error only
        try:
            decode_subscription(data[:cut])
        except errors.InvalidArgument:
            pass


def test_subscription_v0_from_an_old_kafka_client() -> None:
    v0 = struct.pack(">hi", 0, 1) + struct.pack(">h", 6) + b"orders" + struct.pack(">i", -1)
    assert decode_subscription(v0) == Subscription(("orders",))


@given(tps=st.lists(st.tuples(st.sampled_from(TOPICS), st.integers(0, 100)), unique=True))
def test_assignment_round_trip(tps) -> None:
    assert decode_assignment(encode_assignment(tps)) == sorted(tps)
    assert decode_assignment(b"") == []


def test_unknown_assignor() -> None:
    from streamrt.broker._assignors import get_assignor

    with pytest.raises(errors.InvalidArgument, match="roundrobin"):
        get_assignor("cooperative-sticky")
