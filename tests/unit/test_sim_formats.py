"""The simulated tools print the real tools' formats, and the real parsers read them.

Two kinds of check:

* renderers fed the numbers of a real capture (``tests/data``) reproduce the capture's
  lines byte for byte: the simulator's format strings are the tools' own;
* a simulated run, fed to the very parser that reads the real captures, yields samples
  of the same shape (same value keys) as the capture does: one code path, no special
  case for the simulator.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from backend.check import LAB_TOOLS, probe_host
from backend.config import parse_lab
from backend.drivers import parse_iet
from backend.drivers.parse_xl import (
    MigratePhase,
    XlMigrateParser,
    parse_xl_info,
    parse_xl_list,
    parse_xl_list_long,
)
from backend.events import Sample
from backend.probes import (
    PROBES,
    build_command,
    dbench_command,
    dirtier_command,
    is_summary,
    make_argv,
    parse_lines,
    ping_command,
    sysbench_cpu_command,
    sysbench_memory_command,
)
from backend.sim.clock import VirtualRuntime
from backend.sim.commands import dbench, ping, sysbench
from backend.sim.commands.base import Captured
from backend.sim.commands.xl import list_row, print_stats
from backend.sim.labs import build_world, model_for, preparation
from backend.sim.model import DomainRow
from backend.sim.precopy import Record
from backend.sim.study import STUDY_LAB_TOML, study_lab
from backend.sim.world import World
from backend.transport.base import CommandRecorder, CommandResult, HostRunner
from tests.conftest import DATA
from tests.support.sim_experiment import Experiment, parse, run_experiment

PROBE_DATA = DATA / "probes"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# -- renderers against captures --------------------------------------------------------------


def test_ping_lines_match_the_capture() -> None:
    captured = lines(PROBE_DATA / "ping-loopback-c10-i0.2.txt")
    reply = re.compile(r"\[(\S+)\] 64 bytes from (\S+): icmp_seq=(\d+) ttl=64 time=(\S+) ms")
    rtts = []
    for line in captured[1:11]:
        m = reply.fullmatch(line)
        assert m is not None
        rtts.append(round(float(m[4]) * 1000))
        assert ping.reply_line(float(m[1]), m[2], int(m[3]), rtts[-1]) == line
    assert ping.summary_lines("127.0.0.1", 10, rtts, 1835) == captured[11:]
    assert ping.no_answer_line(1795769116.957158, 5) == (
        "[1795769116.957158] no answer yet for icmp_seq=5"
    )
    assert [ping.format_rtt(x) for x in (77, 5123, 42260, 123400)] == [
        "0.077",
        "5.12",
        "42.3",
        "123",
    ]


def test_sysbench_cpu_lines_match_the_capture() -> None:
    captured = lines(PROBE_DATA / "sysbench-cpu-t20-time3-report1.txt")
    opts = sysbench.parse(sysbench_cpu_command(threads=20, time_s=3, max_prime=1000))
    header = sysbench.header(opts)
    assert captured[: len(header)] == header
    assert captured[len(header)] == sysbench.cpu_interval(1, 20, 62091.41, 95, 0.03)
    totals = sysbench.Totals(
        time_s=3.0019,
        events=185656,
        lat_min=0.03,
        lat_avg=0.31,
        lat_max=56.04,
        lat_pct=0.03,
        percentile=95,
        events_stddev=492.94,
        exec_avg=2.9104,
        exec_stddev=0.08,
        threads=20,
        lat_sum=58208.06,
    )
    summary = sysbench.cpu_summary(totals)
    # The capture's "events per second" is sysbench's own division: 185656 / 3.0019 s.
    summary[1] = "    events per second: 61814.06"
    assert captured[-len(summary) :] == summary


def test_sysbench_memory_lines_match_the_capture() -> None:
    captured = lines(PROBE_DATA / "sysbench-memory-write-seq-t2-time5-report1.txt")
    argv = sysbench_memory_command(threads=2, time_s=5, total_size="1T")
    header = sysbench.header(sysbench.parse(argv))
    assert captured[: len(header)] == header
    assert captured[len(header)] == sysbench.memory_interval(1, 7342.05)
    start = captured.index("Total operations: 36893890 (7376159.54 per second)")
    totals = sysbench.Totals(5.0002, 36893890, 0.0, 0.0, 7.24, 0.0, 95, 142512.0, 2.5284, 0.0, 2)
    mine = sysbench.memory_summary(totals, 36029.19)
    mine[0] = captured[start]  # per second: sysbench's own division of the same numbers
    mine[2] = captured[start + 2]
    ours = [x for x in mine if not x.strip().startswith(("sum:", "events (avg"))]
    theirs = [x for x in captured[start:] if not x.strip().startswith(("sum:", "events (avg"))]
    assert theirs == ours


def test_dbench_lines_match_the_capture() -> None:
    captured = lines(PROBE_DATA / "dbench-t10-c2.txt")
    assert dbench.progress(2, 57298, 650.41, "warmup", 1, 4.706) in captured
    assert dbench.progress(2, 171618, 611.47, "execute", 1, 10.473) in captured
    assert dbench.cleanup(2, 10) in captured and dbench.cleanup(0, 10) in captured
    assert dbench.throughput(612.315, 2, 10.473) == captured[-1]
    table = dbench.operation_table(1_000_000, 10.464)
    start = captured.index(table[0])
    assert captured[start + 1] == table[1]
    for ours, theirs in zip(table[2:], captured[start + 2 : start + 18], strict=True):
        assert ours.split()[0] == theirs.split()[0]
        assert len(ours) == len(theirs)  # same columns


def test_xl_rows_and_statistics_match_the_composed_transcripts() -> None:
    listed = lines(DATA / "xl" / "xl-list-xen1.txt")
    assert list_row(DomainRow("Domain-0", 0, 2048, 2, "r-----", 1234.5)) == listed[1]
    long_name = "a-guest-with-a-name-longer-than-forty-columns"
    assert list_row(DomainRow(long_name, 6, 256, 1, "--p---", 0.4)) == listed[3]
    transcript = lines(DATA / "xl" / "xl-migrate-v1-4.4-verbose.txt")
    first = Record(0, "round", sent=32768, dirtied=1867, duration_s=11.452, dom0_pct=7, guest_pct=1)
    assert "xc: detail: " + print_stats(first) in transcript


# -- simulated output through the real parsers ---------------------------------------------


def keys(samples: Sequence[Sample]) -> tuple[set[str], set[str]]:
    """Value keys of the readings and of the summary."""
    readings = {k for s in samples if not is_summary(s) for k in s.values}
    summary = {k for s in samples if is_summary(s) for k in s.values}
    return readings, summary


@pytest.mark.parametrize(
    ("kind", "capture", "argv"),
    [
        ("sysbench-cpu", "sysbench-cpu-t20-time3-report1.txt",
         sysbench_cpu_command(threads=20, time_s=20, max_prime=1000)),
        ("sysbench-memory", "sysbench-memory-write-seq-t2-time5-report1.txt",
         sysbench_memory_command(threads=2, time_s=20, total_size="1T")),
        ("dbench", "dbench-t20-c2-loadfile.txt", dbench_command(2, time_s=20)),
        ("dirtier", "dirtier-dash-256mib-8rounds.txt", dirtier_command(256, rounds=8)),
        ("build", "build-make-j2-kbuild-quiet.txt",
         build_command(make_argv(2), directory="/usr/src/linux")),
    ],
)  # fmt: skip
async def test_guest_programs_parse_like_the_real_captures(
    kind: str, capture: str, argv: list[str]
) -> None:
    real = parse_lines(PROBES[kind].new_parser("real"), lines(PROBE_DATA / capture))
    outcome = await run_experiment(
        Experiment(workloads=[argv], migrate=False, baseline_s=30 if kind != "build" else 60)
    )
    simulated = parse(PROBES[kind].new_parser, outcome.workloads[0], outcome.epoch)
    real_keys, sim_keys = keys(real), keys(simulated)
    if kind == "build":
        # The capture's build finished; the simulated kernel compile is stopped.
        assert real_keys[0] == sim_keys[0]
    else:
        assert real_keys == sim_keys
    assert len([s for s in simulated if not is_summary(s)]) >= 8


async def test_ping_parses_like_the_real_capture() -> None:
    real = parse_lines(
        PROBES["ping"].new_parser("real"), lines(PROBE_DATA / "ping-loopback-c10-i0.2.txt")
    )
    argv = ping_command("192.168.0.50", interval_s=0.2, count=10)
    outcome = await run_experiment(
        Experiment(probes=[("iSCSIserver", argv)], migrate=False, baseline_s=5, after_s=0)
    )
    simulated = parse(PROBES["ping"].new_parser, outcome.probes[0], outcome.epoch)
    assert keys(real) == keys(simulated)
    replies = [s for s in simulated if not is_summary(s)]
    assert [s.values["seq"] for s in replies] == list(range(1, 11))
    gaps = [b.t - a.t for a, b in itertools.pairwise(replies)]
    assert gaps == pytest.approx([0.204] * 9, abs=0.001)  # -D times on the simulated clock


async def test_xl_output_parses_with_the_xl_parsers() -> None:
    world = await ready_world()
    out = await run(world, "xenserver1", ["xl", "list"])
    domains = parse_xl_list(out.text())
    assert [(d.name, d.mem_mib, d.vcpus) for d in domains] == [
        ("Domain-0", 512, 2),
        ("guest", 1024, 2),
    ]
    info = parse_xl_info((await run(world, "xenserver1", ["xl", "info"])).text())
    assert (info.xen_major, info.xen_minor, info.nr_cpus) == (4, 4, 2)
    assert info.free_memory_mib == info.total_memory_mib - 512 - 1024
    # Xen 4.4's xl info takes no field: a word after it changes nothing.
    again = (await run(world, "xenserver1", ["xl", "info", "free_memory"])).text()
    assert parse_xl_info(again).free_memory_mib == info.free_memory_mib
    (config,) = parse_xl_list_long((await run(world, "xenserver1", ["xl", "list", "-l"])).text())
    assert config.name == "guest" and config.memory_mib == 1024 and config.vcpus == 2
    assert (
        config.disks[0].target is not None and "iqn.2009-06.br.ufla.lab" in config.disks[0].target
    )
    missing = await run(world, "xenserver2", ["xl", "list", "guest"])
    assert missing.text("stderr") == "guest is an invalid domain identifier (rc=-6)\n"


async def test_xl_v_migrate_gives_libxc_round_statistics() -> None:
    outcome = await run_experiment(Experiment(baseline_s=5, after_s=0))
    assert outcome.xl is not None
    parser = XlMigrateParser()
    for line in outcome.xl.text("stderr").split("\n"):
        parser.feed(line)
    rounds = [u for u in parser.history if u.event == "iteration-stats"]
    assert rounds and rounds[0].sent_mbit_s == 93  # 94 Mbit/s of goodput, xl's arithmetic
    assert parser.stream_version == 1  # Xen 4.4: migration stream v1
    assert parser.result is not None and parser.result.phase is MigratePhase.DONE
    progress = [u for u in parser.history if u.event == "restore-progress"]
    assert progress and progress[-1].pages_total == 262144


async def test_the_storage_node_shows_both_xen_hosts_logged_in() -> None:
    world = await ready_world()
    sessions = parse_iet.parse_proc_session(
        (await run(world, "iSCSIserver", ["cat", "/proc/net/iet/session"])).text()
    )
    (target,) = sessions
    assert target.name == "iqn.2009-06.br.ufla.lab:guest-disk"
    assert len(target.sessions) == 2
    await run(world, "xenserver2", ["iscsiadm", "-m", "node", "--logout"])
    (target,) = parse_iet.parse_proc_session(
        (await run(world, "iSCSIserver", ["cat", "/proc/net/iet/session"])).text()
    )
    assert len(target.sessions) == 1


async def test_the_preflight_check_reads_the_simulated_hosts() -> None:
    world = await ready_world()
    storage = await probe_host(InProcess(world, "iSCSIserver"), 0.0)
    xen = await probe_host(InProcess(world, "xenserver1"), 0.0)
    assert storage.kernel == "Linux 2.6.29-gentoo-r5" and xen.kernel == "Linux 3.16.0-4-amd64"
    assert storage.tools["ietadm"] == "/usr/sbin/ietadm" and storage.tools["xl"] is None
    assert xen.tools["xl"] == "/usr/sbin/xl" and xen.tools["iscsiadm"] == "/usr/bin/iscsiadm"
    assert set(xen.tools) == set(LAB_TOOLS)


async def test_what_a_host_does_not_have_is_command_not_found() -> None:
    world = await ready_world()
    out = Captured(world.runtime)
    assert await world.execute(world.node("iSCSIserver"), ["xl", "list"], out) == 127
    assert out.text("stderr") == "bash: line 1: xl: command not found\n"
    out = Captured(world.runtime)
    assert await world.execute(world.node("xenserver1"), ["/opt/x/xl"], out) == 127
    out = Captured(world.runtime)
    script = "for i in 1 2; do echo $i; done"
    code = await world.execute(world.node("xenserver1"), ["sh", "-c", script, "x"], out)
    assert code == 126 and out.text("stderr").startswith("miglab sim: ")
    out = Captured(world.runtime)
    assert await world.execute(world.node("xenserver1"), ["/usr/sbin/xl", "list"], out) == 0


# -- helpers ------------------------------------------------------------------------------------


async def ready_world() -> World:
    """The study's lab with the disk exported, both hosts logged in, the guest booted."""
    lab = study_lab()
    runtime = VirtualRuntime(model_for(lab))
    world = build_world(lab, runtime)

    async def setup() -> None:
        for host, argv in preparation(lab):
            out = Captured(runtime)
            assert await world.execute(world.node(host), argv, out) == 0, out.lines
        await runtime.sleep(20)

    await runtime.run(setup())
    return world


