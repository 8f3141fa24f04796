"""The simulated lab's hosts over real SSH: asyncssh through miglab's transport, and OpenSSH.

The simulated hosts are in-process asyncssh servers on loopback ports; these tests
reach them exactly as the console reaches a real lab (``SshHost`` with plain exec) and
as a person does (``ssh -p PORT root@127.0.0.1``), and read what they print with the
drivers' and probes' parsers.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.drivers.parse_xl import MigratePhase, XlMigrateParser, parse_xl_list
from backend.events import EventBus
from backend.probes import PingParser, lost_seqs, ping_command
from backend.sim.lab import SimulatedLab, prepare
from backend.transport.base import TransportError
from backend.transport.ssh import SshHost
from tests.conftest import need
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLab]:
    async with SimulatedLab.start(speed=100, seed=0) as lab:
        yield lab


@pytest.fixture
async def hosts(sim: SimulatedLab) -> AsyncIterator[dict[str, SshHost]]:
    bus = EventBus()
    targets = sim.targets()
    opened = {name: SshHost(targets[name], bus.publish) for name in sim.lab_config.hosts}
    await asyncio.gather(*(h.connect() for h in opened.values()))
    yield opened
    await asyncio.gather(*(h.close() for h in opened.values()))


async def guest_up(sim: SimulatedLab) -> None:
    assert await prepare(sim) == []
    while not sim.model.guest_up:
        await sim.runtime.sleep(1)


async def test_hosts_answer_like_real_ones(sim: SimulatedLab, hosts: dict[str, SshHost]) -> None:
    storage = await hosts["iSCSIserver"].run(["uname", "-sr"])
    assert storage.ok and storage.stdout == "Linux 2.6.29-gentoo-r5\n"
    listed = (await hosts["xenserver1"].run(["xl", "list"])).check()
    assert [d.name for d in parse_xl_list(listed.stdout)] == ["Domain-0"]
    missing = await hosts["xenserver2"].run(["tgtadm", "--op", "show", "--mode", "target"])
    assert missing.exit_status == 127
    assert missing.stderr == "bash: line 1: tgtadm: command not found\n"
    spaced = await hosts["xenserver1"].run(["echo", "a b", "it's"])
    assert spaced.stdout == "a b it's\n"  # argv survives shlex.join and the split back


async def test_openssh_logs_in_by_hand(sim: SimulatedLab) -> None:
    need("ssh")
    command = sim.ssh_command("xenserver1")
    batch = [command[0], "-o", "BatchMode=yes", *command[1:]]
    done = await run_process([*batch, "uname", "-sr"])
    assert done == (0, "Linux 3.16.0-4-amd64\n", "")
    code, _, err = await run_process([*batch[:-1], "nobody@127.0.0.1", "true"])
    assert code == 255 and "Permission denied" in err
    # A session without a command: one command per line, as a person types them.
    code, out, _ = await run_process([*batch, "-tt"], stdin=b"hostname\nexit\n")
    assert code == 0 and "xenserver1" in out


async def test_the_guest_answers_ssh_only_once_booted(sim: SimulatedLab) -> None:
    guest = SshHost(sim.targets()["guest"], EventBus().publish)
    with pytest.raises(TransportError):
        await guest.connect()
    await guest_up(sim)
    await guest.connect()
    try:
        result = await guest.run(["sysbench", "cpu", "--time=2", "--threads=2", "run"])
        assert result.ok and "events per second" in result.stdout
    finally:
        await guest.close()


async def test_a_live_migration_over_ssh(sim: SimulatedLab, hosts: dict[str, SshHost]) -> None:
    await guest_up(sim)
    ping = PingParser("iSCSIserver", clock=sim.clock)
    samples = []

    def pinged(stream: str, line: str) -> None:
        samples.extend(ping.feed(line))

    probe = asyncio.create_task(
        hosts["iSCSIserver"].run(
            ping_command("192.168.0.50", interval_s=0.5), on_line=pinged, long_running=True,
            timeout=None,
        )
    )  # fmt: skip
    xl = XlMigrateParser()

    def migrating(stream: str, line: str) -> None:
        xl.feed(line)

    result = await hosts["xenserver1"].run(
        ["xl", "-v", "migrate", "guest", "xenserver2"],
        on_line=migrating,
        long_running=True,
        timeout=120,
    )
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert result.ok, result.stderr[-500:]
    assert xl.result is not None and xl.result.phase is MigratePhase.DONE
    assert [u for u in xl.history if u.event == "iteration-stats"]
    listed = parse_xl_list((await hosts["xenserver2"].run(["xl", "list"])).stdout)
    assert [d.name for d in listed] == ["Domain-0", "guest"]
    replies = [s for s in samples if "rtt_ms" in s.values and s.values["rtt_ms"] is not None]
    assert len(replies) > 150  # ~94 s of migration at one probe per 0.5 s
    assert lost_seqs(samples) == []
    stamps = [s.t for s in replies]
    assert stamps == sorted(stamps)  # -D times, on the one simulated clock


async def test_cancelling_a_command_stops_it_on_the_host(
    sim: SimulatedLab, hosts: dict[str, SshHost]
) -> None:
    seen: list[str] = []
    endless = asyncio.create_task(
        hosts["iSCSIserver"].run(
            ["ping", "-i", "0.2", "127.0.0.1"],
            on_line=lambda stream, line: seen.append(line),
            long_running=True,
            timeout=None,
        )
    )
    while len(seen) < 4:
        await asyncio.sleep(0.01)
    endless.cancel()
    with pytest.raises(asyncio.CancelledError):
        await endless
    server = sim.servers["iSCSIserver"]
    await until(lambda: not server._tasks)  # the simulated ping ends with its channel
    again = await hosts["iSCSIserver"].run(["true"])
    assert again.ok


async def test_sim_serve_prints_ssh_lines_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    need("ssh")
    script = (
        "import argparse, sys\n"
        "from tui.commands import sim\n"
        "parser = argparse.ArgumentParser(prog='miglab')\n"
        "sim.register(parser.add_subparsers(dest='command'))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.handler(args))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, "sim", "serve", "--speed", "10",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    printed: list[str] = []
    try:
        while not printed or not printed[-1].startswith("Serving"):
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, (printed, await process.stderr.read())
            printed.append(line.decode())
        assert "SIMULATED" in printed[0]
        xen = next(line for line in printed if line.split()[:1] == ["xenserver1"])
        command = shlex.split(xen.split(maxsplit=2)[2])
        assert command[0] == "ssh" and command[-1] == "root@127.0.0.1"
        key = Path(command[command.index("-i") + 1])
        assert key.exists()
        code, out, _ = await run_process(
            [command[0], "-o", "BatchMode=yes", *command[1:], "xl", "info"]
        )
        assert code == 0 and "xen_version            : 4.4.1\n" in out
    finally:
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
    assert re.search(r"stopped", (await process.stderr.read()).decode())
    assert not key.parent.exists()  # its keys and known_hosts are gone


async def run_process(argv: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
