"""The bypass rules without a server: who is the client, how secrets are compared."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from servermode.adapters.http import bypass as bypass_module
from servermode.adapters.http.bypass import Bypass, BypassBy, parse_networks

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
