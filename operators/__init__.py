"""The operator library the dataflow DSL instantiates.

Each operator implements one small batch-first protocol (:class:`Operator`): ``process`` a
:class:`Batch`, react to watermarks, snapshot and restore state. Users can write their own.
"""

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
from ._protocol import END_OF_TIME, BaseOperator, Operator, StateHandle
from ._stateless import FilterMap, Filter, FlatMap, Inspect, KeyBy, Map
from ._windows import Session, Sliding, Tumbling, WindowAggregate, session, sliding, tumbling

__all__ = [
    "END_OF_TIME", "Aggregation", "BaseOperator", "Batch", "Compiled", "Filter", "FilterMap",
    "FlatMap", "Inspect", "KeyBy", "Map", "Operator", "Session", "Sliding", "StateHandle",
    "Tumbling", "WindowAggregate", "collect", "count", "fold", "max", "mean", "min", "reduce",
    "session", "sliding", "sum", "tumbling",
]
