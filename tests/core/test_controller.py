"""The mode controller: drains, timeouts, cancels, refusals, persistence and audit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from servermode.core import (
    InMemoryStore,
    InvalidMode,
    Mode,
    ModeChangeCancelled,
    ModeChangeRolledBack,
    ModeController,
    Outcome,
    PersistedState,
    Refused,
    State,
    StoreError,
    SwitchInProgress,
    TransitionRecord,
)
from structlog.testing import capture_logs

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


async def started(**kwargs: Any) -> ModeController:
    controller = ModeController(**kwargs)
    await controller.start()
    return controller


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate`` holds (bounded by the test timeout)."""
    while not predicate():
        await asyncio.sleep(0.001)


def audits(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "mode_transition"]


class TestStart:
    def test_nothing_persisted_saves_the_initial_mode(self) -> None:
        """A first start puts the initial mode in force, saves it and records it."""

        async def scenario() -> None:
            store = InMemoryStore()
            with capture_logs() as logs:
                c = await started(store=store, initial_mode="MAINTENANCE")
            assert c.state is State.MAINTENANCE
            saved = store.load()
            assert saved is not None and saved.state is State.MAINTENANCE
            assert [r.outcome for r in store.history()] == [Outcome.INITIALIZED]
            assert [e["outcome"] for e in audits(logs)] == ["initialized"]

        run(scenario)

    def test_persisted_mode_wins_over_the_initial_mode(self) -> None:
        """A saved mode comes back as it was, with nothing recorded."""

        async def scenario() -> None:
            since = datetime(2026, 1, 2, tzinfo=UTC)
            store = InMemoryStore(PersistedState(State.MAINTENANCE, since))
            c = await started(store=store)
            assert c.state is State.MAINTENANCE
            assert c.status().since == since
            assert store.history() == []
            with pytest.raises(Refused):
                c.admit("profile")

        run(scenario)

    @pytest.mark.parametrize(
        ("draining", "target"),
        [
            (State.DRAINING_TO_MAINTENANCE, State.MAINTENANCE),
            (State.DRAINING_TO_PRODUCTION, State.PRODUCTION),
        ],
    )
    def test_interrupted_drain_is_recovered_to_its_target(
        self, draining: State, target: State
    ) -> None:
        """A drain persisted by a crashed process is completed at start and recorded."""

        async def scenario() -> None:
            store = InMemoryStore(PersistedState(draining, datetime.now(UTC)))
            with capture_logs() as logs:
                c = await started(store=store)
            assert c.state is target
            saved = store.load()
            assert saved is not None and saved.state is target
            (record,) = store.history()
            assert (record.from_state, record.to_state, record.outcome) == (
                draining,
                target,
                Outcome.RECOVERED,
            )
            assert [e["outcome"] for e in audits(logs)] == ["recovered"]

        run(scenario)

    def test_set_mode_before_start_is_an_error(self) -> None:
        """A controller that has not loaded its state cannot change it."""

        async def scenario() -> None:
            with pytest.raises(RuntimeError, match="start"):
                await ModeController().set_mode("maintenance")

        run(scenario)


