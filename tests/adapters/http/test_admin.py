"""The admin routes: POST /server/mode, status, transitions, health, and every error answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest
from servermode.adapters.bootstrap import build_service
from servermode.adapters.cli.settings import Settings
from servermode.adapters.http.admin import admin_app, admin_routes
from servermode.adapters.http.auth import TokenAuth
from servermode.adapters.store.factory import MEMORY
from servermode.core import InMemoryStore, ModeController, PersistedState, TransitionRecord
from starlette.applications import Starlette
from structlog.testing import capture_logs

from ..helpers import assert_documented, serving

pytestmark = pytest.mark.timeout(15)

JSON = {"Content-Type": "application/json"}


def set_mode(client: Any, body: Any, **headers: str) -> Any:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/server/mode", content=content, headers={**JSON, **headers})


class TestSetMode:
    def test_switch_answers_the_context_services_body(self) -> None:
        """A switch answers 200, Location /server/status and exactly the documented body."""
        with serving() as (client, service):
            response = set_mode(client, {"mode": "maintenance"})
            assert response.status_code == 200
            assert response.content == b'{"server changed":"maintenance"}'
            assert response.headers["location"] == "/server/status"
            assert response.headers["content-type"] == "application/json"
            assert service.controller.mode == "maintenance"
            assert_documented(response, "/server/mode", "post")

    def test_mode_is_case_insensitive(self) -> None:
        """ "MainTenance" switches to maintenance and the answer names it in lower case."""
        with serving() as (client, _):
            response = set_mode(client, {"mode": "MainTenance"})
            assert response.json() == {"server changed": "maintenance"}

    def test_setting_the_current_mode_is_the_same_200(self) -> None:
        """Asking for the mode in force answers the same 200 and records a noop."""
        with serving() as (client, _):
            response = set_mode(client, {"mode": "production"})
            assert response.status_code == 200
            assert response.content == b'{"server changed":"production"}'
            assert response.headers["servermode-outcome"] == "noop"

    def test_the_switch_is_audited_with_actor_client_reason_and_request_id(self) -> None:
        """The record names the principal, the client address, the reason and the request id."""
        with serving() as (client, service):
            set_mode(
                client, {"mode": "maintenance", "reason": "schema v2"}, **{"X-Request-ID": "r-1"}
            )
            record = asyncio.run(service.controller.history(1))[0]
        assert (record.actor, record.client, record.reason, record.request_id) == (
            "anonymous",
            "testclient:50000",
            "schema v2",
            "r-1",
        )

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            ({"mode": "holiday"}, 'bad server mode "holiday"'),
            ({"mode": 5}, "bad server mode 5"),
            ({"mode": None}, "bad server mode null"),
            ({"mode": ["production"]}, 'bad server mode ["production"]'),
            ({}, "missing server mode"),
            ({"state": "production"}, "missing server mode"),
            (["production"], 'bad server mode: expected a JSON object like {"mode"'),
            ('"production"', "bad server mode: expected a JSON object"),
            ("{mode: production", "bad server mode: the request body is not valid JSON"),
            ("", "bad server mode: the request body is not valid JSON"),
            ({"mode": "production", "reason": 7}, "bad reason 7"),
        ],
    )
    def test_bad_requests_get_400_bad_parameter(self, body: Any, expected: str) -> None:
        """Bad, missing or non-string modes and malformed bodies: 400, code 4020, named."""
        with serving() as (client, service):
            response = set_mode(client, body)
            error = assert_documented(response, "/server/mode", "post")
            assert service.controller.mode == "production"
        assert response.status_code == 400
        assert error["title"] == "bad parameter"
        assert error["code"] == 4020
        assert error["http_method"] == "POST"
        assert error["uri"] == "http://testserver/server/mode"
        assert expected in error["description"]

    def test_the_bad_value_is_quoted_in_the_description(self) -> None:
        """Malformed JSON is shown (shortened) so the caller sees what was sent."""
        with serving() as (client, _):
            error = set_mode(client, "mode=maintenance").json()
        assert error["description"].endswith('"mode=maintenance"')

    def test_wrong_method_is_405_with_the_error_body(self) -> None:
        """GET /server/mode is 405 with Allow and the error body."""
        with serving() as (client, _):
            response = client.get("/server/mode")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.json()["code"] == 4050

    def test_non_json_media_type_is_415(self) -> None:
        """A form body is refused with 415 and the error body."""
        with serving() as (client, _):
            response = client.post("/server/mode", data={"mode": "maintenance"})
            error = assert_documented(response, "/server/mode", "post")
        assert response.status_code == 415
        assert error["code"] == 4150

    def test_declared_large_body_is_413_without_reading_it(self) -> None:
        """A Content-Length over the limit is refused before the body is read."""
        received = []

        async def scenario() -> httpx2.Response:
            controller = ModeController()
            await controller.start()
            app = admin_app(controller)

            async def receive() -> dict[str, Any]:
                received.append(1)
                return {"type": "http.request", "body": b"x" * 10_000, "more_body": False}

            sent: list[dict[str, Any]] = []

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            scope = {
                "type": "http",
                "method": "POST",
                "path": "/server/mode",
                "raw_path": b"/server/mode",
                "query_string": b"",
                "root_path": "",
                "scheme": "http",
                "server": ("testserver", 80),
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"10000")],
            }
            await app(scope, receive, send)
            start = next(m for m in sent if m["type"] == "http.response.start")
            return httpx2.Response(start["status"], content=sent[-1]["body"])

        response = asyncio.run(scenario())
        assert response.status_code == 413
        assert response.json()["code"] == 4130
        assert received == []

    def test_streamed_large_body_is_413(self) -> None:
        """A chunked body is cut off as soon as it passes the limit."""

        def chunks() -> Any:
            yield b'{"mode": "'
            for _ in range(100):
                yield b"x" * 100

        with serving() as (client, _):
            response = client.post("/server/mode", content=chunks(), headers=JSON)
        assert response.status_code == 413
        assert "1024 bytes" in response.json()["description"]


class TestAuth:
    def test_without_token_is_401(self) -> None:
        """With an admin token configured, a switch without credentials is 401."""
        with serving(admin_token="s3cret") as (client, service):
            response = set_mode(client, {"mode": "maintenance"})
            assert_documented(response, "/server/mode", "post")
            assert service.controller.mode == "production"
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["code"] == 4010
        assert "s3cret" not in response.text

    def test_wrong_token_is_401(self) -> None:
        """A wrong bearer token is 401."""
        with serving(admin_token="s3cret") as (client, _):
            response = set_mode(client, {"mode": "maintenance"}, Authorization="Bearer nope")
        assert response.status_code == 401
        assert response.json()["description"] == "invalid bearer token"

    def test_read_token_cannot_switch(self) -> None:
        """The read token is known but does not allow switching: 403."""
        with serving(admin_token="s3cret", read_token="look") as (client, _):
            response = set_mode(client, {"mode": "maintenance"}, Authorization="Bearer look")
        assert response.status_code == 403
        assert response.json()["code"] == 4030

    def test_admin_token_switches_and_is_the_recorded_actor(self) -> None:
        """The admin token switches; the audit names the admin principal and the client."""
        with serving(admin_token="s3cret") as (client, service):
            response = set_mode(client, {"mode": "maintenance"}, Authorization="Bearer s3cret")
            record = asyncio.run(service.controller.history(1))[0]
        assert response.status_code == 200
        assert (record.actor, record.client) == ("admin", "testclient:50000")

    def test_read_token_guards_status_and_history_not_health(self) -> None:
        """With a read token, status and transitions need it (or the admin token); probes don't."""
        with serving(admin_token="s3cret", read_token="look") as (client, _):
            assert client.get("/server/status").status_code == 401
            assert client.get("/server/transitions").status_code == 401
            for token in ("look", "s3cret"):
                headers = {"Authorization": f"Bearer {token}"}
                assert client.get("/server/status", headers=headers).status_code == 200
                assert client.get("/server/transitions", headers=headers).status_code == 200
            assert client.get("/server/health/live").status_code == 200
            assert client.get("/server/health/ready").status_code == 200
            assert client.get("/server/openapi.json").status_code == 200

    def test_status_is_open_without_a_read_token(self) -> None:
        """Only an admin token configured: status stays readable without credentials."""
        with serving(admin_token="s3cret") as (client, _):
            assert client.get("/server/status").status_code == 200


