"""streamrt: an actor-based event-streaming runtime with stream processing.

The public front. Everything importable from here is supported API; the rest of the package
is private and may change.
"""

from . import errors
from .broker import Broker, open
from .broker._queue_dlq import DeadLetter
from .broker._queues import QueueStats
from .client import (
    Consumer,
    ConsumerTransaction,
    Delivery,
    Message,
    Producer,
    QueueConsumer,
    QueueMessage,
    RecordMetadata,
    SentBatch,
)
from .dataflow import App, PipelineError, RunResult, Stream, TopicRef, file
from operators._aggregations import collect, count, fold, max, mean, min, reduce, sum
from operators._windows import session, sliding, tumbling
from .storage import (
    LogStorage,
    LogStore,
    PartitionInfo,
    Record,
    Records,
    TopicConfig,
    TopicInfo,
    WriteBatch,
    WriteResult,
)

__version__ = "0.1.0"

__all__ = [
    "App",
    "PipelineError",
    "RunResult",
    "Stream",
    "TopicRef",
    "collect",
    "count",
    "file",
    "fold",
    "max",
    "mean",
    "min",
    "reduce",
    "session",
    "sliding",
    "sum",
    "tumbling",
    "Broker",
    "Consumer",
    "ConsumerTransaction",
    "Delivery",
    "Message",
    "Producer",
    "QueueConsumer",
    "QueueMessage",
    "QueueStats",
    "DeadLetter",
    "RecordMetadata",
    "SentBatch",
    "open",
    "LogStorage",
    "LogStore",
    "PartitionInfo",
    "Record",
    "Records",
    "TopicConfig",
    "TopicInfo",
    "WriteBatch",
    "WriteResult",
    "errors",
    "open_log",
]


def open_log(path: str = ".streamrt", **kwargs: object) -> LogStore:
    """Open the durable log in ``path`` (default ``./.streamrt``, as the CLI). See LogStore.open."""
    return LogStore.open(path, **kwargs)  # type: ignore[arg-type]
