"""Strings from files and hosts, made safe to show: never markup, never terminal escapes.

Lab names, host names, command lines, host output, errors and notes come from lab.toml,
session logs and hosts. Shown through Textual markup, a ``[`` in them breaks the markup
(``MarkupError``) or restyles the screen, and an ESC or BEL reaches the terminal. So the
console builds what it shows with :func:`markup`: a template of our own whose
``$name`` placeholders are filled with plain text (Textual's markup variables), after
:func:`clean` has made every control character visible.
"""

from __future__ import annotations

from textual.content import Content

from backend.terminal_text import BIDI, C0, C1, DEL

_SUBSTITUTE = "\ufffd"


def _table(keep: str) -> dict[int, str]:
    table: dict[int, str] = {}
    for code in C0:  # shown as its control picture (␛ for ESC, ␇ for BEL)
        table[code] = chr(0x2400 + code)
    table[DEL] = "\u2421"  # ␡
    for code in (*C1, *BIDI):  # CSI, OSC... as single code points; reordering marks
        table[code] = _SUBSTITUTE
    table[ord("\t")] = " "
    for char in keep:
        table.pop(ord(char), None)
    return table


_ONE_LINE = _table("")
_MULTI_LINE = _table("\n\t")


def clean(value: object, *, lines: bool = False) -> str:
    """``value`` as text with every control character made visible.

    One line by default (a newline shows as ␊); with ``lines`` newlines and tabs stay.
    """
    return str(value).translate(_MULTI_LINE if lines else _ONE_LINE)


def plain(value: object, *, lines: bool = False) -> Content:
    """``value`` as Content: shown exactly as it reads, never parsed as markup."""
    return Content(clean(value, lines=lines))


def markup(template: str, /, **values: object) -> Content:
    """Our own ``template`` (markup) with ``$name`` filled in as plain, cleaned text.

    ``markup("[b]miglab[/] $lab", lab=name)`` shows ``name`` literally, whatever it holds.
    """
    return Content.from_markup(template, **{k: clean(v) for k, v in values.items()})


def join(parts: list[Content], separator: str = " ") -> Content:
    """Content parts joined by a plain separator."""
    return Content(separator).join(parts)
