"""How much does one short remote command cost? Prints numbers; asserts nothing.

Against real OpenSSH sshds on 127.0.0.1, twice: once as the user runs it (root's
login shell reads ~/.bashrc, which may run slow things such as `pyenv init`, at
every SSH session) and once with an empty home (sshd's ``SetEnv HOME=``: the shell
reads no rc file), so the figures show the command plane itself and what the
user's shell start-up adds on top. For each:

  1. miglab's runner, pooled shells (the default for short commands)
  2. miglab's runner, an exec channel per command (what long-running commands use)
  3. a new `ssh host true` process per command
  4. OpenSSH connection sharing: `ssh -S socket host true` on a kept master connection
  5. N commands spread over 3 hosts (3 sshds) concurrently through miglab

Everything it starts (sshds, the ssh master) is stopped on the way out, whatever
happens (an error, Ctrl-C, SIGTERM); every wait has a timeout.

    .venv/bin/python tests/bench/bench_command_plane.py [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.transport import SshHost, SshTarget
from tests.support.sshd import Sshd

STEP_TIMEOUT_S = 30.0  # any single command, process or wait in this benchmark


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
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), STEP_TIMEOUT_S)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.wait_for(process.wait(), STEP_TIMEOUT_S)
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{argv} failed ({process.returncode}): {stderr.decode().strip()}")


async def run_ok(host: SshHost, long_running: bool = False) -> None:
    result = await host.run(
        ["true"], timeout=STEP_TIMEOUT_S, log_output=False, long_running=long_running
    )
    if not result.ok:
        raise RuntimeError(f"{host.name}: `true` failed: {result.failure or result.exit_status}")


def describe(name: str, times: list[float], baseline: float | None) -> str:
    median = statistics.median(times)
    p90 = sorted(times)[int(len(times) * 0.9)]
    ratio = f"{median / baseline:8.1f}x" if baseline else "       1x"
    return f"{name:<44} {median:9.2f} {p90:9.2f} {ratio}"


def target(server: Sshd, name: str, key: Path) -> SshTarget:
    return SshTarget(
        name,
        server.address,
        server.port,
        server.user,
        str(key),  # all three sshds accept the first one's client key
        known_hosts=str(server.known_hosts),
    )


class Cleanup:
    """Everything started, stopped in reverse order; each stop bounded, none skipped."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []

    def add(self, what: str, stop: Callable[[], Awaitable[None]]) -> None:
        self._steps.append((what, stop))

    async def run(self) -> None:
        while self._steps:
            what, stop = self._steps.pop()
            try:
                await asyncio.wait_for(stop(), STEP_TIMEOUT_S)
            except BaseException as exc:  # keep going: the next one must be stopped too
                print(f"cleanup: stopping {what} failed: {exc!r}", file=sys.stderr)


async def start_sshd(
    cleanup: Cleanup, directory: Path, client_key: Path | None, extra: str
) -> Sshd:
    sshd_path = shutil.which("sshd") or "/usr/sbin/sshd"
    server = Sshd(sshd_path, directory, extra_config=extra)
    cleanup.add(f"sshd {directory.name}", lambda: asyncio.to_thread(server.stop))
    await asyncio.to_thread(server.setup, client_key)
    await asyncio.to_thread(server.start)  # waits at most 10 s for the port
    return server


