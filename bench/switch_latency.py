"""Item 4: switch latency, from the release of the last in-flight request to the new mode.

Each switch holds one ticket of the current mode, asks for the other mode, lets the drain park,
then takes a timestamp immediately before ``ticket.release()``. The end is the instant the
controller's gate is set to the new state (stamped by :class:`TimedGate`), after which ``admit``
of the new mode's category succeeds (checked every switch). ``set_mode`` returning (after the
audit record is written) is reported too. Target: p99 <= 1 ms, over at least 1000 switches.

The release happens on the event loop's thread, or on another thread (the drain's callback
then hops to the loop with ``call_soon_threadsafe``). The baseline, interleaved switch by switch,
is the event loop's own wake-up: a task awaiting a future that is resolved the same way.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from servermode.core import Mode, ModeController, Outcome, Ticket

from .harness import Options, Report, parse_options, percentile
from .probes import TimedGate, counted_category, settle, timed_controller

TARGET_P99_MS = 1.0


@dataclass(slots=True)
class Samples:
    """Latencies in nanoseconds."""

    opened: list[int] = field(default_factory=list)  # until the gate is in the new state
    returned: list[int] = field(default_factory=list)  # until set_mode returned
    baseline: list[int] = field(default_factory=list)  # a bare future's wake-up


class Releaser:
    """Calls a release function on the loop's thread or on a worker thread; returns the stamp.

    The stamp is taken immediately before the call, on the thread that makes it.
    """

    def __init__(self, threaded: bool) -> None:
        self.threaded = threaded
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._stamps: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        if threaded:
            self._worker = threading.Thread(target=self._work, name="releaser", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            stamp = time.perf_counter_ns()
            job()
            self._stamps.put(stamp)

    def release(self, job: Callable[[], None]) -> int | None:
        """Release now (loop thread: returns the stamp) or hand over (thread: see ``stamp``)."""
        if not self.threaded:
            stamp = time.perf_counter_ns()
            job()
            return stamp
        self._jobs.put(job)
        return None

    def stamp(self) -> int:
        """The stamp of the job handed to the worker (waits for the job to be done)."""
        return self._stamps.get(timeout=10)

    def close(self) -> None:
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join()


async def one_switch(
    controller: ModeController, gate: TimedGate, releaser: Releaser, samples: Samples
) -> None:
    source = controller.mode
    target = Mode.MAINTENANCE if source is Mode.PRODUCTION else Mode.PRODUCTION
    ticket: Ticket = controller.admit(counted_category(controller, source))
    switch = asyncio.create_task(controller.set_mode(target, actor="bench"))
    await settle()
    if switch.done() or not gate.state.is_draining:
        raise AssertionError(f"the switch did not park in a drain (state {gate.state})")
    stamp = releaser.release(ticket.release)
    record = await switch
    returned = time.perf_counter_ns()
    if stamp is None:
        stamp = releaser.stamp()
    if record.outcome is not Outcome.COMPLETED or gate.state is not target.state:
        raise AssertionError(f"switch ended {record.outcome} in {gate.state}")
    controller.admit(counted_category(controller, target)).release()
    samples.opened.append(gate.opened_ns - stamp)
    samples.returned.append(returned - stamp)


async def one_wakeup(releaser: Releaser, samples: Samples) -> None:
    """The same hop with nothing behind it: a task wakes on a future resolved by a release."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    woke = 0

    async def waiter() -> None:
        nonlocal woke
        await future
        woke = time.perf_counter_ns()

    task = asyncio.create_task(waiter())
    await settle()

    def resolve() -> None:
        if releaser.threaded:
            loop.call_soon_threadsafe(future.set_result, None)
        else:
            future.set_result(None)

    stamp = releaser.release(resolve)
    await task
    if stamp is None:
        stamp = releaser.stamp()
    samples.baseline.append(woke - stamp)


async def run_switches(switches: int, threaded: bool) -> Samples:
    samples = Samples()
    releaser = Releaser(threaded)
    try:
        async with timed_controller() as (controller, gate):
            for n in range(switches):
                # Interleaved, alternating which goes first.
                if n % 2:
                    await one_wakeup(releaser, samples)
                    await one_switch(controller, gate, releaser, samples)
                else:
                    await one_switch(controller, gate, releaser, samples)
                    await one_wakeup(releaser, samples)
    finally:
        releaser.close()
    return samples


def measure(options: Options) -> Report:
    switches = 20 if options.quick else 2000
    report = Report("switch_latency", options.quick, {"switches_per_release_site": switches})
    rows: list[Sequence[str | float]] = []
    for threaded in (False, True):
        site = "other thread" if threaded else "loop thread"
        samples = asyncio.run(run_switches(switches, threaded))
        for what, values in (
            ("gate in new state", samples.opened),
            ("set_mode returned", samples.returned),
            ("baseline: bare wake-up", samples.baseline),
        ):
            p50, p99 = percentile(values, 50) / 1e6, percentile(values, 99) / 1e6
            worst = max(values) / 1e6
            report.figure(f"{site} {what} p50 ms", p50)
            report.figure(f"{site} {what} p99 ms", p99)
            report.figure(f"{site} {what} max ms", worst)
            rows.append((what, site, p50 * 1000, p99 * 1000, worst * 1000))
        report.check(
            f"p99 release -> new mode in force, {site}",
            percentile(samples.opened, 99) / 1e6,
            TARGET_P99_MS,
            at_most=True,
            unit=" ms",
        )
    report.table(
        f"latency from the last release, over {switches} switches per release site (microseconds)",
        ("until", "released on", "p50 us", "p99 us", "max us"),
        rows,
    )
    return report


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(__doc__ or "", argv)
    measure(options).finish(options)


if __name__ == "__main__":
    main()
