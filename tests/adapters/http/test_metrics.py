"""GET /server/metrics: Prometheus text, parsed by prometheus_client, moving with the service."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from servermode.adapters.http.metrics import (
    DRAIN_BUCKETS,
    TransitionTally,
    metrics_registry,
)
from servermode.core import Mode, ModeController, Outcome, State, TransitionRecord
from starlette.testclient import TestClient

from ..helpers import serving

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: TestClient, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get("/server/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


class TestMetrics:
    def test_state_set_and_in_flight_follow_the_controller(self) -> None:
        """One state is 1, the others 0; a request in flight shows in its category."""
        with serving() as (client, service):
            before = scrape(client)
            ticket = service.controller.admit("profile")
            during = scrape(client)
            ticket.release()
        assert [value(before, "servermode_state", state=s.value) for s in State] == [1, 0, 0, 0]
        assert value(before, "servermode_in_flight_requests", category="profile") == 0
        assert value(during, "servermode_in_flight_requests", category="profile") == 1
        # Only counted categories are in flight; the scrape itself (server) is not.
        assert ("servermode_in_flight_requests", frozenset({("category", "server")})) not in during

    def test_request_totals_count_admitted_and_refused(self) -> None:
        """Every category has both series from the start; they move as requests pass the gate."""
        with serving() as (client, _):
            start = scrape(client)
            assert client.get("/profiles/1").status_code == 200
            assert client.get("/profiles/2").status_code == 200
            assert client.post("/metadata/profiles/extensions").status_code == 503
            after = scrape(client)
        for category in ("profile", "service", "schema", "schema_read", "admin", "server"):
            for outcome in ("admitted", "refused"):
                assert (
                    "servermode_requests_total",
                    frozenset({("category", category), ("outcome", outcome)}),
                ) in start

        def moved(category: str, outcome: str) -> float:
            key = {"category": category, "outcome": outcome}
            return value(after, "servermode_requests_total", **key) - value(
                start, "servermode_requests_total", **key
            )

        assert moved("profile", "admitted") == 2
        assert moved("schema", "refused") == 1
        assert moved("profile", "refused") == 0
        assert moved("server", "admitted") == 1  # the first scrape

    def test_switches_move_transitions_drain_histogram_and_timestamp(self) -> None:
        """A switch and a no-op are both counted; the drain is timed; the timestamp moves."""
        with serving() as (client, service):
            start = scrape(client)
            assert client.post("/server/mode", json={"mode": "maintenance"}).status_code == 200
            assert client.post("/server/mode", json={"mode": "maintenance"}).status_code == 200
            after = scrape(client)
            since = service.controller.status().since
        completed = {"from_state": "production", "to_state": "maintenance", "outcome": "completed"}
        noop = {"from_state": "maintenance", "to_state": "maintenance", "outcome": "noop"}
        assert value(after, "servermode_transitions_total", **completed) == 1
        assert value(after, "servermode_transitions_total", **noop) == 1
        assert value(start, "servermode_state", state="production") == 1
        assert value(after, "servermode_state", state="maintenance") == 1
        assert value(after, "servermode_drain_duration_seconds_count", outcome="completed") == 1
        drains = {"outcome": "completed", "le": "+Inf"}
        assert value(after, "servermode_drain_duration_seconds_bucket", **drains) == 1
        assert value(after, "servermode_drain_duration_seconds_count", outcome="forced") == 0
        assert value(after, "servermode_last_transition_timestamp_seconds") == pytest.approx(
            since.timestamp()
        )
        assert value(after, "servermode_last_transition_timestamp_seconds") > value(
            start, "servermode_last_transition_timestamp_seconds"
        )

    def test_openmetrics_when_asked(self) -> None:
        """A scraper that accepts OpenMetrics gets it (and its # EOF)."""
        with serving() as (client, _):
            response = client.get(
                "/server/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.rstrip().endswith("# EOF")
        assert "servermode_requests_total" in response.text

    def test_process_metrics_are_exported_too(self) -> None:
        with serving() as (client, _):
            names = {name for name, _ in scrape(client)}
        assert {"process_cpu_seconds_total", "python_info"} <= names


class TestTokens:
    def test_a_read_token_suffices_and_none_is_refused(self) -> None:
        with serving(admin_token="admin-secret", read_token="read-secret") as (client, _):
            missing = client.get("/server/metrics")
            wrong = client.get("/server/metrics", headers={"Authorization": "Bearer nope"})
            assert scrape(client, "read-secret")
            assert scrape(client, "admin-secret")
        for response in (missing, wrong):
            assert response.status_code == 401
            assert response.json()["code"] == 4010
            assert "secret" not in response.text

    def test_open_when_no_read_token_is_configured(self) -> None:
        with serving(admin_token="admin-secret") as (client, _):
            assert scrape(client)


class TestTally:
    def record(self, outcome: Outcome, duration_ms: float) -> TransitionRecord:
        return TransitionRecord(
            State.PRODUCTION,
            State.MAINTENANCE,
            "drained",
            Mode.MAINTENANCE,
            outcome,
            datetime.now(UTC),
            duration_ms=duration_ms,
        )

    def test_buckets_are_cumulative_and_sum_the_seconds(self) -> None:
        tally = TransitionTally()
        for ms in (5, 40, 40, 2000, 10**6):
            tally.observe(self.record(Outcome.COMPLETED, ms))
        tally.observe(self.record(Outcome.NOOP, 0))
        buckets, total = tally.drains()["completed"]
        counts = dict(buckets)
        assert counts["0.01"] == 1
        assert counts["0.05"] == 3
        assert counts["2.5"] == 4
        assert counts[repr(float(DRAIN_BUCKETS[-1]))] == 4
        assert counts["+Inf"] == 5
        assert total == pytest.approx(0.005 + 0.08 + 2 + 1000)
        assert "noop" not in tally.drains()  # a no-op drained nothing
        assert sum(tally.transitions().values()) == 6

    def test_a_collector_outlives_its_controller_quietly(self) -> None:
        """The registry holds the controller weakly: once it is gone, nothing is collected."""
        controller = ModeController()
        registry = metrics_registry(controller, TransitionTally(), process=False)
        assert registry.get_sample_value("servermode_state", {"state": "production"}) == 1
        del controller
        gc.collect()
        families: list[Any] = list(registry.collect())
        assert families == []
