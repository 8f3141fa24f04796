"""Running commands on the lab's hosts: SSH (kept connections) or local subprocesses."""

from typing import TYPE_CHECKING, Any

from backend.transport.base import (
    CommandFailed,
    CommandResult,
    HostRunner,
    TransportError,
)
from backend.transport.local import LocalRunner

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    # The SSH side (asyncssh, cryptography: ~0.1 s) loads when first asked for, so a
    # command that only reads files never pays for it.
    if name in ("SshHost", "SshTarget"):
        from backend.transport import ssh

        return getattr(ssh, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
