"""A process for the crash tests: flips the mode of an SQLite store until it is killed.

Usage: ``python crash_runner.py DATABASE SEED [SWITCHES]``. Once started it prints
``ready <id> <outcome>`` (the record written at start, or ``- -``), then ``done <id> <outcome>``
after each ``set_mode`` that returned, each line flushed at once: a line on stdout is a
transition that was complete before the process died. It stops after SWITCHES switches when
given, and otherwise runs until it is killed. Each switch drains a few requests admitted
under the mode being left, some of which outlive the short drain timeout.
"""

from __future__ import annotations

import asyncio
import random
import sys

import structlog
from servermode.adapters.store.sqlite import SQLiteStore
from servermode.core import Mode, ModeChangeFailed, ModeController, TransitionRecord

# A counted category that each steady mode admits, so that a switch has something to drain.
_CATEGORY = {Mode.PRODUCTION: "profile", Mode.MAINTENANCE: "schema"}
_OTHER = {Mode.PRODUCTION: Mode.MAINTENANCE, Mode.MAINTENANCE: Mode.PRODUCTION}
DRAIN_TIMEOUT = 0.01


def report(word: str, record: TransitionRecord | None) -> None:
    if record is None:
        print(word, "-", "-", flush=True)
    else:
        print(word, record.id, record.outcome, flush=True)


async def run(path: str, seed: int, switches: int | None) -> None:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    controller = ModeController(
        SQLiteStore(path),
        drain_timeout=DRAIN_TIMEOUT,
        timeout_policy=rng.choice(["force", "rollback"]),
    )
    report("ready", await controller.start())
    done = 0
    while switches is None or done < switches:
        for _ in range(rng.randint(0, 3)):
            ticket = controller.admit(_CATEGORY[controller.mode])
            loop.call_later(rng.uniform(0.0, 2 * DRAIN_TIMEOUT), ticket.release)
        mode = controller.mode if rng.random() < 0.15 else _OTHER[controller.mode]
        try:
            record = await controller.set_mode(mode, actor="crash-runner", reason=f"switch {done}")
        except ModeChangeFailed as failed:  # rolled back: saved and complete all the same
            record = failed.record
        report("done", record)
        done += 1
    await controller.close()


def main() -> None:
    # The audit events go to stderr: stdout carries only the lines the test reads.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    path, seed = sys.argv[1], int(sys.argv[2])
    switches = int(sys.argv[3]) if len(sys.argv) > 3 else None
    asyncio.run(run(path, seed, switches))


if __name__ == "__main__":
    main()
