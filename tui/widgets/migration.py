"""The migration bar: progress while a guest migrates, the result after.

It shows what the hypervisor reports and nothing it does not: QEMU gives
transferred / remaining / total bytes, rate and iterations; Xen's ``xl migrate``
gives none of these, so then only the elapsed time shows, with no bar. No
animation: a calm screen for a long migration.
"""

from __future__ import annotations

from textual.markup import escape
from textual.widgets import Static

from tui.widgets import fmt
from tui.widgets.lab_state import MigrationView

_BAR_MIN = 10


def bar(fraction: float, width: int) -> str:
    """A progress bar of ``width`` cells in theme-variable markup."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return f"[$accent]{'█' * filled}[/][$panel-lighten-2]{'░' * (width - filled)}[/]"


class MigrationBar(Static):
    """Two lines while a migration runs (numbers, bar), one with the last result."""

    DEFAULT_CSS = """
    MigrationBar {
        height: auto;
        max-height: 2;
        display: none;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    _shown: str | None = None

    def show(self, migration: MigrationView, now: float) -> None:
        if migration.result is None and not migration.active:
            self.display = False
            return
        if not self.display:
            self.display = True
        markup = self._progress(migration, now) if migration.active else self._result(migration)
        if markup != self._shown:
            # Reflow only when the bar grows or shrinks (one line or two).
            grew = self._shown is None or markup.count("\n") != self._shown.count("\n")
            self._shown = markup
            self.update(markup, layout=grew)
        self.set_class(migration.active, "-active")
        result = migration.result
        self.set_class(not migration.active and result is not None and not result.ok, "-failed")

    def _progress(self, m: MigrationView, now: float) -> str:
        route = f"{escape(m.source or '?')} → {escape(m.dest or '?')}"
        parts = [f"[b]migrating[/] {escape(m.domain or '')} {route}"]
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
        line = "  ".join(parts)
        fraction = self._fraction(m)
        width = max(self.content_size.width - 6, _BAR_MIN)
        if fraction is None:
            return line
        return f"{line}\n{bar(fraction, width)} {fraction * 100:3.0f}%"

    @staticmethod
    def _fraction(m: MigrationView) -> float | None:
        if m.total_bytes and m.remaining_bytes is not None:
            # RAM is copied more than once; remaining over total is what is left now.
            return 1.0 - m.remaining_bytes / m.total_bytes
        if m.total_bytes and m.transferred_bytes is not None:
            return m.transferred_bytes / m.total_bytes
        return None

    @staticmethod
    def _result(m: MigrationView) -> str:
        result = m.result
        assert result is not None
        route = f"{escape(result.source)} → {escape(result.dest)}"
        if result.ok:
            parts = [f"[$success]migrated[/] {escape(result.domain)} {route}"]
            if result.total_time_ms is not None:
                parts.append(f"in {fmt.duration(result.total_time_ms / 1000)}")
            if result.downtime_ms is not None:
                parts.append(f"downtime {result.downtime_ms:.0f} ms")
            if result.transferred_bytes is not None:
                parts.append(f"sent {fmt.size(result.transferred_bytes)}")
            if result.iterations is not None:
                parts.append(f"{result.iterations} iter")
            return "  ".join(parts)
        error = escape(result.error or "no reason given")
        return f"[$error]migration failed[/] {escape(result.domain)} {route}: {error}"
