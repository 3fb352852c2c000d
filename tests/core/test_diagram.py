"""The committed diagrams are the ones the transition table renders now."""

from __future__ import annotations

from pathlib import Path

import pytest
from servermode.core import TRANSITIONS
from servermode.core.diagram import render

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("fmt", "name"), [("mermaid", "server_mode.mmd"), ("dot", "server_mode.dot")]
)
def test_committed_diagram_is_current(fmt: str, name: str) -> None:
    """A change to the table without `make diagrams` fails here."""
    committed = (ROOT / "diagrams" / name).read_text()
    assert committed == render(fmt), f"diagrams/{name} is stale: run `make diagrams`"  # type: ignore[arg-type]


def test_readme_embeds_the_current_mermaid_diagram() -> None:
    """The README shows the diagram the table renders."""
    assert render("mermaid").rstrip("\n") in (ROOT / "README.md").read_text()


def test_every_transition_is_drawn() -> None:
    """Each row of the table appears as a labelled edge."""
    text = render("mermaid")
    for t in TRANSITIONS:
        edge = next(line for line in text.splitlines() if f"{t.source} --> {t.dest}:" in line)
        assert t.trigger.value in edge


def test_committed_svg_draws_every_state_and_trigger() -> None:
    """The SVG (rendered by Graphviz from the DOT) names every state and trigger of the table."""
    svg = (ROOT / "diagrams" / "server_mode.svg").read_text()
    for t in TRANSITIONS:
        assert f">{t.source.value}" in svg
        assert t.trigger.value in svg
