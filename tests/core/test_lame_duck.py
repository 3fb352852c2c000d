"""The controller's lame duck: readiness first, the drain after; a cancel in it moves nothing."""

from __future__ import annotations

import asyncio

import pytest
from servermode.core import (
    ModeChangeCancelled,
    ModeController,
    Outcome,
    State,
)


async def _admits_then_drains() -> None:
    controller = ModeController(lame_duck=0.3, drain_timeout=2)
    await controller.start()
    switch = asyncio.create_task(controller.set_mode("maintenance", actor="t"))
    await asyncio.sleep(0.1)
    assert controller.lame_duck_until is not None
    assert controller.state is State.PRODUCTION
    ticket = controller.admit("profile")  # still admitted, and then waited for
    await asyncio.sleep(0.35)
    assert controller.state is State.DRAINING_TO_MAINTENANCE
    assert controller.lame_duck_until is None
    ticket.release()
    record = await switch
    assert record.outcome is Outcome.COMPLETED
    assert record.lame_duck == 0.3
    assert record.in_flight["profile"] == 1


async def _cancel_moves_nothing() -> None:
    controller = ModeController(lame_duck=5)
    await controller.start()
    switch = asyncio.create_task(controller.set_mode("maintenance", actor="t", reason="r"))
    await asyncio.sleep(0.05)
    states: list[State] = []
    cancelled = await controller.cancel(actor="op", reason="not now")
    states.append(controller.state)
    with pytest.raises(ModeChangeCancelled):
        await switch
    assert cancelled is not None
    assert cancelled.outcome is Outcome.CANCELLED
    assert (cancelled.from_state, cancelled.to_state) == (State.PRODUCTION, State.PRODUCTION)
    assert (cancelled.actor, cancelled.reason) == ("op", "not now")
    assert states == [State.PRODUCTION]
    assert controller.lame_duck_until is None
    # The next switch goes through.
    controller.lame_duck = 0.0
    assert (await controller.set_mode("maintenance")).outcome is Outcome.COMPLETED


def test_the_gate_admits_during_the_lame_duck_then_drains() -> None:
    asyncio.run(_admits_then_drains())


def test_a_cancel_in_the_lame_duck_moves_nothing() -> None:
    asyncio.run(_cancel_moves_nothing())


def test_an_absurd_lame_duck_is_refused() -> None:
    for value in (-1, float("nan"), float("inf"), 10**9):
        with pytest.raises(ValueError, match="lame_duck"):
            ModeController(lame_duck=value)
