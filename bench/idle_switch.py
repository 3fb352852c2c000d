"""Item 6 (issue 14): an idle switch's latency with the SQLite store, next to the in-memory one.

An idle switch has nothing in flight: ``set_mode`` saves the intent (the draining state), finds
the drain already over, saves the new state with its record, and audits it. The latency is
from the call to its return, alternating production and maintenance, with nothing else on the
loop. The stores, each under its own started controller, take turns switch by switch (the order
alternating), so a burst of load from elsewhere hits them alike:

- ``in memory``: :class:`InMemoryStore` (not blocking: no worker thread, no disk);
- ``SQLite FULL``: :class:`SQLiteStore` as shipped (WAL, ``synchronous=FULL``: each commit
  syncs the write-ahead log before it returns; two commits per switch);
- ``SQLite NORMAL`` and ``SQLite OFF``: the same store with the pragma changed on its
  connection after opening, for comparison only (NORMAL syncs the log only at checkpoints, OFF
  never): the difference to FULL is what durability costs;
- ``fsync``: a bare ``write`` + ``os.fsync`` of one 4 KiB page to a file in the same folder,
  timed the same way: what one sync costs on this disk.

The files live in a temporary folder (``--dir`` chooses another, to measure a given disk).
No target: the issue asks for the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from servermode.adapters.store.sqlite import SQLiteStore
from servermode.core import InMemoryStore, Mode, ModeController, Outcome, Store

from .harness import Report, argument_parser, options_from, percentile
from .probes import quiet_audit

#: synchronous pragma of each SQLite case (FULL is what the store ships with).
SQLITE_CASES = {"SQLite FULL": "FULL", "SQLite NORMAL": "NORMAL", "SQLite OFF": "OFF"}


def _sqlite(folder: Path, name: str, synchronous: str) -> SQLiteStore:
    store = SQLiteStore(folder / f"{name.replace(' ', '-').lower()}.db")
    if synchronous != "FULL":
        # A comparison only: the shipped store keeps FULL (see bench/README.md).
        store._connection.execute(f"PRAGMA synchronous = {synchronous}")
    return store


@contextlib.asynccontextmanager
async def _controllers(folder: Path) -> AsyncIterator[dict[str, ModeController]]:
    with quiet_audit() as audit:
        stores: dict[str, Store] = {"in memory": InMemoryStore()}
        for name, synchronous in SQLITE_CASES.items():
            stores[name] = _sqlite(folder, name, synchronous)
        controllers = {name: ModeController(store, audit=audit) for name, store in stores.items()}
        for controller in controllers.values():
            await controller.start()
        try:
            yield controllers
        finally:
            for controller in controllers.values():
                await controller.close()


def _switch(controller: ModeController) -> Callable[[], Awaitable[int]]:
    async def switch() -> int:
        target = Mode.MAINTENANCE if controller.mode is Mode.PRODUCTION else Mode.PRODUCTION
        start = time.perf_counter_ns()
        record = await controller.set_mode(target, actor="bench")
        elapsed = time.perf_counter_ns() - start
        if record.outcome is not Outcome.COMPLETED or controller.mode is not target:
            raise AssertionError(f"idle switch ended {record.outcome} in {controller.state}")
        return elapsed

    return switch


def _fsync(folder: Path) -> Callable[[], Awaitable[int]]:
    path = folder / "fsync.bin"
    page = b"\0" * 4096

    async def sync() -> int:
        start = time.perf_counter_ns()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, page, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        return time.perf_counter_ns() - start

    return sync


async def run(switches: int, folder: Path) -> dict[str, list[int]]:
    async with _controllers(folder) as controllers:
        cases = {name: _switch(c) for name, c in controllers.items()}
        cases["fsync"] = _fsync(folder)
        names = list(cases)
        samples: dict[str, list[int]] = {name: [] for name in names}
        for n in range(switches + 2):  # two warm-up switches per case
            for name in names if n % 2 == 0 else names[::-1]:
                elapsed = await cases[name]()
                if n >= 2:
                    samples[name].append(elapsed)
        return samples


def measure(switches: int, folder: Path, quick: bool, where: str = "a temporary folder") -> Report:
    report = Report("idle_switch", quick, {"switches_per_store": switches, "folder": where})
    samples = asyncio.run(run(switches, folder))
    memory_p50 = percentile(samples["in memory"], 50)
    rows: list[Sequence[str | float]] = []
    for name, values in samples.items():
        p50, p99 = percentile(values, 50) / 1e6, percentile(values, 99) / 1e6
        report.figure(f"{name} p50 ms", p50)
        report.figure(f"{name} p99 ms", p99)
        report.figure(f"{name} max ms", max(values) / 1e6)
        rows.append((name, p50, p99, max(values) / 1e6, p50 * 1e6 / memory_p50))
    report.table(
        f"idle switch, set_mode call -> return, {switches} switches per store "
        "(milliseconds; fsync: one 4 KiB write + fsync in the same folder)",
        ("store", "p50 ms", "p99 ms", "max ms", "p50 x in memory"),
        rows,
    )
    full, off = samples["SQLite FULL"], samples["SQLite OFF"]
    report.figure(
        "durability: SQLite FULL - OFF p50 ms",
        (percentile(full, 50) - percentile(off, 50)) / 1e6,
    )
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argument_parser(__doc__ or "")
    parser.add_argument("--dir", type=Path, help="folder for the database files [a temporary one]")
    args = parser.parse_args(argv)
    options = options_from(args)
    switches = 10 if options.quick else 1000
    with contextlib.ExitStack() as stack:
        folder = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        folder.mkdir(parents=True, exist_ok=True)
        # The results name the folder only when it was chosen (a temporary name says nothing).
        where = str(args.dir) if args.dir else "a temporary folder"
        measure(switches, folder, options.quick, where).finish(options)


if __name__ == "__main__":
    main()
