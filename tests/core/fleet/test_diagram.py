"""The barrier diagram is drawn from the code, and its copies do not drift."""

from __future__ import annotations

from pathlib import Path

from servermode.core.fleet import COMPLETIONS, FleetOutcome
from servermode.core.fleet.diagram import render_barrier

ROOT = Path(__file__).resolve().parents[3]


def test_committed_barrier_diagram_is_current() -> None:
    assert (ROOT / "diagrams" / "fleet_barrier.mmd").read_text() == render_barrier()


def test_readme_embeds_the_current_barrier_diagram() -> None:
    assert render_barrier() in (ROOT / "README.md").read_text()


def test_every_completion_is_drawn() -> None:
    text = render_barrier()
    for outcome, end in COMPLETIONS.values():
        assert f"completion --> {end.value}: {outcome}" in text
    assert str(FleetOutcome.RESEEDED) in text
