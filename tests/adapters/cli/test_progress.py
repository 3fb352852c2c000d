"""What `set --wait` shows while a drain runs: live on a terminal, by change elsewhere."""

from __future__ import annotations

import io

from servermode.adapters.cli.progress import DrainProgress, describe_drain

STEADY = {"mode": "production", "in_flight": {"profile": 0}}


def draining(deadline: str = "2030-01-01T00:00:10.000Z", **in_flight: int) -> dict[str, object]:
    return {
        "system_time": "2030-01-01T00:00:00.000Z",
        "target": "maintenance",
        "deadline": deadline,
        "in_flight": {"profile": 0, "service": 0, "schema_read": 0, **in_flight},
    }


def test_the_line_names_the_categories_in_flight_and_the_time_left() -> None:
    """Categories with requests in flight and their counts, then the seconds left."""
    described = describe_drain(draining(profile=2, service=1))
    assert described is not None
    assert described[1] == "draining to maintenance: 3 in flight (profile 2, service 1), 10.0s left"
    assert describe_drain(STEADY) is None


def test_only_the_categories_the_drain_waits_for() -> None:
    """With ``waiting_for`` in the document, the categories the target admits are left out."""
    document = {**draining(profile=1, schema_read=4), "waiting_for": ["profile", "service"]}
    described = describe_drain(document)
    assert described is not None
    assert described[1].startswith("draining to maintenance: 1 in flight (profile 1),")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_rewritten_in_place() -> None:
    """Every update rewrites the line; finish erases it; nothing scrolls."""
    out = Terminal()
    progress = DrainProgress(out)
    progress.show(draining(profile=1))
    progress.show(draining(deadline="2030-01-01T00:00:09.000Z", profile=1))
    progress.finish()
    assert out.getvalue() == (
        "\r\x1b[Kdraining to maintenance: 1 in flight (profile 1), 10.0s left"
        "\r\x1b[Kdraining to maintenance: 1 in flight (profile 1), 9.0s left"
        "\r\x1b[K"
    )


def test_off_a_terminal_a_line_per_change() -> None:
    """Only a change of the requests in flight (or of the problem) prints a new line."""
    out = io.StringIO()
    progress = DrainProgress(out)
    progress.show(draining(profile=2))
    progress.show(draining(deadline="2030-01-01T00:00:09.000Z", profile=2))  # time only
    progress.show(draining(profile=1))
    progress.problem("cannot reach servermode")
    progress.problem("cannot reach servermode")
    progress.show(STEADY)
    progress.finish()
    assert out.getvalue().splitlines() == [
        "draining to maintenance: 2 in flight (profile 2), 10.0s left",
        "draining to maintenance: 1 in flight (profile 1), 10.0s left",
        "status unavailable: cannot reach servermode",
    ]
