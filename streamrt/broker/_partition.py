"""Partition actors: the one way appends reach a partition.

Each partition of each topic has an actor under the broker's ``partitions`` supervisor. It
takes every append queued in its mailbox at once (``handle_batch``), submits them together so
they share one group commit with the other partitions' appends, replies to each producer when
its batch is durable (or with the typed error of its batch alone, e.g. a duplicate sequence),
and wakes the fetchers long-polling the partition. Offsets are assigned by the storage writer
inside its transaction, so a crash of this actor can leave no gap; after a restart it has no
state to recover beyond what LMDB holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..actors import Actor, Failure
from ..storage import WriteBatch

if TYPE_CHECKING:
    from ._broker import Broker

#: Appends one partition actor merges into one submission to the writer.
PARTITION_BATCH = 256


class PartitionActor(Actor[WriteBatch]):
    """Appends to one partition; see the module doc."""

    batch_size = PARTITION_BATCH
    mailbox_size = 4096

    def __init__(self, broker: Broker, topic: str, partition: int) -> None:
        self.broker = broker
        self.topic = topic
        self.partition = partition

    async def handle_batch(self, messages: list[WriteBatch]) -> list[Any]:
        results = await self.broker.store.write_many(messages)
        self.broker._notify(self.topic, self.partition)
        return [Failure(r) if isinstance(r, Exception) else r for r in results]


def actor_name(topic: str, partition: int) -> str:
    return f"{topic}[{partition}]"
