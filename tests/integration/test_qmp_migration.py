"""A real live migration on loopback: two QEMU (TCG) processes, driven by our QMP client.

The source boots the miglab guest; the destination waits with ``-incoming``; the
migration is capped at the study's 100 Mbit/s and followed by polling query-migrate.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.drivers.qemu_argv import qemu_guest_argv
from backend.drivers.qmp import MigrationStatus, QmpClient
from backend.sandbox.guest_image import HEARTBEAT_MARKER, build_guest_image, default_cache_dir
from backend.sandbox.local_qemu import LocalQemu
from tests.conftest import need
from tests.support.waiting import NO_DEADLINE

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]  # a cold image build downloads

BANDWIDTH = 12_500_000  # bytes/s: 100 Mbit/s, the study's switch
MEMORY_MB = 256


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def rundir() -> AsyncIterator[Path]:
    path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="miglab-"))
    yield path
    await asyncio.to_thread(shutil.rmtree, path, True)


def uptimes(text: str) -> list[float]:
    return [float(u) for u in re.findall(rf"{HEARTBEAT_MARKER} uptime=([\d.]+)", text)]


async def test_live_migration_over_loopback(rundir: Path) -> None:
    need("qemu-system-x86_64")
    need("apt-get", "apt-cache", "dpkg", "ldd")  # a cold cache builds the guest image
    image = await build_guest_image(default_cache_dir())
    port = free_port()
    # Shared storage as in the study, on a file: both sides open it, the source writes.
    disk = rundir / "disk.raw"
    await asyncio.to_thread(disk.write_bytes, b"\0" * (16 << 20))

    def guest(role: str, incoming: str | None) -> LocalQemu:
        qmp, serial = rundir / f"{role}.qmp", rundir / f"{role}.log"
        argv = qemu_guest_argv(
            image,
            memory_mb=MEMORY_MB,
            qmp_socket=qmp,
            serial_log=serial,
            incoming=incoming,
            drive=str(disk),
            drive_cache="writeback",  # cache=none needs O_DIRECT, which tmpfs lacks
            heartbeat_s=1,  # the guest prints its uptime: the destination's log shows it lives on
        )
        return LocalQemu(argv, qmp_socket=qmp, serial_log=serial)

    source, dest = guest("src", None), guest("dst", f"tcp:127.0.0.1:{port}")
    clients: list[QmpClient] = []
    try:
        await source.start()
        await dest.start()
        ready = await source.wait_console(timeout=NO_DEADLINE)
        assert ready.endswith("disks=vda"), ready
        src = await source.qmp()
        dst = await dest.qmp()
        clients += [src, dst]
        assert (await dst.query_status()).status == "inmigrate"

        await src.migrate_set_capabilities({"events": True})
        await src.migrate_set_parameters(max_bandwidth_bytes=BANDWIDTH, downtime_limit_ms=300)
        params = await src.query_migrate_parameters()
        assert params["max-bandwidth"] == BANDWIDTH
        stopped = src.event_waiter("STOP")
        resumed = dst.event_waiter("RESUME")

        await src.migrate(f"tcp:127.0.0.1:{port}")
        started = time.monotonic()
        samples: list[MigrationStatus] = []
        while not (status := await src.query_migrate()).finished:  # a hang: the timeout
            samples.append(status)
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started

        assert status.status == "completed", status
        assert isinstance(status.total_time_ms, int) and status.total_time_ms > 0
        assert isinstance(status.downtime_ms, int) and status.downtime_ms >= 0
        assert status.ram is not None and status.ram.transferred and status.ram.total
        progress = [s.ram.transferred for s in samples if s.status == "active" and s.ram]
        assert len(progress) >= 3, samples
        # Never backwards; two polls may see the same count when the migration thread
        # did not get the CPU in between (a loaded host).
        assert all(b >= a for a, b in itertools.pairwise(progress)), progress
        assert progress[-1] > progress[0], progress
        # The cap held: loopback alone would move hundreds of MB/s.
        rate = status.ram.transferred / (status.total_time_ms / 1000)
        assert rate < 1.3 * BANDWIDTH, f"{rate / 1e6:.1f} MB/s over a 12.5 MB/s cap"
        await stopped  # STOP came before "completed"; RESUME once the destination runs
        await resumed

        dst_status = await dst.query_status()
        assert dst_status.status == "running" and dst_status.running
        assert (await src.query_status()).status == "postmigrate"
        src_log = await asyncio.to_thread((rundir / "src.log").read_text, errors="replace")
        await dest.wait_console(HEARTBEAT_MARKER, timeout=NO_DEADLINE)
        dst_log = await asyncio.to_thread((rundir / "dst.log").read_text, errors="replace")
        # The same guest, its clock carried over: it did not boot again on the destination.
        assert uptimes(dst_log) and uptimes(src_log)
        assert uptimes(dst_log)[0] >= uptimes(src_log)[-1]
        assert "Linux version" not in dst_log

        print(
            f"\nmigration {MEMORY_MB} MB at {BANDWIDTH * 8 / 1e6:.0f} Mbit/s: "
            f"total-time {status.total_time_ms} ms, downtime {status.downtime_ms} ms, "
            f"setup {status.setup_time_ms} ms, dirty-sync-count {status.ram.dirty_sync_count}, "
            f"transferred {status.ram.transferred / 1e6:.1f} MB of {status.ram.total / 1e6:.1f}"
            f" MB, mbps {status.ram.mbps:.1f}, {len(samples)} samples in {elapsed:.1f} s"
        )

        pid = source.pid
        await src.quit()
        assert await source.wait(10) == 0, source.stderr
        assert not await asyncio.to_thread(os.path.exists, f"/proc/{pid}")
        await dst.quit()
        assert await dest.wait(10) == 0, dest.stderr
    finally:
        for client in clients:
            await client.close()
        await source.stop()
        await dest.stop()
