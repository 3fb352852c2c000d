"""Threads admitting requests while the event loop flips the mode as fast as it can."""

from __future__ import annotations

import asyncio
import threading
import time

from servermode.core import Mode, ModeController, Outcome, Refused, State

# While a ticket of each category is held, the gate may only be in these states: the drain
# waits for it (no timeout fires in this test), so the mode that refuses it cannot begin.
ALLOWED_WHILE_HELD = {
    "profile": {State.PRODUCTION, State.DRAINING_TO_MAINTENANCE},
    "schema": {State.MAINTENANCE, State.DRAINING_TO_PRODUCTION},
}


def test_admission_is_atomic_with_mode_changes() -> None:
    """No request is ever running in a state that refuses it, and every switch completes."""
    violations: list[str] = []
    admitted = {"profile": 0, "schema": 0}
    stop = threading.Event()

    async def scenario() -> list[Outcome]:
        controller = ModeController(drain_timeout=30)
        await controller.start()

        def worker(category: str) -> None:
            while not stop.is_set():
                try:
                    ticket = controller.admit(category)
                except Refused:
                    time.sleep(0)
                    continue
                with ticket:
                    admitted[category] += 1  # one writer per category: no race
                    for _ in range(3):
                        state = controller.gate.state
                        if state not in ALLOWED_WHILE_HELD[category]:
                            violations.append(f"{category} running in {state}")

        threads = [threading.Thread(target=worker, args=(c,)) for c in ALLOWED_WHILE_HELD]
        for t in threads:
            t.start()
        outcomes = []
        try:
            for i in range(100):
                mode = Mode.MAINTENANCE if i % 2 == 0 else Mode.PRODUCTION
                outcomes.append((await controller.set_mode(mode)).outcome)
                await asyncio.sleep(0.0005)
        finally:
            stop.set()
            for t in threads:
                await asyncio.to_thread(t.join)
        assert controller.gate.total_in_flight == 0
        return outcomes

    outcomes = asyncio.run(scenario())
    assert violations == []
    assert outcomes == [Outcome.COMPLETED] * 100
    assert admitted["profile"] > 0 and admitted["schema"] > 0
