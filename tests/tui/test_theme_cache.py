"""t keeps each theme's parsed stylesheets: a theme seen (or parsed ahead) before is
not parsed again, and every widget looks as in a console started in that theme."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import textual.css.stylesheet as textual_stylesheet
from textual.color import Color
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets._toast import Toast

from tests.support.waiting import until
from tests.tui.conftest import console_at_its_end, main_screen, settle, started
from tui.app import THEME_ORDER, MiglabApp
from tui.replay import ReplayBackend
from tui.screens.output import CommandOutputScreen
from tui.screens.pickers import OpenLog
from tui.theme_css import ThemeStylesheet
from tui.widgets.command_log import CommandLog

Replay = Callable[..., ReplayBackend]


def looks(app: MiglabApp) -> dict[str, tuple[object, ...]]:
    """Every widget's colours on the main screen, by its place in the tree."""
    screen = main_screen(app)
    found: dict[str, tuple[object, ...]] = {}
    for index, widget in enumerate(screen.walk_children(with_self=True)):
        styles = widget.styles
        found[f"{index}:{type(widget).__name__}#{widget.id}"] = (
            styles.background,
            styles.color,
            styles.border_top,
            styles.border_title_color,
            widget.rich_style,
        )
    return found


def stylesheet(app: MiglabApp) -> ThemeStylesheet:
    sheet = app.stylesheet
    assert isinstance(sheet, ThemeStylesheet)
    return sheet


async def prewarmed(app: MiglabApp) -> None:
    """Wait until every theme has every source parsed."""
    sheet = stylesheet(app)
    await until(lambda: app.css_prewarmed)
    for name in THEME_ORDER:
        assert sheet.cached_sources(app.css_variables_for(app.available_themes[name])) >= len(
            sheet.source
        )


async def test_each_theme_looks_as_if_the_console_started_in_it(replay: Replay) -> None:
    fresh: dict[str, dict[str, tuple[object, ...]]] = {}
    for name in THEME_ORDER:
        async with console_at_its_end(replay(), theme=name) as (app, pilot, _screen):
            fresh[name] = looks(app)
    async with console_at_its_end(replay(), theme=THEME_ORDER[0]) as (app, pilot, _screen):
        # Twice round: the second time every theme comes from its cache.
        for name in [*THEME_ORDER[1:], *THEME_ORDER, THEME_ORDER[0]]:
            await pilot.press("t")
            await until(lambda name=name: app.theme == name)  # type: ignore[misc]
            await pilot.pause()
            assert app.get_css_variables() == app.css_variables_for(app.current_theme)
            assert looks(app) == fresh[name], name


