"""The guest image: built from Debian's packages into a stable cache, booted under QEMU TCG.

The cache is ``$MIGLAB_CACHE_DIR/guest`` or ``~/.cache/miglab/guest``: the first run
downloads the kernel and busybox (~28 MB) and takes a few seconds more; later runs reuse
the image.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import re
import shlex
import shutil
import stat
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.drivers.qemu_argv import qemu_guest_argv
from backend.probes import parse_lines
from backend.probes.build import BuildParser, build_command, make_argv
from backend.sandbox.guest_compiler import (
    COMPILER,
    GNUMAKEFILE,
    MAKE,
    PROJECT_DIR,
    compiler_payload,
    fetch_compiler,
)
from backend.sandbox.guest_image import (
    READY_MARKER,
    GuestImage,
    build_guest_image,
    default_cache_dir,
    fetch_packages,
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


# -- the compiler and the project (the study's test 6) ---------------------------------

LUA_C_FILES = 34  # Lua 5.2.x: 32 in liblua.a, lua.c and luac.c


async def compiler_image(**kwargs: Any) -> GuestImage:
    roots = await fetch_compiler(default_cache_dir(), progress=print)
    payload = await asyncio.to_thread(compiler_payload, roots)
    files = {**payload.files, **kwargs.pop("extra_files", {})}
    return await cached_image(
        extra_binaries=payload.binaries,
        extra_files=files,
        extra_symlinks=payload.symlinks,
        **kwargs,
    )


async def test_image_has_the_compiler_the_project_and_the_headers_libc_needs() -> None:
    need_builder()
    image = await compiler_image()
    files = read_newc(await asyncio.to_thread(gzip.decompress, image.initrd.read_bytes()))
    print(f"initrd {image.initrd.stat().st_size} bytes, {len(files)} entries")

    def elf(path: str) -> bool:
        mode, body, _ = files[path.lstrip("/")]
        return stat.S_ISREG(mode) and bool(mode & 0o111) and body[:4] == b"\x7fELF"

    assert elf(COMPILER) and elf(MAKE) and elf("/lib64/ld-linux-x86-64.so.2")
    for path in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libm.so.6"):
        assert elf(path), path  # what libc.so and libm.so (linker scripts) name
    for path in (
        "usr/lib/x86_64-linux-gnu/tcc/libtcc1.a",
        "usr/lib/x86_64-linux-gnu/tcc/include/stddef.h",
        "usr/lib/x86_64-linux-gnu/crt1.o",
        "usr/lib/x86_64-linux-gnu/libc_nonshared.a",
        "usr/include/stdio.h",
        "usr/include/x86_64-linux-gnu/bits/errno.h",
        "usr/include/linux/errno.h",  # reached from <errno.h>
        "usr/include/x86_64-linux-gnu/asm/errno.h",
        "usr/include/asm-generic/errno-base.h",
    ):
        assert stat.S_ISREG(files[path][0]), path
    assert b"GROUP" in files["usr/lib/x86_64-linux-gnu/libc.so"][1]
    # tcc finds the loader libc.so.6 needs in its library path, where Debian keeps it.
    mode, target, _ = files["lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"]
    assert stat.S_ISLNK(mode) and target == b"/lib64/ld-linux-x86-64.so.2"
    assert "usr/include/linux/kvm.h" not in files  # no libc header includes it
    assert "usr/lib/x86_64-linux-gnu/libc.a" not in files  # tcc links dynamically
    # Lua 5.2, as Debian ships its source: every C file, its own Makefiles, and ours.
    project = PROJECT_DIR.lstrip("/")
    sources = sorted(p for p in files if p.startswith(project + "/src/") and p.endswith(".c"))
    assert len(sources) == LUA_C_FILES, sources
    assert b"lua_newstate" in files[f"{project}/src/lstate.c"][1]
    assert b"posix:" in files[f"{project}/src/Makefile"][1]
    assert files[f"{project}/GNUmakefile"][1] == GNUMAKEFILE.encode()


def console_lines(log: str, first: str, last: str) -> list[str]:
    """The serial console's lines from the first one starting with ``last`` back to the
    nearest one that is ``first`` (kernel messages in between are not the build's; the
    console shell's prompt may share a line with a marker the background build printed)."""
    lines = [line.rstrip("\r") for line in log.splitlines()]
    lines = [
        line[line.index("miglab-build") :] if "miglab-build" in line else line for line in lines
    ]
    end = next(i for i, line in enumerate(lines) if line.startswith(last))
    start = max(i for i in range(end + 1) if lines[i] == first)
    return [line for line in lines[start : end + 1] if not line.startswith("[")]


async def test_guest_builds_the_project_with_make_j2_and_the_probe_times_each_build(
    rundir: Path,
) -> None:
    # One build with the probe's once-only wrapper, then its outputs run; then the
    # repeated build the kernel-compile scenario runs, until its first build ends.
    need_builder()
    once = build_command(make_argv(2), directory="/tmp/once")
    again = build_command(make_argv(2), directory="/tmp/again", repeat=True)
    hook = (
        f"cp -a {PROJECT_DIR} /tmp/once && cp -a {PROJECT_DIR} /tmp/again\n"
        f"{shlex.join(once)}\n"
        "cd /tmp/once && echo MIGLAB-BUILT $(ls src/*.o | wc -l) objects,"
        " $(ls src/lua src/luac src/liblua.a | wc -l) outputs,"
        " lua says $(src/lua -e 'print(6 * 7, _VERSION)'); cd /\n"
        f"{shlex.join(again)} &\n"
    )
    image = await compiler_image(extra_files={"/etc/miglab/init.d/50-build.sh": hook})
    serial = rundir / "serial.log"
    argv = qemu_guest_argv(
        image, memory_mb=256, vcpus=2, qmp_socket=rundir / "qmp.sock", serial_log=serial
    )
    async with LocalQemu(argv, qmp_socket=rundir / "qmp.sock", serial_log=serial) as vm:
        built = await vm.wait_console("MIGLAB-BUILT", timeout=300)
        await vm.wait_console("miglab-build round=1 exit=", timeout=300)
    log = await asyncio.to_thread(serial.read_text, errors="replace")
    print(built)
    assert built.endswith("MIGLAB-BUILT 34 objects, 3 outputs, lua says 42 Lua 5.2"), built

    ticks = itertools.count(0.0, 0.1)
    lines = console_lines(log, "miglab-build start", "miglab-build exit=")
    samples = parse_lines(BuildParser("guest", clock=lambda: next(ticks)), lines)
    summary = samples[-1].values
    assert summary["exit_status"] == 0 and summary["errors"] == 0, summary
    assert summary["files"] == LUA_C_FILES  # every C file compiled, as tcc's command lines show

    lines = console_lines(log, "miglab-build start", "miglab-build round=1 exit=")
    parser = BuildParser("guest", clock=lambda: next(ticks))
    [first] = [s for s in parse_lines(parser, lines) if "build_s" in s.values]
    assert first.values["round"] == 1 and first.values["round_exit_status"] == 0
    assert first.values["round_files"] == LUA_C_FILES
    took = first.values["build_s"]
    assert took is not None and 0 < took < 300  # from the guest's uptime stamps
    start = next(line for line in lines if line.startswith("miglab-build round=1 start"))
    end = next(line for line in lines if line.startswith("miglab-build round=1 exit=0"))
    stamps = [float(line.rsplit("uptime=", 1)[1]) for line in (start, end)]
    assert took == pytest.approx(stamps[1] - stamps[0])
    print(f"one build of Lua 5.2 with tcc, make -j2, 2 vCPUs under TCG: {took:.2f} s")
