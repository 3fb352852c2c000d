"""The audit feed: the audit log whose records also reach subscribers (metrics, streams)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from servermode.adapters.http.feed import AuditFeed
from servermode.core import ModeController, Outcome, SwitchInProgress, TransitionRecord


class FakeLogger:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = fail

    def _log(self, event: str, **fields: Any) -> None:
        if self.fail:
            raise OSError("log pipeline down")
        self.events.append({"event": event, **fields})

    info = warning = _log


def test_every_attempt_reaches_the_log_and_the_subscribers() -> None:
    """Initialized, completed, no-op and refused records: logged and published, in order."""
    logger = FakeLogger()
    feed = AuditFeed(logger)
    seen: list[TransitionRecord] = []
    feed.subscribe(seen.append)

    async def drive() -> None:
        controller = ModeController(audit=feed, drain_timeout=5)
        await controller.start()
        ticket = controller.admit("profile")
        switch = asyncio.create_task(controller.set_mode("maintenance", actor="ops"))
        await asyncio.sleep(0.01)
        with pytest.raises(SwitchInProgress):
            await controller.set_mode("production", actor="other")
        ticket.release()
        await switch
        await controller.set_mode("maintenance")

    asyncio.run(drive())
    outcomes = [record.outcome for record in seen]
    assert outcomes == [Outcome.INITIALIZED, Outcome.REFUSED, Outcome.COMPLETED, Outcome.NOOP]
    assert [event["outcome"] for event in logger.events] == [o.value for o in outcomes]


def test_a_failing_subscriber_or_log_hides_nothing_from_the_others() -> None:
    record = TransitionRecord.from_dict(
        {
            "from_state": "production",
            "to_state": "maintenance",
            "target_mode": "maintenance",
            "outcome": "completed",
            "at": "2024-05-01T12:00:00+00:00",
        }
    )
    feed = AuditFeed(FakeLogger(fail=True))
    seen: list[TransitionRecord] = []

    def broken(record: TransitionRecord) -> None:
        raise RuntimeError("subscriber bug")

    feed.subscribe(broken)
    unsubscribe = feed.subscribe(seen.append)
    with pytest.raises(OSError, match="log pipeline down"):  # the audit's failure still shows
        feed.emit(record)
    assert seen == [record]
    unsubscribe()
    unsubscribe()  # twice is harmless
    with pytest.raises(OSError):
        feed.emit(record)
    assert seen == [record]
