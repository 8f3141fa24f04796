"""The sandbox's state file: the only record of what `down` may remove.

``up`` writes it before its first change and after every object it makes (a namespace,
a link, a daemon), so a run killed half-way still leaves an exact list behind. ``down``
removes what is listed, checks each object first (a link of the recorded kind, a
process with the recorded start time) and deletes the file at the end. Nothing that is
not listed here is ever touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from backend.sandbox.processes import ProcessRecord

STATE_FILE = "state.json"


class NetnsRecord(BaseModel):
    """A network namespace we made; ``inode`` tells it from a later one of the same name."""

    name: str
    inode: int


class LinkRecord(BaseModel):
    """A link made in the root namespace (links inside our namespaces go with them)."""

    name: str
    kind: Literal["bridge", "veth"]
    ifindex: int  # tells it from a later link of the same name


class TgtRecord(BaseModel):
    """The tgtd control port we use, and whether its socket files were ours to remove."""

    control_port: int
    socket_files: list[str] = Field(default_factory=list)  # made by our tgtd, removed at down


class SandboxState(BaseModel):
    version: Literal[1] = 1
    instance: int
    prefix: str
    subnet: str
    link_mbit: int
    guest_mb: int
    hypervisor: Literal["qemu", "xen"] = "qemu"  # xen: the hosts are QEMU VMs running Xen
    phase: Literal["building", "up"] = "building"
    started_at: float
    up_seconds: float | None = None
    lab_file: str | None = None
    netns: list[NetnsRecord] = Field(default_factory=list)
    links: list[LinkRecord] = Field(default_factory=list)
    processes: list[ProcessRecord] = Field(default_factory=list)
    tgt: TgtRecord | None = None


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def _read(path: Path) -> SandboxState | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return SandboxState.model_validate_json(text)


def _write(path: Path, state: SandboxState) -> None:
    # Write beside and rename: a crash leaves the old file or the new one, never half.
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(state.model_dump(mode="json"), indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def load_state(directory: Path) -> SandboxState | None:
    """The recorded state, None if there is none (never built, or taken down)."""
    return await asyncio.to_thread(_read, state_path(directory))


async def save_state(directory: Path, state: SandboxState) -> None:
    await asyncio.to_thread(_write, state_path(directory), state)


async def remove_state(directory: Path) -> None:
    await asyncio.to_thread(state_path(directory).unlink, missing_ok=True)
