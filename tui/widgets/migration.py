"""The migration bar: progress while a guest migrates, the result after.

It shows what the hypervisor reports and nothing it does not: QEMU gives
transferred / remaining / total bytes, rate and iterations; Xen's ``xl migrate``
gives none of these, so then only the elapsed time shows, with no bar. No
animation: a calm screen for a long migration.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from tui.widgets import fmt
from tui.widgets.lab_state import MigrationView
from tui.widgets.safe_text import markup, plain

_BAR_MIN = 10


def bar(fraction: float, width: int) -> Content:
    """A progress bar of ``width`` cells in theme colours."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return markup(
        "[$accent]$done[/][$panel-lighten-2]$left[/]",
        done="█" * filled,
        left="░" * (width - filled),
    )


class MigrationBar(Static):
    """Two lines while a migration runs (numbers, bar); after it, the hypervisor's result
    and, once ping could tell, what the network saw."""

    DEFAULT_CSS = """
    MigrationBar {
        height: auto;
        max-height: 2;
        display: none;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    _shown: Content | None = None

    def show(self, migration: MigrationView, now: float) -> None:
        if migration.result is None and not migration.active:
            self.display = False
            return
        if not self.display:
            self.display = True
        content = self._progress(migration, now) if migration.active else self._result(migration)
        if content != self._shown:
            # Reflow only when the bar grows or shrinks (one line or two).
            grew = self._shown is None or content.plain.count("\n") != self._shown.plain.count("\n")
            self._shown = content
            self.update(content, layout=grew)
        self.set_class(migration.active, "-active")
        result = migration.result
        self.set_class(not migration.active and result is not None and not result.ok, "-failed")

    def _progress(self, m: MigrationView, now: float) -> Content:
        route = f"{m.source or '?'} → {m.dest or '?'}"
        head = markup("[b]migrating[/] $domain $route", domain=m.domain or "", route=route)
        parts: list[str] = []
        if m.iteration is not None:
            parts.append(f"iter {m.iteration}")
        if m.transferred_bytes is not None:
            total = f"/{fmt.size(m.total_bytes)}" if m.total_bytes else ""
            parts.append(f"{fmt.size(m.transferred_bytes)}{total}")
        if m.remaining_bytes is not None:
            parts.append(f"left {fmt.size(m.remaining_bytes)}")
        if m.mbps is not None:
            parts.append(f"{m.mbps:.1f} Mbit/s")
        if m.expected_downtime_ms is not None:
            parts.append(f"est. downtime {m.expected_downtime_ms:.0f} ms")
        if m.started is not None:
            parts.append(fmt.duration(now - m.started))
        line = Content("  ").join([head, *(plain(part) for part in parts)])
        fraction = self._fraction(m)
        width = max(self.content_size.width - 6, _BAR_MIN)
        if fraction is None:
            return line
        return line + "\n" + bar(fraction, width) + f" {fraction * 100:3.0f}%"

    @staticmethod
    def _fraction(m: MigrationView) -> float | None:
        if m.total_bytes and m.remaining_bytes is not None:
            # RAM is copied more than once; remaining over total is what is left now.
            return 1.0 - m.remaining_bytes / m.total_bytes
        if m.total_bytes and m.transferred_bytes is not None:
            return m.transferred_bytes / m.total_bytes
        return None

    @staticmethod
    def _result(m: MigrationView) -> Content:
        result = m.result
        assert result is not None
        route = f"{result.source} → {result.dest}"
        if result.ok:
            head = markup("[$success]migrated[/] $domain $route", domain=result.domain, route=route)
            parts: list[str] = []
            if result.total_time_ms is not None:
                parts.append(f"in {fmt.duration(result.total_time_ms / 1000)}")
            if result.downtime_ms is not None:
                parts.append(f"downtime {result.downtime_ms:.0f} ms")
            if result.transferred_bytes is not None:
                parts.append(f"sent {fmt.size(result.transferred_bytes)}")
            if result.iterations is not None:
                parts.append(f"{result.iterations} iter")
            line = Content("  ").join([head, *(plain(part) for part in parts)])
            if m.measured is None:
                return line
            # What the network saw: a line of its own, so a narrow screen still shows it.
            return line + "\n" + plain(f"  network: {m.measured.network_text()}")
        return markup(
            "[$error]migration failed[/] $domain $route: $error",
            domain=result.domain,
            route=route,
            error=result.error or "no reason given",
        )
