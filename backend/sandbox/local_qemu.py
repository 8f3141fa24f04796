"""A QEMU process on this machine, owned by the caller: started, watched, always reaped.

Not daemonized on purpose: as our child its pid is ours for sure, its stderr is ours
to show when it fails, and ``stop`` (or leaving ``async with``) kills exactly it.
Wrap ``argv`` (e.g. ``["ip", "netns", "exec", NS, *argv]``) to run it elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from backend.aio import wait_for
from backend.drivers.qmp import QmpClient
from backend.sandbox.guest_image import (
    READY_MARKER,
    GuestImageError,
    console_offset,
    wait_for_console,
)


class LocalQemu:
    def __init__(self, argv: Sequence[str], *, qmp_socket: Path, serial_log: Path) -> None:
        if "-daemonize" in argv:
            raise ValueError("LocalQemu runs QEMU as its child: drop -daemonize")
        self.argv = list(argv)
        self.qmp_socket = qmp_socket
        self.serial_log = serial_log
        self.process: asyncio.subprocess.Process | None = None
        self.stderr = ""
        self.console_from = 0  # this QEMU's first byte in the (appended) serial log
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("QEMU not started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        self.console_from = await asyncio.to_thread(console_offset, self.serial_log)
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._stderr_task = asyncio.get_running_loop().create_task(self._collect_stderr())

    async def _collect_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:  # read continuously: a full pipe would block QEMU
            self.stderr += line.decode(errors="replace")

    async def wait_console(self, marker: str = READY_MARKER, *, timeout: float = 60.0) -> str:
        """The first serial-console line with ``marker`` (the guest's ready line by default)."""
        try:
            return await wait_for_console(
                self.serial_log,
                marker,
                timeout=timeout,
                offset=self.console_from,
                alive=self.alive,
            )
        except GuestImageError as exc:
            raise GuestImageError(f"{exc}\nQEMU stderr:\n{self.stderr.strip()}") from None

    async def qmp(self, *, timeout: float = 10.0, **kwargs: Any) -> QmpClient:
        """Connect to the QMP socket, waiting for QEMU to create it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await QmpClient.connect_unix(self.qmp_socket, **kwargs)
            except (FileNotFoundError, ConnectionRefusedError):
                if not self.alive():
                    raise GuestImageError(f"QEMU exited: {self.stderr.strip()}") from None
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def wait(self, timeout: float) -> int:
        """Wait for QEMU to exit by itself (after ``quit``); its exit status."""
        if self.process is None:
            raise RuntimeError("QEMU not started")
        code = await wait_for(self.process.wait(), timeout)
        if self._stderr_task is not None:
            await wait_for(self._stderr_task, 5)
        return code

    async def stop(self, timeout: float = 5.0) -> int | None:
        """Kill QEMU if it still runs, and reap it. Its exit status."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.kill()
        try:
            return await self.wait(timeout)
        except asyncio.TimeoutError:
            return self.process.returncode

    async def __aenter__(self) -> LocalQemu:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
