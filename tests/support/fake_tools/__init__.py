"""The simulated storage tools (:mod:`backend.sim.tools`) and Xen 4.17's ``xl`` as programs.

A test puts wrapper scripts named like the real tools on ``PATH`` (or in a real sshd
session's ``PATH``) and drives a driver through ``LocalRunner`` or SSH exactly as on a
real host. Each program module here, ``python -m tests.support.fake_tools.NAME ARGS``,
runs the pure fake ``run(argv, state)`` on the state in the JSON file named by the
environment variable ``MIGLAB_FAKE_STATE`` (:func:`run_main`). The file is locked while
a call runs, so concurrent calls queue as they would at the real daemon.

``test`` for the fake host is :func:`test_main`
(``python -c "from tests.support.fake_tools import test_main; test_main()"``).
The demo's simulated hosts run the same fakes in-process (:mod:`backend.sim.commands`);
only these harnesses, and :mod:`tests.support.fake_tools.xl`, are for tests alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from backend.sim.tools import Result, device
from backend.sim.tools.iscsiadm import test_block

__all__ = [
    "STATE_ENV",
    "Tool",
    "load_state",
    "run_main",
    "save_state",
    "test_main",
    "test_path",
]

STATE_ENV = "MIGLAB_FAKE_STATE"

Tool = Callable[[list[str], dict[str, Any]], Result]


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a state file (a missing or empty file is an empty state)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the fake state must be a JSON object")
    return data


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")


def run_main(
    program: str,
    tool: Tool,
    after: Callable[[dict[str, Any]], None] | None = None,
) -> NoReturn:
    """Run ``tool`` as the program ``program`` on the state file, print, exit.

    ``after(state)`` runs with the lock still held (e.g. to write the ``/proc`` or
    configfs files a tool's kernel side would show).
    """
    state_path = os.environ.get(STATE_ENV)
    if not state_path:
        print(f"{program}: fake tool: set {STATE_ENV} to a JSON state file", file=sys.stderr)
        sys.exit(2)
    with open(state_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        handle.seek(0)
        text = handle.read()
        state: dict[str, Any] = json.loads(text) if text.strip() else {}
        code, out, err = tool([program, *sys.argv[1:]], state)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(state, indent=1, sort_keys=True) + "\n")
        handle.flush()
        if after is not None:
            after(state)
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.write(err)
    sys.exit(code % 256)


def test_path(args: Sequence[str], state: dict[str, Any]) -> bool | None:
    """``test -b|-f|-e PATH`` on the simulated host; None when the state does not know.

    Block devices and files come from ``state["devices"]``; iSCSI disks (their
    ``/dev/sdX`` and ``/dev/disk/by-path`` names) from the fake iscsiadm's sessions.
    """
    if len(args) != 2 or args[0] not in ("-b", "-f", "-e"):
        return None
    flag, path = args
    found = device(state, path)
    if found is not None:
        return flag == "-e" or (flag == "-b") == bool(found["block"])
    if path.startswith("/dev/"):
        if test_block(path, state):
            return flag != "-f"
    if path.startswith(("/dev/disk/", "/dev/sd")):
        return False  # the simulated host's disks are all in the state
    return None


def test_main() -> None:
    """``test`` for a simulated host: what the state knows, anything else to the real test."""
    args = sys.argv[1:]
    state_path = os.environ.get(STATE_ENV)
    if state_path:
        # Locked like every tool: a look-up may advance udev's simulated delay.
        with open(state_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            text = handle.read()
            state: dict[str, Any] = json.loads(text) if text.strip() else {}
            answer = test_path(args, state)
            if answer is not None:
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(state, indent=1, sort_keys=True) + "\n")
                handle.flush()
        if answer is not None:
            sys.exit(0 if answer else 1)
    os.execv("/usr/bin/test", ["test", *args])
