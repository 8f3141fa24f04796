"""At most MAX_TOASTS notifications are up: a new one takes the oldest away.

Every screen that comes up mounts a toast for each notification still up; a refused
key held down had stacked dozens, and a dialog opened then took seconds to show.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest
from textual._styles_cache import StylesCache
from textual.widget import Widget
from textual.widgets._toast import Toast, ToastHolder

from tests.support.waiting import until
from tests.tui.conftest import console_at_its_end, main_screen, settle
from tui import app as app_module
from tui.app import MAX_TOASTS, MiglabApp
from tui.replay import ReplayBackend

Replay = Callable[..., ReplayBackend]


async def test_only_the_newest_notifications_stay_up(replay: Replay) -> None:
    async with console_at_its_end(replay()) as (app, _pilot, _screen):
        for n in range(3 * MAX_TOASTS):
            app.notify(f"note {n}", timeout=60)
        last = f"note {3 * MAX_TOASTS - 1}"
        await until(lambda: any(n.message == last for n in app._notifications))
        messages = [n.message for n in app._notifications]
        assert messages == [f"note {n}" for n in range(2 * MAX_TOASTS, 3 * MAX_TOASTS)]


async def test_a_refused_key_held_down_leaves_a_few_toasts(replay: Replay) -> None:
    async with console_at_its_end(replay()) as (app, pilot, screen):
        for _ in range(4 * MAX_TOASTS):
            await pilot.press("p")  # refused in a replay: a notification each
        await pilot.pause()
        assert screen.is_current
        messages = [n.message for n in app._notifications]
        assert len(messages) == MAX_TOASTS
        assert all("prepare is disabled" in m for m in messages)


async def test_notifications_taken_away_early_leave_no_empty_holders(replay: Replay) -> None:
    # Textual removes such a toast but not the holder around it: they piled up in the
    # DOM, a few objects each, for as long as the console ran.
    backend = replay()
    app = MiglabApp(backend)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:  # toasts shown
        await settle(pilot, backend)
        screen = main_screen(app)
        for n in range(6 * MAX_TOASTS):
            await pilot.press("p")  # refused in a replay: a notification each
            if n % MAX_TOASTS == 0:
                await pilot.press("question_mark", "escape")  # another screen's toasts
        await pilot.pause()
        await until(lambda: screen.is_current and len(screen.query(Toast)) == MAX_TOASTS)
        holders = screen.query(ToastHolder)
        assert len(holders) == MAX_TOASTS
        assert all(len(holder.query(Toast)) == 1 for holder in holders)


def orphaned_styles_caches() -> int:
    """StylesCache objects alive beyond the widgets alive (each widget owns one)."""
    gc.collect()
    objects = gc.get_objects()
    caches = sum(1 for o in objects if isinstance(o, StylesCache))
    widgets = sum(1 for o in objects if isinstance(o, Widget))
    return caches - widgets


async def test_toasts_that_are_gone_leave_no_drawn_lines_behind(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Textual's lru_cache on StylesCache.get_inner_outer kept every drawn widget's
    # StylesCache (its lines) after the widget was gone, 1024 of them.
    monkeypatch.setattr(app_module, "RELEASE_S", 0.05)
    backend = replay()
    app = MiglabApp(backend)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot, backend)
        for n in range(8 * MAX_TOASTS):
            app.notify(f"note {n}", timeout=0.05)
            await pilot.pause()
        await until(lambda: not app._notifications and not app.screen.query(Toast))
        await until(lambda: orphaned_styles_caches() <= 0)
