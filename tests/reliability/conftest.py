"""Figures of the reliability runs, added up over the session and printed at its end."""

from __future__ import annotations

from collections import Counter

import pytest

#: requests sent, switches made, faults injected, fuzz cases run, lost (the goal: 0), and the
#: requests whose connection a kill of the service cut (in flight when it died: expected).
FIGURES: Counter[str] = Counter()
FIGURE_NAMES = (
    "requests sent",
    "switches made",
    "faults injected",
    "fuzz cases run",
    "lost",
    "cut by kills",
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        figures = ", ".join(f"{name} {FIGURES[name]}" for name in FIGURE_NAMES)
        terminalreporter.write_line(f"reliability figures: {figures}")
