"""The four panes: the storage node, the two hypervisor hosts, the guest.

Each pane draws its part of :class:`~tui.widgets.lab_state.LabState` when the screen
says it changed. Words carry the meaning and colour only repeats it (the console
must read on a monochrome screen): "connected", "logged-in", "unreachable".
Colours come from theme variables in the markup, never literal colours; names, states
and reasons from hosts and lab.toml are filled in as text (:mod:`tui.widgets.safe_text`).
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from tui.widgets import fmt
from tui.widgets.lab_state import HostView, LabState
from tui.widgets.safe_text import markup, plain

_STATE_LOOK = {
    "connected": ("●", "$success"),
    "connecting": ("◌", "$warning"),
    "disconnected": ("○", "$error"),
    "failed": ("✗", "$error"),
    "closed": ("○", "$text-muted"),
    "unknown": ("·", "$text-muted"),
}

_SESSION_LOOK = {"logged-in": "$success", "logged-out": "$text-muted", "failed": "$error"}


def state_line(host: HostView) -> Content:
    glyph, colour = _STATE_LOOK.get(host.state, ("?", "$warning"))
    line = markup(f"[{colour}]$glyph $state[/]", glyph=glyph, state=host.state)
    if host.state == "connected" and host.rtt_ms is not None:
        line += markup(" [$text-muted]$rtt[/]", rtt=f"{host.rtt_ms:.1f}ms")
    elif host.reason and host.state in ("disconnected", "failed"):
        line += markup(" [$text-muted]$reason[/]", reason=host.reason)
    return line


class Pane(Static):
    """A bordered pane whose classes follow its host's connection state."""

    _shown: Content | None = None

    def set_state_class(self, state: str) -> None:
        for name in _STATE_LOOK:
            self.set_class(name == state, f"-{name}")

    def set_lines(self, lines: list[Content]) -> None:
        """Show ``lines``; nothing is redrawn when they did not change."""
        content = Content("\n").join(lines)
        if content != self._shown:
            self._shown = content
            # A pane's size is set by the layout, not by its text: repaint, no reflow.
            self.update(content, layout=False)


class HostPane(Pane):
    """A hypervisor host: reachable, free memory, domains, iSCSI session, the guest mark."""

    def __init__(self, host: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="pane host-pane")
        self.host = host
        self.border_title = plain(host)
        self.border_subtitle = "hypervisor"

    def show(self, state: LabState) -> None:
        host = state.hosts[self.host]
        guest = state.guest
        here = guest.host == self.host
        self.set_state_class(host.state)
        self.set_class(here, "-guest-here")
        self.border_title = plain(f"{self.host} ★ guest" if here else self.host)
        lines = [state_line(host)]
        if host.domains:
            for name, dom_state in sorted(host.domains.items()):
                mark = "[$accent]★[/]" if name == guest.name and here else " "
                lines.append(
                    markup(f"{mark}$name [$text-muted]$state[/]", name=name, state=dom_state)
                )
        else:
            lines.append(markup("[$text-muted]no domains[/]"))
        if host.session is not None:
            colour = _SESSION_LOOK.get(host.session, "$warning")
            lines.append(markup(f"iscsi [{colour}]$session[/]", session=host.session))
        else:
            lines.append(markup("[$text-muted]iscsi: no session[/]"))
        if host.free_memory_mb is not None:
            total = f"/{host.total_memory_mb:.0f}" if host.total_memory_mb is not None else ""
            lines.append(plain(f"{host.free_memory_mb:.0f}{total} MB free"))
        self.set_lines(lines)


class StoragePane(Pane):
    """The storage node: the target, its LUN, the initiators logged in."""

    def __init__(self, host: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="pane storage-pane")
        self.host = host
        self.border_title = plain(host)
        self.border_subtitle = "storage"

    def show(self, state: LabState) -> None:
        host = state.hosts[self.host]
        storage = state.storage
        layout = state.layout
        self.set_state_class(host.state)
        lines = [state_line(host)]
        driver = layout.storage_driver or "target"
        iqn = storage.iqn or layout.iqn or "?"
        lines.append(markup("$driver [$text-muted]$iqn[/]", driver=driver, iqn=iqn))
        lun = "?" if storage.lun is None else str(storage.lun)
        backing = f" {storage.backing}" if storage.backing else ""
        if storage.exported:
            lines.append(markup("LUN $lun$backing [$success]exported[/]", lun=lun, backing=backing))
        else:
            lines.append(markup("LUN $lun [$text-muted]not exported[/]", lun=lun))
        logged = [h for h, s in storage.initiators.items() if s == "logged-in"]
        if logged:
            names = [markup("[$success]$host[/]", host=h) for h in logged]
            lines.append(Content("in: ") + Content(", ").join(names))
        else:
            lines.append(markup("[$text-muted]no initiator logged in[/]"))
        self.set_lines(lines)


class GuestPane(Pane):
    """The guest: where it runs, whether it answers, its current probe values."""

    def __init__(self, name: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="pane guest-pane")
        self.guest = name
        self.border_title = plain(name)
        self.border_subtitle = "guest"

    def show(self, state: LabState, now: float) -> None:
        guest = state.guest
        where = (
            markup(
                "on [$accent b]$host[/] [$text-muted]$state[/]",
                host=guest.host,
                state=guest.state or "",
            )
            if guest.host
            else markup("[$text-muted]not running[/]")
        )
        lines = [where]
        reachable = guest.reachable
        if reachable is None:
            lines.append(markup("[$text-muted]· not pinged yet[/]"))
            self.set_state_class("unknown")
        elif reachable:
            lines.append(markup("[$success]● reachable[/]"))
            self.set_state_class("connected")
        else:
            since = guest.unreachable_since
            gone = f" {fmt.duration(now - since)}" if since is not None else ""
            lines.append(markup("[$error]○ unreachable$gone[/]", gone=gone))
            self.set_state_class("disconnected")
        for trace in state.traces.traces.values():
            if trace.last_value is None:
                continue
            label = state.label(trace, short=True)
            value = fmt.number(trace.last_value, trace.unit)
            line = markup("$label [b]$value[/]", label=label, value=value)
            if trace.lost:
                line += markup(" [$error]lost $lost[/]", lost=trace.lost)
            lines.append(line)
        self.set_lines(lines)
