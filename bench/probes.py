"""Instruments for watching a real ModeController switch, without polling it.

The controller opens its gate in the new state (``Gate.set_state``) only once that state is
saved: that call is the instant the new mode is in force. :class:`TimedGate` stamps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator

import structlog
from servermode.core import AuditLog, Gate, InMemoryStore, Mode, ModeController, State, Store

__all__ = ["TimedGate", "counted_category", "quiet_audit", "settle", "timed_controller"]


class TimedGate(Gate):
    """A gate that notes when, and with how much in flight, each new state was set."""

    opened_ns: int = 0
    in_flight_at_open: int = 0

    def set_state(self, state: State) -> None:
        super().set_state(state)
        # Stamped after the state is in place: the figure includes this call's own return.
        self.opened_ns = time.perf_counter_ns()
        self.in_flight_at_open = self.total_in_flight


def counted_category(controller: ModeController, mode: Mode) -> str:
    """A category that ``mode`` admits and drains (what an ordinary request would be)."""
    admitted = controller.policy.admitted(mode.state)
    return next(name for name, counted in admitted.items() if counted)


@contextlib.contextmanager
def quiet_audit() -> Iterator[AuditLog]:
    """An audit log that renders every record as in production, into the null device.

    Its cost is paid, as it would be in a server, without flooding the terminal.
    """
    with open(os.devnull, "w", encoding="utf-8") as sink:
        yield AuditLog(structlog.wrap_logger(structlog.PrintLogger(sink)))


@contextlib.asynccontextmanager
async def timed_controller(
    store: Store | None = None,
) -> AsyncIterator[tuple[ModeController, TimedGate]]:
    """A started controller, auditing quietly, whose gate is a :class:`TimedGate`."""
    with quiet_audit() as audit:
        controller = ModeController(store or InMemoryStore(), audit=audit)
        plain = controller.gate
        gate = TimedGate(plain.policy, plain.state, refusal_retry_after=plain.refusal_retry_after)
        controller.gate = gate
        await controller.start()
        try:
            yield controller, gate
        finally:
            await controller.close()


async def settle(iterations: int = 8) -> None:
    """Let the event loop run a few iterations, enough for a requested switch to park.

    ``set_mode`` starts the drain and its task parks in ``asyncio.wait`` within three loop
    iterations when the store does not block; eight leaves a margin.
    """
    for _ in range(iterations):
        await asyncio.sleep(0)
