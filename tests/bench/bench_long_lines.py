"""Is a huge output line handled in linear time? Prints numbers; asserts nothing.

1. In process: a CommandRecorder fed one line of N MB in 64 KiB reads, against the
   anchor of the same N MB as ordinary 80-character lines, for N = 5, 20, 80. Linear
   handling keeps the ratio flat as N grows; the old concatenation of partial lines
   made it grow with N (quadratic).
2. End to end against a real sshd: `head -c 50000000 /dev/zero | tr '\\0' a` through
   the pooled shell and an exec channel; wall time and the longest event-loop stall
   (a ticker task every 10 ms measures the largest gap between its ticks).

    .venv/bin/python tests/bench/bench_long_lines.py
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.events import Event
from backend.transport import SshHost, SshTarget
from backend.transport.base import CommandRecorder
from tests.support.sshd import Sshd

CHUNK = 65536
MB = 1_000_000


def feed_seconds(text: str) -> float:
    events: list[Event] = []
    recorder = CommandRecorder("h", ["cmd"], events.append, "local")
    started = time.perf_counter()
    for at in range(0, len(text), CHUNK):
        recorder.feed("stdout", text[at : at + CHUNK])
    recorder.finish(0)
    return time.perf_counter() - started


def in_process() -> None:
    print("In process: one N MB line vs N MB of 80-character lines, fed in 64 KiB reads")
    print(f"{'N MB':>6} {'one line s':>11} {'80-char lines s':>16} {'ratio':>7}")
    for size in (5, 20, 80):
        one_line = "a" * (size * MB) + "\n"
        short_lines = ("b" * 79 + "\n") * (size * MB // 80)
        huge = min(feed_seconds(one_line) for _ in range(3))
        anchor = min(feed_seconds(short_lines) for _ in range(3))
        print(f"{size:>6} {huge:>11.4f} {anchor:>16.4f} {huge / anchor:>7.3f}")
    print()


async def ticker(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def end_to_end() -> None:
    work = Path(tempfile.mkdtemp(prefix="miglab-bench-lines-"))
    server = Sshd(shutil.which("sshd") or "/usr/sbin/sshd", work / "sshd")
    host: SshHost | None = None
    try:
        await asyncio.to_thread(server.setup)
        await asyncio.to_thread(server.start)
        host = SshHost(
            SshTarget(
                "h",
                server.address,
                server.port,
                server.user,
                str(server.client_key),
                known_hosts=str(server.known_hosts),
            ),
            lambda event: None,
        )
        await asyncio.wait_for(host.connect(), 30)
        print("End to end, real sshd: one 50 MB line (head -c 50000000 /dev/zero | tr '\\0' a)")
        for long_running in (False, True):
            gaps: list[float] = []
            stop = asyncio.Event()
            ticks = asyncio.create_task(ticker(gaps, stop))
            started = time.perf_counter()
            result = await host.run(
                ["sh", "-c", "head -c 50000000 /dev/zero | tr '\\0' a"],
                timeout=120,
                long_running=long_running,
            )
            wall = time.perf_counter() - started
            stop.set()
            await ticks
            channel = "exec channel" if long_running else "pooled shell"
            print(
                f"  {channel:<13} ok={result.ok} wall {wall:.2f} s, "
                f"longest event-loop stall {max(gaps) * 1000:.1f} ms (ticker every 10 ms)"
            )
    finally:
        if host is not None:
            await asyncio.wait_for(host.close(), 30)
        await asyncio.to_thread(server.stop)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    in_process()
    asyncio.run(end_to_end())
