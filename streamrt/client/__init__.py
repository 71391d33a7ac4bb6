"""Embedded clients: producer, consumers, queue consumers."""

from ._producer import Delivery, Producer, RecordMetadata, SentBatch

__all__ = ["Delivery", "Producer", "RecordMetadata", "SentBatch"]
