"""Once start-up is over, the console keeps what it made out of the garbage collector's
passes (a full pass looked at ~190,000 objects, 80 ms on a loaded machine, every second
or two while traces streamed: a key pressed then waited)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

from tests.support.waiting import until
from tests.tui.conftest import running, settle
from tui import app as console_app
from tui.app import MiglabApp, tune_garbage_collector
from tui.replay import ReplayBackend

Replay = Callable[..., ReplayBackend]


@pytest.fixture
def gc_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    assert gc.get_threshold() == thresholds


def test_tuning_freezes_what_is_there_and_keeps_the_thresholds(gc_restored: None) -> None:
    survivor = {"kept": [1, 2, 3]}
    before = gc.get_freeze_count()
    tune_garbage_collector()
    assert gc.get_freeze_count() > before
    assert not any(obj is survivor for obj in gc.get_objects())  # frozen: not scanned
    made_later = {"new": [4]}
    assert any(obj is made_later for obj in gc.get_objects())  # later objects: scanned


async def test_the_console_tunes_once_start_up_is_over_on_a_terminal(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(console_app, "tune_garbage_collector", lambda: calls.append(True))
    monkeypatch.setattr(MiglabApp, "is_headless", property(lambda self: False))
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        await until(lambda: app.css_prewarmed)
        await pilot.pause()
        assert calls == [True]


async def test_a_headless_console_leaves_the_collector_alone(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(console_app, "tune_garbage_collector", lambda: calls.append(True))
    backend = replay()
    async with running(backend) as (app, pilot):
        await settle(pilot, backend)
        await until(lambda: app.css_prewarmed)
        await pilot.pause()
        assert calls == []
