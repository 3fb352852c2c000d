"""The admin page in a real headless Chromium against a real `servermode serve`."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from .conftest import ADMIN_TOKEN, PHONE, READ_TOKEN, Service, Watched, serving

pytestmark = pytest.mark.timeout(60)


def open_with_token(page: Page, service: Service, token: str) -> None:
    """Load the page; it asks for a token (reads need one here); type it once."""
    page.goto(service.page_url)
    expect(page.locator("#token-form")).to_be_visible()
    page.fill("#token", token)
    page.click("#token-form button[type=submit]")


def in_background(call: Any, *args: Any, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=call, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def history(service: Service) -> list[dict[str, Any]]:
    return list(service.api.get("/server/transitions").json()["transitions"])


def test_the_page_shows_production_and_the_current_state_in_the_diagram(
    watched: Watched, service: Service
) -> None:
    page = watched.page
    open_with_token(page, service, ADMIN_TOKEN)
    expect(page.locator("#mode")).to_have_text("production")
    expect(page.locator("#state")).to_have_text("production")
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator('.sm-state[data-state="production"]')).to_have_class(
        re.compile(r"\bcurrent\b")
    )
    expect(page.locator(".sm-state.current")).to_have_count(1)
    expect(page.locator("#transitions tbody tr")).to_have_count(1)  # initialized
    expect(page.locator("#switch")).to_be_enabled()
    expect(page.locator("#switch")).to_have_text("Switch to maintenance…")


def test_a_switch_through_the_page_shows_the_drain_then_maintenance(
    watched: Watched, service: Service, screenshots: Path
) -> None:
    """With a slow request in flight, the page shows the drain's progress, then maintenance."""
    page = watched.page
    # Some history for the picture: a maintenance window earlier today.
    for mode, reason in (("maintenance", "schema 41"), ("production", "schema 41 done")):
        service.api.post("/server/mode", json={"mode": mode, "reason": reason})
    open_with_token(page, service, ADMIN_TOKEN)
    expect(page.locator("#mode")).to_have_text("production")
    # The slow request: 3 s, long enough to see the drain (the in-flight count shows within
    # a second of its start, then the switch is asked).
    slow = in_background(service.api.get, "/profiles/1", params={"delay": 3})
    expect(page.locator('#in-flight tr[data-category="profile"] td').nth(1)).to_have_text("1")

    page.fill("#reason", "schema 42: add loyalty tier")
    page.click("#switch")
    expect(page.locator("#confirm")).to_be_visible()  # the confirmation step
    expect(page.locator("#confirm-text")).to_contain_text("from production to maintenance")
    page.click("#confirm-yes")

    expect(page.locator("#drain")).to_be_visible()
    expect(page.locator("#state")).to_have_text("draining_to_maintenance")
    expect(page.locator("#drain-running")).to_have_text("1 profile")
    expect(page.locator("#time-left")).to_have_text(re.compile(r"^\d+\.\d s$"))
    expect(page.locator('.sm-state[data-state="draining_to_maintenance"]')).to_have_class(
        re.compile(r"\bcurrent\b")
    )
    expect(page.locator("#cancel-drain")).to_be_enabled()
    time.sleep(0.5)  # the progress bar moves
    progress = float(page.locator("#drain-progress").get_attribute("value") or 0)
    page.screenshot(path=str(screenshots / "admin-page.png"), full_page=True)
    assert page.locator("#drain").is_visible(), "the drain ended before the screenshot"
    assert 0 < progress < 1

    expect(page.locator("#mode")).to_have_text("maintenance", timeout=5000)
    expect(page.locator("#drain")).to_be_hidden()
    expect(page.locator("#message")).to_have_text("Switched to maintenance (completed).")
    expect(page.locator("#transitions tbody tr").first).to_contain_text("admin")
    expect(page.locator("#transitions tbody tr").first).to_contain_text("schema 42")
    slow.join(5)
    assert len(watched.navigations) == 1  # no reload: everything came over the stream
    assert history(service)[0]["reason"] == "schema 42: add loyalty tier"


def test_a_switch_by_another_client_appears_within_a_second(
    watched: Watched, service: Service
) -> None:
    page = watched.page
    open_with_token(page, service, READ_TOKEN)
    expect(page.locator("#mode")).to_have_text("production")
    started = time.monotonic()
    response = service.api.post("/server/mode", json={"mode": "maintenance", "reason": "curl"})
    assert response.status_code == 200
    expect(page.locator("#mode")).to_have_text("maintenance", timeout=1000)
    assert time.monotonic() - started < 1.0
    expect(page.locator("#transitions tbody tr").first).to_contain_text("curl")
    assert len(watched.navigations) == 1