class TestSwitch:
    def test_idle_switch_completes_at_once(self) -> None:
        """With nothing in flight the switch completes, saves, and audits one event."""

        async def scenario() -> None:
            store = InMemoryStore()
            c = await started(store=store)
            with capture_logs() as logs:
                record = await c.set_mode("Maintenance", actor="ops", reason="schema change")
            assert c.state is State.MAINTENANCE
            assert record.outcome is Outcome.COMPLETED
            assert record.trigger == "drained"
            assert (record.actor, record.reason) == ("ops", "schema change")
            saved = store.load()
            assert saved is not None and saved.state is State.MAINTENANCE
            (event,) = audits(logs)
            assert event["from_state"] == "production"
            assert event["to_state"] == "maintenance"
            assert event["target_mode"] == "maintenance"
            assert event["outcome"] == "completed"
            assert event["id"] == record.id
            c.admit("schema").release()

        run(scenario)

    def test_drain_waits_for_the_last_request(self) -> None:
        """The switch completes when the last request admitted before it ends, not before."""

        async def scenario() -> None:
            c = await started(drain_timeout=5)
            first, second = c.admit("profile"), c.admit("service")
            switch = asyncio.create_task(c.set_mode("maintenance"))
            await until(lambda: c.state is State.DRAINING_TO_MAINTENANCE)
            first.release()
            await asyncio.sleep(0.02)
            assert not switch.done()
            assert c.state is State.DRAINING_TO_MAINTENANCE
            second.release()
            record = await switch
            assert record.outcome is Outcome.COMPLETED
            assert record.in_flight == {"profile": 1, "service": 1, "schema": 0, "schema_read": 0}
            assert record.stragglers == {}
            assert c.state is State.MAINTENANCE

        run(scenario)

    def test_release_from_another_thread_completes_the_drain(self) -> None:
        """A request released by a worker thread wakes the drain."""

        async def scenario() -> None:
            c = await started(drain_timeout=5)
            ticket = c.admit("profile")
            switch = asyncio.create_task(c.set_mode("maintenance"))
            await until(lambda: c.state.is_draining)
            await asyncio.to_thread(ticket.release)
            assert (await switch).outcome is Outcome.COMPLETED

        run(scenario)

    def test_same_mode_is_a_noop(self) -> None:
        """Asking for the mode in force succeeds, changes nothing and is audited as noop."""

        async def scenario() -> None:
            store = InMemoryStore()
            c = await started(store=store)
            ticket = c.admit("profile")
            with capture_logs() as logs:
                record = await c.set_mode("PRODUCTION", actor="ops")
            assert record.outcome is Outcome.NOOP
            assert record.id is not None
            assert c.state is State.PRODUCTION
            assert [e["outcome"] for e in audits(logs)] == ["noop"]
            ticket.release()

        run(scenario)

    def test_bad_mode_raises_and_changes_nothing(self) -> None:
        """An invalid mode name raises InvalidMode naming it."""

        async def scenario() -> None:
            c = await started()
            with pytest.raises(InvalidMode, match="'standby'"):
                await c.set_mode("standby")
            assert c.state is State.PRODUCTION

        run(scenario)

    def test_second_change_while_draining_is_refused(self) -> None:
        """Only one change at a time: the other is refused with a retry hint and audited."""

        async def scenario() -> None:
            c = await started(drain_timeout=5)
            ticket = c.admit("profile")
            switch = asyncio.create_task(c.set_mode("maintenance"))
            await until(lambda: c.state.is_draining)
            with capture_logs() as logs:
                for mode in ("production", "maintenance"):
                    with pytest.raises(SwitchInProgress) as refused:
                        await c.set_mode(mode)
                    assert 1 <= refused.value.retry_after <= 5
            assert [e["outcome"] for e in audits(logs)] == ["refused", "refused"]
            ticket.release()
            await switch

        run(scenario)

    def test_concurrent_requests_make_exactly_one_switch(self) -> None:
        """Of many simultaneous requests for a change, one switches and the rest are refused."""

        async def scenario() -> None:
            c = await started(drain_timeout=5)
            ticket = c.admit("profile")
            calls = [asyncio.create_task(c.set_mode("maintenance")) for _ in range(20)]
            await until(lambda: c.state.is_draining)
            ticket.release()
            results = await asyncio.gather(*calls, return_exceptions=True)
            completed = [r for r in results if isinstance(r, TransitionRecord)]
            refused = [r for r in results if isinstance(r, SwitchInProgress)]
            assert len(completed) == 1 and len(refused) == 19
            assert completed[0].outcome is Outcome.COMPLETED

        run(scenario)

    def test_caller_cancellation_does_not_stop_the_switch(self) -> None:
        """A switch once started completes even if the awaiting caller is cancelled."""

        async def scenario() -> None:
            store = InMemoryStore()
            c = await started(store=store, drain_timeout=5)
            ticket = c.admit("profile")
            caller = asyncio.create_task(c.set_mode("maintenance"))
            await until(lambda: c.state.is_draining)
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            ticket.release()
            await until(lambda: c.state is State.MAINTENANCE)
            assert store.history()[0].outcome is Outcome.COMPLETED

        run(scenario)

    def test_status_while_draining(self) -> None:
        """Status shows the old mode in force, the target, and the drain's deadline."""

        async def scenario() -> None:
            c = await started(drain_timeout=30)
            ticket = c.admit("service")
            switch = asyncio.create_task(c.set_mode("maintenance"))
            await until(lambda: c.state.is_draining)
            status = c.status()
            assert status.mode is Mode.PRODUCTION
            assert status.state is State.DRAINING_TO_MAINTENANCE
            assert status.target is Mode.MAINTENANCE
            assert status.in_flight["service"] == 1
            assert status.drain_started is not None and status.deadline is not None
            assert (status.deadline - status.drain_started).total_seconds() == 30
            ticket.release()
            await switch
            after = c.status()
            assert (after.target, after.deadline) == (None, None)

        run(scenario)


