"""`miglab sandbox`: a real three-host lab in network namespaces, end to end.

The session's sandbox (tests/e2e/conftest.py) is used as the console would use it:
over SSH from the root namespace, iSCSI from the hypervisor namespaces, a guest booted
on host1 from the shared disk and live-migrated to host2. The last tests take it down,
crash it and bring it back; they run in file order.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from backend.drivers.qemu_argv import qemu_guest_argv
from backend.drivers.qmp import MigrationStatus
from backend.events import Sample
from backend.probes.ping import PingParser, ping_command, unreachable_gaps
from backend.sandbox import preflight
from backend.sandbox.guest_image import READY_MARKER, GuestImage
from backend.sandbox.lab_guest import DISK_MARKER, DISK_MOUNT, SSH_MARKER
from backend.sandbox.local_qemu import LocalQemu
from backend.sandbox.processes import is_running
from tests.conftest import need, need_root
from tests.e2e.conftest import ROOT, SandboxUnderTest, miglab, sandbox_up
from tests.support.waiting import NO_DEADLINE

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]  # a cold first run downloads


async def run(argv: Sequence[str], timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def in_netns(sandbox: SandboxUnderTest, host: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", sandbox.netns(host), *argv]


def ssh_guest(sandbox: SandboxUnderTest, command: str) -> list[str]:
    """ssh from the storage node into the guest's dropbear: the client key, and the
    guest's host key checked against the sandbox's known_hosts."""
    lab = sandbox.lab
    host = lab.host("storage")
    assert lab.guest.identity is not None and host.known_hosts is not None
    return in_netns(
        sandbox, "storage", "ssh", "-i", str(lab.guest.identity),
        "-o", f"UserKnownHostsFile={host.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", str(lab.guest.port),
        f"{lab.guest.user}@{lab.guest.address}", command,
    )  # fmt: skip


def names_with(prefix: str, lines: str) -> list[str]:
    return [word for word in lines.split() if word.startswith(prefix + "-")]


def leftovers(prefix: str) -> dict[str, list[str]]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    link_names = [line.split(":")[1].strip().split("@")[0] for line in links.stdout.splitlines()]
    return {
        "netns": names_with(prefix, netns.stdout),
        "links": [name for name in link_names if name.startswith(prefix + "-")],
    }


# -- without root, or without a package --------------------------------------------------


def test_up_without_root_exits_2_and_says_why(tmp_path: Path) -> None:
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = need("setpriv")["setpriv"]
        prefix = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups")
    result = miglab("sandbox", "up", "--dir", str(tmp_path / "sandbox"), prefix=prefix)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "needs root" in result.stderr, result.stderr
    assert "sudo miglab sandbox up" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "sandbox").exists()  # nothing made before the check


def test_missing_programs_are_named_with_their_debian_packages() -> None:
    absent = {"tgtd", "tgtadm", "sshd", "dbench"}
    checked = preflight.check(
        euid=0,
        find=lambda program: None if program in absent else f"/usr/bin/{program}",
        exists=lambda pattern: "dbench" not in pattern,
    )
    assert not checked.ok and not checked.not_root
    message = checked.message()
    assert "tgtd, tgtadm  (Debian package tgt)" in message, message
    assert "sshd  (Debian package openssh-server)" in message
    assert "dbench, dbench's load file  (Debian package dbench)" in message
    assert "install them with: apt-get install dbench openssh-server tgt" in message
    assert "root" not in message


def test_this_machine_passes_the_preflight() -> None:
    # In CI every package is installed (.ci/run); a gap there is a missing install step.
    need(*preflight.PROGRAMS)
    checked = preflight.check(euid=0)
    assert checked.ok, checked.message()


def test_down_leaves_alone_what_is_not_its_own(tmp_path: Path) -> None:
    """A state file naming objects that are someone else's now (same names, other
    identities): down touches none of them, says so, and keeps the state file."""
    need_root()
    need("ip")
    bridge, netns = "mlb97-br", "mlb97-st"
    for name, argv in (
        (bridge, ["ip", "link", "show", "dev", bridge]),
        (netns, ["ip", "netns", "exec", netns, "true"]),
    ):
        if subprocess.run(argv, capture_output=True).returncode == 0:
            pytest.skip(f"{name} exists on this machine")
    subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "netns", "add", netns], check=True)
        ifindex = json.loads(
            subprocess.run(["ip", "-j", "link", "show", "dev", bridge], capture_output=True,
                           check=True).stdout
        )[0]["ifindex"]  # fmt: skip
        me = os.getpid()  # this test's own process, with a start time that is not its own
        state = {
            "instance": 97, "prefix": "mlb97", "subnet": "198.18.97.0/24", "link_mbit": 100,
            "guest_mb": 256, "phase": "up", "started_at": 0.0,
            "netns": [{"name": netns, "inode": os.stat(f"/run/netns/{netns}").st_ino + 1}],
            "links": [{"name": bridge, "kind": "bridge", "ifindex": ifindex + 100_000}],
            "processes": [{"role": "sshd@storage", "pid": me, "start_time": 1, "argv": [],
                           "log": "/dev/null"}],
        }  # fmt: skip
        (tmp_path / "state.json").write_text(json.dumps(state))
        result = miglab("sandbox", "down", "--dir", str(tmp_path))
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"link {bridge} is not the one `up` made; left alone" in result.stderr
        assert f"namespace {netns} is not the one `up` made; left alone" in result.stderr
        assert f"pid {me}): not running" in result.stdout  # never signalled
        assert subprocess.run(["ip", "link", "show", "dev", bridge]).returncode == 0
        assert netns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                       text=True).stdout  # fmt: skip
        assert (tmp_path / "state.json").exists()
    finally:
        subprocess.run(["ip", "link", "delete", "dev", bridge], check=True)
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)


# -- the lab as the console sees it --------------------------------------------------------


def test_lab_file_describes_the_sandbox(sandbox: SandboxUnderTest) -> None:
    lab = sandbox.lab
    assert lab.lab.link_mbit == 100
    assert set(lab.hosts) == {"storage", "host1", "host2"}
    assert lab.storage.driver == "tgt" and lab.storage.host == "storage"
    assert lab.storage.tgt_control_port is not None
    assert lab.storage.portal.address == lab.host("storage").address
    assert lab.hypervisor.driver == "qemu" and lab.hypervisor.hosts == ["host1", "host2"]
    addresses = [h.address for h in lab.hosts.values()] + [lab.guest.address]
    assert all(a.startswith("198.18.") for a in addresses), addresses
    assert len(set(addresses)) == 4
    qemu = lab.guest.qemu
    assert qemu is not None and qemu.initrd is not None and qemu.tap == "tap0"
    assert Path(qemu.kernel).is_file() and Path(qemu.initrd).is_file()
    assert f"miglab.ip={lab.guest.address}/" in qemu.append
    assert Path(lab.storage.device).is_file()
    known = lab.host("storage").known_hosts
    assert known is not None
    known_for = {line.split()[0] for line in known.read_text().splitlines()}
    assert known_for == set(addresses)


def test_check_connect_reaches_every_host(sandbox: SandboxUnderTest) -> None:
    result = miglab("check", "--connect", "--json", "--lab", str(sandbox.lab_file))
    assert result.returncode == 0, result.stdout + result.stderr
    hosts = json.loads(result.stdout)["hosts"]
    assert set(hosts) == {"storage", "host1", "host2"}
    for name, report in hosts.items():
        assert report["reachable"], (name, report)
        assert report["error"] is None, (name, report)
    assert hosts["storage"]["tools"]["tgtadm"]
    assert hosts["host1"]["tools"]["qemu-system-x86_64"]


def test_every_host_link_is_shaped_both_ways(sandbox: SandboxUnderTest) -> None:
    rate = sandbox.lab.lab.link_mbit * 1_000_000 // 8  # tc -j reports bytes/s
    for host in ("storage", "host1", "host2"):
        for argv in (
            ["tc", "-j", "qdisc", "show", "dev", sandbox.netns(host)],  # root end: into it
            ["tc", "-n", sandbox.netns(host), "-j", "qdisc", "show", "dev", "eth0"],  # out
        ):
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            roots = [q for q in json.loads(out) if q.get("root")]
            assert [q["kind"] for q in roots] == ["tbf"], (argv, out)
            assert roots[0]["options"]["rate"] == rate, (argv, out)


def test_tgtd_exports_the_disk_to_both_hypervisors(sandbox: SandboxUnderTest) -> None:
    storage = sandbox.lab.storage
    for host in ("host1", "host2"):
        argv = in_netns(sandbox, host, "iscsi-ls", "-s", f"iscsi://{storage.portal}/")
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert f"Target:{storage.iqn} Portal:{storage.portal},1" in result.stdout
        assert re.search(rf"Lun:{storage.lun}\s+Type:DIRECT_ACCESS", result.stdout), result.stdout


# -- a guest on the lab --------------------------------------------------------------------


@pytest.fixture
async def rundir() -> AsyncIterator[Path]:
    path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="mlb-e2e-"))  # short: sockets
    yield path
    await asyncio.to_thread(shutil.rmtree, path, True)


def guest_qemu(
    sandbox: SandboxUnderTest, host: str, rundir: Path, incoming: str | None = None
) -> LocalQemu:
    """QEMU for the guest in ``host``'s namespace, started as the lab file says."""
    lab = sandbox.lab
    qemu = lab.guest.qemu
    assert qemu is not None and qemu.initrd is not None and qemu.tap is not None
    manifest = Path(qemu.kernel).with_name("manifest.json")
    image = GuestImage.model_validate_json(manifest.read_text()).model_copy(
        update={"kernel": Path(qemu.kernel), "initrd": Path(qemu.initrd)}
    )
    portal = lab.storage.portal
    argv = qemu_guest_argv(
        image,
        memory_mb=lab.guest.memory_mb,
        vcpus=lab.guest.vcpus,
        qmp_socket=rundir / f"{host}.qmp",
        serial_log=rundir / f"{host}.log",
        drive=f"iscsi://{portal.address}:{portal.port}/{lab.storage.iqn}/{lab.storage.lun}",
        netdev=qemu.tap,
        mac=qemu.mac,
        incoming=incoming,
        append_extra=qemu.append.split(),  # as the qemu driver passes the lab file's
        name=lab.guest.name,
        qemu_binary=qemu.binary,
    )
    return LocalQemu(
        in_netns(sandbox, host, *argv),
        qmp_socket=rundir / f"{host}.qmp",
        serial_log=rundir / f"{host}.log",
    )


