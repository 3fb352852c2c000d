"""The controller on the SQLite store: restarts in every state, and saves that are refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
from servermode.adapters.store.sqlite import SQLiteStore
from servermode.core import (
    AUDIT_EVENT,
    Mode,
    ModeController,
    Outcome,
    State,
    StoreError,
    TransitionRecord,
)

# A counted category that each steady mode admits: a request of it must be drained.
CATEGORY = {Mode.PRODUCTION: "profile", Mode.MAINTENANCE: "schema"}
OTHER = {Mode.PRODUCTION: Mode.MAINTENANCE, Mode.MAINTENANCE: Mode.PRODUCTION}


def controller_on(path: Path, **options: Any) -> ModeController:
    return ModeController(SQLiteStore(path), **options)


async def wait_until_saved(path: Path, state: State) -> None:
    """Wait until the file holds ``state``, as a process reading it would see it."""
    probe = SQLiteStore(path)
    deadline = time.monotonic() + 5
    try:
        while (saved := probe.load()) is None or saved.state is not state:
            assert time.monotonic() < deadline, f"{path} never held {state}"
            await asyncio.sleep(0.01)
    finally:
        probe.close()


def failed_events(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == AUDIT_EVENT and e["outcome"] == "failed"]


class TestRestart:
    @pytest.mark.parametrize("initial", list(Mode))
    def test_nothing_persisted_starts_in_the_initial_mode_and_records_it(
        self, db_path: Path, initial: Mode
    ) -> None:
        """A new file gets the configured mode, recorded as initialized; a restart keeps it."""

        async def scenario() -> None:
            first = controller_on(db_path, initial_mode=initial)
            record = await first.start()
            assert record is not None
            assert (record.id, record.outcome, record.to_state) == (
                1,
                Outcome.INITIALIZED,
                initial.state,
            )
            await first.close()
            second = controller_on(db_path, initial_mode=OTHER[initial])
            assert await second.start() is None
            assert second.state is initial.state
            assert await second.history() == [record]
            await second.close()

        asyncio.run(scenario())

    @pytest.mark.parametrize("mode", list(Mode))
    def test_a_steady_mode_survives_a_restart(self, db_path: Path, mode: Mode) -> None:
        """The mode last switched to, and its time, are in force after a restart."""

        async def scenario() -> None:
            first = controller_on(db_path, drain_timeout=1)
            await first.start()
            switched = await first.set_mode("maintenance", actor="ops")
            if mode is Mode.PRODUCTION:
                switched = await first.set_mode("production", actor="ops")
            since = first.status().since
            await first.close()

            second = controller_on(db_path)
            assert await second.start() is None
            assert second.state is mode.state
            assert second.status().since == since
            assert (await second.history(limit=1)) == [switched]
            second.admit(CATEGORY[mode]).release()
            await second.close()

        asyncio.run(scenario())

    @pytest.mark.parametrize("source", list(Mode))
    def test_a_draining_state_is_completed_as_recovered(self, db_path: Path, source: Mode) -> None:
        """A drain left in the file by a dead process is completed to its target at start."""
        target = OTHER[source]

        async def scenario() -> None:
            first = controller_on(db_path, initial_mode=source, drain_timeout=30)
            await first.start()
            ticket = first.admit(CATEGORY[source])
            switch = asyncio.create_task(first.set_mode(target, actor="ops"))
            await wait_until_saved(db_path, State(f"draining_to_{target}"))

            second = controller_on(db_path)
            record = await second.start()
            assert record is not None
            assert (record.from_state, record.to_state) == (first.state, target.state)
            assert (record.trigger, record.outcome) == ("recover", Outcome.RECOVERED)
            assert second.state is target.state
            assert (await second.history(limit=1)) == [record]
            second.admit(CATEGORY[target]).release()

            # The first controller's view is stale now: its result is refused, not written.
            with structlog.testing.capture_logs() as logs:
                ticket.release()
                with pytest.raises(StoreError, match="changed by another process"):
                    await switch
            assert first.state is source.state
            assert [e["target_mode"] for e in failed_events(logs)] == [target.value]
            await second.close()
            third = controller_on(db_path)
            assert await third.start() is None
            assert third.state is target.state
            await third.close()

        asyncio.run(scenario())


class TestRefusedSave:
    def test_a_stale_controller_keeps_its_mode_and_audits_the_failure(self, db_path: Path) -> None:
        """A change saved over a file another store changed is refused: old mode, failed event."""

        async def scenario() -> list[TransitionRecord]:
            stale = controller_on(db_path)
            await stale.start()
            other = controller_on(db_path)
            await other.start()
            await other.set_mode("maintenance", actor="other")

            with structlog.testing.capture_logs() as logs, pytest.raises(StoreError) as error:
                await stale.set_mode("maintenance", actor="stale", reason="upgrade")
            assert str(error.value).startswith(f"the state in {db_path} was changed by another")
            assert stale.state is State.PRODUCTION
            stale.admit("profile").release()
            [event] = failed_events(logs)
            assert event["actor"] == "stale"
            assert event["from_state"] == event["to_state"] == "production"
            assert event["target_mode"] == "maintenance"
            assert event["log_level"] == "warning"
            history = await other.history()
            await stale.close()
            await other.close()
            return history

        history = asyncio.run(scenario())
        assert [(r.actor, r.outcome) for r in history] == [
            ("other", Outcome.COMPLETED),
            (None, Outcome.INITIALIZED),
        ]
        saved = SQLiteStore(db_path).load()
        assert saved is not None and saved.state is State.MAINTENANCE