async def _drive(app: Any, body: dict[str, str]) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post("/server/mode", json=body)


class TestSwitchFailures:
    """The route's own answers to core failures (the gate is not in front here)."""

    def test_switch_in_progress_is_503_with_retry_after(self) -> None:
        """A second switch while one drains: 503, title "mode switch in progress", Retry-After."""

        async def scenario() -> httpx2.Response:
            controller = ModeController(drain_timeout=5)
            await controller.start()
            ticket = controller.admit("profile")
            first = asyncio.create_task(controller.set_mode("maintenance"))
            await asyncio.sleep(0.01)
            response = await _drive(admin_app(controller), {"mode": "production"})
            ticket.release()
            await first
            return response

        response = asyncio.run(scenario())
        error = assert_documented(response, "/server/mode", "post")
        assert response.status_code == 503
        assert 1 <= int(response.headers["retry-after"]) <= 5
        assert (error["title"], error["code"]) == ("mode switch in progress", 5031)

    def test_switch_refused_behind_the_gate_is_audited(self) -> None:
        """Through the whole service, a change asked for during a drain is refused and audited."""

        async def scenario() -> httpx2.Response:
            service = build_service(Settings(state=MEMORY, drain_timeout=5))
            await service.controller.start()
            ticket = service.controller.admit("profile")
            first = asyncio.create_task(service.controller.set_mode("maintenance"))
            await asyncio.sleep(0.01)
            response = await _drive(service.app, {"mode": "production"})
            ticket.release()
            await first
            return response

        with capture_logs() as logs:
            response = asyncio.run(scenario())
        assert response.status_code == 503
        assert response.json()["code"] == 5031
        refused = [e for e in logs if e.get("outcome") == "refused"]
        assert [(e["target_mode"], e["client"]) for e in refused] == [
            ("production", "127.0.0.1:123")
        ]

    def test_rollback_on_timeout_is_503_mode_not_changed(self) -> None:
        """Under the rollback policy a drain that times out answers 503: the mode did not change."""

        async def scenario() -> tuple[httpx2.Response, str]:
            controller = ModeController(drain_timeout=0.05, timeout_policy="rollback")
            await controller.start()
            ticket = controller.admit("profile")
            response = await _drive(admin_app(controller), {"mode": "maintenance"})
            ticket.release()
            return response, controller.mode.value

        response, mode = asyncio.run(scenario())
        error = assert_documented(response, "/server/mode", "post")
        assert response.status_code == 503
        assert (error["title"], error["code"]) == ("mode not changed", 5032)
        assert error["description"].startswith("the server mode did not change")
        assert "production" in error["description"]
        assert mode == "production"

    def test_force_on_timeout_is_200_and_says_forced(self) -> None:
        """Under the force policy a drain that times out switches anyway: 200, outcome forced."""

        async def scenario() -> httpx2.Response:
            controller = ModeController(drain_timeout=0.05)
            await controller.start()
            ticket = controller.admit("profile")
            response = await _drive(admin_app(controller), {"mode": "maintenance"})
            ticket.release()
            return response

        response = asyncio.run(scenario())
        assert response.status_code == 200
        assert response.content == b'{"server changed":"maintenance"}'
        assert response.headers["servermode-outcome"] == "forced"

    def test_store_failure_is_503_and_the_mode_stays(self) -> None:
        """A store that cannot save: 503 "state store unavailable", the old mode in force."""

        class BrokenSave(InMemoryStore):
            def save(
                self, state: PersistedState, record: TransitionRecord | None = None
            ) -> TransitionRecord | None:
                if state.state.value != "production":
                    raise OSError("read-only file system")
                return super().save(state, record)

        async def scenario() -> tuple[httpx2.Response, str]:
            controller = ModeController(BrokenSave())
            await controller.start()
            response = await _drive(admin_app(controller), {"mode": "maintenance"})
            return response, controller.mode.value

        response, mode = asyncio.run(scenario())
        error = assert_documented(response, "/server/mode", "post")
        assert response.status_code == 503
        assert error["code"] == 5033
        assert "did not change" in error["description"]
        assert mode == "production"

    def test_routes_can_be_added_to_any_starlette_app_with_auth(self) -> None:
        """admin_app takes the same TokenAuth: the token is enforced there too."""

        async def scenario() -> int:
            controller = ModeController()
            await controller.start()
            app = admin_app(controller, auth=TokenAuth(admin_token="t"))
            return (await _drive(app, {"mode": "maintenance"})).status_code

        assert asyncio.run(scenario()) == 401


