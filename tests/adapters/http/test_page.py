"""Which Accept headers prefer the HTML page, and what the default page says."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from servermode.adapters.http.page import MaintenancePage, Refusal, RefusalAnswers, prefers_html
from servermode.core import Refused, State
from starlette.types import Message, Send

from ..asgi import http_scope


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


@pytest.mark.parametrize("page", [MaintenancePage(), None], ids=["page", "no page"])
@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "text/html", "text/html,application/xhtml+xml;q=0.9"],
)
def test_refusals_sent_directly_are_the_responses(
    page: MaintenancePage | None, accept: str | None
) -> None:
    """The gate's fast path (RefusalAnswers.send) sends exactly what response() would: the
    page to browsers, the error body (with Vary: Accept) to everyone else."""
    answers = RefusalAnswers(page, lambda: ("upgrade", None))
    headers = [(b"host", b"testserver")] + ([(b"accept", accept.encode())] if accept else [])
    scope = {**http_scope("GET", "/profiles/1"), "headers": headers}
    refused = Refused(State.DRAINING_TO_MAINTENANCE, "profile", 7)

    async def messages(answer: Callable[[Send], Awaitable[object]]) -> list[Message]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        await answer(send)
        return sent

    async def run() -> tuple[list[Message], list[Message], object]:
        status: list[object] = []

        async def direct(send: Send) -> None:
            status.append(await answers.send(scope, send, refused))

        async def via_response(send: Send) -> None:
            await answers.response(scope, refused)(scope, _receive, send)

        return await messages(direct), await messages(via_response), status[0]

    direct, expected, status = asyncio.run(run())
    assert direct == expected
    assert status == 503 == direct[0]["status"]


async def _receive() -> Message:
    raise AssertionError("not read")
