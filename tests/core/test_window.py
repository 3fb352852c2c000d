"""Maintenance windows in the core: parsing, checks, the controller's own switches, cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from servermode.core import (
    InMemoryStore,
    InvalidWindow,
    Mode,
    ModeController,
    Outcome,
    PersistedState,
    State,
    Window,
)
from servermode.core.window import check_window, parse_duration, parse_moment

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h30m", 5400), ("2d", 172800), ("90s", 90), ("1d2h3m4s", 93784)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "m", "30", "1m1h", "-5m", "30 m", "1.5h"])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_moments() -> None:
    assert parse_moment("until", "30m", NOW) == NOW + timedelta(minutes=30)
    assert parse_moment("until", "2030-01-01T14:00:00+02:00", NOW) == NOW
    with pytest.raises(InvalidWindow, match="bad until"):
        parse_moment("until", "1" * 65, NOW)


def test_checks() -> None:
    check_window(Window(NOW + timedelta(seconds=1), NOW + timedelta(seconds=2)), NOW)
    for bad, says in [
        (Window(None, NOW), "in the past"),
        (Window(NOW, None), "in the past"),
        (Window(NOW + timedelta(hours=2), NOW + timedelta(hours=1)), "not after the start"),
        (Window(None, NOW + timedelta(days=367)), "more than 366 days"),
    ]:
        with pytest.raises(InvalidWindow, match=says):
            check_window(bad, NOW)


async def _cancel_ends_a_window() -> None:
    controller = ModeController()
    await controller.start()
    later = datetime.now(UTC) + timedelta(hours=1)
    record = await controller.set_mode("maintenance", start_at=later, actor="op")
    assert record.outcome is Outcome.SCHEDULED
    assert record.window["start_at"] == later.isoformat()
    assert controller.window == Window(later, None, None)
    cancelled = await controller.cancel(actor="op")
    assert cancelled is not None and cancelled.outcome is Outcome.CANCELLED
    assert controller.window is None
    assert await controller.cancel() is None
    assert controller.store.load() == PersistedState(State.PRODUCTION, controller.status().since)


def test_cancel_ends_a_window_ahead() -> None:
    asyncio.run(_cancel_ends_a_window())


async def _window_waits_for_a_switch_under_way() -> None:
    store = InMemoryStore()
    controller = ModeController(store, drain_timeout=1)
    await controller.start()
    ticket = controller.admit("profile")
    manual = asyncio.create_task(controller.set_mode("maintenance"))  # drains for the ticket
    await asyncio.sleep(0.05)
    # A window that begins while the manual drain runs: its switch is retried, not lost.
    controller._window = Window(datetime.now(UTC) - timedelta(seconds=1), None, None)
    await controller._window_event()
    ticket.release()
    await manual
    # The manual change replaced the window: nothing left to do.
    assert controller.window is None
    assert controller.mode is Mode.MAINTENANCE
    await controller.close()


def test_a_window_event_during_a_switch_is_retried_not_lost() -> None:
    asyncio.run(_window_waits_for_a_switch_under_way())


def test_a_window_only_in_maintenance() -> None:
    async def scenario() -> None:
        controller = ModeController()
        await controller.start()
        with pytest.raises(InvalidWindow, match="period of maintenance"):
            await controller.set_mode("production", until=datetime.now(UTC) + timedelta(hours=1))

    asyncio.run(scenario())
