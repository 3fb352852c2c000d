"""Issue 12 item 1 in fleet mode: the bypass is the fleet's, the one of the instance that
joined last. Real service processes on a redis-server of the test's own.

A client bound to 127.0.0.2 stands for an allowed address (the whole of 127.0.0.0/8 is this
machine; the instances listen on 127.0.0.1).
"""

from __future__ import annotations

import httpx2
import pytest

from tests.adapters.helpers import assert_documented

from .fleet import Instance, add_instance, fleet_of, until

pytestmark = pytest.mark.timeout(60)

FIRST = "first-fleet-secret-" + "a" * 12
SECOND = "second-fleet-secret-" + "b" * 12
PROFILE = "/profiles/1?delay=0"
ALLOWED = "127.0.0.2"


def profile(instance: Instance, **headers: str) -> int:
    return instance.get(PROFILE, headers=headers).status_code


def from_allowed(instance: Instance) -> int:
    with httpx2.Client(transport=httpx2.HTTPTransport(local_address=ALLOWED), timeout=10) as c:
        return c.get(instance.url + PROFILE).status_code


def link(instance: Instance, secret: str) -> httpx2.Response:
    return instance.get("/server/bypass", params={"secret": secret, "next": "/profiles/1"})


def test_every_instance_honours_the_bypass_of_the_last_to_join() -> None:
    # B first, without a bypass; A joins last with a secret and an allowlist: A's is the fleet's.
    # B logs at the trace level, where the server prints every request's scope.
    with fleet_of("B", SERVERMODE_LOG_LEVEL="trace") as (redis, fleet):
        b = fleet["B"]
        a = add_instance(
            redis,
            fleet,
            "A",
            SERVERMODE_BYPASS_SECRET=FIRST,
            SERVERMODE_BYPASS_ALLOW=f"{ALLOWED}/32",
        )
        assert a.switch("maintenance").status_code == 200
        until(lambda: b.status()["state"] == "maintenance", what="B in maintenance")
        until(lambda: profile(b, **{"Servermode-Bypass": FIRST}) == 200, what="B follows A")
        assert profile(b) == 503
        assert profile(b, **{"Servermode-Bypass": SECOND}) == 503
        assert b.status()["bypassed"] == {"profile": 1}
        assert from_allowed(b) == 200
        # A's link sets a cookie that B honours; B's link works with the right secret only.
        given = link(a, FIRST)
        assert given.status_code == 303
        cookie = given.cookies["servermode_bypass"]
        assert profile(b, Cookie=f"servermode_bypass={cookie}") == 200
        on_b = link(b, FIRST)
        assert on_b.status_code == 303 and on_b.cookies["servermode_bypass"] == cookie
        assert link(b, SECOND).status_code == 403
        shown = assert_documented(b.get("/server/fleet"), "/server/fleet", "GET")
        bypass = shown["fleet"]["bypass"]
        assert (bypass["secret"], bypass["allow"], bypass["published_by"]) == (
            True,
            [f"{ALLOWED}/32"],
            "A",
        )
        assert bypass["published_at"].endswith("Z")

        # C joins with another secret and no allowlist: within a period, A and B honour only it.
        c = add_instance(redis, fleet, "C", SERVERMODE_BYPASS_SECRET=SECOND)
        for instance in (a, b):
            until(
                lambda i=instance: profile(i, **{"Servermode-Bypass": SECOND}) == 200,  # type: ignore[misc]
                timeout=6,
                what=f"{instance.name} follows C",
            )
            assert profile(instance, **{"Servermode-Bypass": FIRST}) == 503
            assert profile(instance, Cookie=f"servermode_bypass={cookie}") == 503
            assert from_allowed(instance) == 503
            assert link(instance, FIRST).status_code == 403
        assert a.fleet()["fleet"]["bypass"]["published_by"] == "C"
        assert '"replaced": "A"' in c.log() and "fleet_bypass_replaced" in c.log()

        # Redis lost: every instance keeps the last bypass it knew.
        redis.stop()
        until(lambda: b.get("/server/health/ready").json().get("fleet") == "lost", timeout=6)
        assert profile(b, **{"Servermode-Bypass": SECOND}) == 200
        assert profile(b) == 503

        for instance in fleet.values():
            written = instance.log()
            assert FIRST not in written and SECOND not in written, instance.name
        assert "secret=[hidden]" in b.log()  # B was never given FIRST, and still hid it
