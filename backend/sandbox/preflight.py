"""What `miglab sandbox up` needs from this machine, and what to install when it is missing.

Checked before anything is made, so that a missing program is one clear message
(with the Debian package that provides it) instead of a half-built lab.
Synchronous on purpose: a handful of ``stat`` calls, run via ``asyncio.to_thread``.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

# program -> Debian package. The image builder also needs the guest's programs on
# this machine: they go into the guest with the libraries ldd finds here.
PROGRAMS: dict[str, str] = {
    "ip": "iproute2",
    "tc": "iproute2",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "tgtd": "tgt",
    "tgtadm": "tgt",
    "qemu-system-x86_64": "qemu-system-x86",
    "mkfs.ext4": "e2fsprogs",
    "ping": "iputils-ping",
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg": "dpkg",
    "ldd": "libc-bin",
    "sysbench": "sysbench",
    "dbench": "dbench",
}
# file (glob) -> (what it is, Debian package)
FILES: dict[str, tuple[str, str]] = {
    "/usr/lib/*/qemu/block-iscsi.so": ("QEMU's iscsi:// block driver", "qemu-block-extra"),
    "/usr/share/dbench/client.txt": ("dbench's load file", "dbench"),
}
# Non-login shells (sudo, cron, ssh) often lack the sbin directories.
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"

Which = Callable[[str], str | None]
Exists = Callable[[str], bool]


def which(program: str) -> str | None:
    """The program's path on $PATH or in the sbin directories."""
    return shutil.which(program) or shutil.which(program, path=SBIN)


def _glob_exists(pattern: str) -> bool:
    return bool(glob.glob(pattern))


@dataclass
class Preflight:
    """What is missing; empty lists mean the sandbox can be built."""

    not_root: bool = False
    missing: dict[str, list[str]] = field(default_factory=dict)  # package -> what it provides
    no_tun: bool = False

    @property
    def ok(self) -> bool:
        return not (self.not_root or self.missing or self.no_tun)

    def message(self) -> str:
        """One paragraph per problem, each saying how to fix it."""
        lines: list[str] = []
        if self.not_root:
            lines.append(
                "`miglab sandbox up` needs root: it makes network namespaces, bridges and tap "
                "devices and starts sshd and tgtd. Run it as root (e.g. `sudo miglab sandbox up`)."
            )
        if self.missing:
            lines.append("missing on this machine:")
            for package, what in sorted(self.missing.items()):
                lines.append(f"  {', '.join(what)}  (Debian package {package})")
            packages = " ".join(sorted(self.missing))
            lines.append(f"install them with: apt-get install {packages}")
        if self.no_tun:
            lines.append("/dev/net/tun is missing: load the tun module (`modprobe tun`).")
        return "\n".join(lines)


def check(
    *,
    euid: int | None = None,
    find: Which = which,
    exists: Exists = _glob_exists,
) -> Preflight:
    """Look for root, every program and file; ``find``/``exists`` are for tests."""
    result = Preflight()
    result.not_root = (os.geteuid() if euid is None else euid) != 0
    for program, package in PROGRAMS.items():
        if find(program) is None:
            result.missing.setdefault(package, []).append(program)
    for pattern, (what, package) in FILES.items():
        if not exists(pattern):
            result.missing.setdefault(package, []).append(what)
    result.no_tun = not exists("/dev/net/tun")
    return result
