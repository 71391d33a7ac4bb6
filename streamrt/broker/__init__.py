"""The broker: partition actors, consumer groups and queues behind one facade."""

from ._broker import Broker, open

__all__ = ["Broker", "open"]