class TestTimeout:
    def test_force_switches_and_counts_stragglers(self) -> None:
        """Under `force`, a drain that times out switches anyway and reports the stragglers."""

        async def scenario() -> None:
            c = await started(drain_timeout=0.05)
            stuck = c.admit("profile")
            with capture_logs() as logs:
                record = await c.set_mode("maintenance")
            assert record.outcome is Outcome.FORCED
            assert record.stragglers == {"profile": 1}
            assert record.duration_ms >= 50
            assert c.state is State.MAINTENANCE
            (event,) = audits(logs)
            assert (event["outcome"], event["stragglers"]) == ("forced", {"profile": 1})
            stuck.release()
            assert c.gate.total_in_flight == 0

        run(scenario)

    def test_rollback_returns_to_the_old_mode(self) -> None:
        """Under `rollback`, a drain that times out leaves the old mode in force and says so."""

        async def scenario() -> None:
            store = InMemoryStore()
            c = await started(store=store, drain_timeout=0.05, timeout_policy="rollback")
            stuck = c.admit("service")
            with pytest.raises(ModeChangeRolledBack) as failed:
                await c.set_mode("maintenance")
            assert failed.value.record.outcome is Outcome.ROLLED_BACK
            assert failed.value.record.stragglers == {"service": 1}
            assert "production" in str(failed.value)
            assert c.state is State.PRODUCTION
            saved = store.load()
            assert saved is not None and saved.state is State.PRODUCTION
            c.admit("profile").release()
            stuck.release()

        run(scenario)

    def test_zero_timeout_with_work_in_flight(self) -> None:
        """A drain timeout of zero does not wait at all."""

        async def scenario() -> None:
            c = await started(drain_timeout=0)
            stuck = c.admit("profile")
            assert (await c.set_mode("maintenance")).outcome is Outcome.FORCED
            stuck.release()

        run(scenario)


class TestWhatADrainWaitsFor:
    def test_a_read_both_modes_admit_is_not_waited_for(self) -> None:
        """Under rollback, a long metadata read neither delays nor fails a switch either way."""

        async def scenario() -> None:
            c = await started(drain_timeout=5, timeout_policy="rollback")
            read = c.admit("schema_read")
            to_maintenance = await asyncio.wait_for(c.set_mode("maintenance"), 1)
            to_production = await asyncio.wait_for(c.set_mode("production"), 1)
            for record in (to_maintenance, to_production):
                assert record.outcome is Outcome.COMPLETED
                assert record.in_flight["schema_read"] == 1
                assert record.stragglers == {}
            read.release()

        run(scenario)

    def test_stragglers_are_the_outgoing_kind_only(self) -> None:
        """``in_flight`` counts every kind at the start; ``stragglers`` only the outgoing one."""

        async def scenario() -> None:
            c = await started(drain_timeout=0.05)
            stuck, read = c.admit("profile"), c.admit("schema_read")
            record = await c.set_mode("maintenance")
            assert record.outcome is Outcome.FORCED
            assert record.in_flight == {"profile": 1, "service": 0, "schema": 0, "schema_read": 1}
            assert record.stragglers == {"profile": 1}
            stuck.release()
            read.release()

        run(scenario)

    def test_switching_back_after_a_forced_switch_does_not_wait_for_its_stragglers(self) -> None:
        """The profile request a forced switch left running is admitted in production: the
        switch back does not wait for it."""

        async def scenario() -> None:
            c = await started(drain_timeout=0.2)
            straggler = c.admit("profile")
            assert (await c.set_mode("maintenance")).outcome is Outcome.FORCED
            back = await asyncio.wait_for(c.set_mode("production"), 0.1)
            assert back.outcome is Outcome.COMPLETED
            assert back.in_flight["profile"] == 1 and back.stragglers == {}
            straggler.release()

        run(scenario)


class TestCancel:
    def test_cancel_returns_to_the_mode_being_left(self) -> None:
        """cancel() abandons the drain; the waiting caller learns the mode did not change."""

        async def scenario() -> None:
            c = await started(drain_timeout=5)
            ticket = c.admit("profile")
            switch = asyncio.create_task(c.set_mode("maintenance", actor="alice"))
            await until(lambda: c.state.is_draining)
            with capture_logs() as logs:
                record = await c.cancel(actor="bob", reason="wrong window")
            assert record is not None
            assert record.outcome is Outcome.CANCELLED
            assert (record.actor, record.reason) == ("bob", "wrong window")
            assert record.stragglers == {"profile": 1}
            assert c.state is State.PRODUCTION
            with pytest.raises(ModeChangeCancelled):
                await switch
            assert [e["outcome"] for e in audits(logs)] == ["cancelled"]
            ticket.release()

        run(scenario)

    def test_cancel_without_a_drain(self) -> None:
        """Cancelling when nothing is under way does nothing."""

        async def scenario() -> None:
            c = await started()
            assert await c.cancel() is None
            assert c.state is State.PRODUCTION

        run(scenario)


