"""Running commands on the lab's hosts: SSH (kept connections) or local subprocesses."""

from backend.transport.base import (
    CommandFailed,
    CommandResult,
    HostRunner,
    TransportError,
)
from backend.transport.local import LocalRunner
from backend.transport.ssh import SshHost, SshTarget

__all__ = [
    "CommandFailed",
    "CommandResult",
    "HostRunner",
    "LocalRunner",
    "SshHost",
    "SshTarget",
    "TransportError",
]
