"""Subscribers and before-drain / after-switch hooks: told everything, bounded, never in the way."""

from __future__ import annotations

import asyncio
import threading
import time

from servermode.core import Mode, ModeController, Outcome, TransitionRecord
from servermode.core.hooks import Hooks
from structlog.testing import capture_logs


def test_subscribers_plain_and_async_get_every_record() -> None:
    async def scenario() -> tuple[list[str], list[str], list[int]]:
        controller = ModeController()
        plain: list[str] = []
        awaited: list[str] = []
        threads: list[int] = []

        def plain_subscriber(record: TransitionRecord) -> None:
            threads.append(threading.get_ident())
            plain.append(record.outcome.value)

        async def async_subscriber(record: TransitionRecord) -> None:
            await asyncio.sleep(0)
            awaited.append(record.outcome.value)

        controller.subscribe(plain_subscriber)
        controller.subscribe(async_subscriber)
        await controller.start()
        await controller.set_mode("maintenance")
        await controller.set_mode("maintenance")
        await controller.close()  # waits (briefly) for deliveries under way
        return plain, awaited, threads

    plain, awaited, threads = asyncio.run(scenario())
    assert sorted(plain) == sorted(["initialized", "completed", "noop"])
    assert sorted(awaited) == sorted(plain)
    assert threading.get_ident() not in threads  # plain ones run off the event loop


def test_failing_and_slow_subscribers_are_logged_and_bounded() -> None:
    async def scenario() -> tuple[float, float]:
        controller = ModeController(hooks=Hooks(subscriber_timeout=0.2))

        def failing(record: TransitionRecord) -> None:
            raise RuntimeError("boom")

        async def hanging(record: TransitionRecord) -> None:
            await asyncio.sleep(30)

        def blocking(record: TransitionRecord) -> None:
            time.sleep(1)

        for subscriber in (failing, hanging, blocking):
            controller.subscribe(subscriber)
        await controller.start()
        started = time.monotonic()
        record = await controller.set_mode("maintenance")
        took = time.monotonic() - started
        assert record.outcome is Outcome.COMPLETED
        await asyncio.sleep(0.4)  # the timeouts pass
        started = time.monotonic()
        await controller.close()
        return took, time.monotonic() - started

    with capture_logs() as logs:
        took, closing = asyncio.run(scenario())
    assert took < 0.1  # the switch did not wait for any of them
    assert closing < 3
    events = [entry["event"] for entry in logs]
    assert events.count("subscriber_failed") == 2  # the start record and the switch
    assert events.count("subscriber_timed_out") == 4  # hanging and blocking, twice each


def test_before_drain_and_after_switch_hooks_run_in_order_and_bounded() -> None:
    async def scenario() -> list[str]:
        controller = ModeController(hooks=Hooks(hook_timeout=0.2))
        seen: list[str] = []

        async def stop_consumers(target: Mode) -> None:
            seen.append(f"before {target} in {controller.state}")

        def too_slow(target: Mode) -> None:
            time.sleep(1)

        async def flush(record: TransitionRecord) -> None:
            seen.append(f"after {record.outcome} in {controller.state}")

        def broken(record: TransitionRecord) -> None:
            raise RuntimeError("broken hook")

        controller.before_drain(stop_consumers)
        controller.before_drain(too_slow)
        controller.after_switch(flush)
        controller.after_switch(broken)
        await controller.start()
        started = time.monotonic()
        record = await controller.set_mode("maintenance")
        seen.append(f"{record.outcome} after {time.monotonic() - started:.3f}")
        await controller.close()
        return seen

    with capture_logs() as logs:
        seen = asyncio.run(scenario())
    assert seen[0] == "before maintenance in production"  # the gate had refused nothing yet
    assert seen[1] == "after completed in maintenance"
    outcome, _, took = seen[2].split()
    assert outcome == "completed"
    assert 0.19 <= float(took) < 0.9  # the slow hook was waited for up to its bound, no more
    events = [entry["event"] for entry in logs]
    assert "before_drain_hook_timed_out" in events
    assert "after_switch_hook_failed" in events


def test_a_subscriber_that_never_returns_does_not_hold_up_the_exit() -> None:
    """The process ends although a plain subscriber is still blocked (a daemon thread)."""
    import subprocess
    import sys

    script = """
import asyncio, threading
from servermode.core import ModeController
from servermode.core.hooks import Hooks

async def main():
    controller = ModeController(hooks=Hooks(subscriber_timeout=0.1))
    controller.subscribe(lambda record: threading.Event().wait())  # never returns
    await controller.start()
    await controller.set_mode("maintenance")
    await controller.close()
    print("closed")

asyncio.run(main())
"""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("closed")
    assert time.monotonic() - started < 10
