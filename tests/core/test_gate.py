"""The request gate: admission, counting, release and drain signalling."""

from __future__ import annotations

import asyncio
import threading

import pytest
from servermode.core import CONTEXT_SERVICES, Gate, Refused, State, UnknownCategory

P, M = State.PRODUCTION, State.MAINTENANCE
TO_M = State.DRAINING_TO_MAINTENANCE


def gate(state: State = P) -> Gate:
    return Gate(CONTEXT_SERVICES, state, refusal_retry_after=30)


class TestAdmission:
    @pytest.mark.parametrize("state", list(State))
    @pytest.mark.parametrize("category", CONTEXT_SERVICES.categories)
    def test_admits_exactly_what_the_policy_admits(self, state: State, category: str) -> None:
        """admit() succeeds iff the policy admits the category in the gate's state."""
        g = gate(state)
        if CONTEXT_SERVICES.admits(state, category):
            g.admit(category).release()
        else:
            with pytest.raises(Refused) as refused:
                g.admit(category)
            assert (refused.value.state, refused.value.category) == (state, category)

    def test_counts_per_category(self) -> None:
        """In-flight requests are counted per category."""
        g = gate()
        tickets = [g.admit("profile"), g.admit("profile"), g.admit("service")]
        assert g.in_flight() == {"profile": 2, "service": 1, "schema": 0, "schema_read": 0}
        assert g.total_in_flight == 3
        for t in tickets:
            t.release()
        assert g.total_in_flight == 0

    def test_uncounted_categories_are_not_counted(self) -> None:
        """Status and admin requests never show up in flight."""
        g = gate()
        g.admit("server")
        g.admit("admin")
        assert g.total_in_flight == 0

    def test_request_totals_count_admissions_and_refusals_per_category(self) -> None:
        """Totals since start per category, counted and uncounted alike; releases keep them."""
        g = gate()
        g.admit("profile").release()
        g.admit("profile")
        g.admit("server")
        g.admit("admin")
        for _ in range(3):
            with pytest.raises(Refused):
                g.admit("schema")
        with pytest.raises(UnknownCategory):
            g.admit("billing")
        totals = g.request_totals()
        assert totals == {
            "profile": (2, 0),
            "service": (0, 0),
            "schema": (0, 3),
            "schema_read": (0, 0),
            "admin": (1, 0),
            "server": (1, 0),
        }

    def test_unknown_category(self) -> None:
        """An unknown category is an error, not a refusal."""
        with pytest.raises(UnknownCategory):
            gate().admit("billing")

    def test_steady_refusal_carries_the_configured_hint(self) -> None:
        """A steady mode's refusal carries the configured retry hint."""
        with pytest.raises(Refused) as refused:
            gate(M).admit("profile")
        assert refused.value.retry_after == 30
        assert not refused.value.while_switching

    def test_draining_refusal_carries_time_to_deadline(self) -> None:
        """While draining, the retry hint is the time left before the deadline, rounded up."""
        now = [100.0]
        g = Gate(CONTEXT_SERVICES, P, clock=lambda: now[0])
        g.begin_drain(TO_M, deadline=112.5, on_drained=lambda: None)
        with pytest.raises(Refused) as refused:
            g.admit("profile")
        assert refused.value.retry_after == 13
        assert refused.value.while_switching
        now[0] = 200.0
        assert g.retry_after() == 1


class TestRelease:
    def test_second_release_is_harmless(self) -> None:
        """Releasing twice counts once."""
        g = gate()
        t = g.admit("profile")
        other = g.admit("profile")
        t.release()
        t.release()
        assert g.in_flight()["profile"] == 1
        other.release()

    def test_context_manager_releases_on_exception(self) -> None:
        """`with` releases when the body raises."""
        g = gate()
        with pytest.raises(RuntimeError), g.admit("profile"):
            raise RuntimeError("boom")
        assert g.total_in_flight == 0

    def test_async_context_manager_releases_on_cancellation(self) -> None:
        """`async with` releases when the task is cancelled."""
        g = gate()

        async def hold() -> None:
            async with g.admit("service"):
                await asyncio.sleep(10)

        async def scenario() -> None:
            task = asyncio.create_task(hold())
            await asyncio.sleep(0.01)
            assert g.total_in_flight == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(scenario())
        assert g.total_in_flight == 0


class TestDrain:
    def test_callback_fires_when_the_last_request_ends(self) -> None:
        """The drained callback fires exactly once, at the release of the last counted request."""
        g = gate()
        a, b = g.admit("profile"), g.admit("schema_read")
        calls: list[int] = []
        snapshot = g.begin_drain(TO_M, 1e9, lambda: calls.append(g.total_in_flight))
        assert snapshot == {"profile": 1, "service": 0, "schema": 0, "schema_read": 1}
        a.release()
        assert calls == []
        b.release()
        b.release()
        assert calls == [0]

    def test_idle_gate_drains_at_once(self) -> None:
        """With nothing in flight, the callback fires before begin_drain returns."""
        calls: list[str] = []
        gate().begin_drain(TO_M, 1e9, lambda: calls.append("drained"))
        assert calls == ["drained"]

    def test_draining_refuses_new_work(self) -> None:
        """Once a drain begins, nothing counted is admitted, so nothing can delay it."""
        g = gate()
        g.begin_drain(TO_M, 1e9, lambda: None)
        for category in ("profile", "service", "schema", "schema_read"):
            with pytest.raises(Refused):
                g.admit(category)
        g.admit("server")

    def test_set_state_forgets_the_drain(self) -> None:
        """A drain ended by the controller no longer calls back."""
        g = gate()
        t = g.admit("profile")
        calls: list[str] = []
        g.begin_drain(TO_M, 1e9, lambda: calls.append("late"))
        g.set_state(M)
        t.release()
        assert calls == []
        assert g.retry_after() == 30

    def test_callback_fires_from_the_releasing_thread(self) -> None:
        """A release from another thread calls back in that thread."""
        g = gate()
        t = g.admit("profile")
        seen: list[int] = []
        g.begin_drain(TO_M, 1e9, lambda: seen.append(threading.get_ident()))
        worker = threading.Thread(target=t.release)
        worker.start()
        worker.join()
        assert seen == [worker.ident]


def test_threaded_counts_stay_exact() -> None:
    """Many threads admitting and releasing leave the counters exact."""
    g = gate()
    rounds = 2000

    def work() -> None:
        for i in range(rounds):
            t = g.admit("profile" if i % 2 else "schema_read")
            t.release()
            t.release()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert g.in_flight() == {"profile": 0, "service": 0, "schema": 0, "schema_read": 0}
    assert g.total_in_flight == 0
