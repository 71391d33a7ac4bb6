"""Embedded clients: producer, consumers, queue consumers."""

from ._consumer import Consumer, ConsumerTransaction, Message
from ._producer import Delivery, Producer, RecordMetadata, SentBatch
from ._queue import QueueConsumer, QueueMessage

__all__ = ["Consumer", "ConsumerTransaction", "Delivery", "Message", "Producer",
           "RecordMetadata", "SentBatch", "QueueConsumer", "QueueMessage"]
