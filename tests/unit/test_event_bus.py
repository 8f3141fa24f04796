"""EventBus subscribers come and go: whoever listens for a while unsubscribes after."""

from __future__ import annotations

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


def test_an_event_published_by_a_subscriber_reaches_everybody_after_the_one_before() -> None:
    # The migration meter publishes from inside its subscription: the session log (an
    # earlier subscriber) and the console (a later one) must see the same order.
    bus = EventBus()
    first: list[str] = []
    last: list[str] = []
    bus.subscribe(lambda e: first.append(texts([e])[0]))

    def answer(event: Event) -> None:
        if texts([event]) == ["question"]:
            bus.publish(note("answer"))

    bus.subscribe(answer)
    bus.subscribe(lambda e: last.append(texts([e])[0]))
    bus.publish(note("question"))
    bus.publish(note("later"))
    assert first == last == ["question", "answer", "later"]
