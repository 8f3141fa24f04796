"""LabController.where and the runner's verdict when a hypervisor host cannot be asked.

A host whose ``xl list`` failed or timed out (a starved dom0) does not say the guest is
not there: where() puts it in ``unreachable`` with the host, the command and its
stderr, and nothing concludes "the guest runs on no host" from it. The hosts answer
with what real xl 4.17 printed (tests/data/xl/real-4.17).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from backend.config import parse_lab
from backend.drivers.base import Refused
from backend.events import Event
from backend.lab import LabController
from backend.transport.base import (
    CommandResult,
    HostRunner,
    LineCallback,
    StreamReaderLike,
    StreamWriterLike,
)
from tests.conftest import DATA

REAL = DATA / "xl" / "real-4.17"
GUEST_LISTED = (REAL / "xl-list-host2-guest.stdout").read_text()
DOM0_ONLY = (REAL / "xl-list-host1-dom0-only.stdout").read_text()

LAB = """\
[lab]
name = "where-test"
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
name = "miglab-guest"
address = "198.18.0.50"
vcpus = 2
memory_mb = 256
config = "/etc/xen/guest.cfg"
"""


class Answers(HostRunner):
    """A host that answers ``xl list`` with a given result (and nothing else)."""

    def __init__(self, name: str, result: CommandResult) -> None:
        self.name = name
        self.result = result
        self.asked: list[list[str]] = []

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
        assert list(argv) == ["xl", "list"], argv
        self.asked.append(list(argv))
        return self.result

    async def open_unix_stream(self, path: str) -> tuple[StreamReaderLike, StreamWriterLike]:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True


def listed(host: str, stdout: str) -> CommandResult:
    return CommandResult(host, ["xl", "list"], 0, stdout, "", 0.2)


def controller(xen1: CommandResult, xen2: CommandResult) -> LabController:
    events: list[Event] = []
    runners: dict[str, HostRunner] = {
        "xen1": Answers("xen1", xen1),
        "xen2": Answers("xen2", xen2),
        "storage": Answers("storage", listed("storage", "")),
    }
    return LabController(parse_lab(LAB), runners, events.append)


TIMED_OUT = CommandResult("xen1", ["xl", "list"], None, "", "", 60.0, failure="timeout")
FAILED = CommandResult(
    "xen1", ["xl", "list"], 1, "", "libxl: error: cannot get domain list: Busy\n", 0.5
)


@pytest.mark.parametrize(
    ("result", "why"),
    [(TIMED_OUT, "(timeout)"), (FAILED, "(exit status 1): libxl: error: cannot get domain")],
)
async def test_a_host_whose_xl_list_failed_is_not_asked_not_empty(
    result: CommandResult, why: str
) -> None:
    lab = controller(result, listed("xen2", DOM0_ONLY))
    placement = await lab.where()
    assert placement.running_on == []
    assert list(placement.unreachable) == ["xen1"]
    said = placement.unasked()
    assert said.startswith("xen1: `xl list` failed ") and why in said, said


async def test_migrate_says_which_host_could_not_be_asked_and_why() -> None:
    lab = controller(FAILED, listed("xen2", DOM0_ONLY))
    with pytest.raises(Refused) as refused:
        await lab.migrate()
    text = str(refused.value)
    assert "cannot tell where the guest runs" in text and "not running" not in text
    assert "xen1" in text and "`xl list`" in text and "cannot get domain list" in text


async def test_both_hosts_answer_as_before() -> None:
    lab = controller(listed("xen1", DOM0_ONLY), listed("xen2", GUEST_LISTED))
    placement = await lab.where()
    assert (placement.running_on, placement.unreachable, placement.unasked()) == (
        ["xen2"],
        {},
        "",
    )
