"""The request gate: admission, counting, release and drain signalling."""

from __future__ import annotations

import asyncio
import threading

import pytest
from servermode.core import CONTEXT_SERVICES, Gate, Refused, State, UnknownCategory

P, M = State.PRODUCTION, State.MAINTENANCE
TO_M, TO_P = State.DRAINING_TO_MAINTENANCE, State.DRAINING_TO_PRODUCTION


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
    def test_callback_fires_when_the_last_outgoing_request_ends(self) -> None:
        """The drained callback fires exactly once, at the release of the last request of a
        category the target refuses."""
        g = gate()
        a, b = g.admit("profile"), g.admit("service")
        calls: list[int] = []
        snapshot = g.begin_drain(TO_M, 1e9, lambda: calls.append(g.total_in_flight))
        assert snapshot == {"profile": 1, "service": 1, "schema": 0, "schema_read": 0}
        a.release()
        assert calls == []
        b.release()
        b.release()
        assert calls == [0]

    def test_a_drain_waits_for_the_outgoing_kind_only(self) -> None:
        """A read both modes admit is counted, reported at the start, and not waited for."""
        g = gate()
        read, write = g.admit("schema_read"), g.admit("profile")
        calls: list[str] = []
        snapshot = g.begin_drain(TO_M, 1e9, lambda: calls.append("drained"))
        assert snapshot == {"profile": 1, "service": 0, "schema": 0, "schema_read": 1}
        assert g.outgoing_in_flight() == {"profile": 1}
        write.release()
        assert calls == ["drained"]
        assert g.in_flight()["schema_read"] == 1
        assert g.outgoing_in_flight() == {}
        read.release()
        assert calls == ["drained"]

    def test_only_requests_the_target_admits_means_drained_at_once(self) -> None:
        """With only requests of admitted kinds running, the drain is over when it begins."""
        g = gate(M)
        read, write = g.admit("schema_read"), g.admit("schema")
        write.release()
        calls: list[str] = []
        g.begin_drain(TO_P, 1e9, lambda: calls.append("drained"))
        assert calls == ["drained"]
        read.release()

    def test_switching_back_does_not_wait_for_stragglers_it_admits(self) -> None:
        """After a forced switch, the drain back does not wait for the previous stragglers
        of a category its target admits, and does wait for those it refuses."""
        g = gate()
        straggler = g.admit("profile")
        g.begin_drain(TO_M, 1e9, lambda: None)
        g.set_state(M)  # forced: the profile request still runs
        assert g.outgoing_in_flight() == {}
        calls: list[str] = []
        g.begin_drain(TO_P, 1e9, lambda: calls.append("back"))
        assert calls == ["back"]
        g.set_state(P)
        g.begin_drain(TO_M, 1e9, lambda: calls.append("again"))
        assert calls == ["back"]  # to maintenance the profile request is outgoing again
        straggler.release()
        assert calls == ["back", "again"]

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


def test_a_category_admitted_while_draining_and_in_the_target_is_never_waited_for() -> None:
    """Under a policy that lets reads through a drain, the drain ends while reads run."""
    from servermode.core import AdmissionPolicy

    policy = AdmissionPolicy.from_table(
        {"write": ["production"], "read": ["production", "draining_to_maintenance", "maintenance"]}
    )
    g = Gate(policy, P)
    before = g.admit("read")
    calls: list[str] = []
    g.begin_drain(TO_M, 1e9, lambda: calls.append("drained"))
    during = g.admit("read")
    assert calls == ["drained"]
    assert g.in_flight() == {"write": 0, "read": 2}
    before.release()
    during.release()
    assert g.total_in_flight == 0