async def guest_answers(sandbox: SandboxUnderTest) -> None:
    # -W 10: an emulated guest on a loaded host may answer late; late is still answering
    # (ping ends as soon as the third reply is in).
    code, out, err = await run(
        in_netns(sandbox, "storage", "ping", "-c", "3", "-i", "0.2", "-W", "10",
                 sandbox.lab.guest.address),
    )  # fmt: skip
    assert code == 0, out + err
    assert " 0% packet loss" in out, out


async def uptime(sandbox: SandboxUnderTest) -> float:
    code, out, err = await run(ssh_guest(sandbox, "cat /proc/uptime"))
    assert code == 0, err
    return float(out.split()[0])


async def test_guest_boots_answers_and_migrates_keeping_its_address(
    sandbox: SandboxUnderTest, rundir: Path
) -> None:
    lab = sandbox.lab
    source = guest_qemu(sandbox, "host1", rundir)
    port = lab.guest.qemu.migration_port if lab.guest.qemu else 4444
    dest_address = lab.host("host2").address
    dest = guest_qemu(sandbox, "host2", rundir, incoming=f"tcp:{dest_address}:{port}")
    pinger: asyncio.subprocess.Process | None = None
    try:
        started = time.monotonic()
        await source.start()
        ready = await source.wait_console(timeout=NO_DEADLINE)
        print(f"\nguest ready after {time.monotonic() - started:.1f} s: {ready}")
        assert f"ip={lab.guest.address}/" in ready and ready.endswith("disks=vda"), ready
        serial = (rundir / "host1.log").read_text(errors="replace")
        assert f"{DISK_MARKER} /dev/vda on {DISK_MOUNT}" in serial, serial[-2000:]
        assert SSH_MARKER in serial, serial[-2000:]
        assert "miglab-init:" not in serial, serial[-2000:]

        # From the storage node (where the probes run by default): ping, then SSH.
        await guest_answers(sandbox)
        code, out, err = await run(ssh_guest(sandbox, "sysbench cpu --time=2 run"), timeout=60)
        assert code == 0, err
        assert re.search(r"events per second:\s+[1-9][\d.]*", out), out
        code, out, err = await run(ssh_guest(sandbox, "mount | grep vda"))
        assert code == 0, err
        assert f"/dev/vda on {DISK_MOUNT} type ext4" in out, out
        marker = f"written on host1 at {time.time()}"
        code, _, err = await run(
            ssh_guest(sandbox, f"echo '{marker}' > {DISK_MOUNT}/e2e-marker && sync")
        )
        assert code == 0, err
        before = await uptime(sandbox)

        # Live migration host1 -> host2 over the shaped link, pinged from the storage node.
        await dest.start()
        src_qmp, dst_qmp = await source.qmp(), await dest.qmp()
        try:
            assert (await dst_qmp.query_status()).status == "inmigrate"
            cap = lab.migrate_bandwidth_mbit * 125_000
            await src_qmp.migrate_set_parameters(max_bandwidth_bytes=cap)
            ping_argv = ping_command(lab.guest.address, interval_s=0.02)
            pinger = await asyncio.create_subprocess_exec(
                *in_netns(sandbox, "storage", *ping_argv), stdout=asyncio.subprocess.PIPE
            )
            await asyncio.sleep(1.0)
            await src_qmp.migrate(f"tcp:{dest_address}:{port}")
            status: MigrationStatus = await src_qmp.query_migrate()
            while not status.finished:  # as long as it takes; a hang is the test's timeout
                await asyncio.sleep(0.2)
                status = await src_qmp.query_migrate()
            assert status.status == "completed", status
            # The destination resumes a moment after the source reports completion.
            while not (await dst_qmp.query_status()).running:
                await asyncio.sleep(0.05)
            assert (await src_qmp.query_status()).status == "postmigrate"
            await asyncio.sleep(2.0)  # the ping runs on past the switch-over
        finally:
            await src_qmp.close()
            await dst_qmp.close()
        pinger.send_signal(signal.SIGINT)
        out_b, _ = await asyncio.wait_for(pinger.communicate(), 10)
        parser = PingParser("storage")
        samples: list[Sample] = []
        for line in out_b.decode().splitlines():
            samples += parser.feed(line)
        samples += parser.finish()
        gaps = unreachable_gaps(samples)
        summary = [s for s in samples if s.values.get("summary")][-1].values
        longest = max((g.duration_s or 0.0 for g in gaps), default=0.0)
        assert status.ram is not None
        print(
            f"migration at {lab.migrate_bandwidth_mbit} Mbit/s over the sandbox link: "
            f"total-time {status.total_time_ms} ms, downtime {status.downtime_ms} ms, "
            f"{status.ram.transferred / 1e6:.1f} MB; ping every 20 ms: "
            f"{summary['transmitted']:.0f} sent, {summary['received']:.0f} received, "
            f"longest silence {longest * 1000:.0f} ms"
        )

        # The same guest, same address, now on host2: it answers, kept its clock and disk.
        await guest_answers(sandbox)
        after = await uptime(sandbox)
        assert after > before, (before, after)
        code, out, err = await run(ssh_guest(sandbox, f"cat {DISK_MOUNT}/e2e-marker"))
        assert code == 0 and out.strip() == marker, (out, err)
        assert "Linux version" not in (rundir / "host2.log").read_text(errors="replace")
        assert READY_MARKER not in (rundir / "host2.log").read_text(errors="replace")
    finally:
        if pinger is not None and pinger.returncode is None:
            pinger.kill()
            await pinger.wait()
        await dest.stop()
        await source.stop()


