"""The plain-data half of the console: folding events into what the panes show."""

from __future__ import annotations

from backend.events import (
    CommandFinished,
    CommandOutput,
    CommandStarted,
    DomainState,
    MigrationFinished,
    MigrationMeasured,
    MigrationProgress,
    Phase,
    Sample,
)
from tests.tui import session_fixture as fixture
from tui.backend_api import LabLayout
from tui.widgets import fmt
from tui.widgets.lab_state import MAX_COMMANDS, LabState
from tui.widgets.migration import MigrationBar
from tui.widgets.traces import BUCKET_S, Trace, TraceStore, look_for

T0 = fixture.T0


def state() -> LabState:
    return LabState(LabLayout.from_config(fixture.lab()), T0)


def ping(t: float, seq: int, rtt: float | None, **extra: float) -> Sample:
    values: dict[str, float | None] = {"seq": float(seq), "rtt_ms": rtt, **extra}
    if rtt is None:
        values["lost"] = 1.0
    return Sample(t=t, probe="ping", host="storage", values=values, unit={"rtt_ms": "ms"})


def test_the_whole_session_folds_into_the_end_state() -> None:
    lab = state()
    changes = lab.apply_all(fixture.full_session())
    assert lab.guest.host == "qemu2" and lab.guest.state == "running"
    assert lab.hosts["qemu2"].domains == {"guest": "running"}
    assert lab.hosts["qemu1"].domains == {}
    assert lab.storage.exported and lab.storage.initiators == {
        "qemu1": "logged-in",
        "qemu2": "logged-in",
    }
    assert lab.hosts["qemu1"].free_memory_mb == 2995.0  # read from an event kind we do not know
    assert lab.phase == "after"
    assert len(lab.commands) == 12 and all(c.finished for c in lab.commands.values())
    assert changes.new_traces == [("ping", "storage"), ("sysbench-cpu", "guest")]
    (window,) = lab.windows
    assert window[0] == fixture.MIGRATION_START and window[1] is not None
    result = lab.migration.result
    assert result is not None and result.downtime_ms == 6.0 and not lab.migration.active


def test_domain_states_place_the_guest_and_ignore_other_domains() -> None:
    lab = state()
    lab.apply(DomainState(t=T0, host="qemu1", domain="guest", state="running"))
    lab.apply(DomainState(t=T0 + 1, host="qemu2", domain="guest--incoming", state="paused"))
    assert lab.guest.host == "qemu1"
    assert lab.hosts["qemu2"].domains == {"guest--incoming": "paused"}
    lab.apply(DomainState(t=T0 + 2, host="qemu1", domain="guest", state="shutdown"))
    assert lab.guest.host is None and lab.hosts["qemu1"].domains == {}


def test_a_failed_migration_leaves_the_guest_on_the_source() -> None:
    lab = state()
    lab.apply(DomainState(t=T0, host="qemu1", domain="guest", state="running"))
    lab.apply(MigrationProgress(t=T0 + 1, domain="guest", source="qemu1", dest="qemu2"))
    assert lab.migration.active and lab.windows[-1] == (T0 + 1, None)
    lab.apply(
        MigrationFinished(
            t=T0 + 5, domain="guest", source="qemu1", dest="qemu2", ok=False, error="cancelled"
        )
    )
    assert lab.guest.host == "qemu1"
    assert not lab.migration.active and lab.windows[-1] == (T0 + 1, T0 + 5)


def test_ping_losses_make_the_guest_unreachable_and_a_reply_brings_it_back() -> None:
    lab = state()
    lab.apply(ping(T0, 1, 0.3))
    assert lab.guest.reachable
    for seq in (2, 3):
        lab.apply(ping(T0 + seq, seq, None))
    assert lab.guest.reachable  # two in a row are not enough
    lab.apply(ping(T0 + 4, 4, None))
    assert lab.guest.reachable is False and lab.guest.unreachable_since == T0 + 2
    lab.apply(ping(T0 + 5, 5, 0.4))
    assert lab.guest.reachable and lab.guest.unreachable_since is None


def test_commands_keep_their_output_and_the_oldest_go_first() -> None:
    lab = state()
    lab.apply(CommandStarted(t=T0, host="qemu1", cmd_id=1, argv=["iscsiadm", "-m", "session"]))
    lab.apply(CommandOutput(t=T0, host="qemu1", cmd_id=1, stream="stderr", line="No sessions"))
    lab.apply(
        CommandFinished(
            t=T0 + 1, host="qemu1", cmd_id=1, argv=["iscsiadm"], exit_status=21, duration_s=1.0
        )
    )
    command = lab.commands[1]
    assert list(command.output) == [("stderr", "No sessions")]
    assert command.status_text() == "exit 21" and not command.ok
    for n in range(2, MAX_COMMANDS + 2):
        lab.apply(CommandStarted(t=T0 + n, host="storage", cmd_id=n, argv=["true"]))
    assert len(lab.commands) == MAX_COMMANDS and 1 not in lab.commands


def test_a_command_that_timed_out_says_so() -> None:
    lab = state()
    lab.apply(
        CommandFinished(
            t=T0,
            host="storage",
            cmd_id=7,
            argv=["tgtadm"],
            exit_status=None,
            duration_s=60.0,
            failure="timeout",
        )
    )
    assert lab.commands[7].status_text() == "timeout" and not lab.commands[7].ok