@contextlib.asynccontextmanager
async def ssh_master(server: Sshd, control: Path) -> AsyncIterator[None]:
    """An OpenSSH master connection in the foreground (no ControlPersist: it never forks
    away, so its pid stays the one to stop), stopped with `-O exit` and then by pid."""
    destination = f"{server.user}@{server.address}"
    master = await asyncio.create_subprocess_exec(
        "ssh", *ssh_options(server), "-o", "ControlMaster=yes", "-o", "ControlPersist=no",
        "-S", str(control), "-N", destination,
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not control.exists():
            if master.returncode is not None:
                stderr = await master.stderr.read() if master.stderr else b""
                raise RuntimeError(f"the ssh master exited: {stderr.decode().strip()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no control socket {control} within {STEP_TIMEOUT_S:g} s")
            await asyncio.sleep(0.05)
        yield
    finally:
        if control.exists():
            with contextlib.suppress(Exception):
                await run_process(
                    ["ssh", *ssh_options(server), "-S", str(control), "-O", "exit", destination]
                )
        if master.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                master.terminate()
            try:
                await asyncio.wait_for(master.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    master.kill()
                await asyncio.wait_for(master.wait(), 5)


@dataclass
class Figures:
    pooled: list[float]
    exec_channel: list[float]
    plain_ssh: list[float]
    shared: list[float]
    cold_wall_s: float
    warm_wall_s: float
    warm_latencies: list[float]


async def measure(n: int, work: Path, cleanup: Cleanup, extra: str) -> Figures:
    servers: list[Sshd] = []
    for index in range(3):
        key = servers[0].client_key if servers else None
        servers.append(await start_sshd(cleanup, work / f"sshd{index}", key, extra))
    first = servers[0]
    destination = f"{first.user}@{first.address}"

    hosts = [
        SshHost(target(s, f"h{i}", first.client_key), lambda event: None)
        for i, s in enumerate(servers)
    ]
    for host in hosts:
        cleanup.add(f"runner {host.name}", host.close)
    await asyncio.wait_for(hosts[0].connect(), STEP_TIMEOUT_S)
    pooled = await timed(n, lambda: run_ok(hosts[0]))
    exec_channel = await timed(n, lambda: run_ok(hosts[0], long_running=True))
    plain_ssh = await timed(
        n, lambda: run_process(["ssh", *ssh_options(first), destination, "true"])
    )
    control = work / "control.sock"
    async with ssh_master(first, control):
        shared = await timed(
            n,
            lambda: run_process(
                ["ssh", *ssh_options(first), "-S", str(control), destination, "true"]
            ),
        )

    await asyncio.wait_for(asyncio.gather(*(h.connect() for h in hosts[1:])), STEP_TIMEOUT_S)
    latencies: list[float] = []

    async def one(index: int) -> None:
        started = time.perf_counter()
        await run_ok(hosts[index % 3])
        latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    cold_wall = time.perf_counter() - started  # includes opening 3 more shells per host
    latencies.clear()
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    warm_wall = time.perf_counter() - started
    return Figures(pooled, exec_channel, plain_ssh, shared, cold_wall, warm_wall, latencies)


def report(n: int, title: str, figures: Figures) -> None:
    base = statistics.median(figures.pooled)
    print(f"{title}: {n} sequential `true` commands (times in ms)")
    print(f"{'':<44} {'median':>9} {'p90':>9} {'vs pool':>9}")
    print(describe("miglab runner, pooled shell", figures.pooled, None))
    print(describe("miglab runner, exec channel per command", figures.exec_channel, base))
    print(describe("`ssh host true`, new process each", figures.plain_ssh, base))
    print(describe("OpenSSH shared connection `ssh -S sock`", figures.shared, base))
    wall = figures.warm_wall_s
    print(f"  {n} commands over 3 hosts at once (pool of 4 shells per host):")
    print(
        f"    first round (pools grow from 1 to 4 shells): wall {figures.cold_wall_s * 1000:.1f} ms"
    )
    print(
        f"    warm pools: wall {wall * 1000:.1f} ms, {n / wall:.0f} commands/s, "
        f"median latency {statistics.median(figures.warm_latencies):.2f} ms, "
        f"max {max(figures.warm_latencies):.2f} ms"
    )
    print(flush=True)


async def main(n: int) -> int:
    # SIGTERM (and SIGHUP) cancel the run like Ctrl-C does, so the cleanup still runs.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, task.cancel)
    work = Path(tempfile.mkdtemp(prefix="miglab-bench-"))
    empty_home = work / "empty-home"
    empty_home.mkdir()
    flavors = [
        ("the user's own shell start-up (~/.bashrc)", ""),
        ("an empty home (no rc file read)", f"SetEnv HOME={empty_home}"),
    ]
    print(f"OpenSSH sshd on 127.0.0.1, user {getpass.getuser()}", flush=True)
    results: list[Figures] = []
    try:
        for index, (title, extra) in enumerate(flavors):
            cleanup = Cleanup()
            try:
                figures = await measure(n, work / f"flavor{index}", cleanup, extra)
            finally:
                await cleanup.run()
            results.append(figures)
            report(n, title, figures)
    except Exception as exc:
        print(f"bench_command_plane failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print("bench_command_plane interrupted; what it started is stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    own, empty = results
    print("What the user's shell start-up adds per new SSH session (median, ms):")
    for name, field in (
        ("exec channel", "exec_channel"),
        ("`ssh host true`", "plain_ssh"),
        ("shared connection", "shared"),
        ("pooled shell", "pooled"),
    ):
        added = statistics.median(getattr(own, field)) - statistics.median(getattr(empty, field))
        print(f"  {name:<20} {added:8.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    try:
        sys.exit(asyncio.run(main(parser.parse_args().n)))
    except KeyboardInterrupt:
        sys.exit(130)
