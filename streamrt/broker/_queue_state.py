"""The life of one message in a queue group: every state and transition, in one table.

A queue group sees each record of its topics as a message with a state. The rules:

1. A record appended to the topic is STORED: in the log, not yet read by the group. The group
   reads records into memory in log order (a bounded read-ahead window); a record read becomes
   READY, or DELAYED if a redelivery delay from before a restart has not passed yet.
2. READY messages are handed out in order: priority first (higher first), then the order the
   group read them in. Handing one out is two steps: LEASING when the group picks a consumer
   for it (its delivery count goes up and is written to LMDB with the next group commit), then
   LEASED once that commit is durable and the message is in the consumer's hands. So a
   delivery count survives any crash: a message that kills its consumer's process every time
   still reaches ``max_deliveries`` and is dead-lettered.
3. A LEASED message is settled by its consumer: ``ack`` makes it ACKED; ``nack(requeue=True)``
   makes it READY again (DELAYED with ``delay``); ``nack(requeue=False)`` makes it DEAD
   (reason ``rejected``). Only the lease holder's settlement counts; a late one, after the
   lease ended, is ignored.
4. A lease also ends when ``ack_timeout`` passes (visibility timeout) or its consumer leaves;
   the message is READY again. A message LEASING when its consumer leaves was never handed
   out; it goes back to READY too.
5. A message coming back (rules 3 and 4) after its ``max_deliveries``-th delivery is DEAD
   (reason ``max_deliveries``) instead. After a restart, a message that was already delivered
   ``max_deliveries`` times is DEAD as soon as it is read.
6. A READY (or STORED) message older than ``ttl`` is DEAD (reason ``expired``). Expiry is
   checked at the head of the queue and when a message is read or about to be handed out.
7. Overflow (``max_length``): with policy ``dead-letter`` or ``reject-new``, a STORED message
   arriving when the backlog is full is DEAD (reason ``overflow``); with ``drop-oldest``, the
   oldest READY (or STORED) messages are DROPPED to make room.
8. A STORED message removed by the topic's retention before the group read it is DROPPED.
9. ACKED, DEAD and DROPPED are final: the message is done and never delivered again. DEAD
   means moved to the dead-letter topic (in the same LMDB transaction that records it done),
   or discarded when the queue has no ``dead_letter`` topic.

States are small ints (entries hold one per in-memory message); events are strings.
"""

from __future__ import annotations

from ..errors import StreamrtError

STORED = 0
READY = 1
LEASING = 2
LEASED = 3
DELAYED = 4
ACKED = 5
DEAD = 6
DROPPED = 7

NAMES = ("stored", "ready", "leasing", "leased", "delayed", "acked", "dead", "dropped")
FINAL = frozenset({ACKED, DEAD, DROPPED})

#: (state, event) -> next state. Anything not in the table is a bug in the queue group.
TRANSITIONS: dict[tuple[int, str], int] = {
    # rule 1: reading
    (STORED, "read"): READY,
    (STORED, "read_delayed"): DELAYED,
    # rule 2: handing out
    (READY, "lease"): LEASING,
    (LEASING, "durable"): LEASED,
    # rule 3: settlement by the lease holder
    (LEASED, "ack"): ACKED,
    (LEASED, "requeue"): READY,
    (LEASED, "requeue_delayed"): DELAYED,
    (LEASED, "reject"): DEAD,
    (DELAYED, "delay_over"): READY,
    # rule 4: the lease ends without settlement
    (LEASED, "lease_expired"): READY,
    (LEASED, "consumer_gone"): READY,
    (LEASING, "consumer_gone"): READY,
    # rule 5: poison messages
    (LEASED, "max_deliveries"): DEAD,
    (STORED, "max_deliveries"): DEAD,
    # rule 6: time to live
    (READY, "expire"): DEAD,
    (STORED, "expire"): DEAD,
    # rule 7: overflow
    (STORED, "overflow"): DEAD,
    (READY, "drop"): DROPPED,
    (STORED, "drop"): DROPPED,
    # rule 8: retention
    (STORED, "retention"): DROPPED,
}

#: The ``reason`` header a DEAD message gets in the dead-letter topic, per event.
DEAD_REASONS = {
    "reject": "rejected",
    "expire": "expired",
    "max_deliveries": "max_deliveries",
    "overflow": "overflow",
}
REASONS = ("rejected", "expired", "max_deliveries", "overflow")


class IllegalTransition(StreamrtError, RuntimeError):
    """A queue group tried a transition its table does not have: a bug in streamrt."""


def next_state(state: int, event: str) -> int:
    """The state after ``event``; IllegalTransition if the table has no such move."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise IllegalTransition(
            f"queue message in state {NAMES[state]!r} cannot take event {event!r}; this is a "
            f"bug in streamrt, please report it with the queue's settings"
        ) from None
