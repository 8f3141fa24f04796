"""`miglab --lab F --readonly` on hosts reached over a real sshd: the console's backend
is made after its first frame (tui/deferred_backend.py), then connects for real.

The three hosts are one test sshd on loopback; they have no xl or tgtd, so the console's
looks at the lab fail on them, which a read-only console shows and survives.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import parse_lab
from backend.events import Event, HostState
from backend.session import read_session
from tests.conftest import need
from tests.support.sshd import Sshd, loopback_xen_lab
from tests.support.waiting import until
from tests.tui.conftest import quit_console, started
from tests.tui.sim_backend import bound_textual_idle_wait
from tui.app import MiglabApp
from tui.commands.console import console_backend
from tui.widgets.panes import HostPane

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Sshd]:
    sshd = Sshd(need("sshd", "ssh-keygen")["sshd"], tmp_path / "sshd")
    sshd.setup()
    sshd.start()
    yield sshd
    sshd.stop()


async def test_the_readonly_console_draws_first_then_connects_over_ssh(
    server: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound_textual_idle_wait(monkeypatch)
    lab = parse_lab(loopback_xen_lab(server, tmp_path / "disk.img"), file="lab.toml")
    backend = console_backend(lab, readonly=True, log_dir=tmp_path / "sessions")
    seen: list[Event] = []
    backend.subscribe(seen.append)
    app = MiglabApp(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        titles = [str(pane.border_title) for pane in app.screen.query(HostPane)]
        assert titles == ["xen1", "xen2"]
        await started(app)
        connected = {e.host for e in seen if isinstance(e, HostState) and e.state == "connected"}
        assert connected == {"storage", "xen1", "xen2"}
        log = backend.session_log
        assert log is not None and log.parent == tmp_path / "sessions"
        await until(lambda: log.exists())
        await quit_console(app, pilot)
    session = read_session(log)
    assert session.header["lab"]["lab"]["name"] == "loopback"
    assert session.end is not None
    assert {e.host for e in session.of_kind("host.state") if e.state == "connected"} == {  # type: ignore[attr-defined]
        "storage",
        "xen1",
        "xen2",
    }
