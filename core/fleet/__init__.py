"""Fleet mode: one mode for many instances, with a fleet-wide drain barrier.

The logic (epochs, the barrier, who completes, what an instance does when it loses the
engine) is here, framework-free; the engine that holds the shared state is a port
(:class:`FleetEngine`), implemented over Redis in the adapters and in memory for tests.
"""

from __future__ import annotations

from .barrier import (
    COMPLETIONS,
    NOT_REPORTED,
    Barrier,
    End,
    barrier,
    cancellation,
    completion,
    draining_to,
    switch_state,
    window_change,
)
from .bypass import BYPASS_PERIOD, BypassFollower, FleetBypass
from .controller import FleetController
from .engine import FleetEngine, FleetEngineUnavailable, NoSuchInstance, Wake
from .fake import InMemoryFleetEngine
from .member import FleetMember
from .node import GateNode, LocalDrain, LocalNode
from .records import (
    DrainReport,
    FleetOutcome,
    FleetRecord,
    FleetState,
    Heartbeat,
    InstanceOut,
    ReportOutcome,
)

__all__ = [
    "BYPASS_PERIOD",
    "COMPLETIONS",
    "NOT_REPORTED",
    "Barrier",
    "BypassFollower",
    "DrainReport",
    "End",
    "FleetBypass",
    "FleetController",
    "FleetEngine",
    "FleetEngineUnavailable",
    "FleetMember",
    "FleetOutcome",
    "FleetRecord",
    "FleetState",
    "GateNode",
    "Heartbeat",
    "InMemoryFleetEngine",
    "InstanceOut",
    "LocalDrain",
    "LocalNode",
    "NoSuchInstance",
    "ReportOutcome",
    "Wake",
    "barrier",
    "cancellation",
    "completion",
    "draining_to",
    "switch_state",
    "window_change",
]
