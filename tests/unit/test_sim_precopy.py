"""Xen 3.x pre-copy in the model: the three stop rules, the downtime, the domains on each host."""

from __future__ import annotations

import pytest

from backend.sim import workloads as wl
from backend.sim.memory import PAGES_PER_MIB
from backend.sim.model import BOOT_S, LabParams, Model
from backend.sim.network import TCP_GOODPUT
from backend.sim.precopy import (
    MAX_FACTOR,
    MAX_ITERS,
    MIN_SENT,
    RESTORE_S,
    STREAM_BYTES_PER_PAGE,
    SUSPEND_S,
    PreCopy,
)

SRC, DST = "xenserver1", "xenserver2"


def booted(seed: int = 0, **params: object) -> Model:
    model = Model(LabParams(**params), seed)  # type: ignore[arg-type]
    model.boot(SRC)
    model.advance(BOOT_S + 1)
    assert model.guest_up
    return model


def migrate(model: Model) -> PreCopy:
    mig = model.migrate(SRC, DST)
    while model.migration is not None:
        model.step()
    return mig


def rounds(mig: PreCopy) -> list[tuple[int, int]]:
    """(pages sent, pages dirtied) of every round, the last one included."""
    return [(r.sent, r.dirtied) for r in mig.records if r.kind == "round"]


def test_an_idle_guest_converges_on_the_fewer_than_50_pages_rule() -> None:
    model = booted()
    mig = migrate(model)
    summary = mig.summary()
    sent = rounds(mig)
    assert summary.ok
    assert sent[0][0] == model.memory.pages  # round 1 sends every page
    assert sent[-2][0] < MIN_SENT  # the live round that triggered the stop
    assert all(s >= MIN_SENT for s, _ in sent[:-2])
    assert summary.rounds < MAX_ITERS
    assert summary.pages_sent < 1.01 * model.memory.pages
    # Time: all of memory over the link's TCP goodput, plus set-up and the handshake.
    transfer = model.memory.pages * STREAM_BYTES_PER_PAGE / (100e6 / 8 * TCP_GOODPUT)
    assert transfer < summary.total_s < transfer + 4
    assert summary.downtime_s is not None and summary.downtime_s < 0.1


def test_a_small_hot_set_that_never_settles_stops_after_29_rounds() -> None:
    model = booted()
    # 2 MiB rewritten 50 times a second: never under 50 pages, far from 3x memory.
    model.memory.set_region("hot", 2 * PAGES_PER_MIB, 50 * 2 * PAGES_PER_MIB, "sequential")
    mig = migrate(model)
    summary = mig.summary()
    assert summary.rounds == MAX_ITERS + 1  # 29 live rounds, then the last one
    assert summary.pages_sent < 1.5 * model.memory.pages
    assert all(s >= MIN_SENT for s, _ in rounds(mig)[:-1])


def test_a_dirtier_faster_than_the_link_stops_once_3x_memory_is_sent() -> None:
    model = booted()
    model.start(wl.Dirtier, size_mib=512)
    mig = migrate(model)
    summary = mig.summary()
    sent = [s for s, _ in rounds(mig)]
    live_total = sum(sent[:-1])
    assert live_total > MAX_FACTOR * model.memory.pages  # the rule that fired
    assert live_total - sent[-2] <= MAX_FACTOR * model.memory.pages  # not a round earlier
    assert summary.rounds < MAX_ITERS
    # Each round re-sends the whole 512 MiB file; the last one does so with the guest
    # stopped, which is the downtime.
    assert sent[-1] >= 512 * PAGES_PER_MIB
    rate_pages = 100e6 / 8 * TCP_GOODPUT / STREAM_BYTES_PER_PAGE
    expected = sent[-1] / rate_pages + SUSPEND_S + RESTORE_S
    assert summary.downtime_s == pytest.approx(expected, rel=0.01)


def test_the_guest_answers_except_between_suspend_and_resume() -> None:
    model = booted()
    model.start(wl.Dirtier, size_mib=256)
    summary = migrate(model).summary()
    assert summary.suspended_at is not None and summary.resumed_at is not None
    assert model.guest_answers_at(summary.suspended_at - 0.001)
    assert not model.guest_answers_at(summary.suspended_at)
    assert not model.guest_answers_at((summary.suspended_at + summary.resumed_at) / 2)
    assert model.guest_answers_at(summary.resumed_at)
    assert model.guest.host == DST


