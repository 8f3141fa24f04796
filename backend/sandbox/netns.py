"""`ip` and `tc` as small async functions: namespaces, links, addresses, qdiscs.

Everything runs on this machine through a :class:`HostRunner` (a LocalRunner), so each
command is an event pair in the log and a failure raises :class:`CommandFailed` naming
the command and ``ip``'s own stderr. ``netns=None`` means the root namespace; otherwise
``ip -n NAME`` / ``tc -n NAME`` act inside that namespace. Looking (``*_info``,
``list_*``) never changes anything; the callers decide what to create or remove.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from typing import Any

from backend.transport.base import HostRunner


def _ip(netns: str | None, *args: str) -> list[str]:
    return ["ip", *(["-n", netns] if netns else []), *args]


def _tc(netns: str | None, *args: str) -> list[str]:
    return ["tc", *(["-n", netns] if netns else []), *args]


async def _json(runner: HostRunner, argv: list[str]) -> Any:
    result = (await runner.run(argv, log_output=False)).check()
    return json.loads(result.stdout) if result.stdout.strip() else []


# -- looking ---------------------------------------------------------------------------


async def list_netns(runner: HostRunner) -> list[str]:
    """Names of the network namespaces ``ip netns`` knows (under /run/netns)."""
    result = (await runner.run(["ip", "netns", "list"], log_output=False)).check()
    # Lines are "NAME" or "NAME (id: N)".
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def _netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except FileNotFoundError:
        return None


async def netns_inode(name: str) -> int | None:
    """The namespace's identity (its nsfs inode), None if ``ip netns`` has no such name.
    A namespace deleted and made again under the same name has another inode."""
    return await asyncio.to_thread(_netns_inode, name)


async def link_info(runner: HostRunner, name: str, netns: str | None = None) -> dict[str, Any]:
    """``ip -d -j link show NAME``'s object, or {} when there is no such link."""
    result = await runner.run(_ip(netns, "-d", "-j", "link", "show", "dev", name), log_output=False)
    if not result.ok:
        return {}  # "Device "X" does not exist."
    links = json.loads(result.stdout or "[]")
    return dict(links[0]) if links else {}


def link_kind(info: dict[str, Any]) -> str | None:
    """The kind ("bridge", "veth", "tun"...) of a :func:`link_info` object."""
    kind = info.get("linkinfo", {}).get("info_kind")
    return str(kind) if kind is not None else None


async def list_links(runner: HostRunner, netns: str | None = None) -> list[str]:
    return [str(link["ifname"]) for link in await _json(runner, _ip(netns, "-j", "link", "show"))]


async def routes_overlapping(runner: HostRunner, subnet: ipaddress.IPv4Network) -> list[str]:
    """Root-namespace routes and addresses inside ``subnet`` (a broader route, like a
    default route, does not count: the subnet's own route would be more specific)."""
    found: list[str] = []
    for route in await _json(runner, ["ip", "-4", "-j", "route", "show", "table", "all"]):
        dst = route.get("dst", "")
        if dst in ("", "default"):
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and net.subnet_of(subnet):
            found.append(f"route {dst} dev {route.get('dev', '?')}")
    for link in await _json(runner, ["ip", "-4", "-j", "addr", "show"]):
        for addr in link.get("addr_info", []):
            if ipaddress.ip_address(addr["local"]) in subnet:
                found.append(f"address {addr['local']} on {link['ifname']}")
    return found


async def qdisc(runner: HostRunner, dev: str, netns: str | None = None) -> dict[str, Any]:
    """The root qdisc of ``dev`` (``tc -j qdisc show``), {} if none is listed."""
    for item in await _json(runner, _tc(netns, "-j", "qdisc", "show", "dev", dev)):
        if item.get("root"):
            return dict(item)
    return {}


async def netns_pids(runner: HostRunner, netns: str) -> list[int]:
    """Processes whose network namespace is ``netns``."""
    result = await runner.run(["ip", "netns", "pids", netns], log_output=False)
    if not result.ok:
        return []
    return [int(word) for word in result.stdout.split() if word.isdigit()]


# -- making ----------------------------------------------------------------------------


async def add_netns(runner: HostRunner, name: str) -> None:
    (await runner.run(["ip", "netns", "add", name])).check()


async def add_bridge(runner: HostRunner, name: str, netns: str | None = None) -> None:
    # No STP and no forwarding delay: a port forwards as soon as it is up.
    argv = _ip(netns, "link", "add", "name", name, "type", "bridge", "stp_state", "0")
    (await runner.run([*argv, "forward_delay", "0"])).check()


async def add_veth(runner: HostRunner, name: str, peer: str, peer_netns: str) -> None:
    """A veth pair: ``name`` in the root namespace, ``peer`` made directly in ``peer_netns``
    (so no link of ours ever exists under the peer's name in the root namespace)."""
    argv = ["ip", "link", "add", "name", name, "type", "veth"]
    (await runner.run([*argv, "peer", "name", peer, "netns", peer_netns])).check()


async def add_tap(runner: HostRunner, name: str, netns: str) -> None:
    """A persistent tap device (QEMU attaches to it by name, as root)."""
    (await runner.run(_ip(netns, "tuntap", "add", "dev", name, "mode", "tap"))).check()


async def set_up(runner: HostRunner, name: str, netns: str | None = None) -> None:
    (await runner.run(_ip(netns, "link", "set", "dev", name, "up"))).check()


async def set_master(runner: HostRunner, name: str, bridge: str, netns: str | None = None) -> None:
    (await runner.run(_ip(netns, "link", "set", "dev", name, "master", bridge))).check()


async def add_address(
    runner: HostRunner, dev: str, address: ipaddress.IPv4Interface, netns: str | None = None
) -> None:
    (await runner.run(_ip(netns, "addr", "add", str(address), "dev", dev))).check()


def tbf_argv(dev: str, mbit: int, netns: str | None = None) -> list[str]:
    """The study's 100 Mbit/s switch port: a token bucket on the device's egress."""
    rate = f"{mbit}mbit"
    return _tc(netns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
               "burst", "32kbit", "latency", "400ms")  # fmt: skip


async def shape(runner: HostRunner, dev: str, mbit: int, netns: str | None = None) -> None:
    (await runner.run(tbf_argv(dev, mbit, netns))).check()


# -- removing --------------------------------------------------------------------------


async def delete_link(runner: HostRunner, name: str) -> None:
    (await runner.run(["ip", "link", "delete", "dev", name])).check()


async def delete_netns(runner: HostRunner, name: str) -> None:
    (await runner.run(["ip", "netns", "delete", name])).check()
