"""The sandbox's network: three namespaces on one bridge, every host link shaped.

::

    root namespace: bridge mlbN-br 198.18.N.1/24  (the console lives here)
      |- veth mlbN-st <-> eth0 in netns mlbN-st           storage 198.18.N.10
      |- veth mlbN-h1 <-> eth0 in netns mlbN-h1 -- br0 -- tap0   host1 198.18.N.11 (on br0)
      '- veth mlbN-h2 <-> eth0 in netns mlbN-h2 -- br0 -- tap0   host2 198.18.N.12 (on br0)
    guest: 198.18.N.50, on tap0 of whichever host runs it

All of it is one L2 segment, so the guest keeps its address when it migrates: QEMU's
announce (gratuitous ARP / RARP) after the switch-over teaches the bridges its new port.
A token bucket on both ends of each veth (the egress of each) makes every host's link a
``link_mbit`` switch port: the guest's iSCSI traffic and the migration share it.

Names carry the prefix ``mlbN`` (N = the sandbox instance, 0-99), which nothing else
uses; the addresses are in 198.18.0.0/15, set aside for benchmarks (RFC 2544).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from backend.sandbox import netns as ip
from backend.transport.base import HostRunner

HOSTS = ("storage", "host1", "host2")
HYPERVISORS = ("host1", "host2")
_SHORT = {"storage": "st", "host1": "h1", "host2": "h2"}
_HOST_OCTET = {"storage": 10, "host1": 11, "host2": 12}
ROOT_OCTET = 1
GUEST_OCTET = 50
MAX_INSTANCE = 99

INNER_LINK = "eth0"  # the namespace's end of its veth
INNER_BRIDGE = "br0"  # in each hypervisor namespace: eth0 + tap0
TAP = "tap0"  # the same name on both hypervisors: the guest's NIC attaches to it

Record = Callable[[str, str, str | None], Awaitable[None]]  # (what, name, kind)
Progress = Callable[[str], object]


@dataclass(frozen=True)
class SandboxNetwork:
    """Names and addresses of sandbox instance ``instance``."""

    instance: int

    def __post_init__(self) -> None:
        if not 0 <= self.instance <= MAX_INSTANCE:
            raise ValueError(f"sandbox instance {self.instance} is not in 0-{MAX_INSTANCE}")

    @property
    def prefix(self) -> str:
        return f"mlb{self.instance}"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"198.18.{self.instance}.0/24")

    def _at(self, octet: int) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.subnet.network_address + octet}/24")

    @property
    def root_interface(self) -> ipaddress.IPv4Interface:
        return self._at(ROOT_OCTET)

    @property
    def guest_interface(self) -> ipaddress.IPv4Interface:
        return self._at(GUEST_OCTET)

    @property
    def guest_mac(self) -> str:
        return f"52:54:00:6d:6c:{self.instance:02x}"

    def netns(self, host: str) -> str:
        return f"{self.prefix}-{_SHORT[host]}"

    def veth(self, host: str) -> str:
        """The root namespace's end of the host's link (the switch port)."""
        return f"{self.prefix}-{_SHORT[host]}"

    def interface(self, host: str) -> ipaddress.IPv4Interface:
        return self._at(_HOST_OCTET[host])

    def address(self, host: str) -> str:
        return str(self.interface(host).ip)

    def host_device(self, host: str) -> str:
        """The device that carries the host's address inside its namespace."""
        return INNER_BRIDGE if host in HYPERVISORS else INNER_LINK

    def is_ours(self, name: str) -> bool:
        """A namespace or link name of this instance (mlb1-... is not mlb10-...)."""
        return name.startswith(self.prefix + "-")


async def instance_conflicts(runner: HostRunner, net: SandboxNetwork) -> list[str]:
    """Why instance ``net`` cannot be built here now (empty: it can)."""
    problems = [f"namespace {n}" for n in await ip.list_netns(runner) if net.is_ours(n)]
    problems += [f"link {n}" for n in await ip.list_links(runner) if net.is_ours(n)]
    problems += await ip.routes_overlapping(runner, net.subnet)
    return problems


async def build_network(
    runner: HostRunner,
    net: SandboxNetwork,
    link_mbit: int,
    record: Record,
    say: Progress,
    *,
    hosts_in_vms: bool = False,
) -> None:
    """Make the bridge, the namespaces and their links; ``record`` each before going on.
    ``hosts_in_vms``: the hypervisors' addresses belong to VMs on their taps (the Xen
    lab's dom0s), not to the namespaces' bridges."""
    say(f"network: bridge {net.bridge} {net.root_interface}, link {link_mbit} Mbit/s")
    await ip.add_bridge(runner, net.bridge)
    await record("link", net.bridge, "bridge")
    await ip.add_address(runner, net.bridge, net.root_interface)
    await ip.set_up(runner, net.bridge)
    for host in HOSTS:
        await _build_host(runner, net, host, link_mbit, record, hosts_in_vms)


async def _build_host(
    runner: HostRunner,
    net: SandboxNetwork,
    host: str,
    link_mbit: int,
    record: Record,
    hosts_in_vms: bool = False,
) -> None:
    ns, veth = net.netns(host), net.veth(host)
    await ip.add_netns(runner, ns)
    await record("netns", ns, None)
    await ip.add_veth(runner, veth, INNER_LINK, ns)
    await record("link", veth, "veth")
    await ip.set_master(runner, veth, net.bridge)
    await ip.set_up(runner, veth)
    await ip.set_up(runner, "lo", ns)
    if host in HYPERVISORS:
        await ip.add_bridge(runner, INNER_BRIDGE, ns)
        await ip.set_master(runner, INNER_LINK, INNER_BRIDGE, ns)
        await ip.add_tap(runner, TAP, ns)
        await ip.set_master(runner, TAP, INNER_BRIDGE, ns)
        await ip.set_up(runner, TAP, ns)
    await ip.set_up(runner, INNER_LINK, ns)
    device = net.host_device(host)
    if device != INNER_LINK:
        await ip.set_up(runner, device, ns)
    if not (hosts_in_vms and host in HYPERVISORS):
        await ip.add_address(runner, device, net.interface(host), ns)
    # Both directions: into the namespace (the root end's egress) and out of it.
    await ip.shape(runner, veth, link_mbit)
    await ip.shape(runner, INNER_LINK, link_mbit, ns)
