"""The Xen driver with ``toolstack = "xm"`` (Xen 3.x), against a fake xm (tests/support).

First the fake against the published captures (tests/data/xm): it must print what they
show. Then lab.toml's key, and the driver run as on a lab host: ``LocalRunner`` runs
``xm`` found on PATH (a wrapper around ``python -m tests.support.fake_xm``), each host
with its own state file.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from backend.config import parse_lab
from backend.drivers.base import DomainInfo, DriverError, HostCommand
from backend.drivers.factories import hypervisor_driver
from backend.drivers.hv_xen import XenDriver
from backend.drivers.parse_xm import XmMigrateError, parse_xm_info, parse_xm_list, parse_xm_migrate
from backend.events import DomainState, Event, MigrationFinished, MigrationProgress, Note
from backend.sim.clock import VirtualRuntime
from backend.sim.commands.base import Captured
from backend.tomlfile import ConfigError
from backend.transport.base import (
    CommandResult,
    HostRunner,
    LineCallback,
    StreamReaderLike,
    StreamWriterLike,
)
from backend.transport.local import LocalRunner
from tests.conftest import DATA
from tests.support import fake_xm as fake
from tests.support.waiting import until
from tests.unit.test_sim_xl_messages import execute, exported_world

ROOT = Path(__file__).resolve().parents[2]
XM_DATA = DATA / "xm"
CONFIG = "/etc/xen/guest.cfg"
LAB = f"""\
[lab]
name = "xm-test"
link_mbit = 100
[hosts.storage]
address = "198.18.0.1"
[hosts.xen1]
address = "198.18.0.2"
[hosts.xen2]
address = "198.18.0.3"
[storage]
host = "storage"
driver = "iet"
iqn = "iqn.2009-06.br.ufla.lab:guest-disk"
device = "/dev/sdb1"
portal = "198.18.0.1:3260"
[hypervisor]
driver = "xen"
toolstack = "xm"
hosts = ["xen1", "xen2"]
[guest]
name = "guest"
address = "198.18.0.50"
vcpus = 2
memory_mb = 1024
config = "{CONFIG}"
"""


def xm_host(name: str) -> dict[str, Any]:
    state = fake.new_state(name)
    state["configs"][CONFIG] = {"name": "guest", "memory": 1024, "vcpus": 2}
    return state


def numberless(text: str) -> list[str]:
    return [re.sub(r"\d+", "N", line) for line in text.splitlines()]


# -- the fake against the captures ----------------------------------------------------------


def test_fake_list_is_byte_for_byte_the_xen_3_2_capture() -> None:
    capture = (XM_DATA / "xm-list-3.2-after-migrate.txt").read_text().splitlines(keepends=True)
    table = capture[1:-1]  # without the prompts
    domains = [
        {"name": d.name, "domid": d.domid, "memory": d.mem_mib, "vcpus": d.vcpus,
         "state": str(d.state), "cpu_time": d.cpu_time_s}
        for d in parse_xm_list("".join(table)).domains
    ]  # fmt: skip
    assert fake.list_output(domains) == "".join(table)


def test_fake_info_has_the_xen_3_3_keys_in_order_and_this_hosts_memory() -> None:
    reference = parse_xm_info((XM_DATA / "xm-info-3.3-forum.txt").read_text())
    state = xm_host("xen1")
    info = parse_xm_info(fake.info_output(state))
    assert [k for k, _ in info.fields] == [k for k, _ in reference.fields]
    assert info.lines_not_understood == 0
    assert (info.host, info.total_memory_mib, info.free_memory_mib) == ("xen1", 4096, 3072)
    assert info.xen_version == "3.3.0"


def test_fake_migrate_failure_is_the_captured_one(tmp_path: Path) -> None:
    capture = (XM_DATA / "xm-migrate-3.2-xc_save-failed.txt").read_text()
    src, dst = tmp_path / "xen1.json", tmp_path / "xen2.json"
    xen1 = xm_host("xen1")
    fake.run(["create", CONFIG], xen1)
    xen1["fail_migrate"] = "save"
    src.write_text(json.dumps(xen1))
    dst.write_text(json.dumps(xm_host("xen2")))
    os.environ[fake.PEERS_ENV] = json.dumps({"xen2": str(dst)})
    try:
        code, out, err = fake.migrate(str(src), ["--live", "guest", "xen2"])
    finally:
        del os.environ[fake.PEERS_ENV]
    prompts = [line for line in capture.splitlines() if line.startswith("root@")]
    assert code == 1 and numberless(err + out) == [
        line for line in numberless(capture) if line not in numberless("\n".join(prompts))
    ]
    ours, theirs = parse_xm_migrate(err + out, code), parse_xm_migrate(capture)
    assert ours.kind is theirs.kind is XmMigrateError.SAVE_FAILED
    assert ours.lines_not_understood == 0


# -- lab.toml ----------------------------------------------------------------------------


def test_the_toolstack_key() -> None:
    assert parse_lab(LAB).hypervisor.toolstack == "xm"
    assert parse_lab(LAB.replace('toolstack = "xm"\n', "")).hypervisor.toolstack == "xl"
    with pytest.raises(ConfigError) as bad:
        parse_lab(LAB.replace('toolstack = "xm"', 'toolstack = "xend"'), file="lab.toml")
    line = LAB.splitlines().index('toolstack = "xm"') + 1
    assert str(bad.value).startswith(f"lab.toml:{line}: hypervisor.toolstack: ")
    assert "'xl' or 'xm'" in str(bad.value)


def test_the_factory_gives_the_xen_driver_running_xm() -> None:
    driver = hypervisor_driver(parse_lab(LAB), {}, lambda e: None)
    assert isinstance(driver, XenDriver)
    assert (driver.toolstack.name, driver.xl) == ("xm", ("xm",))
    xl_driver = hypervisor_driver(parse_lab(LAB.replace('"xm"', '"xl"')), {}, lambda e: None)
    assert isinstance(xl_driver, XenDriver) and xl_driver.xl == ("xl",)


# -- the driver through LocalRunner --------------------------------------------------------


class HostEnv(HostRunner):
    """A LocalRunner whose commands see ``env``: two "hosts" on one machine."""

    def __init__(self, name: str, publish: Any, env: dict[str, str]) -> None:
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
        redact: Sequence[str] = (),
    ) -> CommandResult:
        return await self.local.run(
            [*self.prefix, *argv],
            timeout=timeout,
            on_line=on_line,
            log_output=log_output,
            long_running=long_running,
            redact=redact,
        )

    async def open_unix_stream(self, path: str) -> tuple[StreamReaderLike, StreamWriterLike]:
        return await self.local.open_unix_stream(path)

    async def close(self) -> None:
        await self.local.close()

    @property
    def connected(self) -> bool:
        return True


class XmLab:
    def __init__(self, directory: Path) -> None:
        self.events: list[Event] = []
        self.states = {name: directory / f"{name}.json" for name in ("xen1", "xen2")}
        for name, path in self.states.items():
            path.write_text(json.dumps(xm_host(name)))
        peers = {"198.18.0.2": str(self.states["xen1"]), "198.18.0.3": str(self.states["xen2"])}
        env = {fake.PEERS_ENV: json.dumps(peers)}
        self.runners = {
            name: HostEnv(name, self.events.append, {**env, fake.STATE_ENV: str(path)})
            for name, path in self.states.items()
        }
        driver = hypervisor_driver(parse_lab(LAB), self.runners, self.events.append)
        assert isinstance(driver, XenDriver)
        self.driver = driver

    def set(self, host: str, **values: Any) -> None:
        data = json.loads(self.states[host].read_text())
        data.update(values)
        self.states[host].write_text(json.dumps(data))

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def xm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[XmLab]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "xm"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m tests.support.fake_xm "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    lab = XmLab(tmp_path)
    yield lab
    for runner in lab.runners.values():
        await runner.close()


async def test_looking_at_hosts_with_xm(xm: XmLab) -> None:
    driver = xm.driver
    assert await driver.domains("xen1") == []  # Domain-0 is not a guest
    info = await driver.info("xen1")
    assert (info.free_memory_mb, info.total_memory_mb, info.hypervisor_version) == (
        3072,
        4096,
        "Xen 3.3.0",
    )
    with pytest.raises(DriverError, match="xl list -l"):
        await driver.domain_config("xen1")


async def test_create_shutdown_destroy_run_xm(xm: XmLab) -> None:
    driver = xm.driver
    made = await driver.create("xen1")
    assert made.commands == [HostCommand("xen1", ("xm", "create", CONFIG))]
    assert await driver.domains("xen1") == [DomainInfo("guest", "blocked", 1024, 2, 1)]
    done = await driver.shutdown("xen1")
    assert done.commands == [HostCommand("xen1", ("xm", "shutdown", "-w", "guest"))]
    assert await driver.domains("xen1") == []
    await driver.create("xen1")
    gone = await driver.destroy("xen1")
    assert gone.commands == [HostCommand("xen1", ("xm", "destroy", "guest"))]
    assert [(e.host, e.domain, e.state) for e in xm.of(DomainState)][-1] == (
        "xen1",
        "guest",
        "absent",
    )


async def test_migrate_runs_xm_migrate_live_and_invents_no_progress(xm: XmLab) -> None:
    driver = xm.driver
    await driver.create("xen1")
    assert await driver.migrate_plan("xen1", "xen2") == [
        HostCommand("xen1", ("xm", "migrate", "--live", "guest", "198.18.0.3"))
    ]
    outcome = await driver.migrate("xen1", "xen2")
    assert outcome.ok and outcome.error is None
    assert outcome.total_time_ms is not None and outcome.total_time_ms > 0  # measured
    assert (outcome.downtime_ms, outcome.iterations, outcome.transferred_bytes) == (
        None,
        None,
        None,
    )
    progress = xm.of(MigrationProgress)
    assert [(p.phase, p.xl_event) for p in progress] == [
        ("started", "no-progress"),
        ("done", "exit"),
    ]
    assert all(p.iteration is None and p.transferred_bytes is None for p in progress)
    [finished] = xm.of(MigrationFinished)
    assert (finished.ok, finished.guest_host, finished.iterations, finished.downtime_ms) == (
        True,
        "xen2",
        None,
        None,
    )
    assert finished.total_time_ms == outcome.total_time_ms
    assert await driver.domains("xen2") == [DomainInfo("guest", "blocked", 1024, 2, 1)]
    assert await driver.domains("xen1") == []


async def test_a_failed_xm_migrate_says_why_and_where_the_guest_is(xm: XmLab) -> None:
    driver = xm.driver
    await driver.create("xen1")
    xm.set("xen1", fail_migrate="save")
    outcome = await driver.migrate("xen1", "xen2")
    assert not outcome.ok and outcome.error == (
        "/usr/lib/xen/bin/xc_save 4 1 0 0 1 failed (the guest runs on xen1)"
    )
    assert xm.of(MigrationProgress)[-1].phase == "failed"
    assert xm.of(MigrationFinished)[-1].guest_host == "xen1"
    assert any(n.level == "error" and "xc_save" in n.text for n in xm.of(Note))


async def test_during_a_migration_the_source_copy_is_migrating_and_cannot_be_cancelled(
    xm: XmLab, tmp_path: Path
) -> None:
    driver = xm.driver
    await driver.create("xen1")
    release = tmp_path / "release"
    xm.set("xen1", migrate_hold=str(release))
    migration = asyncio.create_task(driver.migrate("xen1", "xen2"))
    await until(lambda: any(p.phase == "started" for p in xm.of(MigrationProgress)))

    async def renamed() -> bool:
        return [d.name for d in await driver.domains("xen1")] == ["migrating-guest"]

    while not await renamed():
        await asyncio.sleep(0.02)
    assert [(d.name, d.state) for d in await driver.domains("xen2")] == [("guest", "paused")]
    assert ("xen1", "migrating-guest", "blocked") in [
        (e.host, e.domain, e.state) for e in xm.of(DomainState)
    ]  # a copy of the guest: is_copy knows xend's name for it
    await driver.cancel("xen1")
    assert "cannot cancel" in xm.of(Note)[-1].text and not migration.done()
    release.touch()
    outcome = await migration
    assert outcome.ok and xm.of(MigrationFinished)[-1].guest_host == "xen2"


# -- the simulated lab's xm (backend/sim/commands/xm.py) ------------------------------------


async def test_the_simulated_xm_speaks_the_captured_formats() -> None:
    world = await exported_world()
    config = world.guest_config_path
    code, out = await execute(world, "xenserver1", ["xm", "create", config])
    assert code == 0 and out.text("stdout") == (
        f'Using config file "{config}".\nStarted domain guest (id=1)\n'
    )
    code, out = await execute(world, "xenserver1", ["xm", "list"])
    table = out.text("stdout")
    reference = (XM_DATA / "xm-list-3.2-after-migrate.txt").read_text().splitlines()[1]
    assert code == 0 and table.splitlines()[0] == reference  # the header, byte for byte
    listed = parse_xm_list(table)
    assert listed.lines_not_understood == 0
    assert [(d.name, d.domid, d.mem_mib, d.vcpus) for d in listed.domains][1] == (
        "guest",
        1,
        1024,
        2,
    )
    code, out = await execute(world, "xenserver1", ["xm", "info"])
    info = parse_xm_info(out.text("stdout"))
    reference_info = parse_xm_info((XM_DATA / "xm-info-3.3-forum.txt").read_text())
    assert [k for k, _ in info.fields] == [k for k, _ in reference_info.fields]
    assert info.xen_version == "3.3.0" and info.lines_not_understood == 0
    code, out = await execute(world, "xenserver2", ["xm", "list", "guest"])
    assert (code, out.text("stderr")) == (3, "Error: Domain 'guest' does not exist.\n")


async def test_the_simulated_xm_migrates_silently_under_xends_names() -> None:
    world = await exported_world()
    await execute(world, "xenserver1", ["xm", "create", world.guest_config_path])
    runtime = world.runtime
    assert isinstance(runtime, VirtualRuntime)
    seen: list[tuple[str, ...]] = []

    async def migrate_and_look() -> int:
        out = Captured(runtime)
        migration = asyncio.ensure_future(
            world.execute(
                world.node("xenserver1"), ["xm", "migrate", "--live", "guest", "xenserver2"], out
            )
        )
        while not migration.done():
            for host in ("xenserver1", "xenserver2"):
                look = Captured(runtime)
                await world.execute(world.node(host), ["xm", "list"], look)
                names = tuple(d.name for d in parse_xm_list(look.text()).domains if d.domid)
                seen.append((host, *names))
            await runtime.sleep(0.25)
        assert out.lines == []  # xm prints nothing when it worked
        return await migration

    assert await runtime.run(migrate_and_look()) == 0
    assert ("xenserver1", "migrating-guest") in seen and ("xenserver2", "guest") in seen
    assert not [look for look in seen if look[0] == "xenserver2" and "migrating-guest" in look]
    code, out = await execute(world, "xenserver2", ["xm", "list", "guest"])
    assert code == 0 and parse_xm_list(out.text()).domains[0].name == "guest"
    code, out = await execute(world, "xenserver1", ["xm", "migrate", "guest", "xenserver2"])
    assert code == 3 and out.text("stderr") == "Error: Domain 'guest' does not exist.\n"
