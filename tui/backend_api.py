"""The interface the console drives: everything the app knows about a lab goes through it.

The Textual app never runs a command and never imports a driver. It talks to one
:class:`ConsoleBackend`: it subscribes to the backend's events (the same stream the
session log records), calls its async actions from Textual workers, and asks it for
the exact commands a destructive action would run before it asks the user.

Two implementations are planned: the LabController adapter (a live or simulated lab)
and :class:`tui.replay.ReplayBackend` (a saved session log played back). A backend
that cannot change hosts (a replay, ``--readonly``) says so with :attr:`readonly`;
the app then refuses every host-changing key before it reaches the backend, and the
backend still raises :class:`ActionRefused` if called anyway.

Contract for implementers:

* ``subscribe(callback)`` is called once, before ``start()``. The callback must be
  called on the app's event loop (the backend runs there, in workers); it is cheap
  and never blocks (it appends to a buffer).
* Actions raise on failure. The message is shown to the user as it is, so it names
  the host, the command and its stderr (``CommandFailed``, ``DriverError`` do).
* ``cancel()`` stops the running migration or scenario; the coroutine of that
  action then returns or raises, after its own cleanup.
* ``close()`` stops whatever still runs (cleanly: a scenario's cleanup runs), saves
  the session log and closes the connections. It is called once, on quit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from backend.events import Event

if TYPE_CHECKING:  # types only: a replay needs neither pydantic's lab models nor asyncssh
    from backend.config import LabConfig
    from backend.drivers.base import HostCommand
    from backend.session import EndStatus

EventCallback = Callable[[Event], None]


class ActionRefused(Exception):
    """An action this backend does not allow (read-only console, a replay)."""


@dataclass(frozen=True)
class LabLayout:
    """The names the console draws: which host plays which part, what the guest is."""

    name: str
    storage_host: str
    hypervisor_hosts: tuple[str, str]
    guest: str
    guest_address: str | None = None
    storage_driver: str | None = None
    hypervisor_driver: str | None = None
    iqn: str | None = None
    lun: int | None = None
    portal: str | None = None
    guest_memory_mb: int | None = None
    guest_vcpus: int | None = None
    link_mbit: int | None = None

    @classmethod
    def from_config(cls, lab: LabConfig) -> LabLayout:
        first, second = lab.hypervisor.hosts
        return cls(
            name=lab.lab.name,
            storage_host=lab.storage.host,
            hypervisor_hosts=(first, second),
            guest=lab.guest.name,
            guest_address=lab.guest.address,
            storage_driver=lab.storage.driver,
            hypervisor_driver=lab.hypervisor.driver,
            iqn=lab.storage.iqn,
            lun=lab.storage.lun,
            portal=str(lab.storage.portal),
            guest_memory_mb=lab.guest.memory_mb,
            guest_vcpus=lab.guest.vcpus,
            link_mbit=lab.lab.link_mbit,
        )

    @classmethod
    def from_lab_dump(cls, data: Mapping[str, Any]) -> LabLayout:
        """From the lab as a session log's header stores it (``LabConfig.model_dump``).

        Tolerant: a log written by another version may miss keys; what is missing
        is drawn as unknown rather than refusing to replay the log.
        """

        def table(name: str) -> Mapping[str, Any]:
            value = data.get(name)
            return value if isinstance(value, Mapping) else {}

        lab, storage, hypervisor, guest = (
            table("lab"),
            table("storage"),
            table("hypervisor"),
            table("guest"),
        )
        hosts = hypervisor.get("hosts")
        if (
            isinstance(hosts, Sequence)
            and len(hosts) == 2
            and all(isinstance(h, str) for h in hosts)
        ):
            pair = (str(hosts[0]), str(hosts[1]))
        else:
            pair = ("host1", "host2")

        def text(source: Mapping[str, Any], key: str) -> str | None:
            value = source.get(key)
            return value if isinstance(value, str) else None

        def number(source: Mapping[str, Any], key: str) -> int | None:
            value = source.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        portal = storage.get("portal")
        if isinstance(portal, Mapping):  # a dump made without the portal's serializer
            portal = f"{portal.get('address')}:{portal.get('port')}"
        return cls(
            name=text(lab, "name") or "lab",
            storage_host=text(storage, "host") or "storage",
            hypervisor_hosts=pair,
            guest=text(guest, "name") or "guest",
            guest_address=text(guest, "address"),
            storage_driver=text(storage, "driver"),
            hypervisor_driver=text(hypervisor, "driver"),
            iqn=text(storage, "iqn"),
            lun=number(storage, "lun"),
            portal=portal if isinstance(portal, str) else None,
            guest_memory_mb=number(guest, "memory_mb"),
            guest_vcpus=number(guest, "vcpus"),
            link_mbit=number(lab, "link_mbit"),
        )

    def other_host(self, host: str) -> str:
        """The hypervisor host that is not ``host``."""
        first, second = self.hypervisor_hosts
        return second if host == first else first


@dataclass(frozen=True)
class ScenarioInfo:
    """One scenario the run picker offers."""

    id: str
    title: str
    description: str = ""


class ConsoleBackend(Protocol):
    """What the console needs from a lab (live, simulated or replayed)."""

    @property
    def layout(self) -> LabLayout: ...

    @property
    def simulated(self) -> bool:
        """True for the built-in simulated lab (the status bar shows SIMULATED)."""
        ...

    @property
    def readonly(self) -> bool:
        """True when no action may change a host (``--readonly``, a replay)."""
        ...

    @property
    def session_log(self) -> Path | None:
        """The session log being written (or replayed); None if there is none."""
        ...

    @property
    def session_start(self) -> float:
        """Wall-clock time the session began (the zero of every time axis)."""
        ...

    def clock(self) -> float:
        """The session's current wall-clock time: ``time.time()`` live, the position in a replay."""
        ...

    def subscribe(self, callback: EventCallback) -> None: ...

    async def start(self) -> None:
        """Connect (or begin playing); returns once the backend is up."""
        ...

    async def close(self) -> None: ...

    def scenarios(self) -> Sequence[ScenarioInfo]: ...

    async def prepare(self) -> None:
        """Export the disk on the storage node and log both hypervisor hosts in."""
        ...

    async def boot(self, host: str) -> None: ...

    async def migrate(self, dest: str) -> None: ...

    async def run_scenario(self, scenario_id: str) -> None: ...

    async def cancel(self) -> None: ...

    async def plan_cancel(self) -> list[HostCommand]: ...

    async def plan_shutdown(self, host: str) -> list[HostCommand]: ...

    async def shutdown_guest(self, host: str) -> None: ...

    async def plan_destroy(self, host: str) -> list[HostCommand]: ...

    async def destroy_guest(self, host: str) -> None: ...

    async def plan_logout(self, host: str) -> list[HostCommand]: ...

    async def logout(self, host: str) -> None: ...

    async def plan_unexport(self) -> list[HostCommand]: ...

    async def unexport(self) -> None: ...


