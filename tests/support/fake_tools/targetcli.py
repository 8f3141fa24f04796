"""``targetcli`` as a program: :mod:`backend.sim.tools.targetcli` on a state file.

``python -m tests.support.fake_tools.targetcli ARGS``. After every call it writes the
configfs files the LIO driver reads (:func:`backend.sim.tools.targetcli.configfs_files`)
below ``$MIGLAB_FAKE_CONFIGFS`` when that is set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backend.sim.tools.targetcli import PROGRAM, configfs_files, run
from tests.support.fake_tools import run_main

CONFIGFS_ENV = "MIGLAB_FAKE_CONFIGFS"


def write_configfs(state: dict[str, Any]) -> None:
    root = os.environ.get(CONFIGFS_ENV)
    if not root:
        return
    base = Path(root) / "iscsi"
    if base.exists():  # targets that are gone must vanish, as in configfs
        for path in sorted(base.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    for relative, text in configfs_files(state).items():
        path = Path(root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def main() -> None:
    run_main(PROGRAM, run, write_configfs)


if __name__ == "__main__":
    main()
