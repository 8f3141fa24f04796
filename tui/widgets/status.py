"""The status bar: lab name, badges (SIMULATED, REPLAY, READ-ONLY), phase, log, clock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.content import Content
from textual.widgets import Static

from tui.widgets import fmt
from tui.widgets.safe_text import clean, join, markup


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

    _shown: Content | None = None

    def show(self, info: StatusInfo) -> None:
        # Names come from lab.toml and session logs: filled in as text, never as markup.
        left = [markup("[b]miglab[/] $lab", lab=info.lab)]
        if info.simulated:
            left.append(markup("[$warning-muted on $warning b] SIMULATED [/]"))
        if info.replay is not None:
            left.append(
                markup("[$accent-muted on $accent b] REPLAY $replay [/]", replay=info.replay)
            )
        if info.readonly and info.replay is None:
            left.append(markup("[$primary-muted on $primary b] READ-ONLY [/]"))
        if info.scenario:
            left.append(markup("[b]$scenario[/]", scenario=info.scenario))
        if info.phase:
            left.append(markup("[$text-muted]phase[/] [b]$phase[/]", phase=info.phase))
        head = join(left)
        clock = fmt.clock(info.elapsed_s)
        width = self.content_size.width or 80
        plain_head = len(head.plain)
        room = width - plain_head - len(clock) - 8
        tail = Content("")
        if info.log is not None and room >= 12:
            path = fmt.ellipsize(clean(info.log), room)
            tail = markup("[$text-muted]log[/] $path  ", path=path)
        content = join([head, tail + markup("[b]$clock[/]", clock=clock)], "  ")
        if content != self._shown:
            self._shown = content
            self.update(content, layout=False)  # one line, always