@runtime_checkable
class RecordsEndStatus(Protocol):
    """A backend whose session log's end marker the console tells how it ended."""

    def set_end_status(self, status: EndStatus) -> None:
        """ "interrupted" (quitting stopped an action) or "crashed" (an unhandled error);
        otherwise the backend says "ok" or "failed" from how its last action ended."""
        ...


@runtime_checkable
class PingControls(Protocol):
    """A backend that pings the guest by itself (a live lab's console)."""

    @property
    def ping_interval_s(self) -> float | None:
        """Seconds between its pings of the guest; None: it does not ping."""
        ...

    def set_ping_interval(self, interval_s: float | None) -> None: ...


@runtime_checkable
class ReplayControls(Protocol):
    """Extra controls of a backend that plays a recording (speed, pause)."""

    @property
    def speed(self) -> float:
        """Session seconds per wall-clock second; 0 means as fast as possible."""
        ...

    def set_speed(self, speed: float) -> None: ...

    @property
    def paused(self) -> bool: ...

    def toggle_pause(self) -> None: ...

    @property
    def finished(self) -> bool: ...

    @property
    def duration(self) -> float:
        """Seconds from the session's start to its last event."""
        ...


class ReadOnlyActions:
    """Every action refused: the action half of a backend that only shows a lab."""

    refusal = "this console cannot change hosts"

    def scenarios(self) -> Sequence[ScenarioInfo]:
        return ()

    def _refuse(self) -> ActionRefused:
        return ActionRefused(self.refusal)

    async def prepare(self) -> None:
        raise self._refuse()

    async def boot(self, host: str) -> None:
        raise self._refuse()

    async def migrate(self, dest: str) -> None:
        raise self._refuse()

    async def run_scenario(self, scenario_id: str) -> None:
        raise self._refuse()

    async def cancel(self) -> None:
        raise self._refuse()

    async def plan_cancel(self) -> list[HostCommand]:
        raise self._refuse()

    async def plan_shutdown(self, host: str) -> list[HostCommand]:
        raise self._refuse()

    async def shutdown_guest(self, host: str) -> None:
        raise self._refuse()

    async def plan_destroy(self, host: str) -> list[HostCommand]:
        raise self._refuse()

    async def destroy_guest(self, host: str) -> None:
        raise self._refuse()

    async def plan_logout(self, host: str) -> list[HostCommand]:
        raise self._refuse()

    async def logout(self, host: str) -> None:
        raise self._refuse()

    async def plan_unexport(self) -> list[HostCommand]:
        raise self._refuse()

    async def unexport(self) -> None:
        raise self._refuse()