async def run(world: World, host: str, argv: list[str]) -> Captured:
    out = Captured(world.runtime)
    runtime = world.runtime
    assert isinstance(runtime, VirtualRuntime)
    await runtime.run(world.execute(world.node(host), argv, out))
    return out


class InProcess(HostRunner):
    """A HostRunner that runs commands on a simulated host directly (no SSH)."""

    def __init__(self, world: World, name: str) -> None:
        self.name = name
        self.world = world

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = 60.0,
        on_line: object = None,
        log_output: bool = True,
        long_running: bool = False,
    ) -> CommandResult:
        recorder = CommandRecorder(self.name, argv, lambda event: None, "exec")
        out = Captured(self.world.runtime)
        runtime = self.world.runtime
        assert isinstance(runtime, VirtualRuntime)
        code = await runtime.run(self.world.execute(self.world.node(self.name), list(argv), out))
        recorder.feed("stdout", out.text("stdout"))
        recorder.feed("stderr", out.text("stderr"))
        return recorder.finish(code)

    async def open_unix_stream(self, path: str) -> tuple[object, object]:  # type: ignore[override]
        raise NotImplementedError

    async def close(self) -> None:
        return None

    @property
    def connected(self) -> bool:
        return True


async def test_migrating_to_a_host_not_logged_in_fails_and_resumes_at_the_source() -> None:
    world = await ready_world()
    await run(world, "xenserver2", ["iscsiadm", "-m", "node", "--logout"])
    out = await run(world, "xenserver1", ["xl", "migrate", "guest", "xenserver2"])
    parser = XlMigrateParser()
    for line in out.text("stderr").split("\n"):
        parser.feed(line)
    parser.finish(1)
    assert parser.result is not None and parser.result.phase is MigratePhase.FAILED
    assert parser.result.resumed_at_source is True
    assert "Domain creation failed" in out.text("stderr")
    assert world.model.guest.host == "xenserver1" and world.model.guest_up
    summary = world.model.last_migration()
    assert summary is not None and not summary.ok and summary.downtime_s is not None


async def test_a_lab_on_lio_exports_with_targetcli() -> None:
    lab = parse_lab(STUDY_LAB_TOML.replace('driver = "iet"', 'driver = "lio"'))
    world = build_world(lab, VirtualRuntime(model_for(lab)))
    assert world.which(world.node("iSCSIserver"), "targetcli") == "/usr/bin/targetcli"
    assert world.which(world.node("iSCSIserver"), "ietadm") is None
    outcome = await run_experiment(Experiment(lab=lab, baseline_s=5, after_s=0))
    assert outcome.migration is not None and outcome.migration.ok
