"""Which Accept headers prefer the HTML page, and what the default page says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from servermode.adapters.http.page import MaintenancePage, Refusal, prefers_html


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
        ("text/html", True),
        ("application/xhtml+xml", True),
        ("text/*", True),
        ("text/html;q=0.5, application/json", False),
        ("application/json;q=0.5, text/html", True),
        ("application/json, text/html", False),  # a tie keeps JSON
        ("*/*", False),
        ("", False),
        (None, False),
        ("application/json", False),
        ("text/html;q=0", False),
        ("text/html;q=nonsense", False),
        ("text/html;q=7", False),
        ("TEXT/HTML", True),
        ("text/html;level=1;q=0.9, */*;q=0.1", True),
    ],
)
def test_prefers_html(accept: str | None, html: bool) -> None:
    assert prefers_html(accept) is html


def test_the_default_page_while_switching_and_without_a_reason() -> None:
    refusal = Refusal(
        mode="production",
        state="draining_to_maintenance",
        category="profile",
        description="...",
        reason=None,
        retry_after=1,
        until=datetime(2030, 1, 1, 12, tzinfo=UTC),
    )
    page = MaintenancePage().render(refusal, now=datetime(2030, 1, 1, 11, tzinfo=UTC))
    assert "switching modes" in page
    assert 'class="why"' not in page
    assert "try again in 1 second (after 2030-01-01 11:00:01 UTC)" in page
    assert "window ends at 2030-01-01 12:00:00 UTC" in page
