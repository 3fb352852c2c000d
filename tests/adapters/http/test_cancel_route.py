"""POST /server/cancel's input and tokens, in process; the drain itself is in tests/e2e."""

from __future__ import annotations

import pytest

from ..helpers import assert_documented, serving

ADMIN, READ = "admin-secret", "read-secret"


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"", {}, 409),
        (b'{"reason": "no drain"}', {"Content-Type": "application/json"}, 409),
        (b'{"reason": null}', {"Content-Type": "application/json"}, 409),
        (b'{"reason": 5}', {"Content-Type": "application/json"}, 400),
        (b'{"reason": "a\\u0007"}', {"Content-Type": "application/json"}, 400),
        (b'{"why": "x"}', {"Content-Type": "application/json"}, 400),
        (b'["reason"]', {"Content-Type": "application/json"}, 400),
        (b'{"reason": NaN}', {"Content-Type": "application/json"}, 400),
        (b"not json", {"Content-Type": "application/json"}, 400),
        (b"reason=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        (b'{"reason": "x"}', {}, 415),
        (b'{"reason": "' + b"x" * 2000 + b'"}', {"Content-Type": "application/json"}, 413),
    ],
)
def test_input_is_checked_and_answered_as_documented(
    body: bytes, headers: dict[str, str], status: int
) -> None:
    with serving() as (client, _):
        response = client.post("/server/cancel", content=body, headers=headers)
    assert response.status_code == status
    assert_documented(response, "/server/cancel", "post")


@pytest.mark.parametrize(
    ("token", "status"), [(None, 401), ("wrong", 401), (READ, 403), (ADMIN, 409)]
)
def test_only_the_admin_token_may_cancel(token: str | None, status: int) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with serving(admin_token=ADMIN, read_token=READ) as (client, _):
        response = client.post("/server/cancel", headers=headers)
    assert response.status_code == status
    body = assert_documented(response, "/server/cancel", "post")
    assert ADMIN not in response.text and READ not in response.text
    assert body["uri"].endswith("/server/cancel")
