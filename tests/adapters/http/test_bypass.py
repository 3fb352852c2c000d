"""The bypass rules without a server: who is the client, how secrets are compared."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from servermode.adapters.http import bypass as bypass_module
from servermode.adapters.http.bypass import Bypass, BypassBy, parse_networks
from servermode.adapters.http.problems import Problem, ProblemError
from starlette.requests import Request

SECRET = "s" * 20


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 1234) if peer else None,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


TRUSTING = Bypass(
    allow=parse_networks("10.0.0.0/8, 2001:db8::/32", "allow"),
    trusted_proxies=parse_networks("192.0.2.1, 192.0.2.2, ::1", "proxies"),
)


@pytest.mark.parametrize(
    ("request_scope", "client"),
    [
        (scope("198.51.100.7", ("X-Forwarded-For", "10.0.0.1")), "198.51.100.7"),
        (scope("192.0.2.1", ("X-Forwarded-For", "10.0.0.1")), "10.0.0.1"),
        (scope("192.0.2.1", ("X-Forwarded-For", "10.0.0.1, 192.0.2.2")), "10.0.0.1"),
        (
            scope("192.0.2.1", ("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-For", "8.8.8.8")),
            "8.8.8.8",
        ),
        (scope("192.0.2.1", ("Forwarded", 'for="[2001:db8::17]:4711"')), "2001:db8::17"),
        (scope("192.0.2.1", ("Forwarded", "for=10.0.0.1, for=192.0.2.2;proto=https")), "10.0.0.1"),
        (scope("192.0.2.1", ("Forwarded", "proto=https")), None),
        (scope("192.0.2.1", ("X-Forwarded-For", "garbage")), None),
        (scope("192.0.2.1"), "192.0.2.1"),
        (scope("::1", ("X-Forwarded-For", "10.1.2.3:8080")), "10.1.2.3"),
        (scope("192.0.2.1", ("X-Forwarded-For", ",".join(["10.0.0.1"] * 30))), None),
        (scope(None), None),
    ],
)
def test_client_address(request_scope: dict[str, Any], client: str | None) -> None:
    expected = ipaddress.ip_address(client) if client else None
    assert TRUSTING.client_address(request_scope) == expected


def test_the_secret_and_the_cookie_are_compared_as_digests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(bypass_module.hmac, "compare_digest", spy)
    rules = Bypass(SECRET)
    assert rules.allows(scope("x", ("Servermode-Bypass", SECRET))) is BypassBy.SECRET
    assert rules.allows(scope("x", ("Servermode-Bypass", "s" * 10_000))) is None
    cookie = f"a=b; servermode_bypass={rules.cookie_value}"
    assert rules.allows(scope("x", ("Cookie", cookie))) is BypassBy.COOKIE
    assert rules.allows(scope("x", ("Cookie", "servermode_bypass=" + SECRET))) is None
    assert calls and all(len(a) == len(b) == 32 for a, b in calls)
    assert SECRET not in repr(rules)


# -- in a fleet: the fleet's bypass replaces who passes ----------------------------------------

OTHER = "o" * 20


def request_scope(path: str, query: str = "", peer: str = "192.0.2.9") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")],
        "client": (peer, 1234),
        "server": ("testserver", 80),
    }


def link(rules: Bypass, secret: str) -> Any:
    query = urllib.parse.urlencode({"secret": secret})
    return asyncio.run(rules.link(Request(request_scope("/server/bypass", query))))


def test_a_bypass_without_its_own_follows_the_fleets() -> None:
    a = Bypass(SECRET, allow=parse_networks("10.0.0.0/8", "allow"))
    b = Bypass(trusted_proxies=parse_networks("192.0.2.1", "proxies"))
    assert not b.enabled and b.allows(scope("10.1.1.1", ("Servermode-Bypass", SECRET))) is None
    b.follow(a.published("A", 100.0))
    assert b.enabled and b.has_secret and b.fleet is not None and b.fleet.published_by == "A"
    assert b.allows(scope("x", ("Servermode-Bypass", SECRET))) is BypassBy.SECRET
    assert b.allows(scope("x", ("Servermode-Bypass", OTHER))) is None
    cookie = f"servermode_bypass={a.cookie_value}"
    assert b.allows(scope("x", ("Cookie", cookie))) is BypassBy.COOKIE  # A's link's cookie
    assert b.allows(scope("10.1.1.1")) is BypassBy.ADDRESS
    # B's own trusted proxies stay: a forwarded address is believed from them only.
    assert b.allows(scope("192.0.2.1", ("X-Forwarded-For", "10.2.2.2"))) is BypassBy.ADDRESS
    assert b.allows(scope("192.0.2.7", ("X-Forwarded-For", "10.2.2.2"))) is None
    # A follows a fleet without a bypass (B's): A's own secret no longer passes.
    a.follow(b.published("B", 200.0))
    assert not a.enabled
    assert a.allows(scope("10.1.1.1", ("Servermode-Bypass", SECRET))) is None
    assert a.published("A", 300.0).secret_sha256 is not None  # its own is still its own


def test_what_is_published_lets_no_one_make_a_cookie() -> None:
    rules = Bypass(SECRET, allow=parse_networks("10.0.0.0/8, ::1", "allow"))
    published = rules.published("A", 1.0)
    text = json.dumps(published.to_dict())
    assert SECRET not in text
    assert rules.cookie_value is not None and rules.cookie_value not in text
    assert published.allow == ("10.0.0.0/8", "::1/128")
    assert published.secret_sha256 == hashlib.sha256(SECRET.encode()).hexdigest()


def test_the_link_works_on_an_instance_given_no_secret() -> None:
    a, b = Bypass(SECRET), Bypass()
    with pytest.raises(ProblemError) as none:
        link(b, SECRET)
    assert none.value.problem is Problem.NOT_FOUND
    b.follow(a.published("A", 1.0))
    answer = link(b, SECRET)
    assert answer.status_code == 303
    assert f"servermode_bypass={a.cookie_value};" in answer.headers["set-cookie"]
    with pytest.raises(ProblemError) as wrong:
        link(b, OTHER)
    assert wrong.value.problem is Problem.FORBIDDEN


def test_an_unusable_fleet_bypass_changes_nothing() -> None:
    rules = Bypass(SECRET)
    bad = replace(Bypass().published("X", 1.0), allow=("10.0.0.0/33",))
    with pytest.raises(ValueError, match="the fleet bypass of X"):
        rules.follow(bad)
    assert rules.fleet is None
    assert rules.allows(scope("x", ("Servermode-Bypass", SECRET))) is BypassBy.SECRET


@pytest.mark.parametrize(
    "message",
    [
        '127.0.0.1:5 - "GET /server/bypass?next=/a&secret={} HTTP/1.1" 303',
        "ASGI [3] Started scope={{'query_string': b'secret={}&next=/', 'headers': '<...>'}}",
    ],
)
def test_presented_secrets_are_hidden_whatever_they_are(message: str) -> None:
    text = message.format(OTHER, OTHER)
    record = logging.LogRecord("uvicorn.asgi", logging.INFO, "", 0, text, (), None)
    assert OTHER in record.getMessage()
    assert bypass_module._HidePresented().filter(record)
    assert OTHER not in record.getMessage()
    assert "[hidden]" in record.getMessage()
