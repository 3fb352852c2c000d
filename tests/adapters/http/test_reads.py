"""Status, transition history, health probes and the OpenAPI document, over HTTP in process."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx2
import pytest
from servermode.adapters.http.admin import admin_app, admin_routes
from servermode.adapters.http.openapi import OPENAPI
from servermode.adapters.http.routes import SERVER_ROUTES
from servermode.core import Mode, ModeController, Outcome, State, TimeoutPolicy
from starlette.routing import Route

from ..helpers import assert_documented, serving

pytestmark = pytest.mark.timeout(15)

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def switch(client: Any, mode: str) -> None:
    response = client.post("/server/mode", json={"mode": mode})
    assert response.status_code == 200, response.text


class TestStatus:
    def test_status_has_the_context_services_fields(self) -> None:
        """Status answers version, times, mode, memory in KB and the counters since start."""
        with serving() as (client, _):
            client.get("/profiles/1")
            client.get("/nowhere/at/all")  # a 404 is a client error
            response = client.get("/server/status")
            status = assert_documented(response, "/server/status", "get")
        assert status["mode"] == status["state"] == "production"
        for key in ("system_time", "started", "last_request", "since"):
            assert TIME.match(status[key]), key
        assert status["request_today"] == 3
        assert status["client_errors_today"] == 1
        assert status["server_errors_today"] == 0
        assert status["used_memory"] > 0
        assert status["max_memory"] >= status["allocated_memory"] >= status["used_memory"]
        assert status["free_memory"] == status["allocated_memory"] - status["used_memory"]
        assert status["in_flight"] == {"profile": 0, "service": 0, "schema": 0, "schema_read": 0}
        assert "target" not in status

    def test_refusals_count_as_server_errors(self) -> None:
        """A 503 refusal is counted among the server errors."""
        with serving() as (client, _):
            switch(client, "maintenance")
            assert client.get("/profiles/1").status_code == 503
            status = client.get("/server/status").json()
        assert status["server_errors_today"] == 1
        assert status["mode"] == "maintenance"

    def test_status_while_draining_shows_target_start_deadline_and_in_flight(self) -> None:
        """During a drain the status names the target, the start, the deadline and the counts."""

        async def scenario() -> dict[str, Any]:
            controller = ModeController(drain_timeout=5)
            await controller.start()
            ticket = controller.admit("profile")
            drain = asyncio.create_task(controller.set_mode("maintenance"))
            await asyncio.sleep(0.01)
            transport = httpx2.ASGITransport(app=admin_app(controller))
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/server/status")
            ticket.release()
            await drain
            return assert_documented(response, "/server/status", "get")

        status = asyncio.run(scenario())
        assert status["state"] == "draining_to_maintenance"
        assert status["mode"] == "production"
        assert status["target"] == "maintenance"
        assert status["in_flight"]["profile"] == 1
        assert TIME.match(status["drain_started"]) and TIME.match(status["deadline"])
        assert status["deadline"] > status["drain_started"]


class TestTransitions:
    def test_newest_first_with_paging(self) -> None:
        """Records come newest first; next_before pages back to the first record."""
        with serving() as (client, _):
            switch(client, "maintenance")
            switch(client, "production")
            switch(client, "production")
            first = assert_documented(
                client.get("/server/transitions?limit=2"), "/server/transitions", "get"
            )
            rest = client.get(f"/server/transitions?limit=2&before={first['next_before']}").json()
        outcomes = [r["outcome"] for r in first["transitions"] + rest["transitions"]]
        assert outcomes == ["noop", "completed", "completed", "initialized"]
        assert [r["id"] for r in first["transitions"]] == [4, 3]
        assert first["next_before"] == 3
        assert rest["next_before"] == 1  # a full page: the next (empty) page starts below 1

    @pytest.mark.parametrize(
        ("query", "named"),
        [
            ("limit=0", "bad limit"),
            ("limit=501", "bad limit"),
            ("limit=ten", "bad limit"),
            ("limit=-3", "bad limit"),
            ("before=0", "bad before"),
            ("before=x", "bad before"),
        ],
    )
    def test_bad_paging_values_are_400(self, query: str, named: str) -> None:
        """A limit outside 1..500 or a before that is not a positive integer is a 400."""
        with serving() as (client, _):
            response = client.get(f"/server/transitions?{query}")
            error = assert_documented(response, "/server/transitions", "get")
        assert response.status_code == 400
        assert error["code"] == 4020
        assert error["description"].startswith(named)


class TestHealth:
    def test_live_is_always_200(self) -> None:
        """Liveness answers 200 in any mode."""
        with serving(initial_mode="maintenance") as (client, _):
            response = client.get("/server/health/live")
            assert assert_documented(response, "/server/health/live", "get") == {"status": "live"}

    def test_ready_only_in_production(self) -> None:
        """Readiness is 200 in production and 503 in maintenance, with Retry-After."""
        with serving() as (client, _):
            ready = client.get("/server/health/ready")
            switch(client, "maintenance")
            not_ready = client.get("/server/health/ready")
            assert_documented(ready, "/server/health/ready", "get")
            assert_documented(not_ready, "/server/health/ready", "get")
        assert ready.status_code == 200
        assert not_ready.status_code == 503
        assert not_ready.json() == {
            "status": "not ready",
            "mode": "maintenance",
            "state": "maintenance",
        }
        assert int(not_ready.headers["retry-after"]) >= 1


class TestOpenApi:
    def test_document_is_served(self) -> None:
        """/server/openapi.json serves the document, OpenAPI 3.1."""
        with serving() as (client, _):
            document = client.get("/server/openapi.json").json()
        assert document == json.loads(json.dumps(OPENAPI))
        assert document["openapi"] == "3.1.0"

    def test_paths_and_methods_are_exactly_the_routes(self) -> None:
        """Every route is documented with its methods, and nothing else is."""
        routes = {
            (route.path, method.lower())
            for route in admin_routes(ModeController())
            if isinstance(route, Route)
            for method in route.methods or ()
            if method != "HEAD"
        }
        documented = {(path, method) for path, item in OPENAPI["paths"].items() for method in item}
        assert routes == documented

    def test_routes_are_exactly_the_table_of_owned_paths(self) -> None:
        """The admin routes serve the paths of SERVER_ROUTES, no more, no fewer."""
        served = {r.path for r in admin_routes(ModeController()) if isinstance(r, Route)}
        assert served == set(SERVER_ROUTES)
        assert all(path.startswith("/server/") for path in served)

    def test_enums_are_the_cores(self) -> None:
        """Modes, states, outcomes and timeout policies are listed from the core's enums."""
        schemas = OPENAPI["components"]["schemas"]
        status, transition = schemas["Status"]["properties"], schemas["Transition"]["properties"]
        assert status["mode"]["enum"] == [m.value for m in Mode]
        assert status["state"]["enum"] == [s.value for s in State]
        assert status["timeout_policy"]["enum"] == [p.value for p in TimeoutPolicy]
        assert transition["outcome"]["enum"] == [o.value for o in Outcome]
        assert schemas["ModeChanged"]["properties"]["server changed"]["enum"] == list(Mode)

    def test_document_is_valid_openapi_json_schema(self) -> None:
        """Every component schema is a valid JSON Schema (2020-12, as OpenAPI 3.1 uses)."""
        import jsonschema

        for schema in OPENAPI["components"]["schemas"].values():
            jsonschema.Draft202012Validator.check_schema(schema)

    def test_documented_error_codes_are_the_table(self) -> None:
        """The Error schema lists exactly the application codes of the error table."""
        from servermode.adapters.http.problems import Problem

        codes = OPENAPI["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        assert sorted(codes) == sorted(p.code for p in Problem)
