"""The SQLite store and real processes: one owner at a time, and SIGKILL at any point."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from servermode.adapters.store.sqlite import SQLiteStore
from servermode.core import (
    ModeController,
    Outcome,
    PersistedState,
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


class TestOneOwner:
    """One store owns a file while it is open: another process's store is refused at open."""

    def test_a_second_process_is_refused_while_the_first_holds_the_file(
        self, db_path: Path
    ) -> None:
        """The second process fails at open, says who holds the file, and writes nothing."""
        owner = SQLiteStore(db_path)
        try:
            refused = subprocess.run(
                [sys.executable, "-c", APPENDER, str(db_path), "b", "5"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert refused.returncode == 1
            assert f"is locked ({db_path}.lock)" in refused.stderr
            assert f"another servermode process (pid {os.getpid()}) is using it" in refused.stderr
            assert owner.history() == []
        finally:
            owner.close()

    def test_processes_that_open_one_after_the_other_keep_every_record(self, db_path: Path) -> None:
        """Closing gives the file up: the next process appends after the last record."""
        SQLiteStore(db_path).close()
        for name in ("a", "b"):
            writer = subprocess.run(
                [sys.executable, "-c", APPENDER, str(db_path), name, "30"], timeout=30
            )
            assert writer.returncode == 0
        store = SQLiteStore(db_path)
        history = store.history(limit=1000)
        store.close()
        assert [r.id for r in history] == list(range(60, 0, -1))
        assert [(r.actor, r.reason) for r in reversed(history)] == [
            (name, str(n)) for name in ("a", "b") for n in range(30)
        ]

    def test_a_running_controller_keeps_its_file_from_a_second_process(self, db_path: Path) -> None:
        """A second process cannot switch the file under a running controller; once the
        controller is closed, the next process takes over where it left off."""

        async def scenario() -> None:
            owner = ModeController(SQLiteStore(db_path))
            await owner.start()
            refused = subprocess.run(
                [sys.executable, str(RUNNER), str(db_path), "3", "2"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert refused.returncode != 0
            assert "is locked" in refused.stderr
            switched = await owner.set_mode("maintenance", actor="owner")
            assert switched.outcome is Outcome.COMPLETED
            await owner.close()

            lines = run_runner(db_path, seed=3, switches=2)
            assert lines[0] == "ready - -"
            written = [int(line.split()[1]) for line in lines[1:]]
            found = await restart(db_path)
            assert [r.id for r in found.history] == [*reversed(written), switched.id, 1]
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
                words = line.split()
                assert len(words) == 3, f"unexpected runner line {line!r}; stderr: {err[-2000:]}"
                _, id, outcome = words
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
