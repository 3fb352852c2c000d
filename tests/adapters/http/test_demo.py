"""The built-in demo application, gated by the whole service."""

from __future__ import annotations

import time

import pytest
from servermode.adapters.http.demo import DEMO_ROUTES, demo_app

from ..helpers import serving


def test_one_route_per_category() -> None:
    """The demo has a route in each counted category of the Context Services preset."""
    assert {category for _, _, category in DEMO_ROUTES} == {
        "profile",
        "service",
        "schema",
        "schema_read",
    }


def test_routes_answer_by_mode() -> None:
    """In production profile reads pass and schema writes are refused; in maintenance, reverse."""
    with serving() as (client, _):
        assert client.get("/profiles/1").json()["category"] == "profile"
        assert client.post("/metadata/profiles/extensions").status_code == 503
        client.post("/server/mode", json={"mode": "maintenance"})
        assert client.get("/profiles/1").status_code == 503
        assert client.post("/metadata/profiles/extensions").json()["category"] == "schema"
        assert client.get("/metadata/profiles/extensions").status_code == 200


def test_each_request_takes_the_configured_moment() -> None:
    """A demo request takes its delay; ?delay= overrides it."""
    with serving(demo_delay=0.2) as (client, _):
        started = time.monotonic()
        assert client.get("/services/1").json()["took"] == 0.2
        assert time.monotonic() - started >= 0.2
        assert client.get("/services/1?delay=0").json()["took"] == 0.0


@pytest.mark.parametrize("delay", ["soon", "-1", "61", "nan"])
def test_bad_delay_is_400(delay: str) -> None:
    """A delay that is not 0..60 seconds is a 400 with the error body."""
    with serving() as (client, _):
        response = client.get(f"/profiles/1?delay={delay}")
    assert response.status_code == 400
    assert response.json()["description"].startswith("bad delay")


def test_unknown_path_is_404_with_the_error_body() -> None:
    """The demo's own 404 uses the error body too."""
    with serving() as (client, _):
        response = client.get("/profiles")
    assert response.status_code == 404
    assert response.json()["code"] == 4040


def test_delay_out_of_range_is_refused() -> None:
    """The demo refuses a default delay beyond a minute."""
    with pytest.raises(ValueError):
        demo_app(120)