def test_each_host_lists_the_domains_xl_shows_during_a_migration() -> None:
    model = booted()
    mig = model.migrate(SRC, DST)
    model.advance(3)  # past set-up: the receiver has created its copy
    assert [(r.name, r.state) for r in model.domains(DST)][1:] == [("guest--incoming", "--p---")]
    assert [r.name for r in model.domains(SRC)][1:] == ["guest"]
    while mig.resumed_at is None:
        model.step()
    # After GO: running on the destination, the source copy renamed until destroyed.
    assert [(r.name, r.state) for r in model.domains(SRC)][1:] == [
        ("guest--migratedaway", "---ss-")
    ]
    assert [r.name for r in model.domains(DST)][1:] == ["guest"]
    while model.migration is not None:
        model.step()
    assert [r.name for r in model.domains(SRC)] == ["Domain-0"]


def test_stopping_xl_before_the_suspend_leaves_the_guest_on_the_source() -> None:
    model = booted()
    model.migrate(SRC, DST)
    model.advance(30)
    assert model.abort_migration()
    assert model.guest.host == SRC and model.guest_up
    assert [r.name for r in model.domains(DST)] == ["Domain-0"]
    model.advance(1)
    assert model.guest_up


def test_the_last_round_cannot_be_undone() -> None:
    model = booted()
    model.start(wl.Dirtier, size_mib=256)
    mig = model.migrate(SRC, DST)
    while mig.suspended_at is None:
        model.step()
    model.step()
    assert not model.abort_migration()
    while model.migration is not None:
        model.step()
    assert model.guest.host == DST


def test_the_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    def run(seed: int) -> tuple[list[object], float]:
        model = booted(seed)
        cpu = model.start(wl.SysbenchCpu, threads=20, max_prime=1000)
        model.start(wl.Dbench, clients=2)
        mig = migrate(model)
        assert isinstance(cpu, wl.SysbenchCpu)
        return list(mig.records), cpu.events

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first[1] != other[1]


def test_records_come_in_time_order() -> None:
    model = booted()
    model.start(wl.Dbench, clients=2)
    mig = migrate(model)
    times = [r.t for r in mig.records]
    assert times == sorted(times)
    assert mig.records[-1].kind == "done"


def test_refusals_name_the_reason() -> None:
    model = Model()
    with pytest.raises(Exception, match="invalid domain identifier"):
        model.migrate(SRC, DST)
    model.boot(SRC)
    with pytest.raises(Exception, match="already exists"):
        model.boot(DST)
    model.advance(BOOT_S + 1)
    with pytest.raises(ValueError, match="two hosts"):
        model.migrate(SRC, SRC)


def test_a_booting_guest_migrates_and_its_boot_goes_on_at_the_destination() -> None:
    # Xen migrates a domain as soon as it exists: booting is running to the hypervisor.
    # 256 MiB over 1 Gbit/s: the whole migration fits in the boot.
    model = Model(LabParams(memory_mib=256, link_mbit=1000))
    model.boot(SRC)
    model.advance(1)
    assert model.guest.status == "booting"
    mig = model.migrate(SRC, DST)
    while model.migration is not None:
        model.step()
    summary = mig.summary()
    assert summary.ok and model.guest.host == DST
    assert [r.name for r in model.domains(DST)][1:] == ["guest"]
    assert model.domains(SRC)[1:] == []
    # Still booting, at the destination; the boot stood still while the guest was
    # stopped, so it ends later by the downtime.
    assert model.guest.status == "booting" and not model.guest_up
    assert summary.downtime_s is not None and summary.downtime_s > 0
    assert model.guest.ready_at == pytest.approx(BOOT_S + summary.downtime_s)
    model.advance(model.guest.ready_at - 0.2 - model.t)
    assert not model.guest_up
    model.advance(0.3)
    assert model.guest_up and model.guest.host == DST
    assert model.guest_answers_at(model.t)


def test_a_booting_guest_migrates_on_the_studys_link_too() -> None:
    model = Model()
    model.boot(SRC)
    mig = model.migrate(SRC, DST)  # at once: the boot ends during the pre-copy
    while model.migration is not None:
        model.step()
    assert mig.summary().ok and model.guest.host == DST and model.guest_up
    assert model.guest.ready_at == BOOT_S  # it booted while the pages were copied


def test_a_guest_powered_off_under_a_migration_ends_it() -> None:
    model = booted()
    mig = model.migrate(SRC, DST)
    model.advance(5)
    model.shutdown(SRC)
    model.advance(10)
    assert model.migration is None and model.guest.status == "off"
    assert mig.records[-1].kind == "aborted" and not mig.summary().ok
