"""The events dispatcher: listeners subscribe, one that raises costs nothing else."""

from __future__ import annotations

import logging

import pytest

from cached_stores_factory.events import KINDS, Dispatcher, Event


def test_a_listener_subscribed_twice_is_called_once_and_can_leave() -> None:
    dispatcher = Dispatcher()
    seen: list[Event] = []
    dispatcher.subscribe(seen.append)
    dispatcher.subscribe(seen.append)
    event = Event("hit", object(), "k", 3, 0.001)
    dispatcher.emit(event)
    assert seen == [event]
    dispatcher.unsubscribe(seen.append)
    dispatcher.unsubscribe(seen.append)  # no longer there: ignored
    dispatcher.emit(event)
    assert seen == [event]
    assert dispatcher.listeners == ()


def test_a_listener_that_raises_is_logged_once_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = Dispatcher()
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("exporter down")

    dispatcher.subscribe(broken)
    dispatcher.subscribe(lambda event: seen.append(event.kind))
    with caplog.at_level(logging.ERROR, logger="cached_stores_factory"):
        for kind in ("hit", "miss", "hit"):
            dispatcher.emit(Event(kind, object(), "k"))
    assert seen == ["hit", "miss", "hit"]
    [record] = caplog.records
    assert record.getMessage().startswith("the event listener <function test_a_listener_that")
    assert record.getMessage().endswith("failed; its errors are ignored")


def test_every_kind_says_what_its_fields_hold() -> None:
    assert set(KINDS) == {
        "hit",
        "miss",
        "coalesced",
        "stale_served",
        "revalidated",
        "changed",
        "fetch",
        "write",
        "eviction",
        "remote_error",
        "store_down",
        "store_up",
    }
    assert all(len(meaning.split()) >= 4 for meaning in KINDS.values())
