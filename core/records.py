"""The records the controller keeps: the persisted state and one record per transition attempt."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .modes import Mode, State
from .window import Window

__all__ = ["Outcome", "PersistedState", "TransitionRecord", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Outcome(StrEnum):
    """How a transition attempt ended."""

    COMPLETED = "completed"  # drained in time, the new mode is in force
    FORCED = "forced"  # the drain timed out and the policy switched anyway
    ROLLED_BACK = "rolled_back"  # the drain timed out and the policy returned to the old mode
    CANCELLED = "cancelled"  # an operator abandoned the drain; the old mode is in force
    NOOP = "noop"  # the asked-for mode was already in force
    REFUSED = "refused"  # another switch was under way
    FAILED = "failed"  # the store could not save, or the switch was interrupted; old mode in force
    RECOVERED = "recovered"  # a drain interrupted by a crash was completed at start
    INITIALIZED = "initialized"  # nothing was persisted: the initial mode was put in force
    SCHEDULED = "scheduled"  # a maintenance window was set to begin later; nothing moved yet


@dataclass(frozen=True, slots=True)
class PersistedState:
    """What survives a restart: the state, and the drain's facts while one is under way.

    ``reason`` is the one given for the mode in force (or for the drain under way): refusals
    tell it, the maintenance page shows it. ``window`` is the maintenance window, begun or
    ahead (:mod:`.window`).
    """

    state: State
    since: datetime
    drain_started: datetime | None = None
    deadline: datetime | None = None
    # While draining: who asked for the switch, kept with the intent, so that the record of a
    # drain a crash interrupted (recovered at the next start) still names them. ``reason`` is
    # also kept in a steady state: the one given for the mode in force.
    actor: str | None = None
    client: str | None = None
    request_id: str | None = None
    reason: str | None = None
    window: Window | None = None

    @property
    def mode(self) -> Mode:
        return self.state.mode

    @property
    def target(self) -> Mode | None:
        return self.state.target


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One transition attempt, as audited and as kept in the store's history.

    ``in_flight`` are the counts of every counted category when the drain began, whether the
    drain waits for it or not. ``stragglers`` are the requests of the outgoing kind only (the
    categories the target refuses: what the drain waits for) still running when it timed out,
    was cancelled or failed; requests the target admits are never stragglers. ``closed`` are
    the long-lived connections (WebSockets) closed when the drain began. ``lame_duck`` the
    seconds readiness failed before the drain began. ``fleet`` is, for an instance's part in a
    fleet switch, the fleet-level record of that switch (:class:`~.fleet.records.FleetRecord`
    as a dict: epoch, outcome, each instance's outcome...); empty otherwise (a lone server).
    ``id`` is given by the store when appended.
    """

    from_state: State
    to_state: State
    trigger: str | None
    target_mode: Mode
    outcome: Outcome
    at: datetime
    duration_ms: float = 0.0
    actor: str | None = None
    client: str | None = None
    request_id: str | None = None
    reason: str | None = None
    in_flight: dict[str, int] = field(default_factory=dict)
    stragglers: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    lame_duck: float = 0.0  # seconds readiness failed, requests still admitted, before the drain
    window: dict[str, str | None] = field(default_factory=dict)  # the window it set, if any
    fleet: dict[str, Any] = field(default_factory=dict)  # the fleet switch's record, if any
    id: int | None = None

    def with_id(self, id: int) -> TransitionRecord:
        return replace(self, id=id)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: strings for enums, ISO 8601 for the time."""
        data = asdict(self)
        for key in ("from_state", "to_state", "target_mode", "outcome"):
            data[key] = str(data[key])
        data["at"] = self.at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransitionRecord:
        return cls(
            from_state=State(data["from_state"]),
            to_state=State(data["to_state"]),
            trigger=data.get("trigger"),
            target_mode=Mode(data["target_mode"]),
            outcome=Outcome(data["outcome"]),
            at=datetime.fromisoformat(data["at"]),
            duration_ms=float(data.get("duration_ms", 0.0)),
            actor=data.get("actor"),
            client=data.get("client"),
            request_id=data.get("request_id"),
            reason=data.get("reason"),
            in_flight=dict(data.get("in_flight") or {}),
            stragglers=dict(data.get("stragglers") or {}),
            closed=dict(data.get("closed") or {}),
            lame_duck=float(data.get("lame_duck") or 0.0),
            window=dict(data.get("window") or {}),
            fleet=dict(data.get("fleet") or {}),
            id=data.get("id"),
        )
