"""The operator library the dataflow DSL instantiates.

Each operator implements one small batch-first protocol (:class:`Operator`): ``process`` a
:class:`Batch`, react to watermarks, snapshot and restore state. Users can write their own.
"""

# streamrt (whose errors these modules raise) imports this package's modules while it
# initialises, so it must be fully imported first, whichever of the two a program imports first.
import streamrt  # noqa: F401

from ._aggregations import (
    Aggregation,
    Compiled,
    collect,
    count,
    fold,
    max,
    mean,
    min,
    reduce,
    sum,
)
from ._batch import Batch
from ._joins import TableJoin, WindowJoin
from ._protocol import END_OF_TIME, BaseOperator, BatchFailed, Operator, StateHandle
from ._stateful import Dedupe, StatefulMap
from ._stateless import FilterMap, Filter, FlatMap, Inspect, KeyBy, Map
from ._time import TimedOperator
from ._windows import Session, Sliding, Tumbling, WindowAggregate, session, sliding, tumbling

__all__ = [
    "END_OF_TIME", "Aggregation", "BaseOperator", "Batch", "BatchFailed", "Compiled", "Dedupe",
    "Filter", "FilterMap", "FlatMap", "Inspect", "KeyBy", "Map", "Operator", "Session",
    "Sliding", "StateHandle", "StatefulMap", "TableJoin", "TimedOperator", "Tumbling",
    "WindowAggregate", "WindowJoin", "collect", "count", "fold", "max", "mean", "min", "reduce",
    "session", "sliding", "sum", "tumbling",
]
