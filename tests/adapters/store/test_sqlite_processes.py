"""The SQLite store shared by real processes: concurrent writers, stale views, and SIGKILL."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from servermode.adapters.store.sqlite import SQLiteStore
from servermode.core import (
    AUDIT_EVENT,
    ModeController,
    Outcome,
    PersistedState,
    StoreError,
    TransitionRecord,
)

RUNNER = Path(__file__).with_name("crash_runner.py")

# Appends records from a second process: `python -c APPENDER DATABASE NAME COUNT`.
APPENDER = """
import sys
from datetime import UTC, datetime
from servermode.adapters.store.sqlite import SQLiteStore
from servermode.core import Mode, Outcome, State, TransitionRecord
store = SQLiteStore(sys.argv[1])
steady, mode, actor = State.PRODUCTION, Mode.PRODUCTION, sys.argv[2]
for n in range(int(sys.argv[3])):
    at = datetime.now(UTC)
    store.append(TransitionRecord(steady, steady, None, mode, Outcome.NOOP, at, actor=actor,
                                  reason=str(n)))
"""


def run_runner(path: Path, seed: int, switches: int) -> list[str]:
    """Run the crash runner to its end; return its stdout lines."""
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(path), str(seed), str(switches)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@dataclass
class Restart:
    """What a fresh controller found in the file and made of it."""

    persisted: PersistedState | None
    newest_before: TransitionRecord | None
    record: TransitionRecord | None
    controller: ModeController
    history: list[TransitionRecord]


async def restart(path: Path) -> Restart:
    """Look at the file as it was left, then start (and close) a fresh controller on it."""
    store = SQLiteStore(path)
    persisted = store.load()
    before = store.history(limit=1)
    controller = ModeController(store)
    record = await controller.start()
    history = await controller.history(limit=100_000)
    await controller.close()
    return Restart(persisted, before[0] if before else None, record, controller, history)


class TestSharedFile:
    def test_writers_in_two_processes_are_serialised(self, db_path: Path) -> None:
        """Two processes appending at once lose nothing, and every id is unique and in order."""
        SQLiteStore(db_path).close()
        writers = [
            subprocess.Popen([sys.executable, "-c", APPENDER, str(db_path), name, "60"])
            for name in ("a", "b")
        ]
        assert [writer.wait(timeout=30) for writer in writers] == [0, 0]
        history = SQLiteStore(db_path).history(limit=1000)
        assert [r.id for r in history] == list(range(120, 0, -1))
        for name in ("a", "b"):
            mine = [int(r.reason or "") for r in reversed(history) if r.actor == name]
            assert mine == list(range(60))

    def test_a_change_made_by_another_process_refuses_the_stale_controller(
        self, db_path: Path
    ) -> None:
        """After a second process switched the mode, this one's change is refused, not written."""

        async def scenario() -> None:
            stale = ModeController(SQLiteStore(db_path))
            await stale.start()
            lines = run_runner(db_path, seed=3, switches=2)
            assert lines[0] == "ready - -"
            assert len(lines) == 3
            assert stale.state.value == "production"

            with structlog.testing.capture_logs() as logs, pytest.raises(StoreError) as error:
                await stale.set_mode("maintenance", actor="stale")
            assert "was changed by another process" in str(error.value)
            assert stale.state.value == "production"
            assert [e["outcome"] for e in logs if e["event"] == AUDIT_EVENT] == ["failed"]
            await stale.close()

            written = [int(line.split()[1]) for line in lines[1:]]
            found = await restart(db_path)
            assert [r.id for r in found.history] == [*reversed(written), 1]
            assert found.record is None
            assert found.controller.state is found.history[0].to_state

        asyncio.run(scenario())


class TestCrash:
    KILLS = 24
    # Kill delays after the runner is ready: a switch takes a few tens of milliseconds.
    LONGEST_DELAY = 0.15

    @pytest.mark.timeout(60)
    def test_sigkill_at_random_points_loses_no_completed_transition(self, db_path: Path) -> None:
        """Killed anywhere in a switch, a restart finds a steady mode and every completed record."""
        rng = random.Random(20240501)
        completed: dict[int, str] = {}
        recovered = 0
        for kill in range(self.KILLS):
            runner = subprocess.Popen(
                [sys.executable, str(RUNNER), str(db_path), str(kill)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert runner.stdout is not None
            ready = runner.stdout.readline()
            assert ready.startswith("ready "), runner.communicate()[1]
            try:
                runner.wait(timeout=rng.uniform(0.0, self.LONGEST_DELAY))
            except subprocess.TimeoutExpired:
                runner.send_signal(signal.SIGKILL)
            out, err = runner.communicate(timeout=10)
            assert runner.returncode == -signal.SIGKILL, err
            for line in [ready, *out.splitlines()]:
                _, id, outcome = line.split()
                if id != "-":
                    completed[int(id)] = outcome

            found = asyncio.run(restart(db_path))
            assert found.persisted is not None and found.newest_before is not None
            # The state row and its record are written together: the newest record
            # leads to the mode in force in the file (a drain's intent has no record).
            assert found.newest_before.to_state is found.persisted.mode.state
            if found.persisted.state.is_draining:
                recovered += 1
                assert found.record is not None
                assert found.record.outcome is Outcome.RECOVERED
                assert found.record.from_state is found.persisted.state
                assert found.controller.state.value == found.persisted.target
            else:
                assert found.record is None
                assert found.controller.state is found.persisted.state
            assert not found.controller.state.is_draining
            kept = {r.id: str(r.outcome) for r in found.history}
            assert {id: kept.get(id) for id in completed} == completed
            assert sorted(kept, reverse=True) == [r.id for r in found.history]

        # The kills landed both inside drains and after completed switches.
        assert recovered > 0
        assert len(completed) > self.KILLS