class FailingStore(InMemoryStore):
    """A store whose saves fail from the ``fail_from``-th call on, up to ``fail_until``."""

    def __init__(self, fail_from: int, fail_until: int = 99) -> None:
        super().__init__()
        self.saves = 0
        self.fail_from = fail_from
        self.fail_until = fail_until

    def save(
        self, state: PersistedState, record: TransitionRecord | None = None
    ) -> TransitionRecord | None:
        self.saves += 1
        if self.fail_from <= self.saves <= self.fail_until:
            raise OSError("disk full")
        return super().save(state, record)


class TestStoreFailure:
    @pytest.mark.parametrize("failing_save", [2, 3], ids=["intent", "result"])
    def test_unsaved_change_leaves_the_old_mode(self, failing_save: int) -> None:
        """If the intent or the result cannot be saved, the old mode stays and it is audited."""

        async def scenario() -> None:
            store = FailingStore(fail_from=failing_save)  # save 1 is the initial mode
            c = await started(store=store)
            with capture_logs() as logs, pytest.raises(StoreError, match="disk full"):
                await c.set_mode("maintenance", actor="ops")
            assert c.state is State.PRODUCTION
            assert c.gate.state is State.PRODUCTION
            c.admit("profile").release()
            (event,) = audits(logs)
            assert (event["outcome"], event["actor"]) == ("failed", "ops")
            # A later change is not blocked by the failed one.
            store.fail_from = 99
            assert (await c.set_mode("maintenance")).outcome is Outcome.COMPLETED

        run(scenario)

    def test_passing_result_failure_puts_the_old_state_back_on_disk(self) -> None:
        """When only the result save fails, the saved intent is replaced by the old state."""

        async def scenario() -> None:
            store = FailingStore(fail_from=3, fail_until=3)
            c = await started(store=store)
            with pytest.raises(StoreError):
                await c.set_mode("maintenance")
            saved = store.load()
            assert saved is not None and saved.state is State.PRODUCTION
            # A restart on this store would not complete the failed switch.
            again = await started(store=store)
            assert again.state is State.PRODUCTION

        run(scenario)

    def test_unreadable_store_fails_start(self) -> None:
        """A store that cannot load fails start() instead of inventing a mode."""

        class Unreadable(InMemoryStore):
            def load(self) -> PersistedState | None:
                raise OSError("corrupt")

        async def scenario() -> None:
            with pytest.raises(StoreError, match="corrupt"):
                await ModeController(Unreadable()).start()

        run(scenario)


def test_close_waits_for_the_change_under_way() -> None:
    """close() lets a started change finish (bounded by the drain timeout)."""

    async def scenario() -> None:
        store = InMemoryStore()
        c = await started(store=store, drain_timeout=0.05)
        stuck = c.admit("profile")
        caller = asyncio.create_task(c.set_mode("maintenance"))
        await until(lambda: c.state.is_draining)
        await c.close()
        assert c.state is State.MAINTENANCE
        assert (await caller).outcome is Outcome.FORCED
        stuck.release()

    run(scenario)


def test_history_is_newest_first() -> None:
    """history() returns the records newest first."""

    async def scenario() -> None:
        c = await started()
        await c.set_mode("maintenance")
        await c.set_mode("production")
        outcomes = [(r.id, r.target_mode) for r in await c.history(limit=2)]
        assert outcomes == [(3, Mode.PRODUCTION), (2, Mode.MAINTENANCE)]

    run(scenario)


class TestDrainListeners:
    def test_listeners_see_the_draining_state_and_their_closes_are_recorded(self) -> None:
        """A listener runs when the drain begins, with the gate already closed; a failing one
        is logged and the switch goes on; what the others closed is the record's ``closed``."""

        async def scenario() -> None:
            c = await started()
            seen: list[tuple[State, bool]] = []

            def closes(state: State) -> dict[str, int]:
                refused = not c.gate.policy.admits(state, "profile") and c.state is state
                seen.append((state, refused))
                return {"profile": 2, "schema_read": 0}

            def fails(state: State) -> None:
                raise RuntimeError("listener bug")

            c.add_drain_listener(fails)
            c.add_drain_listener(closes)
            c.add_drain_listener(lambda state: {"profile": 1})
            with capture_logs() as logs:
                record = await c.set_mode("maintenance")
            assert seen == [(State.DRAINING_TO_MAINTENANCE, True)]
            assert record.closed == {"profile": 3}
            assert record.outcome is Outcome.COMPLETED
            assert any(e["event"] == "drain_listener_failed" for e in logs)
            [audited] = audits(logs)
            assert audited["closed"] == {"profile": 3}

        run(scenario)
