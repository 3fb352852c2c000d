"""Issue 12 item 2: browsers get a maintenance page, APIs keep the JSON error body."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from servermode.adapters.bootstrap import build_service
from servermode.adapters.cli.settings import Settings, SettingsError
from servermode.adapters.store.factory import MEMORY

from .servers import ThreadedService

pytestmark = pytest.mark.timeout(30)

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


def _maintenance(client: object, reason: str | None = None) -> None:
    body = {"mode": "maintenance", **({"reason": reason} if reason else {})}
    answer = client.post("/server/mode", json=body)  # type: ignore[attr-defined]
    assert answer.status_code == 200


def test_a_browser_gets_the_default_page_and_an_api_the_json_body() -> None:
    with ThreadedService(retry_after=120) as running:
        client = running.client()
        _maintenance(client, reason="Database upgrade <v2> & reindex")
        page = client.get("/profiles/1", headers={"Accept": BROWSER})
        api = client.get("/profiles/1", headers={"Accept": "application/json"})
        curl = client.get("/profiles/1", headers={"Accept": "*/*"})
        tie = client.get("/profiles/1", headers={"Accept": "application/json, text/html"})
        admitted = client.get("/metadata/profiles/extensions?delay=0", headers={"Accept": BROWSER})

    assert page.status_code == 503
    assert page.headers["retry-after"] == "120"
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["vary"] == "Accept"
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    text = page.text
    assert "Down for maintenance" in text
    assert "Database upgrade &lt;v2&gt; &amp; reindex" in text  # the reason, escaped
    assert "try again in 2 minutes" in text
    # No JavaScript and nothing fetched from elsewhere.
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", text, re.I)
    for answer in (api, curl, tie):
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "120"
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["code"] == 5030
    assert admitted.status_code == 200  # the page is for refusals only
    assert admitted.headers["content-type"] == "application/json"


def test_the_operators_template_is_filled_in(tmp_path: Path) -> None:
    template = tmp_path / "page.html"
    template.write_text(
        "<p>mode=$mode reason=$reason retry=$retry_after at=$retry_at "
        "until=[$until] category=$category costs $$5</p>"
    )
    with ThreadedService(maintenance_page=str(template), retry_after=30) as running:
        client = running.client()
        _maintenance(client, reason="disk swap")
        page = client.get("/services/7", headers={"Accept": "text/html"})
    assert page.status_code == 503
    assert page.headers["retry-after"] == "30"
    assert re.fullmatch(
        r"<p>mode=maintenance reason=disk swap retry=30 at=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
        r"until=\[\] category=service costs \$5</p>",
        page.text,
    ), page.text


def test_a_template_with_an_unknown_placeholder_stops_the_start(tmp_path: Path) -> None:
    template = tmp_path / "page.html"
    template.write_text("<p>$mode $secret</p>")
    with pytest.raises(SettingsError, match=r"uses \$secret"):
        build_service(Settings(state=MEMORY, maintenance_page=str(template)))
    with pytest.raises(SettingsError, match="cannot read the maintenance page"):
        build_service(Settings(state=MEMORY, maintenance_page=str(tmp_path / "missing.html")))
