"""Once start-up is over, the console makes the garbage collector's full passes itself,
between keys (tui/garbage.py): the interpreter's came every few seconds while traces
streamed, 10-35 ms each, and a key pressed then waited."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual import events

from tests.support.waiting import until
from tests.tui.conftest import console_at_its_end
from tui import garbage
from tui.app import MiglabApp
from tui.garbage import FullPasses
from tui.replay import ReplayBackend

Replay = Callable[..., ReplayBackend]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gc_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """The generation of each pass that looked at the oldest objects, as it happens."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(2)

    gc.callbacks.append(note)
    yield seen
    gc.callbacks.remove(note)


def test_taking_over_freezes_start_up_and_only_the_console_makes_full_passes(
    gc_restored: None, full_collections: list[int]
) -> None:
    thresholds = gc.get_threshold()
    survivor = {"kept": [1, 2, 3]}
    passes = FullPasses()
    passes.take_over()
    assert not any(obj is survivor for obj in gc.get_objects())  # frozen: not scanned
    assert gc.get_threshold()[:2] == thresholds[:2]  # the young passes as they were
    full_collections.clear()
    # Far more survivors than the interpreter lets through before a full pass.
    kept = [[n] for n in range(300_000)]
    assert gc.get_count() != (0, 0, 0)
    assert full_collections == []
    passes.last_pass -= garbage.MAX_GAP_S
    assert passes.tick()
    assert full_collections == [2]
    assert any(obj is kept for obj in gc.get_objects())  # later objects: scanned
    passes.give_back()
    assert gc.get_threshold() == thresholds


def test_a_full_pass_waits_for_a_quiet_moment_and_not_longer_than_max_gap(
    gc_restored: None, full_collections: list[int]
) -> None:
    clock = Clock()
    passes = FullPasses(clock)
    assert not passes.tick()  # before take_over the interpreter makes them
    passes.take_over()
    full_collections.clear()

    def tick_after(seconds: float) -> bool:
        clock.now += seconds
        return passes.tick()

    assert not tick_after(garbage.MIN_GAP_S / 2)  # too soon after the last
    assert tick_after(garbage.MIN_GAP_S / 2)  # no input at all: quiet enough
    first = clock.now
    # Keys every 0.32 s: never quiet for IDLE_S, so the next pass waits for MAX_GAP_S.
    made_at = []
    while clock.now - first < 2 * garbage.MAX_GAP_S:
        clock.now += 0.2
        passes.input_seen()
        assert not tick_after(garbage.BUSY_IDLE_S * 0.6)  # right after a key: never
        if tick_after(garbage.BUSY_IDLE_S * 0.6):  # past BUSY_IDLE_S after it
            made_at.append(clock.now - first)
    assert len(made_at) == 2
    assert garbage.MAX_GAP_S <= made_at[0] < garbage.MAX_GAP_S + 0.32
    # Then quiet: the next one after IDLE_S, once MIN_GAP_S has passed.
    assert not tick_after(garbage.IDLE_S)
    assert tick_after(garbage.MIN_GAP_S)
    assert passes.passes == len(full_collections) == 4


def test_giving_back_twice_or_without_taking_over_leaves_the_thresholds(
    gc_restored: None,
) -> None:
    thresholds = gc.get_threshold()
    passes = FullPasses()
    passes.give_back()
    passes.take_over()
    passes.give_back()
    passes.give_back()
    assert gc.get_threshold() == thresholds
    assert not passes.active


async def test_the_console_takes_over_once_start_up_is_over_on_a_terminal(
    replay: Replay, monkeypatch: pytest.MonkeyPatch, gc_restored: None
) -> None:
    thresholds = gc.get_threshold()
    monkeypatch.setattr(MiglabApp, "is_headless", property(lambda self: False))
    async with console_at_its_end(replay()) as (app, pilot, _screen):
        await until(lambda: app.css_prewarmed)
        assert app.full_passes.active
        assert gc.get_threshold()[2] == garbage.NEVER
        before = app.full_passes.last_input
        await pilot.press("down")
        assert app.full_passes.last_input > before
        app.post_message(events.MouseMove(None, 5, 5, 0, 0, 0, False, False, False))
        await pilot.pause()
        assert app.full_passes.last_input > before
    assert gc.get_threshold() == thresholds  # given back as the console closed


async def test_a_headless_console_leaves_the_collector_alone(replay: Replay) -> None:
    thresholds = gc.get_threshold()
    async with console_at_its_end(replay()) as (app, pilot, _screen):
        await until(lambda: app.css_prewarmed)
        await pilot.pause()
        assert not app.full_passes.active
        assert gc.get_threshold() == thresholds
