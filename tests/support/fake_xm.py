"""A fake Xen 3.x ``xm`` (with its xend) for the Xen driver's tests: xm cannot run here.

It speaks xm's formats as the published captures in ``tests/data/xm`` show them and
xend's source (Xen 3.4.4, ``tools/python/xen``) prints them; the tests check it against
the captures. Subcommands: ``list [DOMAIN]``, ``info``, ``create CFG``, ``shutdown [-w]
DOMAIN``, ``destroy DOMAIN``, ``migrate [-l|--live] DOMAIN HOST``. What no capture or
source line gives (an unknown relocation host, a config file that is not there) is
refused as a limit of the fake, exit 2, never in a made-up xm wording.

State: one JSON file per host, named by ``$MIGLAB_FAKE_STATE``::

    {"hostname": "xen1", "total_memory": 4096, "next_domid": 1,
     "domains": [{"name": "Domain-0", "domid": 0, "memory": 1024, "vcpus": 2,
                  "state": "r-----", "cpu_time": 100.0}],
     "configs": {"/etc/xen/guest.cfg": {"name": "guest", "memory": 1024, "vcpus": 2}},
     "fail_migrate": null,      # "save": xc_save fails, as in the 3.2 capture
     "migrate_hold": null}      # a path: the migration waits for that file to exist

``$MIGLAB_FAKE_PEERS`` maps HOST (as given to ``xm migrate``) to the destination's state
file: the destination's xend relocation server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backend.drivers.parse_xm import MIGRATING_PREFIX, parse_xm_info

STATE_ENV = "MIGLAB_FAKE_STATE"
PEERS_ENV = "MIGLAB_FAKE_PEERS"
XM_DATA = Path(__file__).resolve().parents[1] / "data" / "xm"
INFO_CAPTURE = XM_DATA / "xm-info-3.3-forum.txt"
FAILED_CAPTURE = XM_DATA / "xm-migrate-3.2-xc_save-failed.txt"

Result = tuple[int, str, str]
# xm/main.py _run_cmd: XendInvalidDomain -> exit with its fault code, ERROR_INVALID_DOMAIN.
EXIT_INVALID_DOMAIN = 3
EXIT_ERROR = 1
EXIT_FAKE_LIMIT = 2
HOLD_POLL_S = 0.02


def new_state(hostname: str, total_memory: int = 4096, dom0_memory: int = 1024) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "total_memory": total_memory,
        "next_domid": 1,
        "domains": [
            {
                "name": "Domain-0",
                "domid": 0,
                "memory": dom0_memory,
                "vcpus": 2,
                "state": "r-----",
                "cpu_time": 100.0,
            }
        ],
        "configs": {},
        "fail_migrate": None,
        "migrate_hold": None,
    }


def list_output(domains: list[dict[str, Any]]) -> str:
    """xm/main.py ``xm_brief_list``: the header and one row per domain."""
    header = ("Name", "ID", "Mem", "VCPUs", "State", "Time(s)")
    lines = ["%-40s %5s %5s %5s %10s %9s" % header]  # noqa: UP031 - xm's own format
    for d in domains:
        domid = "" if d["domid"] is None else str(d["domid"])
        lines.append(
            "%-40s %5s %5d %5d %10s %8.1f"  # noqa: UP031 - xm's own format
            % (d["name"], domid, d["memory"], d["vcpus"], d["state"], d["cpu_time"])
        )
    return "\n".join(lines) + "\n"


def info_output(state: dict[str, Any]) -> str:
    """``xm info``: the keys and fixed values of the Xen 3.3 capture, this host's name
    and memory (xm/main.py ``xm_info``: ``"%-23s:" % key, value``)."""
    fields = dict(parse_xm_info(INFO_CAPTURE.read_text()).fields)
    used = sum(d["memory"] for d in state["domains"])
    fields.update(
        host=state["hostname"],
        total_memory=str(state["total_memory"]),
        free_memory=str(state["total_memory"] - used),
    )
    return "".join("%-23s: %s\n" % item for item in fields.items())  # noqa: UP031


def _error(message: str, code: int = EXIT_ERROR, usage: str = "") -> Result:
    return code, usage, f"Error: {message}\n"


def _no_domain(name: str) -> Result:
    # xm/main.py _run_cmd on XendInvalidDomain.
    return _error(f"Domain '{name}' does not exist.", EXIT_INVALID_DOMAIN)


def _find(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((d for d in state["domains"] if name in (d["name"], str(d["domid"]))), None)


def _migrate_usage() -> str:
    """The usage xm prints after a failed migrate: the 3.2 capture's lines after the
    ``Error:`` line, up to the shell prompt."""
    lines = FAILED_CAPTURE.read_text().splitlines(keepends=True)
    return "".join(line for line in lines[2:] if not line.startswith("root@"))


def run(args: list[str], state: dict[str, Any]) -> Result:
    """Every subcommand but ``migrate`` (which needs two hosts: :func:`migrate`)."""
    if not args:
        return EXIT_FAKE_LIMIT, "", "fake xm: a subcommand, please\n"
    command, rest = args[0], args[1:]
    if command == "list":
        if not rest:
            return 0, list_output(state["domains"]), ""
        found = [_find(state, name) for name in rest]
        missing = [name for name, d in zip(rest, found, strict=True) if d is None]
        if missing:
            return _no_domain(missing[0])
        return 0, list_output([d for d in found if d is not None]), ""
    if command == "info":
        return 0, info_output(state), ""
    if command == "create" and len(rest) == 1:
        return _create(state, rest[0])
    if command in ("shutdown", "destroy"):
        wait = "-w" in rest
        names = [a for a in rest if not a.startswith("-")]
        if len(names) != 1:
            return EXIT_FAKE_LIMIT, "", f"fake xm: {command} DOMAIN\n"
        domain = _find(state, names[0])
        if domain is None:
            return _no_domain(names[0])
        state["domains"].remove(domain)
        # xm/shutdown.py wait_shutdown
        out = f"Domain {names[0]} terminated\nAll domains terminated\n" if wait else ""
        return 0, out, ""
    return EXIT_FAKE_LIMIT, "", f"fake xm: {' '.join(args)} is not faked\n"


def _create(state: dict[str, Any], path: str) -> Result:
    config = state["configs"].get(path)
    if config is None:
        return EXIT_FAKE_LIMIT, "", f"fake xm: no config file {path} in the fake's state\n"
    existing = _find(state, config["name"])
    if existing is not None:  # XendDomainInfo.create
        return _error(f"Domain '{config['name']}' already exists with ID '{existing['domid']}'")
    domid = state["next_domid"]
    state["next_domid"] += 1
    state["domains"].append(
        {
            "name": config["name"],
            "domid": domid,
            "memory": config["memory"],
            "vcpus": config["vcpus"],
            "state": "-b----",
            "cpu_time": 0.0,
        }
    )
    # xm/create.py: opts.info('Using config file "%s".'), "Started domain %s (id=%d)"
    return 0, f'Using config file "{path}".\nStarted domain {config["name"]} (id={domid})\n', ""


@contextlib.contextmanager
def _locked(paths: list[str]) -> Iterator[dict[str, dict[str, Any]]]:
    """Lock the state files in one order (no deadlock), load them, save them."""
    order = sorted(set(paths))
    handles = [open(p, "a+") for p in order]  # closed in the finally below
    try:
        for handle in handles:
            fcntl.flock(handle, fcntl.LOCK_EX)
        states = {p: json.loads(Path(p).read_text() or "{}") for p in order}
        yield states
        for p in order:
            Path(p).write_text(json.dumps(states[p], indent=1, sort_keys=True) + "\n")
    finally:
        for handle in handles:
            handle.close()


def migrate(state_path: str, args: list[str]) -> Result:
    """``xm migrate [-l|--live] DOMAIN HOST`` (xend's XendDomain.domain_migrate and
    XendCheckpoint.save/restore): nothing printed on success."""
    names = [a for a in args if a not in ("-l", "--live")]
    if len(names) != 2:
        return EXIT_FAKE_LIMIT, "", "fake xm: migrate [--live] DOMAIN HOST\n"
    name, host = names
    peers = json.loads(os.environ.get(PEERS_ENV) or "{}")
    dest_path = peers.get(host)
    if dest_path is None or os.path.abspath(dest_path) == os.path.abspath(state_path):
        return EXIT_FAKE_LIMIT, "", f"fake xm: no relocation server faked at {host}\n"
    paths = [state_path, dest_path]
    with _locked(paths) as states:
        src, dst = states[state_path], states[dest_path]
        domain = _find(src, name)
        if domain is None:
            return _no_domain(name)
        if src.get("fail_migrate") == "save":
            # The 3.2 capture's failure, with this host's fd and domain id; the guest
            # is resumed at the source (XendCheckpoint.save).
            message = f"/usr/lib/xen/bin/xc_save 4 {domain['domid']} 0 0 1 failed"
            return _error(message, usage=_migrate_usage())
        hold = src.get("migrate_hold")
        guest = domain["name"]
        domain["name"] = MIGRATING_PREFIX + guest  # XendCheckpoint.save renames it
        incoming = {**domain, "name": guest, "domid": dst["next_domid"], "state": "--p---"}
        dst["next_domid"] += 1
        dst["domains"].append(incoming)
    while hold and not os.path.exists(hold):
        time.sleep(HOLD_POLL_S)  # a program of its own: the test releases it
    with _locked(paths) as states:
        src, dst = states[state_path], states[dest_path]
        src["domains"] = [d for d in src["domains"] if d["name"] != MIGRATING_PREFIX + guest]
        for d in dst["domains"]:
            if d["name"] == guest:
                d.update(state="-b----", cpu_time=0.0)
    return 0, "", ""


def main() -> None:
    state_path = os.environ.get(STATE_ENV)
    if not state_path:
        sys.stderr.write(f"fake xm: set {STATE_ENV} to a JSON state file\n")
        sys.exit(EXIT_FAKE_LIMIT)
    args = sys.argv[1:]
    if args[:1] == ["migrate"]:
        code, out, err = migrate(state_path, args[1:])
    else:
        with _locked([state_path]) as states:
            code, out, err = run(args, states[state_path])
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(code)


if __name__ == "__main__":
    main()
