"""The ping a run starts keeps probing through ICMP errors: the errors are the unreachable
time the study measures, so a ping that stopped at the first one would lose it.

A real iputils ping in a network namespace made here, towards an address on its own
segment that nobody holds: after ARP gives up, every probe is answered by "Destination
Host Unreachable". With ``-w`` (a deadline) ping exits at that first error; miglab's argv
must send every probe it was asked for. The check counts probes, not seconds.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from backend.probes import new_parser
from backend.probes.ping import ping_command
from tests.conftest import need, need_root

pytestmark = pytest.mark.timeout(120)

# 198.18.0.0/15 is set aside for benchmarking; nothing outside this namespace sees it.
ADDRESS = "198.19.251.1/24"
NOBODY = "198.19.251.9"


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


@pytest.fixture
def lonely_segment() -> Iterator[str]:
    """A namespace whose only segment has no other host on it."""
    need_root()
    need("ip", "ping")
    name = f"miglab-ping-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        ip("-n", name, "addr", "add", ADDRESS, "dev", "va")
        ip("-n", name, "link", "set", "va", "up")
        ip("-n", name, "link", "set", "vb", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def test_the_runs_ping_sends_every_probe_through_unreachable_errors(lonely_segment: str) -> None:
    argv = ping_command(NOBODY, interval_s=0.2, duration_s=6)
    done = subprocess.run(
        ["ip", "netns", "exec", lonely_segment, *argv], capture_output=True, text=True, timeout=100
    )
    lines = done.stdout.splitlines()
    assert any("Destination Host Unreachable" in line for line in lines), done.stdout
    [totals] = [line for line in lines if "packets transmitted" in line]
    assert totals.startswith("30 packets transmitted, 0 received"), totals
    # and the parser records every one of them as lost
    parser = new_parser("ping", "storage")
    samples = [s for line in lines for s in parser.feed(line)]
    lost = {s.values["seq"] for s in samples if s.values.get("lost")}
    assert lost >= set(range(1, 28)), sorted(lost)
