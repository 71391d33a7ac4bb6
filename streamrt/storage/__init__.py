"""The storage engine: a durable, partitioned, append-only log on one LMDB environment.

The one typed storage API that the broker, the dataflow runtime and the Kafka server use is
:class:`LogStorage` (a Protocol); :class:`LogStore` implements it. See docs/architecture.md.
"""

from ._api import LogStorage
from ._codec import build_batch, check_batch, iter_records, parse_header
from ._records import Records
from ._store import LogStore
from ._types import (
    PartitionInfo,
    Record,
    StoredRecord,
    TopicConfig,
    TopicInfo,
    WriteBatch,
    WriteResult,
    check_topic_name,
)

__all__ = [
    "LogStorage",
    "LogStore",
    "PartitionInfo",
    "Record",
    "Records",
    "StoredRecord",
    "TopicConfig",
    "TopicInfo",
    "WriteBatch",
    "WriteResult",
    "build_batch",
    "check_batch",
    "check_topic_name",
    "iter_records",
    "parse_header",
]
