"""The fake ``xl`` (tests/support/fake_tools/xl.py) and the Xen driver that drives it.

First the fake against the formats of Xen's sources: its output must be what the
composed transcripts in tests/data/xl are, and parse with backend/drivers/parse_xl.py.
Then the driver, run exactly as on a lab host: ``LocalRunner`` runs ``xl`` found on
PATH (a wrapper script around ``python -m tests.support.fake_tools.xl``); each host has its
own state file, which a small runner wrapper names in the command's environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from backend.config import parse_lab
from backend.drivers.base import DomainInfo, DriverError, HostCommand, Refused
from backend.drivers.factories import hypervisor_driver
from backend.drivers.hv_qemu import QemuDriver
from backend.drivers.hv_xen import XenDriver
from backend.drivers.parse_xl import (
    MigratePhase,
    is_unknown_domain_error,
    parse_xl_info,
    parse_xl_list,
    parse_xl_list_long,
    parse_xl_migrate,
)
from backend.events import DomainState, Event, MigrationFinished, MigrationProgress, Note
from backend.sim.tools import add_device
from backend.transport.base import (
    CommandResult,
    HostRunner,
    LineCallback,
    StreamReaderLike,
    StreamWriterLike,
)
from backend.transport.local import LocalRunner
from tests.conftest import DATA
from tests.support.fake_tools import STATE_ENV
from tests.support.fake_tools import xl as fake
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[2]
XL_DATA = DATA / "xl"
DISK = "/dev/disk/by-path/ip-198.18.0.1:3260-iscsi-iqn.2024-01.lab.storage:disk1-lun-1"
CONFIG = "/etc/xen/guest.cfg"
GUEST_CFG = f"""\
# the study's guest
name = "guest"
type = "pv"
memory = 1024
vcpus = 2
bootloader = "pygrub"
disk = [ 'phy:{DISK},xvda,w' ]
vif = [ 'bridge=xenbr0' ]
on_reboot = "restart"
"""
LAB = f"""\
[lab]
name = "xen-test"
link_mbit = 100
[hosts.storage]
address = "198.18.0.1"
[hosts.xen1]
address = "198.18.0.2"
[hosts.xen2]
address = "198.18.0.3"
[storage]
host = "storage"
driver = "tgt"
iqn = "iqn.2024-01.lab.storage:disk1"
device = "/srv/disk1.img"
portal = "198.18.0.1:3260"
[hypervisor]
driver = "xen"
hosts = ["xen1", "xen2"]
[guest]
name = "guest"
address = "198.18.0.50"
vcpus = 2
memory_mb = 1024
config = "{CONFIG}"
"""


def xen_host(name: str) -> dict[str, Any]:
    """One host's state: Xen with Domain-0, logged in to the shared disk, the guest's cfg."""
    state: dict[str, Any] = {"xen": fake.new_state(name)}
    add_device(state, DISK, 8 << 30, block=True)
    fake.add_config(state, CONFIG, GUEST_CFG)
    return state


def xl(state: dict[str, Any], *args: str, peers: dict[str, Any] | None = None) -> fake.Result:
    return fake.run(["xl", *args], state, peers.get if peers is not None else None)


def events_of(updates: Sequence[Any]) -> list[str]:
    return [u.event for u in updates]


def numberless(text: str) -> list[str]:
    """Lines with every number (domain ids, mfns, lengths, pids) made ``N``."""
    return [re.sub(r"0x[0-9a-f]+|\d+", "N", line) for line in text.splitlines()]


# -- the fake's formats ----------------------------------------------------------------------


def test_list_is_byte_for_byte_the_composed_transcript() -> None:
    state = {"xen": fake.new_state("xen1", dom0_memory=2048, nr_cpus=2)}
    state["xen"]["domains"] += [
        {
            "name": "guest",
            "domid": 5,
            "memory": 1024,
            "vcpus": 2,
            "state": "-b----",
            "cpu_time": 73.2,
        },
        {
            "name": "a-guest-with-a-name-longer-than-forty-columns",
            "domid": 6,
            "memory": 256,
            "vcpus": 1,
            "state": "--p---",
            "cpu_time": 0.4,
        },
        {
            "name": "crashed",
            "domid": 9,
            "memory": 128,
            "vcpus": 1,
            "state": "---sc-",
            "cpu_time": 2.0,
        },
    ]
    code, out, err = xl(state, "list")
    assert (code, err) == (0, "")
    assert out == (XL_DATA / "xl-list-xen1.txt").read_text()
    assert [d.name for d in parse_xl_list(out)][-2:] == [
        "a-guest-with-a-name-longer-than-forty-columns",
        "crashed",
    ]


def test_info_has_4_17_fields_in_order_and_memory_follows_domains() -> None:
    state = xen_host("xen1")
    code, out, _ = xl(state, "info")
    reference = parse_xl_info((XL_DATA / "xl-info-4.17.txt").read_text())
    info = parse_xl_info(out)
    assert code == 0 and [k for k, _ in info.fields] == [k for k, _ in reference.fields]
    assert (info.host, info.total_memory_mib, info.free_memory_mib) == ("xen1", 8066, 6018)
    assert info.xen_version == "4.17.5-pre" and (info.xen_major, info.xen_minor) == (4, 17)
    assert xl(state, "create", CONFIG)[0] == 0
    assert xl(state, "info", "free_memory") == (0, "4994\n", "")  # 6018 - the guest's 1024


def test_create_list_long_shutdown_destroy() -> None:
    state = xen_host("xen1")
    assert xl(state, "create", CONFIG) == (0, "", f"Parsing config from {CONFIG}\n")
    [guest] = [d for d in parse_xl_list(xl(state, "list")[1]) if d.name == "guest"]
    assert (guest.domid, guest.mem_mib, guest.vcpus, str(guest.state)) == (1, 1024, 2, "-b----")
    [config] = parse_xl_list_long(xl(state, "list", "-l", "guest")[1])
    assert (config.domid, config.name, config.memory_mib, config.vcpus) == (1, "guest", 1024, 2)
    assert [(d.target, d.vdev, d.readwrite) for d in config.disks] == [(DISK, "xvda", True)]
    assert config.nics[0].bridge == "xenbr0" and config.nics[0].mac.startswith("00:16:3e:")

    code, _, err = xl(state, "create", CONFIG)
    assert code == 1 and err == (  # libxl_domain.c and libxl_create.c of RELEASE-4.17.5
        f"Parsing config from {CONFIG}\n"
        "libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain 2:Domain with name "
        '"guest" already exists.\n'
        "libxl: error: libxl_create.c:1294:initiate_domain_create: Domain 2:cannot make "
        "domain: -6\n"
    )
    assert xl(state, "shutdown", "-w", "guest") == (
        0,
        "",
        "Shutting down domain 1\nWaiting for 1 domains\n"
        "Domain 1 has been shut down, reason code 0\n",
    )
    code, _, err = xl(state, "destroy", "guest")
    assert code == 1 and is_unknown_domain_error(err)
    assert err == "guest is an invalid domain identifier (rc=-6)\n"
    code, _, err = xl(state, "list", "guest")
    assert code == 1 and is_unknown_domain_error(err)
    assert xl(state, "destroy", "Domain-0")[0] == 1
    assert xl(state, "frobnicate") == (1, "", "command not implemented\n")


def test_create_fails_as_libxl_does() -> None:
    no_disk = {"xen": fake.new_state("xen1")}
    fake.add_config(no_disk, CONFIG, GUEST_CFG)
    code, _, err = xl(no_disk, "create", CONFIG)
    assert code == 1 and f"Disk vdev=xvda failed to stat: {DISK}: No such file" in err
    small = xen_host("xen1")
    small["xen"]["total_memory"] = 2048 + 512
    assert xl(small, "create", CONFIG) == (
        1,
        "",
        f"Parsing config from {CONFIG}\nfailed to free memory for the domain\n",
    )
    code, _, err = xl(small, "create", "/etc/xen/nope.cfg")
    assert code == 1 and "Failed to read config file: /etc/xen/nope.cfg" in err
    fake.add_config(small, "/etc/xen/bad.cfg", 'name = "x"\nmemory = = 3\n')
    code, _, err = xl(small, "create", "/etc/xen/bad.cfg")
    assert code == 1 and "/etc/xen/bad.cfg:2: config parsing error" in err


def test_shutdown_of_a_guest_without_pv_drivers() -> None:
    state = xen_host("xen1")
    xl(state, "create", CONFIG)
    state["xen"]["domains"][-1]["pv_control"] = False
    code, _, err = xl(state, "shutdown", "guest")
    assert code == 1 and err.splitlines()[-2:] == [
        'Use "-F" to fallback to ACPI power event.',
        "shutdown failed (rc=-10)",
    ]
    assert xl(state, "shutdown", "-F", "guest")[0] == 0


def migrated(
    mode: str | None = None, dest_memory: int = 8066
) -> tuple[fake.Result, dict[str, Any], dict[str, Any]]:
    xen1, xen2 = xen_host("xen1"), xen_host("xen2")
    xen2["xen"]["total_memory"] = dest_memory
    xen1["xen"]["fail_migrate"] = mode
    xl(xen1, "create", CONFIG)
    verbose = ["-v"] if mode is None else []  # as in the transcripts
    result = xl(xen1, *verbose, "migrate", "guest", "xen2", peers={"xen2": xen2})
    return result, xen1, xen2


def names(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d.name, str(d.state)) for d in parse_xl_list(xl(state, "list")[1]) if d.domid]


@pytest.mark.parametrize(
    ("mode", "transcript", "on_source", "on_dest"),
    [
        (None, "xl-migrate-v2-4.17-verbose.txt", [], [("guest", "-b----")]),
        ("target", "xl-migrate-v2-4.17-target-failure.txt", [("guest", "-b----")], []),
        (
            "handshake",
            "xl-migrate-v2-4.17-handshake-failure.txt",
            [("guest--migratedaway", "---ss-")],
            [("guest--incoming", "--p---")],
        ),
        ("unreachable", "xl-migrate-v2-4.17-no-receiver.txt", [("guest", "-b----")], []),
    ],
)
def test_migrate_says_what_the_transcripts_say_and_moves_the_guest(
    mode: str | None, transcript: str, on_source: list[Any], on_dest: list[Any]
) -> None:
    (code, out, err), xen1, xen2 = migrated(mode)
    reference = (XL_DATA / transcript).read_text()
    expected_code = 0 if mode is None else 1
    assert (code, out) == (expected_code, "")
    ours, theirs = parse_xl_migrate(err, code), parse_xl_migrate(reference, expected_code)
    assert events_of(ours) == events_of(theirs)
    assert ours[-1].phase is theirs[-1].phase
    assert ours[-1].resumed_at_source == theirs[-1].resumed_at_source
    assert numberless(err) == numberless(reference)  # the same lines, our own numbers
    assert names(xen1) == on_source and names(xen2) == on_dest


def test_migrate_to_a_host_without_room_or_name() -> None:
    (code, _, err), xen1, xen2 = migrated(dest_memory=2048 + 512)
    [final] = [u for u in parse_xl_migrate(err, code) if u.final]
    assert code == 1 and final.event == "failed-resumed" and final.resumed_at_source
    assert "migration target: Domain creation failed (code -3)." in final.causes
    assert names(xen1) == [("guest", "-b----")] and names(xen2) == []
    code, _, err = xl(xen1, "migrate", "guest", "xen9", peers={})
    assert code == 1 and err.startswith("ssh: Could not resolve hostname xen9")
    assert xl(xen1, "migrate", "nosuch", "xen2", peers={"xen2": xen2})[0] == 1


async def test_the_program_keeps_its_state_in_files(tmp_path: Path) -> None:
    """``python -m tests.support.fake_tools.xl`` as a process: per-host state files, peers."""
    paths = {name: tmp_path / f"{name}.json" for name in ("xen1", "xen2")}
    for name, path in paths.items():
        path.write_text(json.dumps(xen_host(name)))
    peers = json.dumps({"198.18.0.3": str(paths["xen2"])})

    async def run(host: str, *args: str) -> tuple[int | None, str, str]:
        env = {
            **os.environ,
            STATE_ENV: str(paths[host]),
            fake.PEERS_ENV: peers,
            "PYTHONPATH": str(ROOT),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.fake_tools.xl", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        return proc.returncode, out.decode(), err.decode()

    assert (await run("xen1", "create", CONFIG))[0] == 0
    code, _, err = await run("xen1", "-v", "migrate", "guest", "198.18.0.3")
    assert code == 0 and err.endswith("Migration successful.\n"), err
    on_xen2 = json.loads(paths["xen2"].read_text())["xen"]["domains"]
    assert [d["name"] for d in on_xen2] == ["Domain-0", "guest"]
    code, out, _ = await run("xen2", "list", "guest")
    assert code == 0 and parse_xl_list(out)[0].name == "guest"
    assert (await run("xen1", "list", "guest"))[0] == 1
    code, _, err = await run("xen2", "migrate", "guest", "198.18.0.9")
    assert code == 1 and "Could not resolve hostname 198.18.0.9" in err


# -- the driver through LocalRunner ---------------------------------------------------------


class HostEnv(HostRunner):
    """A LocalRunner whose commands see ``env`` (the fake host's state file): two
    "hosts" on one machine, each with its own xl state."""

    def __init__(self, name: str, publish: Callable[[Event], None], env: dict[str, str]) -> None:
        self.name = name
        self.local = LocalRunner(name, publish)
        self.prefix = ["env", *(f"{k}={v}" for k, v in env.items())]

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = 60.0,
        on_line: LineCallback | None = None,
        log_output: bool = True,
        long_running: bool = False,
    ) -> CommandResult:
        return await self.local.run(
            [*self.prefix, *argv],
            timeout=timeout,
            on_line=on_line,
            log_output=log_output,
            long_running=long_running,
        )

    async def open_unix_stream(self, path: str) -> tuple[StreamReaderLike, StreamWriterLike]:
        return await self.local.open_unix_stream(path)

    async def close(self) -> None:
        await self.local.close()

    @property
    def connected(self) -> bool:
        return True


class XenLab:
    def __init__(self, directory: Path) -> None:
        self.events: list[Event] = []
        self.states = {name: directory / f"{name}.json" for name in ("xen1", "xen2")}
        for name, path in self.states.items():
            path.write_text(json.dumps(xen_host(name)))
        peers = {"198.18.0.2": str(self.states["xen1"]), "198.18.0.3": str(self.states["xen2"])}
        self.runners = {
            name: HostEnv(
                name, self.events.append, {STATE_ENV: str(path), fake.PEERS_ENV: json.dumps(peers)}
            )
            for name, path in self.states.items()
        }
        self.lab = parse_lab(LAB)
        driver = hypervisor_driver(self.lab, self.runners, self.events.append)
        assert isinstance(driver, XenDriver)
        self.driver = driver

    def state(self, host: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.states[host].read_text())
        return data

    def set(self, host: str, **values: Any) -> None:
        data = self.state(host)
        data["xen"].update(values)
        self.states[host].write_text(json.dumps(data))

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def xen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[XenLab]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "xl"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m tests.support.fake_tools.xl "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    lab = XenLab(tmp_path)
    yield lab
    for runner in lab.runners.values():
        await runner.close()


async def test_looking_at_hosts(xen: XenLab) -> None:
    driver = xen.driver
    assert await driver.domains("xen1") == []  # Domain-0 is not a guest
    info = await driver.info("xen1")
    assert (info.free_memory_mb, info.total_memory_mb, info.hypervisor_version) == (
        6018,
        8066,
        "Xen 4.17.5-pre",
    )
    assert await driver.domain_config("xen1") is None
    with pytest.raises(DriverError, match="not a hypervisor host"):
        await driver.domains("storage")


async def test_create_looks_first_and_refuses_a_second_copy(xen: XenLab) -> None:
    driver = xen.driver
    plan = await driver.create("xen1", dry_run=True)
    assert plan.dry_run and plan.commands == [HostCommand("xen1", ("xl", "create", CONFIG))]
    assert await driver.domains("xen1") == []  # the dry run created nothing

    made = await driver.create("xen1")
    assert made.changed and made.commands == plan.commands
    assert await driver.domains("xen1") == [DomainInfo("guest", "blocked", 1024, 2, 1)]
    assert (await driver.domain_config("xen1")).disks[0].target == DISK  # type: ignore[union-attr]
    assert [(e.host, e.domain, e.state) for e in xen.of(DomainState)] == [
        ("xen1", "guest", "blocked")
    ]
    again = await driver.create("xen1")
    assert not again.changed and again.commands == []
    with pytest.raises(Refused, match="two copies on one shared disk"):
        await driver.create("xen2")


async def test_migrate_reports_phases_time_and_where_the_guest_is(xen: XenLab) -> None:
    driver = xen.driver
    await driver.create("xen1")
    assert await driver.migrate_plan("xen1", "xen2") == [
        HostCommand("xen1", ("xl", "-vvv", "migrate", "guest", "198.18.0.3"))
    ]
    outcome = await driver.migrate("xen1", "xen2")
    assert outcome.ok and outcome.error is None
    # Measured between the suspend request and "Domain started" (-vvv prints both).
    assert outcome.downtime_ms is not None and outcome.downtime_ms >= 0
    assert outcome.total_time_ms and outcome.total_time_ms > 0
    phases = [p.phase for p in xen.of(MigrationProgress)]
    assert phases[0] == "started" and phases[-1] == "done"
    assert {"precopy", "stop-and-copy"} <= set(phases) and phases == sorted(
        phases, key=[p.value for p in MigratePhase].index
    )
    [finished] = xen.of(MigrationFinished)
    assert (finished.ok, finished.source, finished.dest, finished.downtime_ms) == (
        True,
        "xen1",
        "xen2",
        outcome.downtime_ms,
    )
    assert finished.total_time_ms == outcome.total_time_ms
    assert finished.guest_host == "xen2"
    assert await driver.domains("xen2") == [DomainInfo("guest", "blocked", 1024, 2, 1)]
    assert await driver.domains("xen1") == []
    states = [(e.host, e.domain, e.state) for e in xen.of(DomainState)]
    assert states[-2:] == [("xen1", "guest", "absent"), ("xen2", "guest", "blocked")]
    with pytest.raises(Refused, match="not running on xen1"):
        await driver.migrate("xen1", "xen2")


async def test_failed_migrations_say_where_the_guest_is(xen: XenLab) -> None:
    driver = xen.driver
    await driver.create("xen1")
    xen.set("xen1", fail_migrate="unreachable")
    outcome = await driver.migrate("xen1", "xen2")
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.startswith("ssh: connect to host 198.18.0.3 port 22: Connection refused")
    assert outcome.error.endswith("(the guest runs on xen1)")
    assert xen.of(MigrationFinished)[-1].guest_host == "xen1"

    xen.set("xen1", fail_migrate="handshake")
    outcome = await driver.migrate("xen1", "xen2")
    assert not outcome.ok and "** Migration failed during final handshake **" in (
        outcome.error or ""
    )
    assert "no single running copy" in (outcome.error or "")
    assert "xen1: guest--migratedaway (shutdown)" in (outcome.error or "")
    assert xen.of(MigrationFinished)[-1].guest_host is None
    assert any(n.level == "error" for n in xen.of(Note))
    with pytest.raises(Refused):
        await driver.create("xen1")  # leftovers of the guest on both hosts
    # destroy removes the leftovers, whatever their name
    gone = await driver.destroy("xen1")
    assert gone.commands == [HostCommand("xen1", ("xl", "destroy", "guest--migratedaway"))]
    await driver.destroy("xen2")
    assert await driver.domains("xen1") == [] and await driver.domains("xen2") == []


async def test_cancel_stops_xl_while_memory_is_copied(xen: XenLab) -> None:
    driver = xen.driver
    await driver.create("xen1")
    xen.set("xen1", migrate_stage_delay_s=600.0)  # held after its first stage: no race
    migration = asyncio.create_task(driver.migrate("xen1", "xen2"))
    await until(
        lambda: any(p.phase == "precopy" for p in xen.of(MigrationProgress)) or migration.done()
    )
    assert not migration.done()
    assert any(d.name == "guest--incoming" for d in await driver.domains("xen2"))
    await driver.cancel("xen1")
    outcome = await migration  # xl stopped: it ends at once (a hang is the test's timeout)
    assert (
        not outcome.ok
        and outcome.error == "cancelled: xl migrate was stopped (the guest runs on xen1)"
    )
    assert await driver.domains("xen1") == [DomainInfo("guest", "blocked", 1024, 2, 1)]
    assert await driver.domains("xen2") == []  # the receiver destroyed its copy


async def test_shutdown(xen: XenLab) -> None:
    driver = xen.driver
    assert not (await driver.shutdown("xen1")).changed
    await driver.create("xen1")
    done = await driver.shutdown("xen1")
    assert done.commands == [HostCommand("xen1", ("xl", "shutdown", "-w", "guest"))]
    assert await driver.domains("xen1") == []
    assert xen.of(DomainState)[-1].state == "absent"


def test_the_factory_picks_the_driver() -> None:
    runners: dict[str, HostRunner] = {}
    assert isinstance(hypervisor_driver(parse_lab(LAB), runners, lambda e: None), XenDriver)
    qemu_lab = (
        LAB.replace('driver = "xen"', 'driver = "qemu"')
        + '[guest.qemu]\nkernel = "/boot/vmlinuz"\n'
    )
    assert isinstance(hypervisor_driver(parse_lab(qemu_lab), runners, lambda e: None), QemuDriver)
