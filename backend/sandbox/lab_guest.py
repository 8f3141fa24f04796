"""The sandbox's guest: the minimal image plus what the experiments run in it.

On top of :func:`backend.sandbox.guest_image.build_guest_image` (kernel, busybox,
virtio modules) the guest gets:

- dropbear (Debian's ``dropbear-bin``, downloaded and unpacked, with libtomcrypt and
  libtommath from their packages: they are not installed on the build machine), with
  the sandbox's client key in /root/.ssh/authorized_keys and a host key made once and
  kept, so the guest's key in known_hosts survives reboots, rebuilds and migrations;
- sysbench and dbench (this machine's Debian packages, with the libraries ``ldd`` finds)
  and dbench's load file ``/usr/share/dbench/client.txt``;
- the RAM dirtier as ``/usr/bin/miglab-dirtier SIZE_MIB ROUNDS PATH`` (the probe's own
  script), and a tmpfs on /dev/shm for it to dirty;
- a real compiler and a real C project (tcc, make, the C library's headers; Lua 5.2's
  source at :data:`~backend.sandbox.guest_compiler.PROJECT_DIR`: see
  :mod:`backend.sandbox.guest_compiler`), for the study's test 6;
- ext4 (module or built in), and an init hook that mounts the iSCSI disk ``/dev/vda`` on
  :data:`DISK_MOUNT` with ``dbench/`` and ``build/`` directories, so disk benchmarks write
  to the shared disk, and puts a fresh copy of the project at :data:`BUILD_TREE` (the
  compile reads and writes the shared disk, as the study's did).

The serial console shows ``MIGLAB-DISK ...`` and ``MIGLAB-SSH ...`` before the ready line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from backend.probes.dbench import DEBIAN_LOADFILE
from backend.probes.dirtier import DIRTIER_SCRIPT
from backend.sandbox.guest_compiler import PROJECT_DIR, compiler_payload, fetch_compiler
from backend.sandbox.guest_image import (
    DEFAULT_KERNEL_PACKAGE,
    DEFAULT_MODULES,
    ExtraFile,
    GuestImage,
    GuestImageError,
    Progress,
    build_guest_image,
    fetch_packages,
)
from backend.sandbox.initramfs import library_dirs
from backend.transport.base import HostRunner

DROPBEAR_PACKAGES = ("dropbear-bin", "libtomcrypt1", "libtommath1")
# ext4 and what it needs; on Debian's cloud kernel they are built in (then skipped).
GUEST_MODULES = (*DEFAULT_MODULES, "crc16", "crc32c_generic", "mbcache", "jbd2", "ext4")
DISK_DEVICE = "/dev/vda"
DISK_MOUNT = "/mnt/disk"
DBENCH_DIR = f"{DISK_MOUNT}/dbench"
BUILD_DIR = f"{DISK_MOUNT}/build"
BUILD_TREE = f"{BUILD_DIR}/lua-5.2"
"""The project's tree on the shared disk: the built-in kernel-compile scenario builds it."""
DIRTIER = "/usr/bin/miglab-dirtier"
HOST_KEY_IN_GUEST = "/etc/dropbear/dropbear_ed25519_host_key"
DISK_MARKER = "MIGLAB-DISK"
SSH_MARKER = "MIGLAB-SSH"


# Sourced by /init in name order (they run as part of pid 1: no `exit`).
def guest_hooks(disk_device: str = DISK_DEVICE) -> dict[str, str]:
    """The init hooks; ``disk_device`` is the shared disk as the guest sees it (a Xen PV
    guest has /dev/xvda)."""
    return {
        "/etc/miglab/init.d/10-shm.sh": """\
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || log "no tmpfs on /dev/shm"
""",
        "/etc/miglab/init.d/20-disk.sh": f"""\
if [ -b {disk_device} ]; then
    mkdir -p {DISK_MOUNT}
    if mount -t ext4 {disk_device} {DISK_MOUNT}; then
        mkdir -p {DBENCH_DIR} {BUILD_DIR}
        # A fresh tree each boot: nothing a killed build left behind is built upon.
        rm -rf {BUILD_TREE} && cp -a {PROJECT_DIR} {BUILD_TREE} || log "no {BUILD_TREE}"
        echo "{DISK_MARKER} {disk_device} on {DISK_MOUNT}"
    else
        log "cannot mount {disk_device} on {DISK_MOUNT}"
    fi
fi
""",
        "/etc/miglab/init.d/30-dropbear.sh": f"""\
if dropbear -s -r {HOST_KEY_IN_GUEST} -p 22 -P /run/dropbear.pid; then
    echo "{SSH_MARKER} dropbear on port 22"
else
    log "dropbear did not start"
fi
""",
    }


