"""The QEMU the sandbox's guest runs on: one whose TCG live migration keeps the guest whole.

Debian 12's QEMU (7.2) damaged the sandbox guest's memory in live migration under TCG.
Runs of 12-16 back-and-forth migrations of the 1-vCPU guest while it compiled code
(``miglab run`` of a scenario like migrate-kernel-compile with ``migrations = 16``), on
these 2-core machines: with 7.2, 4 of 5 runs ended with the guest printing an oops
(``RIP: 0010:0x3`` in the timer interrupt), ``BUG: Bad rss-counter state``, a
``segfault`` of make in ld.so, or a compiler killed, within a few migrations, both with a
thread per vCPU (the default) and with ``-accel tcg,thread=single``; 3 such runs on
QEMU 10.0 from bookworm-backports showed none (48 migrations, 90 builds, each whole). A guest
damaged by the migration is no measurement, so the sandbox's guest runs on QEMU
>= :data:`MIN_VERSION`: this machine's when it has one, else bookworm-backports' build,
downloaded once with ``apt-get download`` from a list of sources of its own (the
machine's apt configuration is not touched), unpacked with ``dpkg -x`` into the cache,
and started through a launcher script that points it at its own iSCSI block driver and
data files. The Xen hosts keep this machine's QEMU: on them Xen migrates, not QEMU.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from backend.aio import wait_for
from backend.sandbox.guest_image import GuestImageError, Progress, fetch_packages

MIN_VERSION = (10, 0)
BACKPORTS_SOURCE = "deb http://deb.debian.org/debian bookworm-backports main"
# The emulator, its firmware links and keymaps, and the block drivers (iSCSI) as modules.
PACKAGES = ("qemu-system-x86", "qemu-system-data", "qemu-block-extra")
MODULES = "usr/lib/x86_64-linux-gnu/qemu"
DATA = "usr/share/qemu"
PROGRAM = "usr/bin/qemu-system-x86_64"
_VERSION = re.compile(r"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class GuestQemu:
    binary: str
    """What the lab file's ``[guest.qemu] binary`` says: a program or the launcher."""
    version: str
    """As QEMU prints it, e.g. ``10.0.2``."""
    origin: str
    """Where it came from, for the person running ``sandbox up``."""

    @property
    def release(self) -> str:
        """MAJOR.MINOR, as lab.toml's ``[simulation] qemu_version`` names it."""
        return ".".join(self.version.split(".")[:2])


def parse_version(text: str) -> tuple[int, ...] | None:
    """``QEMU emulator version 7.2.22 (Debian ...)`` -> (7, 2, 22); None if absent."""
    found = _VERSION.search(text)
    if found is None:
        return None
    return tuple(int(part) for part in found.groups() if part is not None)


async def qemu_version(binary: str) -> tuple[int, ...] | None:
    """What ``binary --version`` says; None when it does not run or says no version."""
    try:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await wait_for(proc.communicate(), 60)
    except (OSError, TimeoutError):
        return None
    return parse_version(out.decode(errors="replace"))


def apt_options(apt_dir: Path) -> list[str]:
    """apt-get options for a package list of its own under ``apt_dir``."""
    return [
        "-o", f"Dir::Etc::SourceList={apt_dir / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o", f"Dir::Cache={apt_dir / 'cache'}",
    ]  # fmt: skip


def launcher_script(roots: dict[str, Path]) -> str:
    """A shell script that runs the unpacked QEMU with its own modules and data."""
    modules = shlex.quote(str(roots["qemu-block-extra"] / MODULES))
    program = shlex.quote(str(roots["qemu-system-x86"] / PROGRAM))
    data = shlex.quote(str(roots["qemu-system-data"] / DATA))
    return (
        "#!/bin/sh\n"
        "# The miglab sandbox guest's QEMU (backend/sandbox/guest_qemu.py): its own block\n"
        "# modules (iSCSI) and data files, never this machine's older ones.\n"
        f"QEMU_MODULE_DIR={modules}\n"
        "export QEMU_MODULE_DIR\n"
        f'exec {program} -L {data} "$@"\n'
    )


def _write_private_apt(apt_dir: Path) -> None:
    for directory in (apt_dir / "lists" / "partial", apt_dir / "cache" / "archives" / "partial"):
        directory.mkdir(parents=True, exist_ok=True)
    (apt_dir / "sources.list").write_text(BACKPORTS_SOURCE + "\n")


def _write_launcher(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        partial = path.with_suffix(".partial")
        partial.write_text(text)
        partial.chmod(0o755)
        partial.replace(path)


def _shown(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


async def guest_qemu(
    cache_dir: Path, system_binary: str, progress: Progress | None = None
) -> GuestQemu:
    """The QEMU for the sandbox's guest (see the module's docstring), fetched into
    ``cache_dir`` once when this machine's is older than :data:`MIN_VERSION`."""
    say: Progress = progress or (lambda _message: None)
    system = await qemu_version(system_binary)
    if system is not None and system >= MIN_VERSION:
        return GuestQemu(system_binary, _shown(system), "this machine's")
    apt_dir = cache_dir / "apt"
    await asyncio.to_thread(_write_private_apt, apt_dir)
    roots = await fetch_packages(
        cache_dir, PACKAGES, progress=say, apt_options=apt_options(apt_dir)
    )
    launcher = cache_dir / "bin" / "qemu-system-x86_64"
    await asyncio.to_thread(
        _write_launcher, launcher, launcher_script(dict(zip(PACKAGES, roots, strict=True)))
    )
    found = await qemu_version(str(launcher))
    if found is None or found < MIN_VERSION:
        raise GuestImageError(
            f"{launcher}: expected QEMU {_shown(MIN_VERSION)} or newer from bookworm-backports, "
            f"it says {_shown(found) if found else 'no version'}; this machine's is "
            f"{_shown(system) if system else 'unknown'}, and 7.2 damages a TCG guest in migration"
        )
    return GuestQemu(str(launcher), _shown(found), f"bookworm-backports, in {cache_dir}")
