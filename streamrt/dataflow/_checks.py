"""What an app's graph must satisfy to run, and what its saved state depends on.

``walk`` lists the steps feeding the sinks; ``check_graph`` refuses an app with no sink or with
a step whose results go nowhere; ``fingerprint`` is what a checkpoint records of the graph, and
``same_graph`` says whether saved state fits the app as it is now (otherwise the run needs
``--reset``).
"""

from __future__ import annotations

import os

import attrs
import orjson

from ..errors import InvalidArgument
from ._app import App
from ._graph import Node, user_line

SINK_KINDS = ("to", "sink", "print", "file")
STATEFUL_KINDS = ("stateful_map", "dedupe", "join", "join_table")

#: Bumped when a stateful operator's stored layout changes: old state then needs --reset.
STATE_FORMAT = 2
#: The same for layouts that changed later, by step kind (session windows: "Session"), so an
#: app whose other steps kept their layout keeps its checkpoints.
STATE_FORMATS = {"Session": 3, "join": 3}


def walk(app: App) -> list[Node]:
    """Every node feeding a sink, inputs before their consumers."""
    order: list[Node] = []
    seen: set[int] = set()

    def visit(n: Node) -> None:
        if id(n) in seen:
            return
        seen.add(id(n))
        for i in n.inputs:
            visit(i)
        order.append(n)

    for s in app.sinks:
        visit(s)
    return order


def dangling_steps(app: App) -> list[Node]:
    """Steps whose results go nowhere (no sink downstream): a forgotten ``.to()`` would
    otherwise leave a pipeline silently unrun. One side of a branch may stay unused."""
    consumed = {id(i) for n in app.steps for i in n.inputs}
    return [n for n in app.steps if id(n) not in consumed and n.kind not in SINK_KINDS
            and n.id not in app.optional]


def check_graph(app: App) -> None:
    """Refuse an app that could not do what it says: no sink at all, a file to read that is
    not there, or a step whose results go nowhere."""
    if not app.sinks:
        raise InvalidArgument(
            f"app {app.name!r} has no pipeline with a sink: end a stream with .to(topic), "
            f".sink(fn), .print() or .to_file(path)")
    for n in walk(app):  # a missing input is a setup error, not a crash to retry
        if n.kind == "source" and n.args["source"] == "file" and not n.args["follow"]:
            if not os.path.isfile(n.args["path"]):
                raise InvalidArgument(
                    f"source {n.id!r}: no file {n.args['path']} to read (a followed file, "
                    f"sr.file(path, follow=True), may appear later)")
    for n in dangling_steps(app):
        fn = n.args.get("fn") or n.args.get("key")
        raise InvalidArgument(
            f"step {n.id!r} ({n.kind}{', ' + user_line(fn) if fn is not None else ''}) "
            f"leads to no sink, so it would never run: end it with .to(topic), .sink(fn), "
            f".print() or .to_file(path), or remove it")


def same_graph(saved: bytes, app: App) -> bool:
    """Whether state saved under fingerprint ``saved`` fits the app. A fingerprint written
    before windows recorded their aggregations' kinds matches when all else does."""
    now = fingerprint(app)
    if saved == now:
        return True
    old, new = orjson.loads(saved), orjson.loads(now)
    legacy = [p[:6] if p[0] == "window" else p for p in new]
    return len(old) == len(new) and all(
        p[0] != "window" or len(p) == 6 for p in old) and old == legacy


def fingerprint(app: App) -> bytes:
    """What the saved state depends on: stateful steps' ids and kinds, and the sources."""
    parts = []
    for n in walk(app):
        if n.kind == "source":
            parts.append(["source", n.id, n.args["source"], n.args.get("topic")])
        elif n.kind == "window":
            a = n.args
            spec = type(a["spec"]).__name__
            parts.append(["window", n.id, spec, attrs.asdict(a["spec"]), sorted(a["aggs"]),
                          STATE_FORMATS.get(spec, STATE_FORMAT),
                          # what each accumulator holds: sum -> count under one name is a change
                          {k: type(agg).__name__ for k, agg in a["aggs"].items()}])
        elif n.kind in STATEFUL_KINDS:  # their state's shape is their kind and settings
            parts.append([n.kind, n.id, n.args.get("within"), n.args.get("size")]
                         + ([STATE_FORMAT] if n.kind == "dedupe" else [])
                         + ([STATE_FORMATS[n.kind]] if n.kind in STATE_FORMATS else []))
    return orjson.dumps(parts)
