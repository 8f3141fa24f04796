"""The guest image: built from Debian's packages into a stable cache, booted under QEMU TCG.

The cache is ``$MIGLAB_CACHE_DIR/guest`` or ``~/.cache/miglab/guest``: the first run
downloads the kernel and busybox (~28 MB) and takes a few seconds more; later runs reuse
the image.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.sandbox.guest_image import (
    READY_MARKER,
    GuestImage,
    build_guest_image,
    default_cache_dir,
    fetch_packages,
    qemu_guest_argv,
    wait_for_console,
)
from backend.sandbox.local_qemu import LocalQemu
from tests.conftest import need
from tests.support.waiting import NO_DEADLINE

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]  # a cold build downloads


def need_builder() -> None:
    need("qemu-system-x86_64")
    need("apt-get", "apt-cache", "dpkg", "ldd")


async def cached_image(**kwargs: Any) -> GuestImage:
    started = time.monotonic()
    image = await build_guest_image(default_cache_dir(), progress=print, **kwargs)
    print(f"guest image {image.key}: {time.monotonic() - started:.2f} s")
    return image


@pytest.fixture
async def rundir() -> AsyncIterator[Path]:
    # Short: unix socket paths must stay under 108 bytes.
    path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="miglab-"))
    yield path
    await asyncio.to_thread(shutil.rmtree, path, True)


def read_newc(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name -> (mode, contents, (rdevmajor, rdevminor)) of a newc archive."""
    entries: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701", pos
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, namesize = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos : pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, body, rdev)


async def test_build_is_cached_and_laid_out_for_boot() -> None:
    need_builder()
    first = await cached_image()
    started = time.monotonic()
    again = await cached_image()
    warm = time.monotonic() - started
    assert again == first
    assert warm < 1.0, f"a warm build took {warm:.2f} s"
    assert first.key.startswith(first.kernel_version + "-")
    assert re.fullmatch(r"\d+\.\d+\.\d+-\d+-cloud-amd64", first.kernel_version), first
    assert "Debian package" in first.busybox or first.busybox.startswith("host ")
    # Each virtio module is either insmod'ed or built in; none is simply absent.
    assert first.missing_modules == []
    assert set(first.modules) | set(first.builtin_modules) >= {"virtio_net", "virtio_blk"}

    raw = await asyncio.to_thread(gzip.decompress, first.initrd.read_bytes())
    files = read_newc(raw)
    mode, init, _ = files["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 and init.startswith(b"#!/bin/busybox sh")
    assert READY_MARKER.encode() in init
    mode, _, rdev = files["dev/console"]
    assert stat.S_ISCHR(mode) and rdev == (5, 1)
    assert stat.S_ISREG(files["bin/busybox"][0])
    listed = files["etc/miglab/modules"][1].decode().split()
    assert [Path(p).name.removesuffix(".ko") for p in listed] == first.modules
    for path in listed:
        assert files[path.lstrip("/")][1][:4] == b"\x7fELF"
    # Dependencies before dependents (LAB-NOTES' order where they are all modules).
    order = {name: i for i, name in enumerate(first.modules)}
    for before, after in [("virtio", "virtio_pci"), ("virtio_ring", "virtio_net")]:
        if before in order and after in order:
            assert order[before] < order[after]


async def test_boot_prints_ready_with_the_built_kernel(rundir: Path) -> None:
    need_builder()
    image = await cached_image()
    pidfile = rundir / "qemu.pid"
    argv = qemu_guest_argv(
        image,
        memory_mb=128,
        qmp_socket=rundir / "qmp.sock",
        serial_log=rundir / "serial.log",
        pidfile=pidfile,
        daemonize=True,
    )
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    pid = int((await asyncio.to_thread(pidfile.read_text)).strip())
    try:
        line = await wait_for_console(
            rundir / "serial.log",
            timeout=NO_DEADLINE,  # an emulated boot takes what it takes; dies: alive()
            alive=lambda: os.path.exists(f"/proc/{pid}"),
        )
        print(f"ready after {time.monotonic() - started:.1f} s: {line}")
        assert line == f"{READY_MARKER} kernel={image.kernel_version} ip=none disks=none"
        log = await asyncio.to_thread((rundir / "serial.log").read_text, errors="replace")
        assert "miglab-init:" not in log, log  # no insmod failed, no eth0 trouble
        assert "Kernel panic" not in log
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


async def test_extra_binary_runs_in_the_guest_with_its_libraries(rundir: Path) -> None:
    need_builder()
    env = shutil.which("env")
    assert env is not None
    probe = "/usr/bin/gnu-env"  # not /usr/bin/env: that would shadow busybox's applet
    image = await cached_image(
        extra_binaries=[(Path(env), probe)],
        extra_files={
            "/etc/miglab/init.d/50-probe.sh": f'echo "MIGLAB-PROBE $({probe} --version)"\n'
        },
    )
    assert probe in image.extra_paths
    assert any("libc.so" in path for path in image.extra_paths), image.extra_paths
    argv = qemu_guest_argv(
        image, memory_mb=128, qmp_socket=rundir / "qmp.sock", serial_log=rundir / "serial.log"
    )
    async with LocalQemu(
        argv, qmp_socket=rundir / "qmp.sock", serial_log=rundir / "serial.log"
    ) as vm:
        await vm.wait_console(timeout=NO_DEADLINE)
        line = await vm.wait_console("MIGLAB-PROBE", timeout=5)  # printed before ready
        assert "GNU coreutils" in line, line
        async with await vm.qmp() as qmp:
            assert (await qmp.query_status()).running
            await qmp.quit()
        assert await vm.wait(10) == 0


async def test_binary_from_an_unpacked_package_brings_its_libraries_at_packaged_paths() -> None:
    # dropbear's libtomcrypt is not installed here: it comes from its own unpacked .deb,
    # and must land where the guest's loader looks, not under this machine's cache path.
    need_builder()
    roots = await fetch_packages(
        default_cache_dir(), ["dropbear-bin", "libtomcrypt1", "libtommath1"], progress=print
    )
    assert [r.name.split("_")[0] for r in roots] == ["dropbear-bin", "libtomcrypt1", "libtommath1"]
    again = await fetch_packages(default_cache_dir(), ["libtomcrypt1"])
    assert again == [roots[1]]  # cached: the same unpacked tree, no second download
    image = await cached_image(
        extra_binaries=[(roots[0] / "usr/sbin/dropbear", "/usr/sbin/dropbear")],
        extra_files={"/etc/secret-key": (b"not really a key\n", 0o600)},
        package_roots=roots,
    )
    tomcrypt = [p for p in image.extra_paths if "libtomcrypt.so" in p]
    assert tomcrypt and all(p.startswith("/usr/lib/") for p in tomcrypt), image.extra_paths
    assert not any(str(default_cache_dir()) in p for p in image.extra_paths), image.extra_paths
    files = read_newc(await asyncio.to_thread(gzip.decompress, image.initrd.read_bytes()))
    for path in tomcrypt:
        assert files[path.lstrip("/")][1][:4] == b"\x7fELF"
    mode, body, _ = files["etc/secret-key"]
    assert stat.S_IMODE(mode) == 0o600 and body == b"not really a key\n"
