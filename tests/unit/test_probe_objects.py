"""Each probe object: what the runner asks of it (argv for a run, scratch directory,
trees, warnings, the guest's answer), what the metrics ask (which readings count) and
what ``miglab import`` asks (a parser of a saved capture)."""

from __future__ import annotations

import dataclasses

from backend.experiments.metrics import METRICS
from backend.probes import PROBES, RunContext, dbench_command, ping_command
from backend.probes.build import BUILD, BuildOptions
from backend.probes.dbench import DBENCH, DbenchOptions, dbench_time_s
from backend.probes.dirtier import DIRTIER, DirtierOptions
from backend.probes.ping import PING, PingOptions
from backend.probes.sysbench import SYSBENCH_CPU, SYSBENCH_MEMORY, SysbenchCpuOptions

RUN = RunContext(
    guest_address="198.18.0.9", guest_memory_mb=256, limit_s=2000, warmup_s=0.0, expected_s=12.3
)


def test_the_registry_holds_every_probe_object_under_its_kind() -> None:
    assert list(PROBES.values()) == [PING, SYSBENCH_CPU, SYSBENCH_MEMORY, DBENCH, BUILD, DIRTIER]
    for kind, probe in PROBES.items():
        assert probe.kind == kind and all(spec.probe == kind for spec in probe.metrics)
    # The metrics table is the probes' own, in the report's order.
    assert [(m.probe, m.key) for m in METRICS] == [
        ("ping", "rtt_ms"),
        ("sysbench-cpu", "eps"),
        ("sysbench-memory", "mib_per_s"),
        ("dbench", "mb_per_s_1s"),
        ("dbench", "latency_ms"),
        ("build", "files_per_s"),
        ("build", "build_s"),
        ("dirtier", "mib_per_s"),
    ]


def test_ping_runs_to_the_limit_towards_the_guest_and_tells_when_it_answers() -> None:
    options = PingOptions(interval_s=0.5, family=4)
    assert PING.argv(options, RUN) == ping_command(
        "198.18.0.9", interval_s=0.5, family=4, duration_s=2000
    )
    assert PING.argv(options, RUN)[-4:] == ["-c", "4000", "-4", "198.18.0.9"]
    assert PING.answer_argv("198.18.0.9") == ping_command("198.18.0.9", count=1)
    assert [p.kind for p in PROBES.values() if p.answer_argv("198.18.0.9")] == ["ping"]
    # A capture's line without -D's stamp has no time: when it was printed is not known.
    line = "64 bytes from 198.18.0.9: icmp_seq=1 ttl=64 time=0.5 ms"
    (sample,) = PING.import_parser("storage", 1000.0).feed(line)
    assert sample.t is None and sample.values["rtt_ms"] == 0.5
    (live,) = PING.new_parser("storage", lambda: 7.0).feed(line)
    assert live.t == 7.0


def test_sysbench_and_the_dirtier_take_the_limit_and_the_guest_memory() -> None:
    assert "--time=2000" in SYSBENCH_CPU.argv(SysbenchCpuOptions(threads=2), RUN)
    assert "--time=2000" in SYSBENCH_MEMORY.argv(SYSBENCH_MEMORY.options(), RUN)
    # 50 % of a 256 MB guest is more than its /dev/shm holds: 40 % of it.
    argv = DIRTIER.argv(DirtierOptions(size_pct=50), RUN)
    assert argv == DirtierOptions(size_pct=50).argv(256) and "102" in argv


def test_dbench_time_and_its_scratch_directory() -> None:
    # With a warm-up, dbench's own fifth is that warm-up (the study's -t 400 for 80 s).
    assert dbench_time_s(dataclasses.replace(RUN, warmup_s=80)) == 400
    # Without, the stage's expected length, at least 5 s.
    assert dbench_time_s(RUN) == 13
    assert dbench_time_s(dataclasses.replace(RUN, expected_s=2)) == 5
    fresh = DbenchOptions(clients=2)
    assert DBENCH.scratch_dir(fresh) == "dbench"
    scratch = dataclasses.replace(RUN, scratch="/home/u/miglab-dbench.x1")
    assert DBENCH.argv(fresh, scratch) == dbench_command(
        2, time_s=13, directory="/home/u/miglab-dbench.x1"
    )
    given = DbenchOptions(directory="/mnt/disk")
    assert DBENCH.scratch_dir(given) is None
    assert DBENCH.argv(given, scratch)[-3:] == ["-D", "/mnt/disk", "2"]
    (note,) = DBENCH.notes(fresh, RUN)
    assert "(-t 13)" in note and "give warmup_s" in note
    assert DBENCH.notes(fresh, dataclasses.replace(RUN, warmup_s=80)) == []
    # Its own warm-up lines are no measurements; every other probe's readings are.
    assert not DBENCH.measured({"phase": 0.0, "mb_per_s_1s": 9.0})
    assert DBENCH.measured({"phase": 1.0, "mb_per_s_1s": 9.0})
    assert all(p.measured({"phase": 0.0}) for p in PROBES.values() if p is not DBENCH)
    assert [p.kind for p in PROBES.values() if p.scratch_dir(p.options())] == ["dbench"]


def test_a_build_runs_in_the_tree_the_run_found() -> None:
    options = BuildOptions(directory=["/usr/src/linux", "/srv/tree"])
    assert BUILD.trees(options) == ["/usr/src/linux", "/srv/tree"]
    assert BUILD.trees(BuildOptions()) == []
    assert BUILD.argv(options, RUN) == options.argv()  # a plan: the first
    found = dataclasses.replace(RUN, tree="/srv/tree")
    assert BUILD.argv(options, found) == options.argv("/srv/tree")
    assert "/srv/tree" in BUILD.argv(options, found)
