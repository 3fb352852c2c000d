"""Issue 12 item 1: bypass by secret (header or cookie link) and by allowed address.

A forged ``X-Forwarded-For`` (or ``Forwarded``) from a peer that is not a trusted proxy never
bypasses. Distinct loopback addresses stand for distinct peers: the client binds its side of
the connection to 127.0.0.2 or 127.0.0.3 (the whole of 127.0.0.0/8 is this machine).
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest
from servermode.adapters.bootstrap import build_service
from servermode.adapters.cli.settings import Settings, SettingsError
from servermode.adapters.store.factory import MEMORY
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ..reliability.service import ServiceProcess
from .servers import ThreadedService

pytestmark = pytest.mark.timeout(30)

SECRET = "let-me-in-" + "x" * 16


def _maintenance(client: httpx2.Client) -> None:
    assert client.post("/server/mode", json={"mode": "maintenance"}).status_code == 200


def _from(running: ThreadedService, address: str) -> httpx2.Client:
    """A client whose connections come from ``address`` (a loopback address)."""
    transport = httpx2.HTTPTransport(local_address=address)
    return running.client(transport=transport)


def test_the_secret_header_bypasses_and_is_counted() -> None:
    with ThreadedService(bypass_secret=SECRET) as running:
        client = running.client()
        _maintenance(client)
        refused = client.get("/profiles/1?delay=0")
        wrong = client.get("/profiles/1?delay=0", headers={"Servermode-Bypass": SECRET + "x"})
        passed = client.get("/profiles/1?delay=0", headers={"Servermode-Bypass": SECRET})
        status = client.get("/server/status").json()
        metrics = client.get("/server/metrics").text
    assert 'servermode_requests_bypassed_total{category="profile"} 1.0' in metrics
    assert refused.status_code == 503
    assert wrong.status_code == 503
    assert passed.status_code == 200
    assert passed.json()["category"] == "profile"
    assert status["bypassed"] == {"profile": 1}
    assert status["in_flight"]["profile"] == 0


def test_the_link_sets_a_cookie_that_bypasses() -> None:
    with ThreadedService(bypass_secret=SECRET) as running:
        client = running.client()
        _maintenance(client)
        wrong = client.get("/server/bypass", params={"secret": "nope"})
        link = client.get("/server/bypass", params={"secret": SECRET, "next": "/profiles/3"})
        browser = running.client()
        refused = browser.get("/profiles/3?delay=0")
        cookie = link.headers["set-cookie"].split(";")[0]
        passed = browser.get("/profiles/3?delay=0", headers={"Cookie": cookie})
        open_redirect = client.get(
            "/server/bypass", params={"secret": SECRET, "next": "//elsewhere.example/"}
        )
    assert wrong.status_code == 403
    assert wrong.json()["code"] == 4030
    assert link.status_code == 303
    assert link.headers["location"] == "/profiles/3"
    attributes = link.headers["set-cookie"]
    assert attributes.startswith("servermode_bypass=")
    assert "HttpOnly" in attributes and "SameSite=Lax" in attributes and "Path=/" in attributes
    assert SECRET not in attributes  # the cookie holds an HMAC of the secret, not the secret
    assert refused.status_code == 503
    assert passed.status_code == 200
    assert open_redirect.headers["location"] == "/"


def test_no_secret_no_link() -> None:
    with ThreadedService() as running:
        answer = running.client().get("/server/bypass", params={"secret": SECRET})
    assert answer.status_code == 404
    assert answer.json()["code"] == 4040


@pytest.mark.parametrize("uvicorn_proxy_headers", [False, True])
def test_allowed_addresses_bypass_and_forged_forwarded_headers_do_not(
    uvicorn_proxy_headers: bool,
) -> None:
    """127.0.0.1 is a trusted proxy; 127.0.0.3 and 10.9.9.0/24 are allowed; 127.0.0.2 is not.

    Run with uvicorn's own proxy handling off, and on (its default: it believes 127.0.0.1).
    """
    options: dict[str, Any] = {"proxy_headers": uvicorn_proxy_headers}
    if uvicorn_proxy_headers:
        options["forwarded_allow_ips"] = "127.0.0.1"
    with ThreadedService(
        uvicorn_options=options,
        bypass_allow="10.9.9.0/24, 127.0.0.3",
        trusted_proxies="127.0.0.1/32",
    ) as running:
        _maintenance(running.client())
        stranger, allowed, proxy = (_from(running, f"127.0.0.{n}") for n in (2, 3, 1))
        path = "/profiles/1?delay=0"
        answers = {
            "stranger": stranger.get(path),
            "stranger forging X-Forwarded-For": stranger.get(
                path, headers={"X-Forwarded-For": "10.9.9.9"}
            ),
            "stranger forging Forwarded": stranger.get(path, headers={"Forwarded": "for=10.9.9.9"}),
            "allowed peer": allowed.get(path),
            "proxy for an allowed client": proxy.get(path, headers={"X-Forwarded-For": "10.9.9.9"}),
            "proxy for an allowed client (Forwarded)": proxy.get(
                path, headers={"Forwarded": 'for="10.9.9.9:4711";proto=http'}
            ),
            "proxy for a client that forged the first hop": proxy.get(
                path, headers={"X-Forwarded-For": "10.9.9.9, 192.0.2.1"}
            ),
            "proxy for an unknown client": proxy.get(path, headers={"Forwarded": "for=unknown"}),
        }
        bypassed = running.client().get("/server/status").json()["bypassed"]
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "stranger": 503,
        "stranger forging X-Forwarded-For": 503,
        "stranger forging Forwarded": 503,
        "allowed peer": 200,
        "proxy for an allowed client": 200,
        "proxy for an allowed client (Forwarded)": 200,
        "proxy for a client that forged the first hop": 503,
        "proxy for an unknown client": 503,
    }
    assert bypassed == {"profile": 3}


def test_a_bypassed_request_is_drained() -> None:
    """A bypassed profile request in maintenance holds up the next switch to maintenance, and
    a bypass never lets in what a drain under way waits for."""
    headers = {"Servermode-Bypass": SECRET}
    with (
        ThreadedService(bypass_secret=SECRET, drain_timeout=10) as running,
        ThreadPoolExecutor(2) as pool,
    ):
        client = running.client()
        _maintenance(client)
        slow = pool.submit(client.get, "/profiles/1", params={"delay": 1.5}, headers=headers)
        deadline = time.monotonic() + 5
        while client.get("/server/status").json()["in_flight"]["profile"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.post("/server/mode", json={"mode": "production"}).status_code == 200
        started = time.monotonic()
        switch = pool.submit(client.post, "/server/mode", json={"mode": "maintenance"})
        time.sleep(0.2)
        during = client.get("/profiles/2?delay=0", headers=headers)
        status = client.get("/server/status").json()
        switched = switch.result()
        waited = time.monotonic() - started
        assert slow.result().status_code == 200
    assert status["state"] == "draining_to_maintenance"
    assert during.status_code == 503  # the drain waits for profile requests: no bypass now
    assert switched.status_code == 200
    assert switched.headers["servermode-outcome"] == "completed"
    assert waited >= 1.0  # it waited for the bypassed request


def test_the_secret_is_never_logged(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(24)
    log = tmp_path / "service.log"
    env = {"SERVERMODE_BYPASS_SECRET": secret}
    args = ("--log-level", "trace", "--demo-delay", "0")
    with ServiceProcess(tmp_path / "servermode.db", log, *args, env=env) as service:
        client = httpx2.Client(base_url=service.url, timeout=10)
        _maintenance(client)
        assert client.get("/profiles/1", headers={"Servermode-Bypass": secret}).status_code == 200
        assert client.get("/server/bypass", params={"secret": secret}).status_code == 303
        assert client.get("/server/bypass", params={"secret": secret + "x"}).status_code == 403
        client.close()
    written = log.read_text()
    assert "/server/bypass?secret=[hidden]" in written or "server/bypass" in written
    assert secret not in written


def test_bad_bypass_settings_stop_the_start() -> None:
    with pytest.raises(SettingsError, match="at least 16 characters"):
        build_service(Settings(state=MEMORY, bypass_secret="short"))
    with pytest.raises(SettingsError, match=r"bypass allowlist: 'ten\.0\.0\.0/8'"):
        build_service(Settings(state=MEMORY, bypass_allow="ten.0.0.0/8"))
    with pytest.raises(SettingsError, match="trusted proxies"):
        build_service(Settings(state=MEMORY, trusted_proxies="10.0.0.0/33"))


def test_a_websocket_handshake_with_the_secret_bypasses() -> None:
    with ThreadedService(bypass_secret=SECRET, initial_mode="maintenance") as running:
        url = running.url.replace("http://", "ws://") + "/profiles/1/echo"
        with pytest.raises(InvalidStatus) as refused, connect(url, proxy=None, open_timeout=5):
            pass
        headers = {"Servermode-Bypass": SECRET}
        with connect(url, proxy=None, open_timeout=5, additional_headers=headers) as socket:
            socket.send("hello")
            answer = socket.recv(timeout=5)
            in_flight = running.client().get("/server/status").json()["in_flight"]["profile"]
        bypassed = running.client().get("/server/status").json()["bypassed"]
    assert refused.value.response.status_code == 503
    assert "hello" in str(answer)
    assert in_flight == 1  # counted while open
    assert bypassed == {"profile": 1}
