"""The actor runtime: actors with bounded mailboxes, refs, supervisors with restarts."""

from ._actor import Actor, ActorRef, Failure, Lifecycle, Pending
from ._supervisor import RestartPolicy, RuntimeFailure, Supervisor, open_runtime

__all__ = ["Actor", "ActorRef", "Failure", "Lifecycle", "Pending", "RestartPolicy", "RuntimeFailure", "Supervisor",
           "open_runtime"]
