"""The fleet engine port: where the fleet state lives, shared by every instance.

The engine is dumb storage with two guarantees: a compare-and-set of the fleet state on its
epoch (the only way the state changes, so that of two concurrent changes exactly one wins),
and keys that expire (heartbeats). Everything else (epochs, the barrier, who completes,
what to do when the engine is lost) is the fleet logic's, in :mod:`.member`.

Every method raises :class:`FleetEngineUnavailable` when the engine cannot be reached.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from ..errors import ServerModeError, StoreError
from .records import DrainReport, FleetRecord, FleetState, Heartbeat, InstanceOut

if TYPE_CHECKING:  # .bypass imports this module
    from .bypass import FleetBypass

__all__ = ["FleetEngine", "FleetEngineUnavailable", "NoSuchInstance", "Wake"]


class Wake(StrEnum):
    """What a wake-up is about: the fleet state changed, or an instance reported its drain."""

    STATE = "state"
    REPORT = "report"


class FleetEngineUnavailable(StoreError):
    """The fleet engine cannot be reached (or answered nonsense); ``reason`` says why.

    A :class:`StoreError`: a mode change refused for it answers like a store failure (503,
    5033), and its description names the fleet engine.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the fleet engine is unreachable ({reason}); mode changes are refused")


class NoSuchInstance(ServerModeError):
    """An instance selector that names no live instance of the fleet (or there is no fleet)."""

    def __init__(self, instance: str, live: list[str] | None = None) -> None:
        self.instance = instance
        if live is None:
            message = f"this service runs alone (no --fleet): there is no instance {instance!r}"
        else:
            shown = ", ".join(live[:20]) + (", ..." if len(live) > 20 else "")
            message = f"no live instance named {instance!r} in the fleet (live: {shown or 'none'})"
        super().__init__(message)


class FleetEngine(Protocol):
    async def load(self) -> FleetState | None:
        """The fleet state, or None when the engine holds none (new, or emptied)."""
        ...

    async def load_member(self, instance: str) -> tuple[FleetState | None, InstanceOut | None]:
        """The fleet state and ``instance``'s own mode, if it is out (one round trip)."""
        ...

    async def set_out(self, instance: str, out: InstanceOut | None) -> None:
        """Put ``instance`` out of the fleet in ``out.mode`` (None: back in); wakes it."""
        ...

    async def heartbeat(self, instance: str) -> Heartbeat | None:
        """``instance``'s heartbeat, or None when it has expired (O(1))."""
        ...

    async def compare_and_set(
        self, expected_epoch: int | None, state: FleetState, record: FleetRecord | None = None
    ) -> bool:
        """Write ``state`` if the stored epoch is ``expected_epoch`` (None: no state stored).

        ``record``, if given, is appended to the fleet's capped log in the same atomic step:
        only the winner of a compare-and-set writes a record. Wakes the subscribers (STATE).
        """
        ...

    async def beat(self, heartbeat: Heartbeat, ttl: float) -> None:
        """Keep ``heartbeat`` for ``ttl`` seconds (replacing the instance's previous one)."""
        ...

    async def leave(self, instance: str) -> None:
        """Remove the instance's heartbeat at once (a clean stop)."""
        ...

    async def members(self) -> list[Heartbeat]:
        """The live instances: those whose heartbeat has not expired."""
        ...

    async def live(self) -> set[str]:
        """The names of the live instances (cheaper than :meth:`members`: no heartbeat read)."""
        ...

    async def is_live(self, instance: str) -> bool:
        """Whether ``instance``'s heartbeat is there (one key: O(1))."""
        ...

    async def counts(self, epoch: int) -> tuple[int, int]:
        """(instances named as members, reports for ``epoch``): O(1), to skip reading names.

        The first may still count instances whose heartbeat expired (until :meth:`live`
        prunes them): it is never below the number of live instances.
        """
        ...

    async def report(self, report: DrainReport, notify: str | None = None) -> None:
        """Keep ``report`` for its epoch (idempotent: a repeat replaces it).

        Wakes (REPORT) the instance ``notify`` only, if given: the one that checks the
        barrier at every report. Waking every instance at every report would cost the
        fleet O(instances squared) per switch.
        """
        ...

    async def reports(self, epoch: int) -> dict[str, DrainReport]:
        """The reports kept for ``epoch``, by instance."""
        ...

    async def reported(self, epoch: int) -> set[str]:
        """The names of the instances that reported for ``epoch``."""
        ...

    async def records(self, limit: int = 50) -> list[FleetRecord]:
        """Up to ``limit`` fleet records, newest first."""
        ...

    async def load_bypass(self) -> FleetBypass | None:
        """The fleet's bypass (:mod:`.bypass`), or None when none was published (O(1))."""
        ...

    async def publish_bypass(
        self, bypass: FleetBypass, *, replace: bool = True
    ) -> FleetBypass | None:
        """Make ``bypass`` the fleet's and answer the one it replaced (None: there was none).

        With ``replace=False`` it is written only where none is stored, and the answer is the
        one kept. Kept apart from the fleet state: it neither bumps the epoch nor wakes anyone.
        """
        ...

    def subscribe(self, instance: str, wake: Callable[[Wake], None]) -> None:
        """Call ``wake(what)`` (on the event loop) when the state changed, or a report
        named ``instance`` to be notified.

        Only a hint to look early: a missed wake-up costs a period, never correctness.
        """
        ...

    async def close(self) -> None: ...