# -- status, up again, crash, down (these change the sandbox: keep them last) --------------


def test_status_reports_everything_up(sandbox: SandboxUnderTest) -> None:
    result = miglab("sandbox", "status", "--json", "--dir", str(sandbox.directory))
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert status["up"] and status["phase"] == "up"
    assert status["lab_file"] == str(sandbox.lab_file)
    assert len(status["netns"]) == 3 and all(status["netns"].values())
    assert len(status["links"]) == 4 and all(status["links"].values())  # bridge + 3 veths
    assert len(status["processes"]) == 4 and all(status["processes"].values())  # tgtd, 3 sshd


def test_up_when_up_changes_nothing(sandbox: SandboxUnderTest) -> None:
    before = sandbox.state()
    result = miglab("sandbox", "up", "--dir", str(sandbox.directory))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already up" in result.stdout
    assert sandbox.state()["processes"] == before["processes"]


def test_up_after_a_crash_cleans_up_and_comes_back(sandbox: SandboxUnderTest) -> None:
    crashed = sandbox.state()
    for process in crashed["processes"]:
        if process["role"].startswith("sshd@"):
            os.kill(process["pid"], signal.SIGKILL)  # the namespaces, links, tgtd stay
    status = miglab("sandbox", "status", "--dir", str(sandbox.directory))
    assert status.returncode == 1, status.stdout
    assert "NOT COMPLETE" in status.stdout and "MISSING" in status.stdout

    elapsed, result = sandbox_up(sandbox.directory)
    print(f"\nmiglab sandbox up after a crash: {elapsed:.1f} s wall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "taking down what the previous run left" in result.stdout
    tgtd = next(p for p in crashed["processes"] if p["role"].startswith("tgtd"))
    assert not is_running(tgtd["pid"], tgtd["start_time"])  # the old one was stopped
    fresh = sandbox.state()
    assert {p["pid"] for p in fresh["processes"]}.isdisjoint(p["pid"] for p in crashed["processes"])
    check = miglab("check", "--connect", "--json", "--lab", str(sandbox.lab_file))
    assert check.returncode == 0, check.stdout + check.stderr
    assert all(h["reachable"] for h in json.loads(check.stdout)["hosts"].values())


def test_down_leaves_nothing_behind_and_is_safe_twice(sandbox: SandboxUnderTest) -> None:
    state = sandbox.state()
    prefix = state["prefix"]
    assert leftovers(prefix)["netns"] and leftovers(prefix)["links"]
    # A process the sandbox did not start itself, but that lives in its namespace
    # (like a guest booted through a host's sshd): down stops it too.
    stray = subprocess.Popen(
        ["ip", "netns", "exec", sandbox.netns("host2"), "sleep", "300"], cwd=ROOT
    )
    try:
        result = miglab("sandbox", "down", "--dir", str(sandbox.directory))
        assert result.returncode == 0, result.stdout + result.stderr
        assert stray.wait(10) is not None
        assert leftovers(prefix) == {"netns": [], "links": []}
        for process in state["processes"]:
            assert not is_running(process["pid"], process["start_time"]), process
        assert not (sandbox.directory / "state.json").exists()
        for name in state["tgt"]["socket_files"]:
            # Its control socket goes; /var/run/tgtd itself stays while other tgtd use it.
            if Path(name).name.startswith("socket."):
                assert not Path(name).exists(), name
        again = miglab("sandbox", "down", "--dir", str(sandbox.directory))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "no sandbox is up" in again.stdout
        status = miglab("sandbox", "status", "--dir", str(sandbox.directory))
        assert status.returncode == 1 and status.stdout.startswith("down"), status.stdout
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