def count_calls(
    monkeypatch: pytest.MonkeyPatch, name: str, note: Callable[[tuple[Any, ...]], object]
) -> list[object]:
    """The calls of textual.css.stylesheet's ``name`` from now on, each as ``note(args)``."""
    calls: list[object] = []
    real = getattr(textual_stylesheet, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(note(args))
        return real(*args, **kwargs)

    monkeypatch.setattr(textual_stylesheet, name, counting)
    return calls


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Where Textual's CSS parser is called from from now on (one entry per source)."""
    return count_calls(monkeypatch, "parse", lambda args: args[2])  # (scope, css, read_from..)


async def cycle_themes(app: MiglabApp, pilot: Pilot[int]) -> None:
    """t once per theme, back to the first; each drawn."""
    for name in [*THEME_ORDER[1:], THEME_ORDER[0]]:
        await pilot.press("t")
        await until(lambda name=name: app.theme == name)  # type: ignore[misc]
        await pilot.pause()


async def test_a_theme_seen_before_is_not_parsed_again(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with console_at_its_end(replay(), theme=THEME_ORDER[0]) as (app, pilot, _screen):
        await cycle_themes(app, pilot)
        parsed = count_parses(monkeypatch)
        await cycle_themes(app, pilot)
        assert parsed == []
        assert app.stylesheet.rules  # and the rules are there


async def test_the_themes_are_parsed_ahead_in_idle_time(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with console_at_its_end(replay(), theme=THEME_ORDER[0]) as (app, pilot, _screen):
        await prewarmed(app)
        parsed = count_parses(monkeypatch)
        await cycle_themes(app, pilot)
        assert parsed == []


async def test_dialogs_opened_after_the_prewarm_parse_no_css(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = replay()
    app = MiglabApp(backend, theme=THEME_ORDER[0])
    async with app.run_test(size=(120, 40), notifications=True) as pilot:  # with toasts
        await started(app)
        await settle(pilot, backend)
        await prewarmed(app)
        parsed = count_parses(monkeypatch)
        screen = main_screen(app)
        # The palette, a command's output, the open-log picker, a toast: each a first.
        await pilot.press("ctrl+p")
        await until(lambda: isinstance(app.screen, CommandPalette))
        await pilot.pause()
        await pilot.press("escape")
        await until(lambda: app.screen is screen)
        screen.query_one(CommandLog).table.focus()
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, CommandOutputScreen))
        await pilot.pause()
        await pilot.press("escape")
        await until(lambda: app.screen is screen)
        await pilot.press("o")
        await until(lambda: isinstance(app.screen, OpenLog))
        await pilot.pause()
        await pilot.press("escape")
        await until(lambda: app.screen is screen)
        await pilot.press("p")  # refused in a replay: a toast
        await until(lambda: bool(screen.query(Toast)))
        await pilot.pause()
        assert parsed == []


async def test_a_new_theme_refreshes_each_widget_once(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each style property set refreshed its widget (and, for an inherited one, every
    # widget under it): about 440 refreshes for the main screen's 16 widgets.
    real = Widget.refresh
    per_widget: list[Counter[int]] = []

    def counting(widget: Widget, *regions: Any, **flags: Any) -> Widget:
        per_widget[-1][id(widget)] += 1
        return real(widget, *regions, **flags)

    update_nodes = ThemeStylesheet.update_nodes

    def counted(self: ThemeStylesheet, nodes: Any, animate: bool = False) -> None:
        per_widget.append(Counter())
        monkeypatch.setattr(Widget, "refresh", counting)
        try:
            update_nodes(self, nodes, animate)
        finally:
            monkeypatch.setattr(Widget, "refresh", real)

    async with console_at_its_end(replay()) as (_app, pilot, _screen):
        monkeypatch.setattr(ThemeStylesheet, "update_nodes", counted)
        await pilot.press("t")
        await until(lambda: len(per_widget) > 0 and sum(per_widget[0].values()) > 0)
        restyle = per_widget[0]
        assert len(restyle) >= 10  # the main screen's widgets were refreshed...
        assert max(restyle.values()) == 1  # ...each of them once


async def test_text_styles_are_parsed_once_per_theme_and_in_its_colours(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "[$text-muted]..." in a pane's markup: parsed against the theme's variables.
    async with console_at_its_end(replay(), theme=THEME_ORDER[0]) as (app, pilot, _screen):
        parsed = count_calls(monkeypatch, "parse_style", lambda args: (app.theme, args[0]))
        await cycle_themes(app, pilot)  # every theme drawn: its text styles parsed
        first_round = len(parsed)
        await cycle_themes(app, pilot)
        again = set(parsed[:first_round]) & set(parsed[first_round:])
        assert first_round > 3 * len(THEME_ORDER)
        assert again == set()  # (Textual parsed 72 of them again here)
        for name in [*THEME_ORDER, *THEME_ORDER]:
            app.theme = name
            await pilot.pause()
            style = stylesheet(app).parse_style("bold $accent")
            assert style.bold
            assert style.foreground == Color.parse(app.theme_variables["accent"]), name
        assert parsed.count((THEME_ORDER[0], "bold $accent")) == 1
