"""The fleet's drain barrier as a Mermaid state diagram, drawn from the code's own tables.

The completions come from :data:`.barrier.COMPLETIONS` (what the barrier does at its end),
the instances' reports from :class:`.records.ReportOutcome`: change either and the diagram
changes with it (a test keeps ``diagrams/fleet_barrier.mmd`` and the README in step).
"""

from __future__ import annotations

from pathlib import Path

from ..machine import TimeoutPolicy
from .barrier import COMPLETIONS, End
from .records import FleetOutcome, ReportOutcome

__all__ = ["render_barrier", "write_barrier"]

_WHY = {
    (False, TimeoutPolicy.FORCE): "every live instance drained",
    (False, TimeoutPolicy.ROLLBACK): "every live instance drained",
    (True, TimeoutPolicy.FORCE): "deadline, policy force",
    (True, TimeoutPolicy.ROLLBACK): "deadline, policy rollback",
}


def render_barrier() -> str:
    """The barrier of one fleet switch, Mermaid ``stateDiagram-v2`` text."""
    lines = [
        "---",
        "servermode fleet barrier",
        "---",
        "stateDiagram-v2",
        "  direction TB",
        '  state "fleet steady at epoch E" as steady',
        '  state "fleet draining at epoch E+1" as draining',
        '  state "each live instance" as instance',
        '  state "refuses what the target refuses, waits for its own requests" as drain',
        '  state "reported for E+1" as reported',
        "  state completion <<choice>>",
        '  state "fleet in the target mode at E+2" as target',
        '  state "fleet back in the old mode at E+2" as source',
        f"  [*] --> steady: the first instance seeds it ({FleetOutcome.INITIALIZED})",
        "  steady --> draining: a switch on any instance, compare-and-set E to E+1",
        "  draining --> instance: sees E+1 (wake-up or periodic read)",
        "  instance --> drain",
    ]
    lines += [f"  drain --> reported: {outcome}" for outcome in ReportOutcome]
    lines += [
        "  reported --> completion: all live reported, or the deadline (any instance, "
        "compare-and-set E+1 to E+2)",
        "  instance --> completion: its heartbeat expired: left out, named in the record",
    ]
    edges: dict[tuple[FleetOutcome, End], list[str]] = {}
    for key, (outcome, end) in COMPLETIONS.items():
        reason = _WHY[key]
        if reason not in edges.setdefault((outcome, end), []):
            edges[(outcome, end)].append(reason)
    for (outcome, end), reasons in edges.items():
        lines.append(f"  completion --> {end.value}: {outcome} ({'; '.join(reasons)})")
    lines.append(
        f"  draining --> source: {FleetOutcome.CANCELLED} (an operator, on any instance, "
        "compare-and-set E+1 to E+2)"
    )
    lines += [
        "  target --> steady: every instance settles, the next switch may start",
        "  source --> steady: every instance settles, the next switch may start",
        f"  steady --> steady: Redis emptied, an instance writes it back ({FleetOutcome.RESEEDED})",
    ]
    return "\n".join(lines) + "\n"


def write_barrier(directory: str) -> str:
    path = Path(directory) / "fleet_barrier.mmd"
    path.write_text(render_barrier())
    return str(path)
