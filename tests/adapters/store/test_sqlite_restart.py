"""The controller on the SQLite store: restarts in every state, and saves that are refused."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
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
    PersistedState,
    State,
    StoreError,
)

# A counted category that each steady mode admits: a request of it must be drained.
CATEGORY = {Mode.PRODUCTION: "profile", Mode.MAINTENANCE: "schema"}
OTHER = {Mode.PRODUCTION: Mode.MAINTENANCE, Mode.MAINTENANCE: Mode.PRODUCTION}


# Starts a switch that cannot drain (a request is held), says so once the drain is saved,
# and waits to be killed.
CRASH_IN_MID_DRAIN = """
import asyncio, sqlite3, time
from servermode.adapters.store.sqlite import SQLiteStore
from servermode.core import ModeController

async def main():
    controller = ModeController(SQLiteStore({path!r}), drain_timeout=60)
    await controller.start()
    controller.admit("profile")
    asyncio.get_running_loop().create_task(controller.set_mode(
        "maintenance", actor="admin", client="10.0.0.7:4000", request_id="req-42",
        reason="schema upgrade"))
    while True:
        probe = sqlite3.connect({path!r})
        state = probe.execute("SELECT state FROM mode_state").fetchone()[0]
        probe.close()
        if state == "draining_to_maintenance":
            print("draining", flush=True)
            await asyncio.sleep(60)
        await asyncio.sleep(0.01)

asyncio.run(main())
"""


def controller_on(path: Path, **options: Any) -> ModeController:
    return ModeController(SQLiteStore(path), **options)


def saved_state(path: Path) -> str | None:
    """The state the file holds, read as an operator's tool would (the store owns the file)."""
    probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = probe.execute("SELECT state FROM mode_state").fetchone()
    finally:
        probe.close()
    return None if row is None else str(row[0])


async def wait_until_saved(path: Path, state: State) -> None:
    """Wait until the file holds ``state``, as a process reading it would see it."""
    deadline = time.monotonic() + 5
    while saved_state(path) != state.value:
        assert time.monotonic() < deadline, f"{path} never held {state}"
        await asyncio.sleep(0.01)


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
        draining = State(f"draining_to_{target}")

        async def scenario() -> None:
            first = controller_on(db_path, initial_mode=source)
            await first.start()
            await first.close()
            # What a process killed in mid-drain leaves: the drain it saved before waiting.
            # (tests/adapters/store/test_sqlite_processes.py kills real processes.)
            left = SQLiteStore(db_path)
            now = datetime.now(UTC)
            left.save(PersistedState(draining, now, now, now + timedelta(seconds=30)))
            left.close()

            second = controller_on(db_path)
            record = await second.start()
            assert record is not None
            assert (record.from_state, record.to_state) == (draining, target.state)
            assert (record.trigger, record.outcome) == ("recover", Outcome.RECOVERED)
            assert second.state is target.state
            assert (await second.history(limit=1)) == [record]
            second.admit(CATEGORY[target]).release()
            await second.close()
            third = controller_on(db_path)
            assert await third.start() is None
            assert third.state is target.state
            await third.close()

        asyncio.run(scenario())

    def test_a_recovered_drain_names_who_asked_for_it(self, db_path: Path) -> None:
        """A process killed in mid-drain: the recovered record keeps the actor, client, request
        id and reason of the switch it interrupted (issue 10)."""
        script = CRASH_IN_MID_DRAIN.format(path=str(db_path))
        with subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
        ) as process:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "draining"
            process.kill()
            process.wait(10)

        async def scenario() -> None:
            controller = controller_on(db_path)
            record = await controller.start()
            assert record is not None and record.outcome is Outcome.RECOVERED
            assert (record.actor, record.client, record.request_id, record.reason) == (
                "admin",
                "10.0.0.7:4000",
                "req-42",
                "schema upgrade",
            )
            assert await controller.history(limit=1) == [record]
            await controller.close()

        asyncio.run(scenario())

    @pytest.mark.parametrize("source", list(Mode))
    def test_a_second_store_cannot_take_over_a_running_drain(
        self, db_path: Path, source: Mode
    ) -> None:
        """While a controller drains, a second store on its file is refused; the drain completes.

        Before the lock, the second store "recovered" the drain it did not own, and the first
        controller's switch then failed while it kept serving the mode it was leaving.
        """
        target = OTHER[source]

        async def scenario() -> None:
            first = controller_on(db_path, initial_mode=source, drain_timeout=30)
            await first.start()
            ticket = first.admit(CATEGORY[source])
            switch = asyncio.create_task(first.set_mode(target, actor="ops"))
            await wait_until_saved(db_path, State(f"draining_to_{target}"))

            with pytest.raises(StoreError, match=r"is locked .*this process already has it open"):
                SQLiteStore(db_path)
            assert saved_state(db_path) == f"draining_to_{target}"

            ticket.release()
            record = await switch
            assert (record.outcome, record.to_state) == (Outcome.COMPLETED, target.state)
            assert first.state is target.state
            await first.close()
            second = controller_on(db_path)
            assert await second.start() is None
            assert second.state is target.state
            assert await second.history(limit=1) == [record]
            await second.close()

        asyncio.run(scenario())


class TestRefusedSave:
    def test_a_stale_controller_keeps_its_mode_and_audits_the_failure(self, db_path: Path) -> None:
        """A change saved over a file something else changed is refused: old mode, failed event.

        The lock keeps other servermode stores out; an operator's tool (or a servermode older
        than the lock) may still write the state row, and its change must not be overwritten.
        """

        async def scenario() -> None:
            stale = controller_on(db_path)
            await stale.start()
            other = sqlite3.connect(db_path, isolation_level=None)
            other.execute(
                "UPDATE mode_state SET state = 'maintenance', mode = 'maintenance', "
                "generation = generation + 1"
            )
            other.close()

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
            history = await stale.history()
            assert [(r.actor, r.outcome) for r in history] == [(None, Outcome.INITIALIZED)]
            await stale.close()

        asyncio.run(scenario())
        saved = SQLiteStore(db_path).load()
        assert saved is not None and saved.state is State.MAINTENANCE
