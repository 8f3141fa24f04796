"""The Xen driver's downtime: measured between two of xl's lines as they arrive.

``xl -vvv migrate`` prints libxl's ``issuing ... suspend request`` on the sender and,
through ssh, the receiver's ``Domain started successsfully.``; hv_xen.DowntimeClock
takes the time between their arrivals. The real capture
(tests/data/xl/real-4.17/xl-vvv-migrate-pvh-success.*) has each line's arrival time at
the console (``.arrival``, seconds since the command started).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.drivers.hv_xen import DowntimeClock
from backend.drivers.parse_xl import MigratePhase, XlMigrateParser, parse_xl_migrate
from backend.drivers.xen_toolstack import XlToolstack

XL = Path(__file__).resolve().parents[1] / "data" / "xl" / "real-4.17"
CAPTURE = "xl-vvv-migrate-pvh-success"


def arrivals() -> list[tuple[float, str]]:
    """(seconds, line) of the capture, in the order the console got them."""
    rows = []
    for row in (XL / f"{CAPTURE}.arrival").read_text().splitlines():
        seconds, _, line = row.lstrip().partition(" ")
        rows.append((float(seconds), line))
    return rows


def clock_over(rows: list[tuple[float, str]]) -> tuple[DowntimeClock, XlMigrateParser]:
    parser, clock = XlMigrateParser(), DowntimeClock()
    for t, line in rows:
        for update in parser.feed(line):
            clock.saw(update, t)
    return clock, parser


def test_the_arrival_file_is_the_stderr_capture() -> None:
    stderr = (XL / f"{CAPTURE}.stderr").read_text().splitlines()
    assert [line for _, line in arrivals()] == stderr
    assert (XL / f"{CAPTURE}.rc").read_text().strip() == "0"


def test_real_vvv_migrate_parses_to_success_with_the_suspend_lines() -> None:
    text = (XL / f"{CAPTURE}.stderr").read_text()
    updates = parse_xl_migrate(text, exit_status=0)
    events = [u.event for u in updates]
    assert updates[-1].phase is MigratePhase.DONE and updates[-1].event == "success"
    order = ["saving-domain", "suspend-requested", "domain-suspended", "go", "target-started"]
    assert [events.index(e) for e in order] == sorted(events.index(e) for e in order)
    # The debug flood (191 lines) is skipped, not read as errors.
    assert not [u for u in updates if u.event == "error"]


def test_downtime_of_the_real_capture_is_from_suspend_request_to_target_started() -> None:
    rows = arrivals()
    clock, parser = clock_over(rows)
    assert parser.result is not None and parser.result.phase is MigratePhase.DONE
    [requested] = [t for t, line in rows if "issuing PVH/HVM suspend request" in line]
    [started] = [t for t, line in rows if line == "migration target: Domain started successsfully."]
    assert clock.ms == pytest.approx((started - requested) * 1000)
    assert clock.ms == pytest.approx(15161.0)  # 349.854 s -> 365.015 s in that run


def test_a_missing_line_leaves_the_downtime_unknown() -> None:
    rows = arrivals()
    without_request = [(t, x) for t, x in rows if "suspend request via" not in x]
    assert clock_over(without_request)[0].ms is None
    without_start = [(t, x) for t, x in rows if "Domain started" not in x]
    assert clock_over(without_start)[0].ms is None
    # xl -v (no debug lines): the success capture of xl -v gives no downtime.
    plain = (XL / "xl-v-migrate-pvh-success.stderr").read_text().splitlines()
    assert clock_over([(float(i), line) for i, line in enumerate(plain)])[0].ms is None


def test_a_start_before_any_suspend_request_is_not_taken() -> None:
    rows = arrivals()
    started = [(t, x) for t, x in rows if "Domain started" in x]
    others = [(t, x) for t, x in rows if "Domain started" not in x]
    # The receiver's line before the suspend request: it ends no downtime.
    assert clock_over([(0.0, started[0][1]), *others])[0].ms is None


def test_xl_runs_migrate_at_debug_level() -> None:
    argv = XlToolstack().migrate_argv(("xl",), "guest", "198.18.0.3")
    assert argv == ["xl", "-vvv", "migrate", "guest", "198.18.0.3"]


async def test_the_simulated_lab_xl_prints_the_suspend_request_at_vvv() -> None:
    from backend.sim.commands.base import Captured
    from backend.sim.model import TICK
    from tests.unit.test_sim_formats import ready_world

    world = await ready_world()
    runtime = world.runtime
    node = world.node("xenserver1")
    out = Captured(runtime)
    argv = ["xl", "-vvv", "migrate", "guest", "xenserver2"]
    code = await runtime.run(world.execute(node, argv, out))  # type: ignore[attr-defined]
    assert code == 0, out.text("stderr")
    rows = [(t, line) for t, stream, line in out.lines if stream == "stderr"]
    clock, parser = clock_over(rows)
    assert parser.result is not None and parser.result.phase is MigratePhase.DONE
    # libxl's line comes before libxc's SUSPEND record, as in Xen 4.4's libxl_dom.c.
    texts = [line for _, line in rows]
    request = next(i for i, x in enumerate(texts) if "issuing PV suspend request" in x)
    assert texts[request + 1].startswith("xc: detail: SUSPEND shinfo")
    # On the simulated clock: the model's own stop window, as xl's lines show it (the
    # simulated lab prints on its 100 ms ticks): an upper bound, within a tick.
    suspended, resumed = world.model.stops[-1]
    assert suspended is not None and resumed is not None and clock.ms is not None
    model_ms = (resumed - suspended) * 1000
    assert model_ms - 1e-6 <= clock.ms <= model_ms + TICK * 1000 + 1e-6


async def test_the_simulated_lab_xl_at_v_prints_no_libxl_debug() -> None:
    from backend.sim.commands.base import Captured
    from tests.unit.test_sim_formats import ready_world

    world = await ready_world()
    out = Captured(world.runtime)
    argv = ["xl", "-v", "migrate", "guest", "xenserver2"]
    code = await world.runtime.run(world.execute(world.node("xenserver1"), argv, out))  # type: ignore[attr-defined]
    assert code == 0
    assert "libxl: debug:" not in out.text("stderr")


def test_lines_that_arrive_together_give_no_downtime() -> None:
    """Both lines in one read (or one tick of the simulated lab): no interval was seen."""
    rows = arrivals()
    together = [
        (0.0, x) if "suspend request via" in x or "Domain started" in x else (t, x) for t, x in rows
    ]
    clock, parser = clock_over(together)
    assert parser.result is not None and parser.result.phase is MigratePhase.DONE
    assert clock.ms is None


async def test_the_simulated_xl_4_17_asks_for_the_suspend_when_the_stop_window_opens() -> None:
    """xl 4.17 (stream v2) in the simulated lab at -vvv: the request line is printed when
    the model stops the guest, so the measured downtime brackets the model's own stop
    window within a 100 ms tick of the simulated clock, or is unknown (None) when both
    lines fall in one tick — never 0."""
    from backend.config import parse_lab
    from backend.sim.clock import VirtualRuntime
    from backend.sim.commands.base import Captured
    from backend.sim.labs import build_world, model_for, preparation
    from backend.sim.model import TICK
    from backend.sim.study import STUDY_LAB_TOML

    lab = parse_lab(STUDY_LAB_TOML + '\n[simulation]\nxen_version = "4.17"\n', file="<t>")
    runtime = VirtualRuntime(model_for(lab))
    world = build_world(lab, runtime)

    async def prepared_and_migrated() -> tuple[int, Captured]:
        for host, argv in preparation(lab):
            assert await world.execute(world.node(host), argv, Captured(runtime)) == 0
        await runtime.sleep(20)
        out = Captured(runtime)
        argv = ["xl", "-vvv", "migrate", "guest", "xenserver2"]
        return await world.execute(world.node("xenserver1"), argv, out), out

    code, out = await runtime.run(prepared_and_migrated())
    assert code == 0, out.text("stderr")
    rows = [(t, line) for t, stream, line in out.lines if stream == "stderr"]
    assert any("Domain 1:issuing PV suspend request via XenBus" in line for _, line in rows)
    clock, parser = clock_over(rows)
    assert parser.result is not None and parser.result.phase is MigratePhase.DONE
    suspended, resumed = world.model.stops[-1]
    assert suspended is not None and resumed is not None
    model_ms = (resumed - suspended) * 1000
    assert clock.ms is None or abs(clock.ms - model_ms) <= TICK * 1000 + 1e-6
    assert clock.ms != 0.0
