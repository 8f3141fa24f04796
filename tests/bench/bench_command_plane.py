"""How much does one short remote command cost? Prints numbers; asserts nothing.

Against the same real OpenSSH sshd on 127.0.0.1:
  1. miglab's runner, pooled shells (the default for short commands)
  2. miglab's runner, an exec channel per command (what long-running commands use)
  3. a new `ssh host true` process per command
  4. OpenSSH ControlPersist: `ssh -S socket host true` on a kept master connection
and then N commands spread over 3 hosts (3 sshds) concurrently through miglab.

    .venv/bin/python tests/bench/bench_command_plane.py [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.transport import SshHost, SshTarget
from tests.support.sshd import Sshd


def ssh_options(server: Sshd) -> list[str]:
    return [
        "-p", str(server.port),
        "-i", str(server.client_key),
        "-o", f"UserKnownHostsFile={server.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
    ]  # fmt: skip


async def timed(n: int, once: Callable[[], Awaitable[object]]) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await once()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def run_process(argv: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    if await process.wait() != 0:
        raise RuntimeError(f"{argv} failed")


def describe(name: str, times: list[float], baseline: float | None) -> str:
    median = statistics.median(times)
    p90 = sorted(times)[int(len(times) * 0.9)]
    ratio = f"{median / baseline:8.1f}x" if baseline else "       1x"
    return f"{name:<42} {median:9.2f} {p90:9.2f} {ratio}"


def target(server: Sshd, name: str, key: Path) -> SshTarget:
    return SshTarget(
        name,
        server.address,
        server.port,
        server.user,
        str(key),
        known_hosts=str(server.known_hosts),
    )


async def main(n: int) -> None:
    sshd_path = shutil.which("sshd") or "/usr/sbin/sshd"
    work = Path(tempfile.mkdtemp(prefix="miglab-bench-"))
    servers = []
    for index in range(3):
        server = Sshd(sshd_path, work / f"sshd{index}")
        server.setup(servers[0].client_key if servers else None)
        server.start()
        servers.append(server)
    first = servers[0]
    destination = f"{first.user}@{first.address}"
    control = work / "control.sock"
    master = await asyncio.create_subprocess_exec(
        "ssh", *ssh_options(first), "-M", "-S", str(control), "-o", "ControlPersist=120", "-N",
        destination,
    )  # fmt: skip
    try:
        host = SshHost(target(first, "h0", first.client_key), lambda event: None)
        await host.connect()
        pooled = await timed(n, lambda: host.run(["true"], log_output=False))
        exec_channel = await timed(
            n, lambda: host.run(["true"], log_output=False, long_running=True)
        )
        plain_ssh = await timed(
            n, lambda: run_process(["ssh", *ssh_options(first), destination, "true"])
        )
        while not control.exists():
            await asyncio.sleep(0.05)
        persist = await timed(
            n,
            lambda: run_process(
                ["ssh", *ssh_options(first), "-S", str(control), destination, "true"]
            ),
        )

        hosts = [host] + [
            SshHost(target(s, f"h{i + 1}", first.client_key), lambda e: None)
            for i, s in enumerate(servers[1:])
        ]
        await asyncio.gather(*(h.connect() for h in hosts[1:]))
        latencies: list[float] = []

        async def one(index: int) -> None:
            started = time.perf_counter()
            result = await hosts[index % 3].run(["true"], log_output=False)
            latencies.append((time.perf_counter() - started) * 1000)
            assert result.ok

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        cold_wall = time.perf_counter() - started  # includes opening 3 more shells per host
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - started
        await asyncio.gather(*(h.close() for h in hosts))
    finally:
        master.terminate()
        await master.wait()
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    base = statistics.median(pooled)
    print(f"{n} sequential `true` commands against OpenSSH sshd on 127.0.0.1 (times in ms)")
    print(f"{'':<42} {'median':>9} {'p90':>9} {'vs pool':>9}")
    print(describe("miglab runner, pooled shell", pooled, None))
    print(describe("miglab runner, exec channel per command", exec_channel, base))
    print(describe("`ssh host true`, new process each", plain_ssh, base))
    print(describe("OpenSSH ControlPersist `ssh -S sock`", persist, base))
    print()
    print(f"{n} `true` commands spread over 3 hosts, all at once (pool of 4 shells per host):")
    print(f"  first round (pools grow from 1 to 4 shells): wall time {cold_wall * 1000:.1f} ms")
    print(f"  warm pools: wall time {wall * 1000:.1f} ms, {n / wall:.0f} commands/s, "
          f"median latency {statistics.median(latencies):.2f} ms, "
          f"max {max(latencies):.2f} ms")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(main(parser.parse_args().n))
