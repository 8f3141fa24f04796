"""Fakes of the storage tools that cannot run on this machine: targetcli, ietadm, tgtadm,
iscsiadm and libiscsi's iscsi-ls, for the simulated lab's hosts (:mod:`backend.sim.commands`).

Each tool module has ``run(argv, state) -> (exit_code, stdout, stderr)``, a pure
function. ``argv[0]`` is the program name, as a shell passes it. ``state`` is one
host's JSON-serialisable state dict, changed in place; each tool keeps its data under
its own key (``state["lio"]``, ``state["iet"]``, ``state["iscsiadm"]``) and what several
tools share, the host's disks and files, lives in ``state["devices"]`` (:func:`add_device`).
(Tests also run them as programs: ``tests/support/fake_tools``.)

The outputs follow the real tools byte for byte where a capture exists
(``tests/data``) and the tools' sources elsewhere; the drivers' own parsers read them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Result",
    "add_device",
    "device",
]

Result = tuple[int, str, str]
"""(exit code, stdout, stderr). Negative codes are C ``return -EINVAL`` style; a shell
sees them modulo 256."""


def add_device(state: dict[str, Any], path: str, size_bytes: int, *, block: bool) -> None:
    """Make ``path`` exist on the simulated host: a block device or a regular file."""
    state.setdefault("devices", {})[path] = {"size": int(size_bytes), "block": bool(block)}


def device(state: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The simulated disk or file at ``path`` (``{"size": N, "block": bool}``), if any."""
    found = state.get("devices", {}).get(path)
    return found if isinstance(found, dict) else None