def test_traces_reduce_to_the_worst_rtt_per_column_and_mark_losses() -> None:
    store = TraceStore()
    samples = [ping(T0 + i * 0.01, i, 0.3) for i in range(1000)]  # 10 s at 100/s
    samples[500] = ping(T0 + 5.0, 500, 63.0)  # one slow reply in the middle
    samples[700] = ping(T0 + 7.0, 700, None)  # one loss
    for sample in samples:
        store.add(sample)
    trace = store.traces[("ping", "storage")]
    view = trace.view(T0, T0 + 10.0, 20, [], "ping")
    assert len(view.xs) == 20
    assert max(view.ys) == 63.0 and view.ys.count(63.0) == 1  # a spike survives reduction
    assert view.losses == [7.0 - 0.0] and trace.lost == 1
    assert trace.unit == "ms" and trace.samples == 999


def test_a_late_reply_takes_its_loss_back() -> None:
    trace = Trace("ping", "storage", look_for("ping", ping(T0, 1, 0.3)))  # type: ignore[arg-type]
    trace.add(ping(T0, 9, None))
    assert trace.lost == 1
    trace.add(ping(T0 + 1.2, 9, 1200.0, late=1.0))
    assert trace.lost == 0


def test_rates_are_averaged_and_summaries_ignored() -> None:
    store = TraceStore()
    for n, eps in enumerate((100.0, 200.0)):
        store.add(
            Sample(t=T0 + n * BUCKET_S / 4, probe="sysbench-cpu", host="guest", values={"eps": eps})
        )
    store.add(
        Sample(
            t=T0 + 1,
            probe="sysbench-cpu",
            host="guest",
            values={"summary": 1.0, "events_per_s": 5.0},
        )
    )
    trace = store.traces[("sysbench-cpu", "guest")]
    view = trace.view(T0, T0 + 10, 1, [], "cpu")
    assert view.ys == [150.0] and trace.last_value == 200.0


def test_unknown_probes_plot_their_first_measured_value() -> None:
    sample = Sample(t=T0, probe="fio", host="guest", values={"elapsed_s": 1.0, "iops": 900.0})
    look = look_for("fio", sample)
    assert look is not None and look.value_key == "iops"


def test_migration_window_ends_at_now_while_it_runs() -> None:
    lab = state()
    lab.apply(Phase(t=T0 + 2, name="migrating"))
    lab.apply(ping(T0 + 1, 1, 0.3))
    trace = lab.traces.traces[("ping", "storage")]
    view = trace.view(T0, T0 + 20, 10, list(lab.windows), "ping")
    assert view.windows == [(2.0, 20.0)]


def test_formats() -> None:
    assert fmt.duration(7.515) == "7.5 s" and fmt.duration(96) == "96 s"
    assert fmt.duration(356) == "5:56" and fmt.duration(3723) == "1:02:03"
    assert fmt.clock(58.5) == "0:00:58"
    assert fmt.size(96515179) == "92.0 MiB" and fmt.size(268967936) == "257 MiB"
    assert fmt.number(9899.59, "events/s") == "9900 events/s"
    cut = fmt.ellipsize("/var/lib/miglab/sessions/2026-11-27.jsonl", 20)
    assert cut == "/var/lib/…1-27.jsonl" and len(cut) == 20


def test_event_kinds_that_did_not_validate_are_read_by_their_fields() -> None:
    from backend.events import StorageExported, UnknownEvent

    lab = state()
    lab.apply(
        StorageExported(t=T0, host="storage", iqn=fixture.IQN, lun=1, backing="/d", changed=True)
    )
    assert lab.storage.exported
    lab.apply(UnknownEvent(kind="storage.unexported", t=T0 + 1, host="storage", iqn=fixture.IQN))
    assert not lab.storage.exported
    started = UnknownEvent(kind="experiment.started", t=T0 + 2, scenario="migrate-ping")
    assert lab.apply(started).phase
    assert (lab.scenario, lab.scenario_status) == ("migrate-ping", "running")
    lab.apply(
        UnknownEvent(kind="experiment.finished", t=T0 + 3, scenario="migrate-ping", status="failed")
    )
    assert lab.scenario_status == "failed"


def test_readings_without_a_time_are_not_drawn_and_do_not_break_the_trace() -> None:
    # BusyBox ping prints no time: `miglab import` records its replies and losses with t=None.
    store = TraceStore()
    untimed = [
        ping(T0, seq, rtt).model_copy(update={"t": None}) for seq, rtt in ((1, 0.4), (2, None))
    ]
    assert [store.add(sample) for sample in untimed] == [None, None]
    store.add(ping(T0 + 1.0, 3, 0.5))
    trace = store.traces[("ping", "storage")]
    assert trace.samples == 1 and trace.lost == 0 and trace.last_t == T0 + 1.0


def test_the_measured_migration_joins_its_result_and_the_bar_shows_it() -> None:
    lab = state()
    common = {"domain": "guest", "source": "qemu1", "dest": "qemu2"}
    lab.apply_all(
        [
            MigrationProgress(t=T0 + 1, **common),
            MigrationFinished(t=T0 + 8, ok=True, total_time_ms=7000.0, downtime_ms=6.0, **common),
        ]
    )
    assert lab.migration.measured is None
    other = MigrationMeasured(t=T0 + 9, ok=True, domain="guest", source="qemu2", dest="qemu1")
    assert not lab.apply_all([other]).migration  # not this migration's
    measured = MigrationMeasured(
        t=T0 + 9, ok=True, unreachable_s=0.4, lost_probes=3, total_s=7.0, limit_s=2.7, **common
    )
    assert lab.apply_all([measured]).migration
    line = MigrationBar._result(lab.migration).plain
    assert "downtime 6 ms" in line and "unreachable 0.40 s (3 pings lost)" in line
    assert "2.6x the memory/link limit (2.7 s)" in line
