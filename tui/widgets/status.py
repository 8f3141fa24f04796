"""The status bar: lab name, badges (SIMULATED, REPLAY, READ-ONLY), phase, log, clock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.markup import escape
from textual.widgets import Static

from tui.widgets import fmt


@dataclass
class StatusInfo:
    lab: str
    simulated: bool = False
    readonly: bool = False
    replay: str | None = None  # "4× ▶", "paused", "end" for a replay
    scenario: str | None = None  # "migrate-ping", "migrate-ping failed"
    phase: str | None = None
    log: Path | None = None
    elapsed_s: float = 0.0


class StatusBar(Static):
    """One line at the top of the screen."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    _shown: str | None = None

    def show(self, info: StatusInfo) -> None:
        left = [f"[b]miglab[/] {escape(info.lab)}"]
        if info.simulated:
            left.append("[$warning-muted on $warning b] SIMULATED [/]")
        if info.replay is not None:
            left.append(f"[$accent-muted on $accent b] REPLAY {escape(info.replay)} [/]")
        if info.readonly and info.replay is None:
            left.append("[$primary-muted on $primary b] READ-ONLY [/]")
        if info.scenario:
            left.append(f"[b]{escape(info.scenario)}[/]")
        if info.phase:
            left.append(f"[$text-muted]phase[/] [b]{escape(info.phase)}[/]")
        head = " ".join(left)
        clock = fmt.clock(info.elapsed_s)
        width = self.content_size.width or 80
        plain_head = len(self._plain(info))
        room = width - plain_head - len(clock) - 8
        tail = ""
        if info.log is not None and room >= 12:
            tail = f"[$text-muted]log[/] {escape(fmt.ellipsize(str(info.log), room))}  "
        markup = f"{head}  {tail}[b]{clock}[/]"
        if markup != self._shown:
            self._shown = markup
            self.update(markup, layout=False)  # one line, always

    @staticmethod
    def _plain(info: StatusInfo) -> str:
        """The left part as plain text, to know how much room the log path has."""
        parts = [f"miglab {info.lab}"]
        if info.simulated:
            parts.append(" SIMULATED ")
        if info.replay is not None:
            parts.append(f" REPLAY {info.replay} ")
        if info.readonly and info.replay is None:
            parts.append(" READ-ONLY ")
        if info.scenario:
            parts.append(info.scenario)
        if info.phase:
            parts.append(f"phase {info.phase}")
        return " ".join(parts)
