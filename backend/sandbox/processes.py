"""Daemons that outlive `miglab sandbox up`, known by pid and start time.

A daemon is started detached (its own session, stdin from /dev/null, output to a
log file) through a fixed ``sh`` script that prints its pid, so ``up`` can return
while sshd and tgtd keep running. The pid alone could be reused by another
process after a reboot or a long time; the start time from ``/proc/PID/stat``
(clock ticks since boot) is recorded with it, and a signal is only ever sent to
a pid whose start time still matches. A zombie counts as stopped: its parent
(init, after ``sh`` exits) reaps it when it gets to it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from backend.transport.base import HostRunner

# $1 the log file, the rest the daemon's argv. `ip netns exec` execs the program, so
# the printed pid is the daemon's own.
SPAWN_SCRIPT = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo "$!"'


class ProcessRecord(BaseModel):
    """One started daemon, as the state file keeps it."""

    role: str  # e.g. "sshd@storage"
    pid: int
    start_time: int  # /proc/PID/stat field 22
    argv: list[str]
    log: str


class SpawnError(RuntimeError):
    """A daemon did not start, or stopped at once (its log tail says why)."""


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state first); None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold blanks and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def is_running(pid: int, expected_start: int) -> bool:
    """The very process we started is still there (not gone, not a zombie, not a reuse)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == expected_start


def log_tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


async def spawn(
    runner: HostRunner, role: str, argv: Sequence[str], *, log: Path, netns: str | None = None
) -> ProcessRecord:
    """Start ``argv`` detached (in network namespace ``netns``) and record it."""
    command = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    result = (
        await runner.run(["sh", "-c", SPAWN_SCRIPT, "miglab-spawn", str(log), *command])
    ).check()
    try:
        pid = int(result.stdout.strip())
    except ValueError:
        raise SpawnError(f"{role}: no pid from the spawn script: {result.stdout!r}") from None
    started = await asyncio.to_thread(start_time, pid)
    if started is None:
        tail = await asyncio.to_thread(log_tail, log)
        raise SpawnError(f"{role} exited at once; {log}:\n{tail}")
    return ProcessRecord(role=role, pid=pid, start_time=started, argv=command, log=str(log))


async def ensure_running(record: ProcessRecord) -> None:
    if not await asyncio.to_thread(is_running, record.pid, record.start_time):
        tail = await asyncio.to_thread(log_tail, Path(record.log))
        raise SpawnError(f"{record.role} (pid {record.pid}) stopped; {record.log}:\n{tail}")


async def wait_stopped(pid: int, expected_start: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(is_running, pid, expected_start):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def stop(pid: int, expected_start: int, *, grace: float = 3.0) -> str:
    """SIGTERM, then SIGKILL after ``grace`` seconds; only if it is still our process.
    Returns what happened: "not running", "stopped" or "killed"."""
    if not await asyncio.to_thread(is_running, pid, expected_start):
        return "not running"
    try:
        os.kill(pid, signal.SIGTERM)
        if await wait_stopped(pid, expected_start, grace):
            return "stopped"
        if await asyncio.to_thread(is_running, pid, expected_start):
            os.kill(pid, signal.SIGKILL)
        await wait_stopped(pid, expected_start, 5.0)
    except ProcessLookupError:
        return "stopped"
    return "killed"
