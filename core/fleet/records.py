"""What the fleet keeps in its engine: the fleet state, heartbeats, drain reports, records.

Times are wall-clock seconds (``time.time()``): the instances of a fleet run on different
machines, and a deadline must mean the same instant to all of them (keep their clocks in
sync, as any distributed deadline needs). Every record is plain JSON through ``to_dict``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from ..machine import TimeoutPolicy
from ..modes import Mode, State
from ..window import Window

__all__ = [
    "DrainReport",
    "FleetOutcome",
    "FleetRecord",
    "FleetState",
    "Heartbeat",
    "InstanceOut",
    "ReportOutcome",
]


class FleetOutcome(StrEnum):
    """How the fleet reached its steady state (kept in the state and in the record)."""

    INITIALIZED = "initialized"  # the first instance seeded the fleet in its initial mode
    COMPLETED = "completed"  # every live instance drained in time
    FORCED = "forced"  # the deadline passed; the policy switched anyway
    ROLLED_BACK = "rolled_back"  # the deadline passed; the policy returned to the old mode
    CANCELLED = "cancelled"  # an operator abandoned the switch; the old mode stays
    RESEEDED = "reseeded"  # the engine came back empty; an instance wrote back what it knew
    WINDOW = "window"  # a maintenance window was set, changed or ended; no switch


class ReportOutcome(StrEnum):
    """How one instance's drain ended, for one epoch."""

    DRAINED = "drained"
    TIMED_OUT = "timed_out"
    OUT = "out"  # the instance is out of the fleet, in a mode of its own: nothing to drain


@dataclass(frozen=True, slots=True)
class FleetState:
    """The one record every instance follows. ``epoch`` grows by one at every change.

    A switch writes a draining state (``target``, ``started``, ``deadline``, ``members``: the
    instances live when it began); its completion writes the steady state that follows, with
    ``outcome`` saying how. Both are compare-and-sets on ``epoch``.

    ``window`` is the fleet's maintenance window, begun or ahead (in a drain: the one a
    rollback keeps); ``next_window`` the one a draining switch brings if it completes. Any
    instance makes the switch a window asks for, when its time comes (a compare-and-set: one
    does). ``lame_duck_until``, in a drain to maintenance: until then every instance fails
    readiness and still admits; its local drain begins then.
    """

    epoch: int
    state: State
    since: float
    outcome: FleetOutcome = FleetOutcome.INITIALIZED
    target: Mode | None = None
    started: float | None = None
    deadline: float | None = None
    policy: TimeoutPolicy = TimeoutPolicy.FORCE
    actor: str | None = None
    reason: str | None = None
    starter: str | None = None
    members: tuple[str, ...] = ()
    window: Window | None = None
    next_window: Window | None = None
    lame_duck_until: float | None = None

    @property
    def mode(self) -> Mode:
        return self.state.mode

    @property
    def is_draining(self) -> bool:
        return self.state.is_draining

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["members"] = list(self.members)
        data["window"] = _window_dict(self.window)
        data["next_window"] = _window_dict(self.next_window)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FleetState:
        target = data.get("target")
        return cls(
            epoch=int(data["epoch"]),
            state=State(data["state"]),
            since=float(data["since"]),
            outcome=FleetOutcome(data.get("outcome", FleetOutcome.INITIALIZED)),
            target=Mode(target) if target else None,
            started=_float_or_none(data.get("started")),
            deadline=_float_or_none(data.get("deadline")),
            policy=TimeoutPolicy(data.get("policy", TimeoutPolicy.FORCE)),
            actor=data.get("actor"),
            reason=data.get("reason"),
            starter=data.get("starter"),
            members=tuple(data.get("members") or ()),
            window=Window.from_dict(data.get("window")),
            next_window=Window.from_dict(data.get("next_window")),
            lame_duck_until=_float_or_none(data.get("lame_duck_until")),
        )

    def but(self, **changes: Any) -> FleetState:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """An instance's sign of life (kept under a TTL): what it follows and what it runs."""

    instance: str
    epoch: int
    state: State
    in_flight: dict[str, int]
    since: float
    at: float
    reported: str | None = None  # how its drain of ``epoch`` ended, once reported
    out: str | None = None  # the mode it was put in alone (out of the fleet), if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Heartbeat:
        return cls(
            instance=str(data["instance"]),
            epoch=int(data["epoch"]),
            state=State(data["state"]),
            in_flight={str(k): int(v) for k, v in (data.get("in_flight") or {}).items()},
            since=float(data["since"]),
            at=float(data["at"]),
            reported=data.get("reported"),
            out=data.get("out"),
        )


@dataclass(frozen=True, slots=True)
class DrainReport:
    """One instance's drain for one epoch: drained, or timed out with its stragglers."""

    instance: str
    epoch: int
    outcome: ReportOutcome
    at: float
    stragglers: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DrainReport:
        return cls(
            instance=str(data["instance"]),
            epoch=int(data["epoch"]),
            outcome=ReportOutcome(data["outcome"]),
            at=float(data["at"]),
            stragglers={str(k): int(v) for k, v in (data.get("stragglers") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class FleetRecord:
    """One fleet-level record per switch (and per seeding), written with the state it led to.

    ``instances`` maps each instance the barrier counted to its outcome (``drained``,
    ``timed_out``, or ``not_reported`` when the deadline passed first); ``expired`` names the
    instances live when the switch began whose heartbeat expired before they reported (left
    out of the barrier); ``stragglers`` the requests cut per instance when forced;
    ``window`` the maintenance window in force after it.
    """

    epoch: int
    from_state: State
    to_state: State
    outcome: FleetOutcome
    at: float
    target: Mode | None = None
    started: float | None = None
    actor: str | None = None
    reason: str | None = None
    starter: str | None = None
    completed_by: str | None = None
    instances: dict[str, str] = field(default_factory=dict)
    expired: tuple[str, ...] = ()
    stragglers: dict[str, dict[str, int]] = field(default_factory=dict)
    window: Window | None = None

    @property
    def duration_ms(self) -> float:
        return 0.0 if self.started is None else max(0.0, (self.at - self.started) * 1000)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["expired"] = list(self.expired)
        data["window"] = _window_dict(self.window)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FleetRecord:
        target = data.get("target")
        return cls(
            epoch=int(data["epoch"]),
            from_state=State(data["from_state"]),
            to_state=State(data["to_state"]),
            outcome=FleetOutcome(data["outcome"]),
            at=float(data["at"]),
            target=Mode(target) if target else None,
            started=_float_or_none(data.get("started")),
            actor=data.get("actor"),
            reason=data.get("reason"),
            starter=data.get("starter"),
            completed_by=data.get("completed_by"),
            instances={str(k): str(v) for k, v in (data.get("instances") or {}).items()},
            expired=tuple(data.get("expired") or ()),
            stragglers={
                str(i): {str(k): int(v) for k, v in counts.items()}
                for i, counts in (data.get("stragglers") or {}).items()
            },
            window=Window.from_dict(data.get("window")),
        )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _window_dict(window: Window | None) -> dict[str, Any] | None:
    return window.to_dict() if window is not None else None


@dataclass(frozen=True, slots=True)
class InstanceOut:
    """One instance taken out of the fleet's mode into its own (a rolling upgrade, as
    ``consul maint`` does it): it stays in ``mode`` whatever the fleet does, until back."""

    mode: Mode
    at: float
    actor: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceOut:
        return cls(
            mode=Mode(data["mode"]),
            at=float(data["at"]),
            actor=data.get("actor"),
            reason=data.get("reason"),
        )