HOOKS: dict[str, str] = guest_hooks()


def _find(roots: Sequence[Path], relative: str) -> Path:
    for root in roots:
        if (root / relative).is_file():
            return root / relative
    raise GuestImageError(f"none of the unpacked packages has {relative}")


async def fetch_dropbear(cache_dir: Path, progress: Progress | None = None) -> list[Path]:
    """The unpacked dropbear packages (downloaded once into ``cache_dir``)."""
    return await fetch_packages(cache_dir, DROPBEAR_PACKAGES, progress=progress)


async def ensure_guest_host_key(runner: HostRunner, roots: Sequence[Path], key: Path) -> str:
    """dropbear's ed25519 host key at ``key`` (made once); its public line."""
    keygen = await asyncio.to_thread(_find, roots, "usr/bin/dropbearkey")
    # dropbearkey needs libtomcrypt from the unpacked packages, not from this machine.
    dirs = await asyncio.to_thread(library_dirs, roots)
    env = ["env", "LD_LIBRARY_PATH=" + ":".join(map(str, dirs))]
    if not await asyncio.to_thread(key.is_file):
        await asyncio.to_thread(key.parent.mkdir, parents=True, exist_ok=True)
        partial = key.with_name(key.name + ".part")
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        (await runner.run([*env, str(keygen), "-t", "ed25519", "-f", str(partial)])).check()
        await asyncio.to_thread(partial.rename, key)
    shown = (await runner.run([*env, str(keygen), "-y", "-f", str(key)])).check()
    for line in shown.stdout.splitlines():
        if line.startswith("ssh-ed25519 "):
            return " ".join(line.split()[:2])
    raise GuestImageError(f"dropbearkey -y printed no public key: {shown.stdout!r}")


async def build_lab_guest(
    cache_dir: Path,
    *,
    dropbear_roots: Sequence[Path],
    client_public_key: str,
    host_key: Path,
    sysbench: Path,
    dbench: Path,
    progress: Progress | None = None,
    disk_device: str = DISK_DEVICE,
    modules: Sequence[str] = GUEST_MODULES,
    kernel_package: str = DEFAULT_KERNEL_PACKAGE,
) -> GuestImage:
    """The sandbox guest image (cached in ``cache_dir`` like any guest image).

    The Xen lab's guest passes its own ``disk_device``, ``modules`` (the Xen frontends)
    and ``kernel_package`` (the generic kernel, which is both dom0 and domU)."""
    dropbear = await asyncio.to_thread(_find, dropbear_roots, "usr/sbin/dropbear")
    compiler_roots = await fetch_compiler(cache_dir, progress)
    compiler = await asyncio.to_thread(compiler_payload, compiler_roots)
    host_key_bytes = await asyncio.to_thread(host_key.read_bytes)
    loadfile = await asyncio.to_thread(Path(DEBIAN_LOADFILE).read_bytes)
    files: dict[str, ExtraFile] = {
        **guest_hooks(disk_device),
        "/root/.ssh/authorized_keys": (client_public_key.strip() + "\n", 0o600),
        HOST_KEY_IN_GUEST: (host_key_bytes, 0o600),
        DEBIAN_LOADFILE: loadfile,
        DIRTIER: ("#!/bin/sh\n" + DIRTIER_SCRIPT, 0o755),
        **compiler.files,
    }
    return await build_guest_image(
        cache_dir,
        extra_binaries=[
            (dropbear, "/usr/sbin/dropbear"),
            (sysbench, "/usr/bin/sysbench"),
            (dbench, "/usr/bin/dbench"),
            *compiler.binaries,
        ],
        extra_files=files,
        package_roots=dropbear_roots,
        extra_symlinks=compiler.symlinks,
        modules=modules,
        progress=progress,
        kernel_package=kernel_package,
    )
