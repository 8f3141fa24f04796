"""``ietadm`` as a program: :mod:`backend.sim.tools.ietadm` on a state file.

``python -m tests.support.fake_tools.ietadm ARGS``. After every call it writes IET's
``/proc/net/iet/volume`` and ``session`` below ``$MIGLAB_FAKE_IET_PROC`` when that is
set, where a test points the driver's reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backend.sim.tools.ietadm import PROGRAM, render_proc_session, render_proc_volume, run
from tests.support.fake_tools import run_main

PROC_ENV = "MIGLAB_FAKE_IET_PROC"


def write_proc(state: dict[str, Any]) -> None:
    root = os.environ.get(PROC_ENV)
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / "volume").write_text(render_proc_volume(state))
        (Path(root) / "session").write_text(render_proc_session(state))


def main() -> None:
    run_main(PROGRAM, run, write_proc)


if __name__ == "__main__":
    main()