class TestEmbeddedRoutes:
    """admin_routes in an application without servermode's exception handlers."""

    def test_routes_answer_their_own_errors_in_any_app(self) -> None:
        """Bad input, credentials and core errors get the error body, not the app's 500."""

        async def scenario() -> list[httpx2.Response]:
            controller = ModeController(drain_timeout=5)
            await controller.start()
            app = Starlette(routes=admin_routes(controller, auth=TokenAuth(admin_token="t")))
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            token = {"Authorization": "Bearer t"}
            async with httpx2.AsyncClient(transport=transport, base_url="http://x") as client:
                answers = [
                    await client.post("/server/mode", json={"mode": "holiday"}, headers=token),
                    await client.post("/server/mode", json={"mode": "maintenance"}),
                ]
                ticket = controller.admit("profile")
                first = asyncio.create_task(controller.set_mode("maintenance"))
                await asyncio.sleep(0.01)
                answers.append(
                    await client.post("/server/mode", json={"mode": "production"}, headers=token)
                )
                ticket.release()
                await first
            return answers

        bad, unauthorised, busy = asyncio.run(scenario())
        assert (bad.status_code, bad.json()["code"]) == (400, 4020)
        assert (unauthorised.status_code, unauthorised.json()["code"]) == (401, 4010)
        assert unauthorised.headers["www-authenticate"].startswith("Bearer")
        assert (busy.status_code, busy.json()["code"]) == (503, 5031)
        assert int(busy.headers["retry-after"]) >= 1


def test_the_fleet_route_without_a_fleet_says_there_is_none() -> None:
    """GET /server/fleet belongs to servermode: without --fleet, no fleet and no records."""
    from ..helpers import assert_documented, serving

    with serving() as (client, _):
        answer = client.get("/server/fleet")
    assert answer.status_code == 200
    assert assert_documented(answer, "/server/fleet", "GET") == {"fleet": None, "records": []}


def test_an_instance_selector_without_a_fleet_is_refused() -> None:
    from ..helpers import assert_documented, serving

    with serving() as (client, _):
        answer = client.post("/server/mode", json={"mode": "maintenance", "instance": "b"})
    assert answer.status_code == 409
    body = assert_documented(answer, "/server/mode", "POST")
    assert body["code"] == 4091 and "no --fleet" in body["description"]
