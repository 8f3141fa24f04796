"""The wait for a guest's console line returns whole lines only."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.sandbox.guest_image import READY_MARKER, wait_for_console


async def test_a_line_that_reached_the_log_in_pieces_is_returned_whole(tmp_path: Path) -> None:
    # Under TCG the guest's ready line reached the serial log in two writes; a wait that
    # read between them returned "MIGLAB-GUEST-READY" without its ip= and disks=.
    log = tmp_path / "serial.log"
    log.write_text(f"booting\r\n{READY_MARKER}")
    with pytest.raises(TimeoutError):  # one look (no time to wait): half a line is no line
        await wait_for_console(log, timeout=0)
    with log.open("a") as handle:
        handle.write(" ip=198.18.0.50/24 disks=vda\r\n")
    assert await wait_for_console(log, timeout=0) == f"{READY_MARKER} ip=198.18.0.50/24 disks=vda"
