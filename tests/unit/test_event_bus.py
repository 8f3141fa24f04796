"""EventBus subscribers come and go: whoever listens for a while unsubscribes after."""

from __future__ import annotations

import asyncio

from backend.events import Event, EventBus, Note


def note(text: str) -> Note:
    return Note(text=text, t=1.0)


def texts(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, Note)]


async def test_a_sync_subscriber_stops_getting_events_once_unsubscribed() -> None:
    bus = EventBus()
    kept: list[Event] = []
    gone: list[Event] = []
    bus.subscribe(kept.append)
    unsubscribe = bus.subscribe(gone.append)
    assert bus.subscriber_count == 2
    bus.publish(note("a"))
    unsubscribe()
    unsubscribe()  # twice is harmless
    bus.publish(note("b"))
    assert texts(kept) == ["a", "b"] and texts(gone) == ["a"]
    assert bus.subscriber_count == 1
    await bus.aclose()


async def test_unsubscribe_by_callback_also_finds_a_bound_method() -> None:
    class Listener:
        def __init__(self) -> None:
            self.seen: list[Event] = []

        def on_event(self, event: Event) -> None:
            self.seen.append(event)

    bus = EventBus()
    listener = Listener()
    bus.subscribe(listener.on_event)
    bus.publish(note("a"))
    bus.unsubscribe(listener.on_event)  # a fresh bound method, equal to the subscribed one
    bus.publish(note("b"))
    assert texts(listener.seen) == ["a"]
    assert bus.subscriber_count == 0
    bus.unsubscribe(listener.on_event)  # nothing left: no error


async def test_a_subscriber_may_unsubscribe_itself_while_an_event_is_delivered() -> None:
    bus = EventBus()
    after: list[Event] = []
    once: list[Event] = []

    def first(event: Event) -> None:
        once.append(event)
        unsubscribe()

    unsubscribe = bus.subscribe(first)
    bus.subscribe(after.append)
    bus.publish(note("a"))
    bus.publish(note("b"))
    assert texts(once) == ["a"]
    assert texts(after) == ["a", "b"]  # the one after it still got every event


async def test_an_async_subscriber_gets_what_it_was_given_then_nothing_more() -> None:
    bus = EventBus()
    seen: list[Event] = []
    release = asyncio.Event()

    async def slow(event: Event) -> None:
        await release.wait()
        seen.append(event)

    unsubscribe = bus.subscribe_async(slow)
    bus.publish(note("a"))
    bus.publish(note("b"))
    unsubscribe()
    assert bus.subscriber_count == 0
    bus.publish(note("c"))
    release.set()
    await bus.aclose()  # waits for what it was given
    assert texts(seen) == ["a", "b"]


async def test_async_unsubscribe_by_callback_ends_its_drain_task() -> None:
    bus = EventBus()
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    bus.subscribe_async(record)
    bus.publish(note("a"))
    bus.unsubscribe(record)
    bus.publish(note("b"))
    await bus.aclose()
    assert texts(seen) == ["a"]
    assert bus.subscriber_count == 0
