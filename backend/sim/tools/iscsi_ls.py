"""A fake libiscsi ``iscsi-ls`` (libiscsi-bin 1.19) for simulated hosts.

The real one runs here (and the tests use it against tgtd); the simulated lab has no
real target to ask, so this fake answers from the network view the fake iscsiadm
keeps (``state["iscsiadm"]["portals"]``, filled by
:func:`backend.sim.tools.iscsiadm.offer_target`). Formats and exit codes are the
captures in ``tests/data/tgt`` (``iscsi-ls-*``): targets and LUNs on stdout, login
errors on *stdout* too, a refused connection on stderr, exit 10 for either. Like the
real tool it stops at the first target it cannot log in to.

The CHAP password comes from the URL (``iscsi://user%password@host/``) or, as libiscsi
reads it, from ``LIBISCSI_CHAP_PASSWORD``; whoever runs it folds the latter into the
URL (``tests/support/fake_tools/iscsi_ls.py``), so that :func:`run` stays a pure function of
its arguments.
"""

from __future__ import annotations

import getopt
from typing import Any

from backend.sim.tools import Result

__all__ = ["run"]

PROGRAM = "iscsi-ls"
FAILED = 10
DEFAULT_INITIATOR = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-ls"


def _parse_url(url: str) -> tuple[str | None, str | None, str, int] | None:
    """``iscsi://[user[%pass]@]host[:port]/`` -> (user, password, address, port)."""
    if not url.startswith("iscsi://"):
        return None
    rest = url[len("iscsi://") :].split("/", 1)[0]
    user = password = None
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        user, _, secret = credentials.partition("%")
        password = secret or None
    if rest.startswith("["):
        address, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else "3260"
    else:
        address, _, port = rest.partition(":")
        port = port or "3260"
    if not address or not port.isdigit():
        return None
    return user, password, address, int(port)


def _size(size_bytes: int) -> str:
    # libiscsi prints the last LBA times the block size, rounded down (64 MiB -> 63M).
    value = max(size_bytes - 512, 0)
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if value >= 1 << shift:
            return f"{value >> shift}{unit}"
    return str(value)


def run(argv: list[str], state: dict[str, Any]) -> Result:
    """Run ``iscsi-ls`` with ``argv`` (``argv[0]`` is the program name)."""
    try:
        opts, args = getopt.gnu_getopt(
            argv[1:], "i:ds?", ["initiator-name=", "debug", "show-luns", "url", "help", "usage"]
        )
    except getopt.GetoptError as exc:
        return 1, "", f"{PROGRAM}: {exc.msg}\n"
    given = dict(opts)
    if "-?" in given or "--help" in given or "--usage" in given or len(args) != 1:
        return 1 if len(args) != 1 else 0, "", f"Usage: {PROGRAM} [OPTION...] <iscsi-url>\n"
    url = _parse_url(args[0])
    if url is None:
        return FAILED, "", f"Failed to parse URL: {args[0]}\n"
    user, password, address, port = url
    initiator = given.get("-i") or given.get("--initiator-name") or DEFAULT_INITIATOR
    network = state.get("iscsiadm", {}).get("portals", {})
    key = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    if key not in network:
        return (
            FAILED,
            "",
            "discoveryconnect_cb: connection failed : iscsi_service: socket error "
            "Connection refused(111).\n",
        )
    show_luns = "-s" in given or "--show-luns" in given
    out: list[str] = []
    for target in network[key]:
        allow = target.get("allow")
        if allow is not None and initiator not in allow:
            continue  # the target hides from initiators it does not admit
        if "--url" in given:
            out.append(f"iscsi://{key}/{target['iqn']}/0\n")
            continue
        out.append(f"Target:{target['iqn']} Portal:{key},{target['tpgt']}\n")
        if not show_luns:
            continue
        chap = target.get("chap")
        if chap is not None and (user, password) != (chap["user"], chap["password"]):
            out.append(
                "list_luns: iscsi_connect failed. Failed to log in to target. "
                "Status: Authentication failure(513)\n"
            )
            return FAILED, "".join(out), ""
        for lun in target["luns"]:
            if lun["disk"]:
                size = f" (Size:{_size(int(lun.get('size', 64 << 20)))})"
                out.append(f"Lun:{lun['lun']:<4d} Type:DIRECT_ACCESS{size}\n")
            else:
                out.append(f"Lun:{lun['lun']:<4d} Type:STORAGE_ARRAY_CONTROLLER\n")
    return 0, "".join(out), ""