def test_a_wrong_token_shows_an_error_and_changes_nothing(
    watched: Watched, service: Service
) -> None:
    page = watched.page
    before = history(service)
    open_with_token(page, service, "not-the-token")
    expect(page.locator("#message")).to_contain_text("The token was refused: invalid bearer token")
    expect(page.locator("#connection")).to_have_text("token refused")
    expect(page.locator("#token-form")).to_be_visible()
    for control in ("#switch", "#reason", "#cancel-drain"):
        expect(page.locator(control)).to_be_disabled()
    expect(page.locator("#controls-note")).to_have_text("Controls disabled: invalid bearer token.")
    assert watched.posts == []
    assert service.api.get("/server/status").json()["mode"] == "production"
    assert history(service) == before


def test_a_read_token_shows_everything_and_disables_the_controls(
    watched: Watched, service: Service
) -> None:
    page = watched.page
    open_with_token(page, service, READ_TOKEN)
    expect(page.locator("#mode")).to_have_text("production")
    expect(page.locator("#switch")).to_be_disabled()
    expect(page.locator("#controls-note")).to_have_text(
        "Controls disabled: the read token does not allow changing the mode."
    )
    expect(page.locator("#message")).to_have_text(
        "This token may read but not change the mode: "
        "the read token does not allow changing the mode."
    )


def test_a_wrong_token_where_reading_is_open_shows_an_error(watched: Watched) -> None:
    """Without a read token the page shows everything; a wrong token still cannot switch."""
    page = watched.page
    with serving(read_token=None) as service:
        page.goto(service.page_url)
        expect(page.locator("#mode")).to_have_text("production")  # no token needed to read
        expect(page.locator("#switch")).to_be_disabled()
        expect(page.locator("#token-form")).to_be_visible()
        page.fill("#token", "not-the-token")
        page.click("#token-form button[type=submit]")
        expect(page.locator("#message")).to_have_text(
            "The token was refused: invalid bearer token. It cannot change the mode."
        )
        expect(page.locator("#token-form")).to_be_visible()
        expect(page.locator("#switch")).to_be_disabled()
        page.fill("#token", ADMIN_TOKEN)
        page.click("#token-form button[type=submit]")
        expect(page.locator("#switch")).to_be_enabled()
        assert watched.posts == []


def test_cancel_from_the_page_keeps_production(watched: Watched, service: Service) -> None:
    page = watched.page
    open_with_token(page, service, ADMIN_TOKEN)
    expect(page.locator("#mode")).to_have_text("production")
    slow = in_background(service.api.get, "/profiles/1", params={"delay": 3})
    expect(page.locator('#in-flight tr[data-category="profile"] td').nth(1)).to_have_text("1")
    switch = in_background(service.api.post, "/server/mode", json={"mode": "maintenance"})
    expect(page.locator("#cancel-drain")).to_be_enabled()
    page.fill("#reason", "wrong window")
    page.click("#cancel-drain")
    expect(page.locator("#confirm-text")).to_contain_text("stays in production mode")
    page.click("#confirm-yes")
    expect(page.locator("#message")).to_have_text(
        "Drain ended: cancelled; the server is in production mode."
    )
    expect(page.locator("#state")).to_have_text("production")
    expect(page.locator("#transitions tbody tr").first).to_contain_text("cancelled")
    switch.join(5)
    slow.join(5)
    assert history(service)[0]["reason"] == "wrong window"


def test_usable_at_phone_width(watched: Watched, service: Service, screenshots: Path) -> None:
    """At 390 px: nothing wider than the screen, the controls reachable, a switch goes through."""
    page = watched.page
    page.set_viewport_size(PHONE)
    open_with_token(page, service, ADMIN_TOKEN)
    expect(page.locator("#mode")).to_have_text("production")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    for control in ("#reason", "#switch", "#cancel-drain", "#mode"):
        box = page.locator(control).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    page.fill("#reason", "from the phone")
    page.click("#switch")
    page.click("#confirm-yes")
    expect(page.locator("#mode")).to_have_text("maintenance")
    page.screenshot(path=str(screenshots / "admin-page-phone.png"), full_page=True)
