"""A table of commands drawn line by line, each row drawn once per look.

The command log used Textual's DataTable. It draws every cell through Rich's console and
forgets all of them whenever it is resized, shown again, gets a row, or the theme changes:
with 20 commands that was 15 ms of each frame after ``l`` or ``t``, most of the key's time.
Here a row is one Rich ``Text`` turned into a strip once for a given width, column widths
and style, and kept until its command changes. A frame then costs a lookup per line.

One line per row, a fixed header, a row cursor (``up``/``down``/``pageup``/``pagedown``/
``home``/``end``, a click), ``enter`` or a click selects a row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

CELL_PADDING = 1
"""Blank cells on each side of a column, as DataTable has."""


@dataclass
class _Row:
    key: str
    cells: list[Text]
    drawn: dict[tuple[object, ...], Strip] = field(default_factory=dict)
    """Strips of this row, by what they were drawn for (widths, width, style)."""


class CommandTable(ScrollView, can_focus=True):
    """Rows of cells under a fixed header, with a row cursor."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "command-table--header",
        "command-table--cursor",
    }
    DEFAULT_CSS = """
    CommandTable {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: auto;
        & > .command-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .command-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus {
            background-tint: $foreground 5%;
            & > .command-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
    }
    """
    BINDINGS: ClassVar = [
        Binding("up", "cursor(-1)", "up", show=False),
        Binding("down", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "first", "first", show=False),
        Binding("end", "last", "last", show=False),
        Binding("enter", "select", "select", show=False),
    ]

    class Highlighted(Message):
        """The cursor moved to ``row`` (its index)."""

        def __init__(self, table: CommandTable, row: int) -> None:
            super().__init__()
            self.table = table
            self.row = row

    class Selected(Message):
        """The row with ``key`` was chosen (enter or a click)."""

        def __init__(self, table: CommandTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class ScrolledUp(Message):
        """The user scrolled up with the mouse."""

    def __init__(self, columns: Iterable[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.column_names = list(columns)
        self._header_row = _Row("", [Text(name) for name in self.column_names])
        self._widths = [header.cell_len for header in self._header_row.cells]
        self._rows: list[_Row] = []
        self._index: dict[str, int] = {}
        self.cursor_row = -1
        self.rows_drawn = 0
        """Rows (the header too) drawn into strips so far: a frame that finds them all
        drawn draws none."""

    # -- rows --------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def row_keys(self) -> list[str]:
        """The rows' keys, top to bottom."""
        return [row.key for row in self._rows]

    def has_row(self, key: str) -> bool:
        return key in self._index

    def get_row(self, key: str) -> list[Text]:
        return list(self._rows[self._index[key]].cells)

    def get_row_at(self, index: int) -> list[Text]:
        return list(self._rows[index].cells)

    def get_cell(self, key: str, column: str) -> Text:
        return self._rows[self._index[key]].cells[self.column_names.index(column)]

    def column_width(self, column: str) -> int:
        """Cells the column takes (its widest cell or its name), padding left out."""
        return self._widths[self.column_names.index(column)]

    def add_row(self, key: str, cells: list[Text]) -> None:
        if key in self._index:
            raise KeyError(f"a row {key!r} is there already")
        if len(cells) != len(self.column_names):
            raise ValueError(f"{len(cells)} cells for {len(self.column_names)} columns")
        self._index[key] = len(self._rows)
        self._rows.append(_Row(key, list(cells)))
        self._widen(cells)
        self._resized()
        self.refresh()

    def update_cell(self, key: str, column: str, value: Text) -> None:
        row = self._rows[self._index[key]]
        row.cells[self.column_names.index(column)] = value
        row.drawn.clear()
        self._widen(row.cells)
        self.refresh()

    def remove_rows(self, keys: Iterable[str]) -> None:
        gone = {key for key in keys if key in self._index}
        if not gone:
            return
        # The cursor stays on its row, or goes to the next one left (else the last).
        after = [row.key for row in self._rows[max(self.cursor_row, 0) :] if row.key not in gone]
        self._rows = [row for row in self._rows if row.key not in gone]
        self._index = {row.key: index for index, row in enumerate(self._rows)}
        # Columns keep their widths: a table that narrowed as old rows went would move
        # every column under the reader.
        if self.cursor_row >= 0:
            self.cursor_row = self._index[after[0]] if after else len(self._rows) - 1
        self._resized()
        self.refresh()

    def _widen(self, cells: list[Text]) -> None:
        widths = [max(w, cell.cell_len) for w, cell in zip(self._widths, cells, strict=True)]
        if widths != self._widths:
            self._widths = widths
            self._resized()

    def _resized(self) -> None:
        width = sum(self._widths) + 2 * CELL_PADDING * len(self._widths)
        self.virtual_size = Size(width, len(self._rows) + 1)  # + the header

    def _cursor_valid(self) -> bool:
        return 0 <= self.cursor_row < len(self._rows)

    # -- the cursor --------------------------------------------------------------------

    def move_cursor(self, *, row: int, animate: bool = False, announce: bool = False) -> None:
        """Put the cursor on ``row`` (clamped to the rows) and bring it into view; say so
        with :class:`Highlighted` if it moved, or always if ``announce``."""
        if not self._rows:
            return
        row = max(0, min(row, len(self._rows) - 1))
        moved = row != self.cursor_row
        self.cursor_row = row
        self._scroll_to_cursor(animate)
        self.refresh()
        if moved or announce:
            self.post_message(self.Highlighted(self, row))

    def _scroll_to_cursor(self, animate: bool, retry: bool = True) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)  # under the header
        top = round(self.scroll_y)
        if self.cursor_row < top:
            top = self.cursor_row
        elif self.cursor_row >= top + visible:
            top = self.cursor_row - visible + 1
        self.scroll_to(y=top, animate=animate, immediate=not animate)
        if retry and round(self.scroll_y) != top:
            # Clamped: rows just added are not in the scroll range until laid out.
            self.call_after_refresh(self._scroll_to_cursor, False, False)

    # A key always says where the cursor is: on the last row already, after a scroll
    # with the mouse, ``end`` must still mean "follow again".
    def action_cursor(self, step: int) -> None:
        self.move_cursor(row=self.cursor_row + step, announce=True)

    def action_page(self, pages: int) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)
        self.move_cursor(row=self.cursor_row + pages * visible, announce=True)

    def action_first(self) -> None:
        self.move_cursor(row=0, announce=True)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._rows) - 1, announce=True)

    def action_select(self) -> None:
        if self._cursor_valid():
            self.post_message(self.Selected(self, self._rows[self.cursor_row].key))

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y == 0:
            return
        row = round(self.scroll_y) + offset.y - 1
        if 0 <= row < len(self._rows):
            self.move_cursor(row=row, announce=True)
            self.action_select()

    def _on_resize(self, event: events.Resize) -> None:
        # Rows that came while the table had no size (at start, or while hidden) were
        # scrolled to in a viewport of none: bring the cursor into this one.
        if self._cursor_valid():
            self._scroll_to_cursor(animate=False)

    def _on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.post_message(self.ScrolledUp())

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.refresh()

    # -- drawing -----------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            header = self.get_component_rich_style("command-table--header")
            return self._drawn(self._header_row, width, base + header)
        index = round(self.scroll_y) + y - 1
        if not 0 <= index < len(self._rows):
            return Strip.blank(width, base)
        style = base
        if index == self.cursor_row:
            style = base + self.get_component_rich_style("command-table--cursor")
        return self._drawn(self._rows[index], width, style)

    def _drawn(self, row: _Row, width: int, style: Style) -> Strip:
        """``row`` drawn at this width in ``style``: from the row's own cache if it can."""
        key = (tuple(self._widths), width, style)
        strip = row.drawn.get(key)
        if strip is None:
            self.rows_drawn += 1
            strip = row.drawn[key] = self._strip(row.cells, width, style)
            if len(row.drawn) > 4:  # the cursor on and off it, focused or not: no more
                del row.drawn[next(iter(row.drawn))]
        return strip

    def _strip(self, cells: list[Text], width: int, style: Style) -> Strip:
        line = Text(no_wrap=True, end="")
        pad = " " * CELL_PADDING
        for cell, cell_width in zip(cells, self._widths, strict=True):
            shown = cell.copy()
            if cell.justify == "right" and cell.cell_len < cell_width:
                shown = Text(" " * (cell_width - cell.cell_len)) + shown
            shown.truncate(cell_width, overflow="ellipsis", pad=True)
            line.append(pad)
            line.append_text(shown)
            line.append(pad)
        # Text.render leaves a line's own style out: the row's goes under every cell's.
        segments = Segment.apply_style(line.render(self.app.console), style)
        return Strip(segments).crop_extend(0, width, style)
