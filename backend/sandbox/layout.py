"""Where a sandbox keeps its files: one directory, readable by root only.

Kept across `down` and `up` (so the next `up` is fast and the SSH keys stay the same):
keys, host keys, the guest image cache, the shared disk, the daemons' logs (appended).
Written by each `up`: the state file (removed by `down`), lab.toml, sshd configs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_sandbox_dir() -> Path:
    """``$MIGLAB_CACHE_DIR/sandbox``, else ``$XDG_CACHE_HOME/miglab/sandbox`` (~/.cache)."""
    if base := os.environ.get("MIGLAB_CACHE_DIR"):
        return Path(base) / "sandbox"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "miglab" / "sandbox"


@dataclass(frozen=True)
class SandboxLayout:
    root: Path

    @property
    def lab_file(self) -> Path:
        return self.root / "lab.toml"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def client_key(self) -> Path:
        """The console's key: every host and the guest authorise it."""
        return self.keys / "client_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.keys / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.keys / "known_hosts"

    @property
    def guest_host_key(self) -> Path:
        """dropbear's host key, made once: the guest keeps it across boots and migrations."""
        return self.keys / "guest_dropbear_ed25519"

    def host_dir(self, host: str) -> Path:
        return self.root / "hosts" / host

    @property
    def disk(self) -> Path:
        return self.root / "storage" / "disk.img"

    @property
    def guest_cache(self) -> Path:
        return self.root / "guest"

    @property
    def qemu_cache(self) -> Path:
        """The guest's QEMU when this machine's is too old (see guest_qemu.py)."""
        return self.root / "qemu"

    @property
    def run_dir(self) -> Path:
        """The hypervisors' run_dir (QMP sockets, pid files): short, unix socket paths
        are limited to 107 bytes."""
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"
